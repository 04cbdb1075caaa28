"""The service's request timeout: 504 as BentoML's, and no timer left in the event loop after a request."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from serving.timeout import CancellingTimeoutMiddleware, bentoml_timeout_middleware, install

SCOPE = {"type": "http", "method": "POST", "path": "/forecast", "headers": []}


def _live_timers(loop: asyncio.AbstractEventLoop) -> int:
    # TimerHandles the loop still holds that are not cancelled (each keeps its request's context alive)
    return sum(not h.cancelled() for h in loop._scheduled)  # type: ignore[attr-defined]


async def _call(app: Any, timeout: float) -> tuple[list[dict[str, Any]], int]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await CancellingTimeoutMiddleware(app, timeout=timeout)(dict(SCOPE), receive, send)
    await asyncio.sleep(0)  # a cancelled request's own timers go on the loop's next turn
    return sent, _live_timers(asyncio.get_running_loop())


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b"ok"})


def test_answered_requests_leave_no_timer_behind() -> None:
    async def many() -> list[int]:
        return [(await _call(_ok, timeout=60))[1] for _ in range(200)]

    live = asyncio.run(many())
    assert live == [0] * 200  # BentoML's own middleware leaves one 60 s timer per request: 1, 2, ..., 200


def test_bentomls_middleware_leaves_one_timer_per_request() -> None:
    # The reason for the swap, checked so that a BentoML release that fixes it shows up here.
    original = bentoml_timeout_middleware()
    assert original is not CancellingTimeoutMiddleware

    async def many() -> int:
        loop = asyncio.get_running_loop()

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            pass

        for _ in range(20):
            await original(_ok, timeout=60)(dict(SCOPE), receive, send)
        return _live_timers(loop)

    assert asyncio.run(many()) == 20


def test_a_slow_request_gets_bentomls_504_and_is_cancelled() -> None:
    cancelled = []

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    sent, live = asyncio.run(_call(slow, timeout=0.05))
    assert sent[0]["status"] == 504
    assert json.loads(sent[1]["body"]) == {"error": "Not able to process the request in 0.05 seconds"}
    assert cancelled == [True] and live == 0


def test_a_response_that_started_in_time_may_finish_later() -> None:
    async def streams(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.1)  # longer than the timeout, after the response started
        await send({"type": "http.response.body", "body": b"done"})

    sent, live = asyncio.run(_call(streams, timeout=0.02))
    assert [m.get("status", m.get("body")) for m in sent] == [200, b"done"] and live == 0


def test_an_error_before_the_response_is_raised_at_once_not_after_the_timeout() -> None:
    async def fails(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom")

    async def timed() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ValueError, match="boom"):
            await _call(fails, timeout=30)
        assert _live_timers(loop) == 0
        return loop.time() - started

    assert asyncio.run(timed()) < 5


def test_install_replaces_the_class_bentoml_builds_its_middleware_from() -> None:
    from bentoml._internal.server.http import traffic

    assert install() is True
    assert traffic.TimeoutMiddleware is CancellingTimeoutMiddleware
