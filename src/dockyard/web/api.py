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
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response

from dockyard.authz import Principal, Scope
from dockyard.errors import TooLarge
from dockyard.web.context import WRITE_METHODS, AppState, RequestContext, in_unit_of_work
from dockyard.web.errors import api_error_response
from dockyard.web.identity import api_principal

API_PREFIX = "/api/v1"
OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/api/docs"


class ApiError(BaseModel):
    code: str = Field(
        description="what went wrong, for programs: INVALID, UNAUTHORIZED, DENIED, NOT_FOUND, ..."
    )
    message: str = Field(description="what went wrong, for people")
    detail: Any = Field(
        default=None, description="more, when there is more: for INVALID, every offending field and why"
    )


class ErrorEnvelope(BaseModel):
    """Every error of the API: ``{"error": {"code", "message", "detail"}}``."""

    error: ApiError


ERROR_DESCRIPTIONS = {
    400: "Invalid input (a field out of bounds, malformed JSON, an unknown field) or request",
    401: "No credentials, or wrong, expired or revoked ones",
    403: "Not allowed, or the credential lacks the scope the operation needs",
    404: "No such resource, or one the caller may not see",
    409: "Conflicts with the current state (a name taken, the last owner or store-admin)",
    413: "The request body is larger than the operation accepts",
    429: "Too many login attempts: retry after the given number of seconds",
}
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "the Basic challenge", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for the error statuses an operation may answer, each in dockyard's envelope."""
    return {
        status: {
            "model": ErrorEnvelope,
            "description": ERROR_DESCRIPTIONS[status],
            **({"headers": ERROR_HEADERS[status]} if status in ERROR_HEADERS else {}),
        }
        for status in statuses
    }


# Every operation authenticates its caller (``caller``): a password login may be throttled.
AUTHENTICATED = errors(401, 429)


MAX_API_BODY = 1024 * 1024  # a product manifest is a few KiB; its images are uploaded on their own


async def read_limited(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes: never read whole into memory."""
    too_large = f"{what} is larger than {limit // (1024 * 1024)} MB"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(too_large, detail={"field": "body"})
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(too_large, detail={"field": "body"})
        chunks.append(chunk)
    return b"".join(chunks)


class UnitOfWorkRoute(APIRoute):
    """A route whose dependencies and endpoint run inside the request's unit of work."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            async def view(ctx: RequestContext) -> Response:
                content_type = request.headers.get("content-type", "").lower()
                if request.method in WRITE_METHODS and not content_type.startswith("image/"):
                    # JSON bodies are parsed whole: refuse a large one before it is read into memory (the
                    # image upload reads its own body under its own limit).
                    body = await read_limited(request, MAX_API_BODY, "a request body")

                    async def replay() -> dict[str, Any]:
                        return {"type": "http.request", "body": body, "more_body": False}

                    return await handler(Request(request.scope, replay))
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


def create_api(state: AppState | None, routers: list[Any]) -> FastAPI:
    """The /api/v1 application (mounted by web.app; without a state it can only describe itself)."""
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
    api.openapi = _documented_as_served(api)  # type: ignore[method-assign]
    return api


def _documented_as_served(api: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents request validation as a 422 with its own body; dockyard answers 400 in its
    envelope (``_validation_error``): document that instead, on the operations that validate input."""
    generate = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = generate()
            invalid = {
                "description": ERROR_DESCRIPTIONS[400],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
            }
            too_large = {
                "description": ERROR_DESCRIPTIONS[413],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
            }
            for operations in document.get("paths", {}).values():
                for method, operation in operations.items():
                    responses = operation.get("responses", {})
                    if responses.pop("422", None) is not None:
                        responses.setdefault("400", invalid)
                    if method.upper() in WRITE_METHODS:  # every body is capped (MAX_API_BODY)
                        responses.setdefault("413", too_large)
            schemas = document.get("components", {}).get("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
        return api.openapi_schema  # type: ignore[return-value]

    return openapi


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
