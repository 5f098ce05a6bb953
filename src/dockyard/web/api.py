"""The JSON API under /api/v1: FastAPI with pydantic schemas per domain (``<domain>/schemas.py``).

Each route runs in the request's unit of work through ``UnitOfWorkRoute``, which commits before the
response goes out (not in a yield-dependency's teardown, which FastAPI runs after sending it). Errors of
every kind leave in dockyard's envelope ``{"error": {"code", "message", "detail"}}``: domain errors, request
validation (400, with the path of every offending field), unknown paths and methods. The OpenAPI document
is at ``/api/v1/openapi.json`` and the interactive docs at ``/api/docs`` (Swagger UI served from /static,
no CDN, no inline script).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPBasic, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response

from dockyard.authz import Principal, Scope
from dockyard.web.context import WRITE_METHODS, AppState, RequestContext, in_unit_of_work
from dockyard.web.errors import api_error_response
from dockyard.web.identity import api_principal

API_PREFIX = "/api/v1"
OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/api/docs"


class UnitOfWorkRoute(APIRoute):
    """A route whose dependencies and endpoint run inside the request's unit of work."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            async def view(ctx: RequestContext) -> Response:
                return await handler(request)

            return await in_unit_of_work(
                request.app.state.dockyard,
                request,
                view,
                api_error_response,
                write=request.method in WRITE_METHODS,
            )

        return run


def context(request: Request) -> RequestContext:
    """The request's unit of work (set up by UnitOfWorkRoute)."""
    return request.state.ctx  # type: ignore[no-any-return]


Ctx = Annotated[RequestContext, Depends(context)]

# Declared for the OpenAPI document (the "Authorize" button); ``caller`` does the checking.
_basic = HTTPBasic(auto_error=False, description="a password, a personal access token or a robot secret")
_bearer = HTTPBearer(auto_error=False, description="a personal access token (dyt_...)")


def caller(scope: Scope | None = Scope.API) -> Any:
    """A dependency giving the authenticated caller, whose credential must carry ``scope``."""

    async def resolve(
        ctx: Ctx, _b: Annotated[Any, Depends(_basic)], _t: Annotated[Any, Depends(_bearer)]
    ) -> Principal:
        return await api_principal(ctx, scope)

    return Depends(resolve)


def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "invalid")}
        for e in exc.errors()
    ]
    first = problems[0] if problems else {"field": "", "message": "invalid"}
    body = {
        "error": {
            "code": "INVALID",
            "message": f"{first['field']}: {first['message']}" if first["field"] else first["message"],
            "detail": problems,
        }
    }
    return JSONResponse(body, status_code=400)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return JSONResponse(
        {"error": {"code": code, "message": str(exc.detail)}},
        status_code=exc.status_code,
        headers=dict(exc.headers or {}),
    )


def create_api(state: AppState, routers: list[Any]) -> FastAPI:
    """The /api/v1 application (mounted by web.app)."""
    api = FastAPI(
        title="dockyard API",
        version="1",
        summary="Accounts, organisations, robots, tokens, the store team, repositories and scan results.",
        openapi_url=OPENAPI_PATH,
        docs_url=None,
        redoc_url=None,
        servers=[{"url": API_PREFIX}],
        exception_handlers={RequestValidationError: _validation_error, HTTPException: _http_error},
    )
    api.state.dockyard = state
    for router in routers:
        api.include_router(router)
    return api


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>dockyard API</title>
<link rel="stylesheet" href="/static/swagger-ui/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-spec="/api/v1/openapi.json"></div>
<script src="/static/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/swagger-ui/init.js"></script>
</body>
</html>
"""


async def docs(request: Request) -> Response:
    """Interactive API documentation (Swagger UI, vendored under /static/swagger-ui)."""
    return HTMLResponse(DOCS_PAGE)
