"""JSON API for accounts: users, organisations, members, robots, tokens, repository visibility."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dockyard.authz import Scope, parse_scopes, require_admin, require_authenticated
from dockyard.errors import Invalid
from dockyard.oci.reference import namespace_of
from dockyard.web.context import RequestContext, endpoint
from dockyard.web.errors import api_error_response
from dockyard.web.identity import api_principal

api = endpoint(api_error_response)


async def authenticate(ctx: RequestContext, scope: Scope | None = Scope.API) -> None:
    """The caller, who must hold ``scope`` (account management needs the ``api`` scope)."""
    await api_principal(ctx, scope)


async def json_body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except (ValueError, RecursionError) as exc:  # RecursionError: thousands of nested brackets
        raise Invalid("request body is not JSON") from exc
    if not isinstance(data, dict):
        raise Invalid("request body must be a JSON object")
    return data


def field(data: dict[str, Any], key: str, kind: type = str, default: Any = ...) -> Any:
    value = data.get(key, default)
    if value is ...:
        raise Invalid(f"{key!r} is required")
    # bool is an int to Python, never to a client: `true` is no number of days.
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise Invalid(f"{key!r} must be a {kind.__name__}", detail={"field": key})
    return value


@api
async def me(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx, None)
    p = ctx.principal
    return JSONResponse(
        {"name": p.name, "kind": p.kind, "admin": p.is_admin, "via": p.via, "scopes": sorted(p.scopes)}
    )


@api
async def sign_out_everywhere(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx)
    if ctx.principal.kind != "user":
        raise Invalid("only users sign in")
    await ctx.run(ctx.accounts().sign_out_everywhere, ctx.principal.name, actor=ctx.actor)
    request.session.clear()
    return Response(status_code=204)


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
            scopes=parse_scopes(field(data, "scopes", list, None)),
            actor=ctx.actor,
        )
        return JSONResponse(
            {"id": token.id, "name": token.name, "scopes": token.scopes.split(","), "token": secret},
            status_code=201,
        )
    items = await ctx.run(accounts.list_tokens, ctx.principal.name)
    return JSONResponse(
        {
            "tokens": [
                {
                    "id": t.id,
                    "name": t.name,
                    "revoked": t.revoked,
                    "scopes": t.scopes.split(","),
                    "expires_at": t.expires_at.isoformat() if t.expires_at else None,
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
    Route("/me/sign-out-everywhere", sign_out_everywhere, methods=["POST"]),
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
