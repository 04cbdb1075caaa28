"""The request timeout, without BentoML's leftover timer per request.

BentoML 1.4's ``TimeoutMiddleware`` (``bentoml._internal.server.http.traffic``) answers 504 when a request has
not started its response within the service's ``traffic.timeout``. It schedules that check with
``loop.call_later(timeout, ...)`` and never cancels it, so every request leaves a timer in the event loop for
the whole timeout (60 s here) after it has been answered. Each timer keeps the request's context alive (its
OpenTelemetry span, the waiter future, locks and deques: ~20 objects the garbage collector tracks). At 100
requests/s that is ~6,000 timers and ~120,000 objects that every full collection of the worker walks: 80-250 ms
pauses measured in the worker (benchmarks/README.md, "Service latency").

:class:`CancellingTimeoutMiddleware` keeps BentoML's behaviour (504 with the same body if the response has not
started in time; the request is cancelled) and cancels its timer as soon as the response starts or the request
ends. :func:`install` puts it in place of BentoML's class before the worker builds its ASGI app. The traffic
config cannot switch BentoML's middleware off (``traffic.timeout`` must be a positive number), hence the swap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["CancellingTimeoutMiddleware", "bentoml_timeout_middleware", "install"]

logger = logging.getLogger("salesml.timeout")
_replaced: Any = None  # BentoML's own class, once install() has swapped it out

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class CancellingTimeoutMiddleware:
    """504 when a request's response has not started within ``timeout`` seconds; no timer outlives a request.

    Args:
        app: the ASGI app to wrap.
        timeout: seconds a request may take before its response starts.
    """

    def __init__(self, app: App, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()

        def _time_out() -> None:
            if not started.done():
                started.set_exception(TimeoutError())

        timer = loop.call_later(self.timeout, _time_out)

        async def _send(message: dict[str, Any]) -> None:
            if not started.done():
                started.set_result(None)
            await send(message)

        request = asyncio.ensure_future(self.app(scope, receive, _send))
        # The request may also end without sending anything (an error raised before the response starts).
        request.add_done_callback(lambda _: started.done() or started.set_result(None))
        try:
            await started
        except TimeoutError:
            if request.cancel():
                # the body BentoML's own middleware sends, so clients see one shape whichever class answered
                from starlette.responses import JSONResponse

                error = f"Not able to process the request in {self.timeout} seconds"
                await JSONResponse({"error": error}, status_code=504)(scope, receive, send)
                return
        finally:
            timer.cancel()
        await request


def install() -> bool:
    """Use :class:`CancellingTimeoutMiddleware` wherever BentoML builds its timeout middleware.

    Returns ``True`` when swapped; ``False`` (and a warning) when this BentoML has no such class, in which case
    its own middleware stays, correct but with the leftover timers described above.
    """
    try:
        from bentoml._internal.server.http import traffic
    except ImportError:
        logger.warning("bentoml's traffic middleware not found; its request timeout is left as it is")
        return False
    if not hasattr(traffic, "TimeoutMiddleware"):
        logger.warning("bentoml has no TimeoutMiddleware; its request timeout is left as it is")
        return False
    global _replaced
    if traffic.TimeoutMiddleware is not CancellingTimeoutMiddleware:
        _replaced = traffic.TimeoutMiddleware
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware
    return True


def bentoml_timeout_middleware() -> Any:
    """BentoML's own timeout middleware class (also after :func:`install`), for comparison in tests."""
    from bentoml._internal.server.http import traffic

    return _replaced or traffic.TimeoutMiddleware
