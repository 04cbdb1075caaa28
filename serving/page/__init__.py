"""The planner's page: a small ASGI app mounted on the BentoML service at ``/ui`` (same process, same champions,
same token).

``/ui/`` is one HTML page whose script (``static/app.js``, shipped with the project, no CDN) draws the views
from ``/ui/api/*``: the tree and a node's forecast (:func:`serving.page.data.node_view`, the same answers as
``/forecast``), a target's split (``/ui/api/plan``, the same function as ``/plan``), churn risk, leads and the
models. Charts are SVG drawn in the browser from those answers.

Access: without ``SALESML_API_TOKEN`` the page is open like the API. With it, ``/ui/login`` asks for the token
once and sets an HttpOnly, SameSite=Strict cookie holding an HMAC of the token (never the token itself); every
other ``/ui`` path needs that cookie (or the API's Bearer header). :func:`page_access` is the rule, applied by
:class:`serving.edge.EdgeMiddleware` before anything else runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["COOKIE", "PREFIX", "page_access", "page_app", "session_value"]

PREFIX = "/ui"
COOKIE = "salesml_session"
STATIC = Path(__file__).with_name("static")
_OPEN = {f"{PREFIX}/login", f"{PREFIX}/static/app.css", f"{PREFIX}/static/login.js"}


def session_value(token: str) -> str:
    """The cookie's value for ``token``: an HMAC, so that a stolen cookie is not the API token."""
    return hmac.new(token.encode(), b"salesml page session v1", hashlib.sha256).hexdigest()


def _cookie(headers: dict[bytes, bytes], name: str) -> str:
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


def page_access(path: str, headers: dict[bytes, bytes], token: str) -> str:
    """``"ok"``, ``"login"`` (a page view without the cookie: send it to the form) or ``"refuse"`` (401)."""
    if path in _OPEN:
        return "ok"
    scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return "ok"
    if hmac.compare_digest(_cookie(headers, COOKIE).encode(), session_value(token).encode()):
        return "ok"
    return "login" if path in (PREFIX, f"{PREFIX}/") else "refuse"


def _service() -> Any:
    from serving.answers import current_service

    return current_service()


def page_app() -> Any:
    """The Starlette app the service mounts at ``/ui``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from features.errors import NotFoundError, SalesmlError
    from serving.page import data

    def champion(name: str) -> Any:
        service = _service()
        champ = None if service is None else service.store.snapshot.champions.get(name)
        if champ is None:
            reason = (
                "the service is starting"
                if service is None
                else service.store.snapshot.problems.get(name, "not loaded")
            )
            raise LookupError(f"model {name!r} is not being served: {reason}")
        return champ

    def optional(name: str) -> Any:
        try:
            return champion(name)
        except LookupError:
            return None

    async def answer(build: Any) -> Response:
        try:
            return JSONResponse(await asyncio.to_thread(build))
        except LookupError as err:  # a model not served is a state the page shows, not a failed request
            return JSONResponse({"unavailable": str(err)})
        except NotFoundError as err:
            return JSONResponse({"error": str(err)}, status_code=404)
        except SalesmlError as err:
            return JSONResponse({"error": str(err)}, status_code=400)

    def warm() -> None:
        """The churn ranking and the scored open leads, built once per champion while the first view loads."""
        for build in (
            lambda: data.churn_rows(champion("churn_risk"), optional("sales_forecast"), limit=1),
            lambda: data.lead_summary(champion("lead_score"), top=1),
        ):
            try:
                build()
            except (LookupError, SalesmlError):  # not served or not scorable: the view says so when opened
                continue

    async def index(request: Request) -> Response:
        threading.Thread(target=warm, name="page-warm-up", daemon=True).start()
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    async def login_form(request: Request) -> Response:
        return FileResponse(STATIC / "login.html", headers={"cache-control": "no-store"})

    async def login(request: Request) -> Response:
        token = os.environ.get("SALESML_API_TOKEN", "")
        try:
            given = (await request.json()).get("token")
        except (ValueError, AttributeError):
            given = None
        if not isinstance(given, str) or not given:
            return JSONResponse(
                {"error": "token: expected the API token as a non-empty string"}, status_code=400
            )
        if not token:
            return JSONResponse({"ok": True, "open": True})
        if not hmac.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"error": "token: this is not the service's token"}, status_code=401)
        response = JSONResponse({"ok": True})
        response.set_cookie(
            COOKIE,
            session_value(token),
            httponly=True,
            samesite="strict",
            path=PREFIX,
            secure=request.url.scheme == "https",
        )
        return response

    def text_param(request: Request, name: str, limit: int = 500) -> str | None:
        value = request.query_params.get(name)
        if value is not None and len(value) > limit:
            raise SalesmlError(f"{name}: at most {limit} characters")
        return value or None

    async def tree(request: Request) -> Response:
        return await answer(lambda: data.forecast_tree(champion("sales_forecast")))

    async def node(request: Request) -> Response:
        def build() -> Any:
            uid = text_param(request, "id")
            if uid is None:
                raise SalesmlError("id: expected a node id, e.g. total")
            return data.node_view(champion("sales_forecast"), uid)

        return await answer(build)

    async def plan(request: Request) -> Response:
        from pydantic import ValidationError

        from serving.forecast_answers import plan_response
        from serving.schemas import PlanRequest

        try:
            body = PlanRequest.model_validate(await request.json())
        except ValidationError as err:  # the same schema, and so the same rules, as POST /plan
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}" for e in err.errors()
            )
            return JSONResponse({"error": problems}, status_code=400)
        except ValueError:
            return JSONResponse({"error": "(body): expected a JSON object"}, status_code=400)
        return await answer(
            lambda: plan_response(
                champion("sales_forecast"), body.node, body.target, body.quarter
            ).model_dump()
        )

    async def churn(request: Request) -> Response:
        def build() -> Any:
            limit = request.query_params.get("limit", "50")
            if not limit.isdigit() or not 1 <= int(limit) <= 1000:
                raise SalesmlError(f"limit: expected a whole number from 1 to 1000, got {limit!r}")
            return data.churn_rows(
                champion("churn_risk"),
                optional("sales_forecast"),
                tier=text_param(request, "tier"),
                node=text_param(request, "node"),
                limit=int(limit),
            )

        return await answer(build)

    async def leads(request: Request) -> Response:
        return await answer(lambda: data.lead_summary(champion("lead_score")))

    async def models(request: Request) -> Response:
        def build() -> Any:
            if _service() is None:
                raise LookupError("the service is starting")
            return data.model_rows(_service())

        return await answer(build)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/api/tree", tree),
            Route("/api/node", node),
            Route("/api/plan", plan, methods=["POST"]),
            Route("/api/churn", churn),
            Route("/api/leads", leads),
            Route("/api/models", models),
            Mount("/static", StaticFiles(directory=STATIC)),
        ]
    )
