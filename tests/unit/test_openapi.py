"""The served OpenAPI document (serving/openapi.py over BentoML's own): OpenAPI 3.0 forms, the batch limits, the
one-of rule, the enums of the served forecast, every status the edge answers, the bearer scheme; and the request
models and the document agree on which bodies are valid."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import pandas as pd
import pydantic
import pytest

from serving.edge import MODEL_OF_PATH, OPEN_PATHS, EdgeMiddleware
from serving.openapi import ENUM_LIMIT, complete_document, to_openapi_30
from serving.schemas import ChurnScoreRequest, ForecastRequest, LeadScoreRequest, ModelInfo, PlanRequest

NODES = pd.DataFrame(
    {"unique_id": ["total", "region=N", "region=N/rep=a"], "level": ["total", "region", "rep"]}
)


@pytest.fixture(scope="module")
def bentoml_doc() -> dict[str, Any]:
    from serving.service import SalesML

    return json.loads(json.dumps(SalesML.openapi_spec.asdict()))


def walk(node: Any):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` as the JSON Schema ``anyOf [schema, null]`` (as schemathesis reads it)."""
    if isinstance(node, list):
        return [as_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: as_json_schema(v) for k, v in node.items()}
    if out.pop("nullable", False):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def body_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    """The request schema of ``path`` with the document's components, for a JSON Schema validator."""
    schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return {**schema, "components": doc["components"]}


def complete(doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
    args = {
        "token_required": True,
        "max_batch": 50,
        "open_paths": OPEN_PATHS,
        "model_paths": set(MODEL_OF_PATH),
        "forecast_nodes": NODES,
    }
    return complete_document(doc, **{**args, **kw}, model_info_schema=ModelInfo.model_json_schema())


def test_bentoml_writes_json_schema_2020_forms_that_the_completed_document_turns_into_openapi_30(
    bentoml_doc: dict[str, Any],
) -> None:
    # The premise: BentoML's document says 3.0 but holds {"type": "null"} options (3.1 / JSON Schema 2020).
    assert bentoml_doc["openapi"].startswith("3.0")
    assert any({"type": "null"} in n.get("anyOf", []) for n in walk(bentoml_doc))
    doc = complete(bentoml_doc)
    assert doc["openapi"].startswith("3.0")
    for n in walk(doc):
        assert {"type": "null"} not in n.get("anyOf", []) + n.get("oneOf", []), n
        assert n.get("type") != "null", n
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert bound not in n or isinstance(n[bound], bool), n
    refs = {n["$ref"].rsplit("/", 1)[-1] for n in walk(doc) if "$ref" in n}
    assert refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])
    assert bentoml_doc["paths"]["/plan"]["post"]["responses"] != doc["paths"]["/plan"]["post"]["responses"]


def test_to_openapi_30_forms() -> None:
    assert to_openapi_30({"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}) == {
        "type": "string",
        "nullable": True,
        "default": None,
    }
    refd = to_openapi_30({"anyOf": [{"$ref": "#/x"}, {"type": "null"}]})
    assert refd == {"anyOf": [{"$ref": "#/x"}], "nullable": True}
    assert to_openapi_30({"type": "number", "exclusiveMinimum": 0}) == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
    }
    assert to_openapi_30({"const": "a", "type": "array", "default": None}) == {"enum": ["a"], "type": "array"}


