"""The accounts API: who am I, users, the store team, organisations, members, robots, access tokens and
repository visibility. Thin views: parse (the schemas), authorize (``caller`` + ``require``), one service
call, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Response

from dockyard.accounts import schemas as s
from dockyard.authz import Permission, Principal, Scope, StaffRole
from dockyard.db import MAX_ID
from dockyard.errors import Invalid
from dockyard.oci.reference import namespace_of
from dockyard.web.api import AUTHENTICATED, Ctx, UnitOfWorkRoute, caller, errors

router = APIRouter(route_class=UnitOfWorkRoute, responses=AUTHENTICATED)
T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many items")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="skip this many items")]
OrgName = Annotated[str, Path(min_length=1, max_length=64)]
UserName = Annotated[str, Path(min_length=1, max_length=64)]
RobotName = Annotated[str, Path(min_length=1, max_length=64)]
RepoName = Annotated[str, Path(min_length=1, max_length=255)]
Signed = Annotated[Principal, caller(None)]
Account = Annotated[Principal, caller(Scope.API)]


def page(items: list[T], limit: int, offset: int) -> tuple[list[T], int | None]:
    """One page of ``items`` and the offset of the next (None on the last)."""
    chunk = items[offset : offset + limit]
    return chunk, (offset + limit if offset + limit < len(items) else None)


def only_users(principal: Principal) -> None:
    if principal.kind != "user":
        raise Invalid("robots have no account to manage")


# -- me --------------------------------------------------------------------------------------------------
@router.get("/me", response_model=s.Me, tags=["me"])
async def me(who: Signed) -> dict[str, Any]:
    """The caller, as the credential it used sees it."""
    return {
        "name": who.name,
        "kind": who.kind,
        "staff": sorted(who.staff),
        "via": who.via,
        "scopes": sorted(who.scopes),
    }


@router.post("/me/sign-out-everywhere", status_code=204, tags=["me"], responses=errors(400, 403))
async def sign_out_everywhere(ctx: Ctx, who: Account) -> Response:
    """End every browser session and refresh token of the caller (access tokens stay)."""
    only_users(who)
    await ctx.call(lambda sv: sv.accounts.sign_out_everywhere(who.name, actor=ctx.actor))
    ctx.request.session.clear()
    return Response(status_code=204)


# -- users and the store team ----------------------------------------------------------------------------
@router.get("/users", response_model=s.UserList, tags=["users"], responses=errors(400, 403))
async def list_users(ctx: Ctx, who: Account, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    """Every user (store-admins only)."""

    def work(sv: Any) -> tuple[list[Any], dict[str, list[str]]]:
        sv.accounts.require(who, Permission.USER_MANAGE)
        staff: dict[str, list[str]] = {}
        for username, role in sv.accounts.staff():
            staff.setdefault(username, []).append(role)
        return sv.accounts.list_users(), staff

    users, staff = await ctx.call(work)
    chunk, next_offset = page(users, limit, offset)
    return {
        "users": [
            {
                "username": u.username,
                "email": u.email,
                "active": u.is_active,
                "staff": staff.get(u.username, []),
            }
            for u in chunk
        ],
        "next_offset": next_offset,
    }


@router.post(
    "/users", response_model=s.UserOut, status_code=201, tags=["users"], responses=errors(400, 403, 409)
)
async def create_user(body: s.NewUser, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Create a user (store-admins only); staff roles may be given at once."""

    def work(sv: Any) -> dict[str, Any]:
        sv.accounts.require(who, Permission.USER_MANAGE)
        staff = tuple(r.value for r in body.staff)
        if staff:
            sv.accounts.require(who, Permission.STAFF_MANAGE)
        user = sv.accounts.create_user(
            body.username, body.password, email=body.email, staff=staff, actor=ctx.actor
        )
        roles = sorted(sv.accounts.staff_roles(user.id))
        return {"username": user.username, "email": user.email, "active": user.is_active, "staff": roles}

    return await ctx.call(work)


