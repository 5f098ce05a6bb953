"""The Docker registry token endpoint: GET with Basic credentials, or the OAuth2 POST form."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dockyard.accounts.services import AccountService
from dockyard.authz import ANONYMOUS, Principal
from dockyard.errors import Invalid, Unauthenticated
from dockyard.registry.auth import parse_scopes
from dockyard.registry.services import grant
from dockyard.web.context import RequestContext, endpoint
from dockyard.web.errors import token_error_response

REFRESH_TTL = 30 * 24 * 3600


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        username, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unauthenticated("malformed Basic credentials") from exc
    return username, password


def principal_claims(principal: Principal) -> dict[str, Any]:
    return {
        "dockyard": {
            "kind": principal.kind,
            "uid": principal.user_id,
            "rid": principal.robot_id,
            "admin": principal.is_admin,
        }
    }


@endpoint(token_error_response, write_methods=frozenset({"GET", "POST"}))
async def token(request: Request, ctx: RequestContext) -> Response:
    if request.method == "POST":
        form = await request.form()
        params: dict[str, Any] = {k: form.getlist(k) for k in form}
    else:
        params = {k: request.query_params.getlist(k) for k in request.query_params}

    def first(key: str) -> str | None:
        values = params.get(key) or []
        return str(values[0]) if values else None

    service = first("service")
    if service and service != ctx.state.settings.service_name:
        raise Invalid(f"unknown service {service!r}")
    scopes = parse_scopes([str(v) for v in params.get("scope", [])])
    signer = ctx.state.signer
    accounts = ctx.accounts()
    offline = first("offline_token") == "true"
    principal = ANONYMOUS
    if request.method == "POST":
        grant_type = first("grant_type")
        if grant_type == "password":
            credentials = (first("username") or "", first("password") or "")
        elif grant_type == "refresh_token":
            claims = signer.verify(first("refresh_token") or "", typ="refresh")
            if claims.get("typ") != "refresh":
                raise Unauthenticated("not a refresh token")
            credentials = None
            principal = await ctx.run(
                accounts.principal_for_refresh, claims["sub"], claims.get("dockyard") or {}
            )
        else:
            raise Invalid("grant_type must be password or refresh_token")
        offline = True
    else:
        credentials = basic_credentials(request)
    if credentials is not None:
        username, secret = credentials
        found = await ctx.read(
            lambda s: AccountService(s, ctx.state.bus).verify_credentials(username, secret)
        )
        principal = await ctx.run(accounts.record_login, username, found, actor=ctx.actor)
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
        body["refresh_token"] = signer.issue(
            principal.name, [], claims={"typ": "refresh", **principal_claims(principal)}, ttl=REFRESH_TTL
        )
    return JSONResponse(body)


routes = [Route("/token", token, methods=["GET", "POST"])]