def test_limits_one_of_enums_statuses_and_security(bentoml_doc: dict[str, Any]) -> None:
    doc = complete(bentoml_doc)
    for path, field in (("/churn/score", "customers"), ("/leads/score", "leads"), ("/forecast", "nodes")):
        prop = body_schema(doc, path)["properties"][field]
        assert (prop["minItems"], prop["maxItems"]) == (1, 50), path
    forecast = body_schema(doc, "/forecast")
    assert forecast["oneOf"] == [{"required": ["nodes"]}, {"required": ["level"]}]
    assert forecast["properties"]["level"]["enum"] == ["total", "region", "rep"]
    assert forecast["properties"]["nodes"]["items"]["enum"] == NODES["unique_id"].tolist()
    assert body_schema(doc, "/plan")["properties"]["node"]["enum"] == NODES["unique_id"].tolist()
    assert {"minimum": 0, "exclusiveMinimum": True}.items() <= body_schema(doc, "/plan")["properties"][
        "target"
    ].items()

    for path in ("/churn/score", "/leads/score", "/forecast", "/plan"):
        assert set(doc["paths"][path]["post"]["responses"]) >= {"200", "400", "401", "413", "415", "503"}
    for path in ("/forecast", "/plan"):
        assert "404" in doc["paths"][path]["post"]["responses"]
    for path in ("/churn/score", "/leads/score", "/forecast", "/plan"):
        assert doc["paths"][path]["post"]["requestBody"]["required"] is True  # no body is not a valid request
    assert not doc["paths"]["/admin/reload"]["post"]["requestBody"].get("required")
    assert "401" in doc["paths"]["/models"]["get"]["responses"]
    assert doc["paths"]["/plan"]["post"]["responses"]["401"]["headers"]["WWW-Authenticate"]
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path in ("/healthz", "/livez", "/readyz", "/metrics"):
        assert doc["paths"][path]["get"]["security"] == []
    assert set(doc["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}

    open_doc = complete(bentoml_doc, token_required=False, forecast_nodes=None)
    assert "security" not in open_doc and "securitySchemes" not in open_doc["components"]
    assert "401" not in open_doc["paths"]["/plan"]["post"]["responses"]
    assert "enum" not in body_schema(open_doc, "/forecast")["properties"]["level"]

    big = pd.DataFrame({"unique_id": [f"n{i}" for i in range(ENUM_LIMIT + 1)], "level": "rep"})
    many = complete(bentoml_doc, forecast_nodes=big)
    assert "enum" not in body_schema(many, "/forecast")["properties"]["nodes"]["items"]
    assert body_schema(many, "/forecast")["properties"]["level"]["enum"] == ["rep"]


BODIES = {
    "/plan": (
        PlanRequest,
        [
            {"node": "total", "target": 5},
            {"node": "total", "target": 5.5, "quarter": "current"},
            {"node": " total", "target": 5},  # taken as sent, not stripped
            {"node": "total", "target": "5"},
            {"node": "total", "target": True},
            {"node": "total", "target": 0},
            {"node": "total", "target": -1},
            {"node": "", "target": 1},
            {"node": "x" * 201, "target": 1},
            {"node": "total", "target": 1, "quarter": "last"},
            {"node": "total", "target": 1, "extra": 1},
            {"target": 1},
        ],
    ),
    "/forecast": (
        ForecastRequest,
        [
            {"nodes": ["total"]},
            {"level": "region"},
            {"nodes": None},
            {"level": None},
            {"nodes": None, "level": "region"},
            {"nodes": ["x" * 201]},
            {"nodes": [""]},
            {"nodes": [1]},
        ],
    ),
    "/churn/score": (
        ChurnScoreRequest,
        [
            {"customers": [{"customer_id": "C1"}]},
            {"customers": [{"customer_id": "C1", "features": None}]},
            {"customers": [{"customer_id": "C1", "features": {"a": 1, "b": "x", "c": None, "d": True}}]},
            {"customers": [{"customer_id": "C1", "features": {"a": [1]}}]},
            {"customers": [{"customer_id": ""}]},
            {"customers": [{"customer_id": 7}]},
            {"customers": [{}]},
            {"customers": "C1"},
        ],
    ),
    "/leads/score": (
        LeadScoreRequest,
        [
            {"leads": [{"lead_id": "L1", "features": {"a": 1.5}}]},
            {"leads": [{"lead_id": "L1"}]},
            {"leads": [{"lead_id": "L1", "features": None}]},
            {"leads": [{"lead_id": "L1", "features": {"a": {"b": 1}}}]},
            {"leads": [{"lead_id": "L1", "x": 1}]},
        ],
    ),
}


@pytest.mark.parametrize("path", list(BODIES))
def test_the_request_models_and_the_document_agree_on_what_is_valid(
    bentoml_doc: dict[str, Any], path: str
) -> None:
    """Per body, the server's model and a JSON Schema validator of the document give the same verdict.

    The enums, the one-of rule and the batch limits are checked by the endpoints (with their own messages), so
    they are left out of the schema compared here and tested above."""
    doc = complete(bentoml_doc, forecast_nodes=None)
    schema = body_schema(doc, path)
    schema.pop("oneOf", None)
    for prop in schema["properties"].values():
        prop.pop("minItems", None), prop.pop("maxItems", None)
    # Draft 4 is OpenAPI 3.0's base (boolean exclusiveMinimum); "nullable" read as schemathesis reads it.
    validator = jsonschema.Draft4Validator(as_json_schema(schema))
    model, bodies = BODIES[path]
    verdicts = []
    for body in bodies:
        try:
            model.model_validate_json(json.dumps(body))
            server = True
        except pydantic.ValidationError:
            server = False
        verdicts.append((body, server, validator.is_valid(body)))
    assert [v for v in verdicts if v[1] != v[2]] == []
    assert {v[1] for v in verdicts} == {True, False}  # both verdicts occur


def test_the_edge_serves_the_completed_document_and_keeps_allow_on_a_405(
    bentoml_doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALESML_API_TOKEN", "t")
    monkeypatch.setenv("SALESML_MAX_BATCH", "77")

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        if scope["path"] == "/docs.json":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": json.dumps(bentoml_doc).encode()})
        else:
            headers = [(b"allow", b"GET, HEAD"), (b"content-type", b"text/plain")]
            await send({"type": "http.response.start", "status": 405, "headers": headers})
            await send({"type": "http.response.body", "body": b"Method Not Allowed"})

    def get(path: str, method: str = "GET") -> tuple[dict[str, Any], dict[bytes, bytes], dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "headers": [(b"authorization", b"Bearer t")]}
        asyncio.run(EdgeMiddleware(app)(scope, None, send))  # type: ignore[arg-type]
        body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
        return sent[0], dict(sent[0]["headers"]), body

    start, _, doc = get("/docs.json")
    assert start["status"] == 200
    assert body_schema(doc, "/churn/score")["properties"]["customers"]["maxItems"] == 77
    assert doc["security"] == [{"bearer": []}]
    start, headers, body = get("/healthz", method="TRACE")
    assert start["status"] == 405 and headers[b"allow"] == b"GET, HEAD"
    assert body == {"error": "Method Not Allowed"} and headers[b"content-type"] == b"application/json"
    start, headers, _ = get("/models", method="DELETE")  # the edge's own route
    assert start["status"] == 405 and headers[b"allow"] == b"GET"
