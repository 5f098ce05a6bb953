"""The one place where domain errors become responses, in each protocol's own format."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.errors import (
    Conflict,
    DockyardError,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    TooManyRequests,
    Unauthenticated,
)
from dockyard.registry.auth import bearer_challenge
from dockyard.registry.errors import oci_error


def oci_error_response(request: Request, exc: DockyardError) -> Response:
    """``{"errors":[{code,message,detail}]}`` with the spec's status, plus a Bearer challenge on 401."""
    status, code, message = oci_error(exc)
    body: dict[str, Any] = {"code": code, "message": message}
    if exc.detail is not None:
        body["detail"] = exc.detail
    headers = dict(getattr(exc, "headers", None) or {})
    if status == 401 and "www-authenticate" not in {k.lower() for k in headers}:
        headers["WWW-Authenticate"] = bearer_challenge(request.app.state.dockyard.settings)
    response = JSONResponse({"errors": [body]}, status_code=status, headers=headers)
    if request.method == "HEAD":
        return Response(status_code=status, headers=dict(response.headers))
    return response


_API_STATUS: list[tuple[type[DockyardError], int]] = [
    (TooManyRequests, 429),
    (Conflict, 409),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (TooLarge, 413),
    (Invalid, 400),
]


def api_error_response(request: Request, exc: DockyardError) -> Response:
    """JSON API errors: ``{"error": {"code", "message", "detail"}}``."""
    status = api_status(exc)
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.detail is not None:
        body["detail"] = exc.detail
    headers = dict(getattr(exc, "headers", None) or {})
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="dockyard"'
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def api_status(exc: DockyardError) -> int:
    """The HTTP status of a domain error outside the registry protocol (the API, the pages)."""
    return next((s for cls, s in _API_STATUS if isinstance(exc, cls)), 400)


def http_exception_response(request: Request, exc: Exception) -> Response:
    """Routing errors (no such path, method not allowed): JSON under /api/, Starlette's text elsewhere."""
    from starlette.exceptions import HTTPException
    from starlette.responses import PlainTextResponse

    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if not request.url.path.startswith("/api/"):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=headers)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    body = {"error": {"code": code, "message": exc.detail}}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def token_error_response(request: Request, exc: DockyardError) -> Response:
    """Token endpoint errors, in the registry envelope docker clients print."""
    status, code, message = oci_error(exc)
    if isinstance(exc, Invalid):
        status, code = 400, "UNSUPPORTED" if exc.code not in ("invalid_scope",) else "DENIED"
    headers = dict(getattr(exc, "headers", None) or {})
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="dockyard"'
    return JSONResponse({"errors": [{"code": code, "message": message}]}, status_code=status, headers=headers)