@router.get("/staff", response_model=s.StaffList, tags=["staff"], responses=errors(403))
async def staff(ctx: Ctx, who: Account) -> dict[str, Any]:
    """The store team: every user and role."""

    def work(sv: Any) -> list[tuple[str, str]]:
        sv.accounts.require(who, Permission.STAFF_MANAGE)
        return sv.accounts.staff()

    rows = await ctx.call(work)
    return {"staff": [{"username": u, "role": r} for u, r in rows]}


@router.put(
    "/staff/{username}/{role}",
    response_model=s.StaffGrantOut,
    tags=["staff"],
    responses=errors(400, 403, 404),
)
async def grant_staff(username: UserName, role: StaffRole, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Give a user a store-team role (store-admins only)."""

    def work(sv: Any) -> None:
        sv.accounts.require(who, Permission.STAFF_MANAGE)
        sv.accounts.grant_staff(username, role.value, actor=ctx.actor)

    await ctx.call(work)
    return {"username": username, "role": role}


@router.delete(
    "/staff/{username}/{role}", status_code=204, tags=["staff"], responses=errors(400, 403, 404, 409)
)
async def revoke_staff(username: UserName, role: StaffRole, ctx: Ctx, who: Account) -> Response:
    """Take a store-team role away (the last store-admin stays)."""

    def work(sv: Any) -> None:
        sv.accounts.require(who, Permission.STAFF_MANAGE)
        sv.accounts.revoke_staff(username, role.value, actor=ctx.actor)

    await ctx.call(work)
    return Response(status_code=204)


# -- organisations ---------------------------------------------------------------------------------------
@router.post(
    "/orgs", response_model=s.OrgOut, status_code=201, tags=["organisations"], responses=errors(400, 403, 409)
)
async def create_org(body: s.NewOrg, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Create an organisation owned by the caller."""

    def work(sv: Any) -> str:
        sv.accounts.require(who, Permission.ORG_CREATE)
        return sv.accounts.create_org(body.name, who.name, actor=ctx.actor).name

    return {"name": await ctx.call(work)}


@router.get(
    "/orgs/{org}/members",
    response_model=s.MemberList,
    tags=["organisations"],
    responses=errors(400, 403, 404),
)
async def members(
    org: OrgName, ctx: Ctx, who: Account, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """An organisation's members and their roles (owners only)."""

    def work(sv: Any) -> list[tuple[str, str]]:
        sv.accounts.require(who, Permission.NAMESPACE_MANAGE, namespace=org)
        return sv.accounts.members(org)

    rows, next_offset = page(await ctx.call(work), limit, offset)
    return {"members": [{"username": u, "role": r} for u, r in rows], "next_offset": next_offset}


@router.put(
    "/orgs/{org}/members/{username}",
    response_model=s.Member,
    tags=["organisations"],
    responses=errors(400, 403, 404, 409),
)
async def set_member(
    org: OrgName, username: UserName, body: s.MemberRoleIn, ctx: Ctx, who: Account
) -> dict[str, Any]:
    """Add a member or change their role (owners only)."""

    def work(sv: Any) -> str:
        sv.accounts.require(who, Permission.NAMESPACE_MANAGE, namespace=org)
        return sv.accounts.set_member(org, username, body.role, actor=ctx.actor).role

    return {"username": username, "role": await ctx.call(work)}


@router.delete(
    "/orgs/{org}/members/{username}",
    status_code=204,
    tags=["organisations"],
    responses=errors(400, 403, 404, 409),
)
async def remove_member(org: OrgName, username: UserName, ctx: Ctx, who: Account) -> Response:
    """Remove a member (owners only; the last owner stays)."""

    def work(sv: Any) -> None:
        sv.accounts.require(who, Permission.NAMESPACE_MANAGE, namespace=org)
        sv.accounts.remove_member(org, username, actor=ctx.actor)

    await ctx.call(work)
    return Response(status_code=204)


@router.get(
    "/orgs/{org}/robots", response_model=s.RobotList, tags=["robots"], responses=errors(400, 403, 404)
)
async def robots(
    org: OrgName, ctx: Ctx, who: Account, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """An organisation's robot accounts (owners only)."""

    def work(sv: Any) -> list[Any]:
        sv.accounts.require(who, Permission.NAMESPACE_MANAGE, namespace=org)
        return sv.accounts.list_robots(org)

    items, next_offset = page(await ctx.call(work), limit, offset)
    return {
        "robots": [{"username": f"{org}+{r.name}", "role": r.role} for r in items],
        "next_offset": next_offset,
    }


@router.post(
    "/orgs/{org}/robots",
    response_model=s.RobotCreated,
    status_code=201,
    tags=["robots"],
    responses=errors(400, 403, 404, 409),
)
async def create_robot(org: OrgName, body: s.NewRobot, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Create a robot account; its secret is in this answer only."""

    def work(sv: Any) -> tuple[Any, str]:
        sv.accounts.require(who, Permission.NAMESPACE_MANAGE, namespace=org)
        return sv.accounts.create_robot(org, body.name, body.role, actor=ctx.actor)

    robot, secret = await ctx.call(work)
    return {"username": f"{org}+{robot.name}", "role": robot.role, "secret": secret}


@router.delete("/orgs/{org}/robots/{name}", status_code=204, tags=["robots"], responses=errors(400, 403, 404))
async def delete_robot(org: OrgName, name: RobotName, ctx: Ctx, who: Account) -> Response:
    """Delete a robot account: its secret stops working at once."""

    def work(sv: Any) -> None:
        sv.accounts.require(who, Permission.NAMESPACE_MANAGE, namespace=org)
        sv.accounts.delete_robot(org, name, actor=ctx.actor)

    await ctx.call(work)
    return Response(status_code=204)


# -- access tokens ---------------------------------------------------------------------------------------
@router.get("/tokens", response_model=s.TokenList, tags=["tokens"], responses=errors(400, 403))
async def tokens(ctx: Ctx, who: Account, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    """The caller's personal access tokens (never their secrets)."""
    only_users(who)
    items, next_offset = page(await ctx.call(lambda sv: sv.accounts.list_tokens(who.name)), limit, offset)
    return {
        "tokens": [
            {
                "id": t.id,
                "name": t.name,
                "scopes": t.scopes.split(","),
                "revoked": t.revoked,
                "created_at": t.created_at,
                "expires_at": t.expires_at,
                "last_used_at": t.last_used_at,
            }
            for t in items
        ],
        "next_offset": next_offset,
    }


@router.post(
    "/tokens", response_model=s.TokenCreated, status_code=201, tags=["tokens"], responses=errors(400, 403)
)
async def create_token(body: s.NewToken, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Create a personal access token with the given scopes; the secret is in this answer only."""
    only_users(who)

    def work(sv: Any) -> tuple[Any, str]:
        sv.accounts.require(who, Permission.ACCOUNT_MANAGE)
        return sv.accounts.create_token(
            who.name,
            body.name,
            expires_in_days=body.expires_in_days,
            scopes=frozenset(body.scopes),
            actor=ctx.actor,
        )

    token, secret = await ctx.call(work)
    return {"id": token.id, "name": token.name, "scopes": token.scopes.split(","), "token": secret}


@router.delete("/tokens/{token_id}", status_code=204, tags=["tokens"], responses=errors(400, 403, 404))
async def revoke_token(token_id: Annotated[int, Path(ge=1, le=MAX_ID)], ctx: Ctx, who: Account) -> Response:
    """Revoke one of the caller's tokens: it, and every refresh token minted with it, stop working."""
    only_users(who)
    await ctx.call(lambda sv: sv.accounts.revoke_token(who.name, token_id, actor=ctx.actor))
    return Response(status_code=204)


# -- repositories ----------------------------------------------------------------------------------------
@router.put(
    "/repositories/{name:path}/visibility",
    response_model=s.VisibilityOut,
    tags=["repositories"],
    responses=errors(400, 403, 404),
)
async def visibility(name: RepoName, body: s.VisibilityIn, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Make a repository public (anyone may pull) or private (owners of its namespace only)."""

    def work(sv: Any) -> Any:
        sv.accounts.require(who, Permission.NAMESPACE_MANAGE, namespace=namespace_of(name))
        return sv.registry.set_visibility(name, body.public, ctx.actor)

    repo = await ctx.call(work)
    return {"name": repo.name, "public": repo.is_public}
