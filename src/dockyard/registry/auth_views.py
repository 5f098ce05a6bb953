"""The Docker registry token endpoint: GET with Basic credentials, or the OAuth2 POST form."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dockyard.accounts.services import AccountService
from dockyard.authz import ANONYMOUS
from dockyard.errors import Invalid, TooLarge
from dockyard.registry.auth import parse_scopes, principal_claims
from dockyard.registry.services import grant
from dockyard.web.context import RequestContext, endpoint
from dockyard.web.errors import token_error_response
from dockyard.web.identity import basic_credentials, login

REFRESH_TTL = 30 * 24 * 3600
# Clients ask for a handful of scopes (a push with mounts: a few repositories); every granted scope is
# signed into the JWT, so an unbounded list makes tokens of any size.
MAX_SCOPES = 32
MAX_QUERY_BYTES = 8192


async def _params(request: Request) -> dict[str, list[str]]:
    if request.method == "POST":
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_QUERY_BYTES):
            raise TooLarge("token request too large")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_QUERY_BYTES:
                raise TooLarge("token request too large")
        try:
            return parse_qs(body.decode(), keep_blank_values=True)
        except UnicodeDecodeError as exc:
            raise Invalid("the token request form is not UTF-8") from exc
    if len(request.scope.get("query_string", b"")) > MAX_QUERY_BYTES:
        raise TooLarge("token request too large")
    return {k: request.query_params.getlist(k) for k in request.query_params}


@endpoint(token_error_response, write_methods=frozenset({"GET", "POST"}))
async def token(request: Request, ctx: RequestContext) -> Response:
    params = await _params(request)

    def first(key: str) -> str | None:
        values = params.get(key) or []
        return str(values[0]) if values else None

    service = first("service")
    if service and service != ctx.state.settings.service_name:
        raise Invalid(f"unknown service {service!r}")
    scopes = parse_scopes([str(v) for v in params.get("scope", [])])
    if len(scopes) > MAX_SCOPES:
        raise Invalid(f"at most {MAX_SCOPES} scopes per token", code="invalid_scope")
    signer = ctx.state.signer
    offline = first("offline_token") == "true"
    principal = ANONYMOUS
    credentials: tuple[str, str] | None
    if request.method == "POST":
        grant_type = first("grant_type")
        if grant_type == "password":
            credentials = (first("username") or "", first("password") or "")
        elif grant_type == "refresh_token":
            claims = signer.verify(first("refresh_token") or "", typ="refresh")
            credentials = None
            principal = await ctx.run(
                ctx.accounts().principal_for_refresh, claims["sub"], claims.get("dockyard") or {}
            )
        else:
            raise Invalid("grant_type must be password or refresh_token")
        offline = True
    else:
        credentials = basic_credentials(request)
    if credentials is not None:
        principal = await login(ctx, *credentials)
    access = await ctx.run(grant, ctx.registry(), principal, scopes)
    issued = dt.datetime.now(dt.UTC)
    jwt_token = signer.issue(principal.name, access, claims=principal_claims(principal))
    body = {
        "token": jwt_token,
        "access_token": jwt_token,
        "expires_in": signer.ttl,
        "issued_at": issued.isoformat().replace("+00:00", "Z"),
    }
    if offline and not principal.is_anonymous:
        claims = principal_claims(principal)
        claims["dockyard"].update(AccountService.refresh_claims(principal))
        body["refresh_token"] = signer.issue(
            principal.name, [], claims={"typ": "refresh", **claims}, ttl=REFRESH_TTL
        )
    return JSONResponse(body)


routes = [Route("/token", token, methods=["GET", "POST"])]
