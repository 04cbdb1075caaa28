"""The service's edge middleware in-process (an ASGI app under it, no server): token, body limit, media type,
readiness, models not served, and BentoML's 4xx bodies rewritten with one log line."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from serving.edge import EdgeMiddleware, readable_error

TOKEN = "edge-token"


class App:
    """The app under the edge: records whether it was reached and answers ``status`` with ``body``."""

    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.status, self.body, self.calls = status, body if body is not None else {"ok": True}, 0

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        self.calls += 1
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        payload = json.dumps(self.body).encode()
        await send({"type": "http.response.body", "body": payload[:5], "more_body": True})
        await send({"type": "http.response.body", "body": payload[5:]})


def call(app: App, path: str, *, method: str = "POST", headers: dict[str, str] | None = None):
    """One request through the edge; returns (status, headers, body as JSON, messages sent)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the edge read the body")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    hdrs = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json", **(headers or {})}
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in hdrs.items() if v is not None],
    }
    asyncio.run(EdgeMiddleware(app)(scope, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start.get("headers", [])), json.loads(body), sent


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESML_API_TOKEN", TOKEN)
    monkeypatch.delenv("SALESML_MAX_BODY_BYTES", raising=False)


def test_a_token_is_needed_except_on_probes_and_the_scheme_is_case_insensitive() -> None:
    app = App()
    status, headers, body, _ = call(app, "/other", headers={"authorization": "Bearer wrong"})
    assert (status, body, headers[b"www-authenticate"]) == (401, {"error": "unauthorized"}, b"Bearer")
    assert call(app, "/other", headers={"authorization": f"Basic {TOKEN}"})[0] == 401
    assert app.calls == 0
    assert call(app, "/other", headers={"authorization": f"bEaReR {TOKEN}"})[0] == 200
    assert call(app, "/healthz", method="GET", headers={"authorization": ""})[0] == 200
    assert app.calls == 2


def test_big_bodies_are_refused_unread_and_only_json_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    app = App()
    monkeypatch.setenv("SALESML_MAX_BODY_BYTES", "1000")
    status, _, body, _ = call(app, "/other", headers={"content-length": "1001"})
    assert status == 413 and "1,001 bytes is above the limit of 1,000" in body["error"]
    assert call(app, "/other", headers={"content-length": "1000"})[0] == 200
    for ctype in ("application/jsonp", "text/plain", "application/json-seq", "application/jsön"):
        status, _, body, _ = call(app, "/other", headers={"content-type": ctype})
        assert status == 415 and "expected application/json" in body["error"], ctype
    assert call(app, "/other", headers={"content-type": "Application/JSON; charset=utf-8"})[0] == 200
    assert app.calls == 2  # the refused requests never reached the app


def test_client_errors_are_rewritten_into_one_shape_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    detail = {"detail": [{"loc": ["body", "customers", 0, "customer_id"], "msg": "Field required"}]}
    app = App(status=422, body=detail)
    with caplog.at_level(logging.DEBUG, logger="salesml.edge"):
        status, headers, body, sent = call(app, "/other")
    assert status == 422 and headers[b"content-type"] == b"application/json"
    assert body == {
        "error": "body.customers.0.customer_id: Field required",
        "fields": [{"field": "body.customers.0.customer_id", "problem": "Field required"}],
    }
    assert len(sent) == 2  # the buffered chunks are sent as one body
    lines = [r.getMessage() for r in caplog.records if r.name == "salesml.edge"]
    assert lines == ["rejected POST /other: 422 body.customers.0.customer_id: Field required"]


def test_successful_responses_stream_unchanged() -> None:
    app = App(status=200, body={"results": [1, 2, 3]})
    status, _, body, sent = call(app, "/other")
    assert status == 200 and body == {"results": [1, 2, 3]}
    assert len(sent) == 3 and sent[1]["more_body"] is True  # not buffered


def test_readiness_models_and_a_model_not_served(monkeypatch: pytest.MonkeyPatch) -> None:
    import bentoml

    app = App()
    monkeypatch.setattr(bentoml, "get_current_service", lambda: None)
    status, _, body, _ = call(app, "/churn/score")
    assert status == 503 and "starting" in body["error"]
    ready = {"ready": False, "models": {}}
    service = SimpleNamespace(
        readiness=lambda: ready,
        models_info=lambda: [{"name": "churn_risk", "version": "3"}],
        store=SimpleNamespace(
            snapshot=SimpleNamespace(
                champions={"churn_risk": object()}, problems={"lead_score": "no champion"}
            )
        ),
    )
    monkeypatch.setattr(bentoml, "get_current_service", lambda: service)
    assert call(app, "/readyz", method="GET")[:3:2] == (503, ready)
    ready["ready"] = True
    assert call(app, "/readyz", method="GET")[0] == 200
    assert call(app, "/models", method="GET")[2] == {"models": [{"name": "churn_risk", "version": "3"}]}
    status, _, body, _ = call(app, "/leads/score")
    assert status == 503 and body["error"] == "model 'lead_score' is not being served: no champion"
    assert app.calls == 0
    assert call(app, "/churn/score")[0] == 200 and app.calls == 1


def test_readable_error_keeps_what_it_cannot_parse() -> None:
    assert readable_error(b"not json") == {"error": "not json"}
    assert readable_error(b'[{"error": "bad value"}]') == {"error": "bad value"}
    assert readable_error(b"[1, 2]") == {"error": "[1, 2]"}
    assert readable_error(b"") == {"error": "{}"}
