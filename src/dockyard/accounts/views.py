"""JSON API for accounts: users, organisations, members, robots, tokens, repository visibility."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dockyard.accounts.services import AccountService
from dockyard.authz import require_admin, require_authenticated
from dockyard.errors import Invalid, Unauthenticated
from dockyard.oci.reference import namespace_of
from dockyard.registry.auth_views import basic_credentials
from dockyard.registry.views import principal_from_claims
from dockyard.web.context import RequestContext, endpoint
from dockyard.web.errors import api_error_response

api = endpoint(api_error_response)


async def authenticate(ctx: RequestContext) -> None:
    """Basic credentials (password, access token, robot secret) or a bearer token from /token."""
    header = ctx.request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        ctx.principal = principal_from_claims(ctx.state.signer.verify(header[7:].strip()))
        if ctx.principal.is_anonymous:
            raise Unauthenticated("an anonymous token is no identity for the API")
        return
    credentials = basic_credentials(ctx.request)
    if credentials is None:
        raise Unauthenticated("authentication required")
    username, secret = credentials
    found = await ctx.read(lambda s: AccountService(s, ctx.state.bus).verify_credentials(username, secret))
    ctx.principal = await ctx.run(ctx.accounts().record_login, username, found, actor=ctx.actor)


async def json_body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise Invalid("request body is not JSON") from exc
    if not isinstance(data, dict):
        raise Invalid("request body must be a JSON object")
    return data


def field(data: dict[str, Any], key: str, kind: type = str, default: Any = ...) -> Any:
    value = data.get(key, default)
    if value is ...:
        raise Invalid(f"{key!r} is required")
    if value is not None and not isinstance(value, kind):
        raise Invalid(f"{key!r} must be a {kind.__name__}")
    return value


@api
async def me(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx)
    p = ctx.principal
    return JSONResponse({"name": p.name, "kind": p.kind, "admin": p.is_admin})


@api
async def create_user(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx)
    require_admin(ctx.principal)
    data = await json_body(request)
    user = await ctx.run(
        ctx.accounts().create_user,
        field(data, "username"),
        field(data, "password"),
        email=field(data, "email", default=None),
        is_admin=bool(field(data, "admin", bool, False)),
        actor=ctx.actor,
    )
    return JSONResponse({"username": user.username, "admin": user.is_admin}, status_code=201)


@api
async def create_org(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx)
    require_authenticated(ctx.principal)
    if ctx.principal.kind != "user":
        raise Invalid("robots cannot create organisations")
    data = await json_body(request)
    ns = await ctx.run(ctx.accounts().create_org, field(data, "name"), ctx.principal.name, actor=ctx.actor)
    return JSONResponse({"name": ns.name}, status_code=201)


@api
async def members(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx)
    org = request.path_params["org"]
    accounts = ctx.accounts()
    await ctx.run(accounts.require_owner, ctx.principal, org)
    rows = await ctx.run(accounts.members, org)
    return JSONResponse({"members": [{"username": u, "role": r} for u, r in rows]})


@api
async def member(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx)
    org, username = request.path_params["org"], request.path_params["username"]
    accounts = ctx.accounts()
    await ctx.run(accounts.require_owner, ctx.principal, org)
    if request.method == "DELETE":
        await ctx.run(accounts.remove_member, org, username, actor=ctx.actor)
        return Response(status_code=204)
    data = await json_body(request)
    m = await ctx.run(accounts.set_member, org, username, field(data, "role"), actor=ctx.actor)
    return JSONResponse({"username": username, "role": m.role})


@api
async def robots(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx)
    org = request.path_params["org"]
    accounts = ctx.accounts()
    await ctx.run(accounts.require_owner, ctx.principal, org)
    if request.method == "POST":
        data = await json_body(request)
        robot, secret = await ctx.run(
            accounts.create_robot,
            org,
            field(data, "name"),
            field(data, "role", default="reader"),
            actor=ctx.actor,
        )
        return JSONResponse(
            {"username": f"{org}+{robot.name}", "role": robot.role, "secret": secret}, status_code=201
        )
    items = await ctx.run(accounts.list_robots, org)
    return JSONResponse({"robots": [{"username": f"{org}+{r.name}", "role": r.role} for r in items]})


@api
async def robot(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx)
    org = request.path_params["org"]
    accounts = ctx.accounts()
    await ctx.run(accounts.require_owner, ctx.principal, org)
    await ctx.run(accounts.delete_robot, org, request.path_params["name"], actor=ctx.actor)
    return Response(status_code=204)


@api
async def tokens(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx)
    if ctx.principal.kind != "user":
        raise Invalid("only users have access tokens")
    accounts = ctx.accounts()
    if request.method == "POST":
        data = await json_body(request)
        token, secret = await ctx.run(
            accounts.create_token,
            ctx.principal.name,
            field(data, "name"),
            expires_in_days=field(data, "expires_in_days", int, None),
            actor=ctx.actor,
        )
        return JSONResponse({"id": token.id, "name": token.name, "token": secret}, status_code=201)
    items = await ctx.run(accounts.list_tokens, ctx.principal.name)
    return JSONResponse(
        {
            "tokens": [
                {
                    "id": t.id,
                    "name": t.name,
                    "revoked": t.revoked,
                    "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                }
                for t in items
            ]
        }
    )


@api
async def revoke_token(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx)
    await ctx.run(
        ctx.accounts().revoke_token, ctx.principal.name, int(request.path_params["id"]), actor=ctx.actor
    )
    return Response(status_code=204)


@api
async def visibility(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx)
    name = request.path_params["name"]
    await ctx.run(ctx.accounts().require_owner, ctx.principal, namespace_of(name))
    data = await json_body(request)
    repo = await ctx.run(ctx.registry().set_visibility, name, field(data, "public", bool), ctx.actor)
    return JSONResponse({"name": repo.name, "public": repo.is_public})


routes = [
    Route("/me", me),
    Route("/users", create_user, methods=["POST"]),
    Route("/orgs", create_org, methods=["POST"]),
    Route("/orgs/{org}/members", members),
    Route("/orgs/{org}/members/{username}", member, methods=["PUT", "DELETE"]),
    Route("/orgs/{org}/robots", robots, methods=["GET", "POST"]),
    Route("/orgs/{org}/robots/{name}", robot, methods=["DELETE"]),
    Route("/tokens", tokens, methods=["GET", "POST"]),
    Route("/tokens/{id:int}", revoke_token, methods=["DELETE"]),
    Route("/repositories/{name:path}/visibility", visibility, methods=["PUT"]),
]
