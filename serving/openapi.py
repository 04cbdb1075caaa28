"""The served OpenAPI document: BentoML's, completed with every rule the edge and the endpoints enforce.

BentoML 1.4 writes the document from the pydantic request models but cannot carry everything the server checks:
the batch limits (checked in the endpoints, with their own messages), that ``/forecast`` takes exactly one of
``nodes`` / ``level``, the levels and nodes the served forecast knows, the statuses the edge answers (401 with
the token, 413, 415, 503, 404 for an unknown node) and the bearer scheme. It also writes JSON Schema 2020 forms
(``{"type": "null"}`` in ``anyOf``, a numeric ``exclusiveMinimum``) into a document it labels OpenAPI 3.0, which
3.0 tools reject. :func:`complete_document` fixes both, so that generated clients and schemathesis agree with the
server: a request the document calls valid is answered 2xx (or 404 for an unknown name), one it calls invalid
is answered 4xx.

Plain functions over dicts: no BentoML here.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable
from typing import Any

__all__ = ["ENUM_LIMIT", "complete_document", "to_openapi_30"]

# Nodes are listed as an enum up to this many (a larger hierarchy would make the document heavier than useful);
# levels are always listed.
ENUM_LIMIT = 1_000
REF = "#/components/schemas/{}"
BATCHES = {"/churn/score": "customers", "/leads/score": "leads", "/forecast": "nodes"}

ERROR_SCHEMA = {
    "type": "object",
    "title": "Error",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "string",
            "description": "What was wrong, naming the field: '<field>: <problem>; ...'.",
        },
        "fields": {
            "type": "array",
            "description": "One entry per invalid field (request validation errors only).",
            "items": {
                "type": "object",
                "required": ["field", "problem"],
                "properties": {"field": {"type": "string"}, "problem": {"type": "string"}},
            },
        },
    },
}
READINESS_SCHEMA = {
    "type": "object",
    "title": "Readiness",
    "required": ["ready", "models"],
    "properties": {
        "ready": {"type": "boolean", "description": "At least one model is served."},
        "models": {
            "type": "object",
            "description": "Per product: state (fresh, stale or missing), name, version, problem.",
            "additionalProperties": {"type": "object"},
        },
    },
}
STATUS_TEXT = {
    400: "The request is invalid; the message names the field and what was expected.",
    401: "Missing or wrong bearer token (SALESML_API_TOKEN is set).",
    404: "A node or level that the served forecast does not hold.",
    413: "The body is larger than SALESML_MAX_BODY_BYTES.",
    415: "The body is not application/json.",
    503: "The model is not being served (no champion, or the service is starting).",
    504: "The request took longer than the service's timeout.",
}


def _error(status: int, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": STATUS_TEXT[status],
        "content": {"application/json": {"schema": {"$ref": REF.format("Error")}}},
    }
    if headers:
        out["headers"] = headers
    return out


def to_openapi_30(node: Any) -> Any:
    """A JSON Schema written by pydantic, in the forms OpenAPI 3.0 knows (a new object; the input is kept)."""
    if isinstance(node, list):
        return [to_openapi_30(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_openapi_30(v) for k, v in node.items()}
    for key in ("anyOf", "oneOf"):
        options = out.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            del out[key]
            out["nullable"] = True
            if len(rest) == 1 and "$ref" not in rest[0]:
                out = {**rest[0], **out}
            elif rest:
                out[key] = rest
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = out.get(bound)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[plain], out[bound] = value, True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if "default" in out and out["default"] is None and not out.get("nullable"):
        del out["default"]  # pydantic's "may be left out", which is not "may be null"
    return out


def _operations(doc: dict[str, Any]) -> Iterable[tuple[str, str, dict[str, Any]]]:
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if isinstance(op, dict) and method in ("get", "post", "put", "patch", "delete"):
                yield path, method, op


def _body(op: dict[str, Any]) -> dict[str, Any]:
    return op["requestBody"]["content"]["application/json"]["schema"]


def complete_document(
    doc: dict[str, Any],
    *,
    token_required: bool,
    max_batch: int,
    open_paths: Collection[str],
    model_paths: Collection[str],
    forecast_nodes: Any | None = None,
    model_info_schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The document the service serves at ``/docs.json``.

    Args:
        doc: BentoML's document (``Service.openapi_spec.asdict()``, as BentoML serves it).
        token_required: ``SALESML_API_TOKEN`` is set: every path but the probes needs ``Authorization: Bearer``.
        max_batch: items per request (``SALESML_MAX_BATCH``).
        open_paths: the paths open without the token (the edge's ``OPEN_PATHS``).
        model_paths: the paths answered 503 while their model is not served (the edge's ``MODEL_OF_PATH``).
        forecast_nodes: the served forecast's node table (``unique_id``, ``level``), for the enums of levels and
            nodes; None when no forecast is served.
        model_info_schema: the JSON Schema of one ``GET /models`` entry.
    """
    doc = to_openapi_30(copy.deepcopy(doc))
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("InvalidArgument", "NotFound", "InternalServerError", "TaskStatusResponse"):
        schemas.pop(name, None)  # BentoML's shapes; the edge answers every error as Error
    schemas["Error"] = ERROR_SCHEMA
    schemas["Readiness"] = READINESS_SCHEMA
    paths = doc["paths"]

    for path, field in BATCHES.items():
        if path in paths:
            _body(paths[path]["post"])["properties"][field].update(minItems=1, maxItems=max_batch)
    if "/forecast" in paths:
        body = _body(paths["/forecast"]["post"])
        body["oneOf"] = [{"required": ["nodes"]}, {"required": ["level"]}]
        body["description"] = "Exactly one of nodes or level."
    if forecast_nodes is not None and len(forecast_nodes):
        levels = list(dict.fromkeys(str(v) for v in forecast_nodes["level"]))
        ids = list(dict.fromkeys(str(v) for v in forecast_nodes["unique_id"]))
        if "/forecast" in paths:
            props = _body(paths["/forecast"]["post"])["properties"]
            props["level"]["enum"] = levels
            if len(ids) <= ENUM_LIMIT:
                props["nodes"]["items"]["enum"] = ids
        if "/plan" in paths and len(ids) <= ENUM_LIMIT:
            _body(paths["/plan"]["post"])["properties"]["node"]["enum"] = ids

    auth = {"401": _error(401, {"WWW-Authenticate": {"schema": {"type": "string", "enum": ["Bearer"]}}})}
    for path, method, op in _operations(doc):
        if "requestBody" in op and path != "/admin/reload":  # reload takes no body or {}
            op["requestBody"]["required"] = True
        ok = op.get("responses", {}).get("200") or op.get("responses", {}).get(200) or {}
        responses: dict[Any, Any] = {"200": ok}
        if path in open_paths:
            op["security"] = []
        elif token_required:
            responses.update(auth)
        if method == "post":
            for status in (400, 413, 415):
                responses[str(status)] = _error(status)
            if path in ("/forecast", "/plan"):
                responses["404"] = _error(404)
            if path in model_paths:
                responses["503"] = _error(503)
            responses["504"] = _error(504)
        op["responses"] = responses
        op.pop("x-bentoml-name", None)

    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}
    for path in ("/healthz", "/livez", "/metrics"):
        if path in paths:
            paths[path]["get"]["responses"]["200"] = {"description": "OK", **text}
    if "/readyz" in paths:
        ready = {"content": {"application/json": {"schema": {"$ref": REF.format("Readiness")}}}}
        paths["/readyz"]["get"]["responses"] = {
            "200": {"description": "At least one model is served.", **ready},
            "503": {"description": "No model is served yet.", **ready},
        }
        paths["/readyz"]["get"]["description"] = "Ready when at least one model is served; the state of each."

    if model_info_schema is not None:
        defs = model_info_schema.pop("$defs", {})
        schemas.update(to_openapi_30(defs))
        schemas["ModelInfo"] = to_openapi_30(model_info_schema)
        models_ok = {
            "description": "The served champions: version, data set, training date, data cut-off, metrics.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["models"],
                        "properties": {
                            "models": {"type": "array", "items": {"$ref": REF.format("ModelInfo")}}
                        },
                    }
                }
            },
        }
        responses = {"200": models_ok, "503": _error(503)}
        if token_required:
            responses.update(auth)
        paths["/models"] = {
            "get": {"tags": ["Service APIs"], "description": "The served champions.", "responses": responses}
        }

    if token_required:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "The value of SALESML_API_TOKEN."}
        }
        doc["security"] = [{"bearer": []}]
    return doc
