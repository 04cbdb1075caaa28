"""The service's edge: bearer-token access, JSON ``/readyz`` and ``GET /models``, and one log line per rejection.

A plain ASGI middleware, so it sees every request before BentoML's router: ``/healthz`` (process up) and
``/metrics`` stay BentoML's own; ``/readyz`` answers with the state of each model (fresh, stale or missing) and
is 503 when no model is loaded; ``/docs.json`` is BentoML's document completed by :mod:`serving.openapi`.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from features.settings import env_positive_int
from serving.answers import current_service as _current_service
from serving.page import PREFIX as PAGE_PREFIX
from serving.page import page_access

__all__ = ["EdgeMiddleware", "OPEN_PATHS", "ClientErrorLogFilter", "readable_error"]

OPEN_PATHS = {"/healthz", "/livez", "/readyz", "/metrics"}
# A full batch of 10,000 leads with a dozen attributes each is about 3 MB of JSON.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
MODEL_OF_PATH = {
    "/churn/score": "churn_risk",
    "/leads/score": "lead_score",
    "/forecast": "sales_forecast",
    "/plan": "sales_forecast",
}
logger = logging.getLogger("salesml.edge")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# Headers of a rewritten 4xx answer that are kept (a 405's Allow, a 401's WWW-Authenticate).
_KEPT_HEADERS = {b"allow", b"www-authenticate", b"retry-after"}


async def _json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(body, default=str).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class EdgeMiddleware:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        token = os.environ.get("SALESML_API_TOKEN")
        on_page = path == PAGE_PREFIX or path.startswith(PAGE_PREFIX + "/")
        if token and on_page:  # the page's own rule: its cookie (or the Bearer header), else the login form
            verdict = page_access(path, dict(scope.get("headers") or []), token)
            if verdict == "login":
                await send(
                    {
                        "type": "http.response.start",
                        "status": 303,
                        "headers": [
                            (b"location", f"{PAGE_PREFIX}/login".encode()),
                            (b"content-length", b"0"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
            if verdict == "refuse":
                await _json(send, 401, {"error": "unauthorized: sign in at /ui/login"})
                return
        elif token and path not in OPEN_PATHS:
            headers = dict(scope.get("headers") or [])
            scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            # The scheme name is case-insensitive (RFC 9110); the token is compared in constant time.
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                logger.debug("rejected %s %s: 401 missing or wrong token", method, path)
                await _json(send, 401, {"error": "unauthorized"}, [(b"www-authenticate", b"Bearer")])
                return
        if method == "POST":
            declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
            limit = env_positive_int("SALESML_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
            if declared.isdigit() and int(declared) > limit:  # refused before a byte of the body is read
                await _json(
                    send,
                    413,
                    {
                        "error": f"(body): {int(declared):,} bytes is above the limit of {limit:,} (SALESML_MAX_BODY_BYTES)"
                    },
                )
                return
            ctype = (
                dict(scope.get("headers") or []).get(b"content-type", b"application/json").decode("latin-1")
            )
            if ctype.split(";")[0].strip().lower() != "application/json" or not ctype.isascii():
                await _json(
                    send, 415, {"error": f"content-type: expected application/json, got {ctype[:80]!r}"}
                )
                return
        if path == "/models" and method != "GET":  # the edge's own route: 405 as BentoML's routes answer
            await _json(send, 405, {"error": "Method Not Allowed"}, [(b"allow", b"GET")])
            return
        if (path in ("/readyz", "/models") and method == "GET") or path in MODEL_OF_PATH:
            service = _current_service()
            if service is None:
                await _json(send, 503, {"error": "the service is starting; retry shortly"})
                return
            if path == "/readyz":
                status = service.readiness()
                await _json(send, 200 if status["ready"] else 503, status)
                return
            if path == "/models":
                await _json(send, 200, {"models": service.models_info()})
                return
            model = MODEL_OF_PATH[path]
            snapshot = service.store.snapshot
            if model not in snapshot.champions:
                reason = snapshot.problems.get(model, "not loaded")
                logger.debug("rejected %s %s: 503 model %s not served", method, path, model)
                await _json(send, 503, {"error": f"model {model!r} is not being served: {reason}"})
                return

        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def send_wrapper(message: dict[str, Any]) -> None:
            # Client errors are buffered and rewritten into one readable shape; everything else streams.
            if message["type"] == "http.response.start":
                start.update(message)
                if not 400 <= message["status"] < 500:
                    await send(message)
                return
            if start and 400 <= start["status"] < 500:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    status = start["status"]
                    body = readable_error(b"".join(chunks))
                    logger.debug("rejected %s %s: %s %s", method, path, status, body.get("error", "")[:200])
                    kept = [(k, v) for k, v in start.get("headers", []) if k.lower() in _KEPT_HEADERS]
                    await _json(send, status, body, kept)
                return
            await send(message)

        if path == "/docs.json" and method == "GET":
            await self._document(scope, receive, send)
            return

        await self.app(scope, receive, send_wrapper)

    async def _document(self, scope: Scope, receive: Receive, send: Send) -> None:
        """BentoML's document, completed with what the server enforces (:func:`serving.openapi.complete_document`)."""
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        if start.get("status") != 200:
            await _json(send, start.get("status", 500), readable_error(b"".join(chunks)))
            return
        from serving.openapi import complete_document
        from serving.schemas import ModelInfo, max_batch

        service = _current_service()
        doc = complete_document(
            json.loads(b"".join(chunks)),
            token_required=bool(os.environ.get("SALESML_API_TOKEN")),
            max_batch=max_batch(),
            open_paths=OPEN_PATHS,
            model_paths=set(MODEL_OF_PATH),
            forecast_nodes=_forecast_nodes(service),
            model_info_schema=ModelInfo.model_json_schema(ref_template="#/components/schemas/{model}"),
        )
        await _json(send, 200, doc)


def _forecast_nodes(service: Any) -> Any:
    """The served forecast's node table (``unique_id``, ``level``), for the document's enums; None if not served."""
    champ = service.store.snapshot.champions.get("sales_forecast") if service is not None else None
    if champ is None:
        return None
    from training.forecast.serve_api import load_forecast

    return load_forecast(champ.model.model).nodes


def readable_error(raw: bytes) -> dict[str, Any]:
    """BentoML's 4xx bodies as ``{"error": "<field>: <problem>; ...", "fields": [{"field", "problem"}]}``."""
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return {"error": raw.decode("utf-8", "replace")[:500]}
    if isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict):
        body = body[0]  # BentoML wraps InvalidArgument messages in a one-element list
    if not isinstance(body, dict):
        return {"error": str(body)[:500]}
    detail = body.get("detail")
    if isinstance(detail, list) and detail:
        fields = []
        for d in detail:
            loc = ".".join(str(p) for p in d.get("loc", [])) or "(body)"
            fields.append({"field": loc, "problem": d.get("msg", "invalid")})
        message = "; ".join(f"{f['field']}: {f['problem']}" for f in fields[:10])
        return {"error": message, "fields": fields}
    return {"error": str(body.get("error", body))}


class ClientErrorLogFilter(logging.Filter):
    """Drop BentoML's traceback for requests rejected as bad input; the edge already logged one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info:
            return True
        exc = record.exc_info[1]
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            return False
        code = getattr(getattr(exc, "error_code", None), "value", None)
        return not (isinstance(code, int) and 400 <= code < 500)
