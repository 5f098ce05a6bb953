"""Organisations: the ones I belong to (and a new one), and one organisation's members and robot accounts.

An organisation is shown only to its members (and store staff who manage every namespace): anyone else
gets the same 404 page as for a name that does not exist. Readers and maintainers see it read-only;
owners add members, change roles, remove members (an organisation keeps at least one owner), create robots
(the secret is shown once) and delete them. Role changes and removals update their table row in place
with htmx; every form works without JavaScript too.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.accounts.models import Role
from dockyard.accounts.pages.forms import Refusal, attempt, path, podman_login
from dockyard.accounts.reads import Organisation
from dockyard.authz import Permission, Principal
from dockyard.errors import Conflict, Forbidden, Invalid, NotFound
from dockyard.registry.reads import RegistryReads
from dockyard.services import Services
from dockyard.web.context import RequestContext
from dockyard.web.identity import session_principal
from dockyard.web.pages import flash, form, page, redirect, render, text_field

ROLES = [r.value for r in Role]
ROBOT_ROLES = [Role.READER.value, Role.MAINTAINER.value]


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


# -- the list --------------------------------------------------------------------------------------------
@page
async def orgs(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    if request.method in ("GET", "HEAD"):
        return await _list(request, ctx, principal)
    data = await form(request)
    name = text_field(data, "name", limit=100)
    if not name:
        return await _list(request, ctx, principal, 400, {"name": "Give the organisation a name."}, name)

    def create(sv: Services) -> str:
        sv.accounts.require(principal, Permission.ORG_CREATE)
        return sv.accounts.create_org(name, principal.name, actor=ctx.actor).name

    created, refusal = await attempt(ctx, create, field="name")
    if refusal is not None:
        return await _list(request, ctx, principal, refusal.status, refusal.errors, name)
    flash(request, f"Organisation {created} is ready: add members and robot accounts below.")
    return redirect(path(request, "org", org=created))


async def _list(
    request: Request,
    ctx: RequestContext,
    principal: Principal,
    status: int = 200,
    errors: dict[str, str] | None = None,
    name: str = "",
) -> Response:
    def read(sv: Services) -> tuple[Any, dict[int, int]]:
        mine = sv.account_reads.organisations_of(principal.name)
        return mine, RegistryReads(sv.session).repository_counts(o.id for o in mine)

    mine, repositories = await ctx.call(read)
    context = {"orgs": mine, "repositories": repositories, "errors": errors or {}, "name": name}
    return render(request, "accounts/orgs.html", context, status)


# -- one organisation ------------------------------------------------------------------------------------
async def _show(
    request: Request,
    ctx: RequestContext,
    principal: Principal,
    org: str,
    *,
    status: int = 200,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, str] | None = None,
    created: dict[str, str] | None = None,
) -> Response:
    def read(sv: Services) -> tuple[Organisation, int]:
        shown = sv.account_reads.organisation(org, principal)
        return shown, RegistryReads(sv.session).repository_counts([shown.id]).get(shown.id, 0)

    shown, repositories = await ctx.call(read)
    context = {
        "org": shown,
        "repositories": repositories,
        "roles": ROLES,
        "robot_roles": ROBOT_ROLES,
        "errors": errors or {},
        "values": {"username": "", "role": Role.READER.value, "robot_name": "", "robot_role": "reader"}
        | (values or {}),
        "created": created,
        "row_notes": {},
        "row_errors": {},
    }
    return render(request, "accounts/org.html", context, status)


@page
async def org_page(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    return await _show(request, ctx, principal, request.path_params["org"])


async def _owner(request: Request, ctx: RequestContext) -> tuple[Principal, str, Any]:
    """The signed-in owner (or store-admin) managing the organisation of the path, and the posted form:
    NotFound for those who may not see it, Forbidden for members who may not manage it."""
    data = await form(request)
    principal = await session_principal(ctx)
    org = request.path_params["org"]

    def check(sv: Services) -> None:
        if not sv.account_reads.organisation(org, principal).can_manage:
            raise Forbidden("Only the organisation's owners manage its members and robot accounts.")

    await ctx.call(check)
    return principal, org, data


async def _member_row(
    request: Request,
    ctx: RequestContext,
    principal: Principal,
    org: str,
    username: str,
    *,
    note: str | None = None,
    error: str | None = None,
) -> Response:
    """One member's table row, for htmx (errors too: htmx swaps only 2xx answers, and the row says it)."""
    shown = await ctx.call(lambda sv: sv.account_reads.organisation(org, principal))
    role = dict(shown.members).get(username)
    if role is None:
        return render(
            request, "accounts/_gone_row.html", {"message": f"{username} left {org}.", "columns": 3}
        )
    context = {
        "org": shown,
        "member": (username, role),
        "roles": ROLES,
        "row_notes": {username: note} if note else {},
        "row_errors": {username: error} if error else {},
    }
    return render(request, "accounts/_member_row.html", context)


@page
async def add_member(request: Request, ctx: RequestContext) -> Response:
    principal, org, data = await _owner(request, ctx)
    username = text_field(data, "username", limit=64)
    role = text_field(data, "role", limit=16)
    values = {"username": username, "role": role}
    if not username:
        errors = {"member": {"username": "Enter the username of the person to add."}}
        return await _show(request, ctx, principal, org, status=400, errors=errors, values=values)

    def add(sv: Services) -> None:
        if username in dict(sv.accounts.members(org)):
            raise Conflict(f"{username} is a member already: change their role in the list above.")
        try:
            sv.accounts.set_member(org, username, role, actor=ctx.actor)
        except NotFound as exc:
            raise Invalid(f"There is no user called {username}.", detail={"field": "username"}) from exc

    _, refusal = await attempt(ctx, add, field="username")
    if refusal is not None:
        errors = {"member": _role_field(refusal)}
        return await _show(request, ctx, principal, org, status=refusal.status, errors=errors, values=values)
    flash(request, f"{username} joined {org} as {role}.")
    return redirect(path(request, "org", org=org) + "#members")


def _role_field(refusal: Refusal) -> dict[str, str]:
    # The service names a bad role in its message, not in a field: put it beside the role menu.
    if "role must be" in refusal.exc.message:
        return {"role": "Choose a role."}
    return refusal.errors


@page
async def change_role(request: Request, ctx: RequestContext) -> Response:
    principal, org, data = await _owner(request, ctx)
    username = request.path_params["username"]
    role = text_field(data, "role", limit=16)

    def change(sv: Services) -> None:
        if username not in dict(sv.accounts.members(org)):
            raise NotFound(f"{username} is not a member of {org}.")
        sv.accounts.set_member(org, username, role, actor=ctx.actor)

    _, refusal = await attempt(ctx, change, field="role")
    if _htmx(request):
        error = refusal.errors.popitem()[1] if refusal is not None else None
        note = None if refusal is not None else "Saved."
        return await _member_row(request, ctx, principal, org, username, note=note, error=error)
    if refusal is not None:
        return await _row_refused(request, ctx, principal, org, username, refusal)
    flash(request, f"{username} is now {role} of {org}.")
    return redirect(path(request, "org", org=org) + "#members")


async def _row_refused(
    request: Request, ctx: RequestContext, principal: Principal, org: str, username: str, refusal: Refusal
) -> Response:
    errors = {"rows": {username: refusal.errors.popitem()[1]}}
    return await _show(request, ctx, principal, org, status=refusal.status, errors=errors)


@page
async def remove_member(request: Request, ctx: RequestContext) -> Response:
    principal, org, _ = await _owner(request, ctx)
    username = request.path_params["username"]
    _, refusal = await attempt(
        ctx, lambda sv: sv.accounts.remove_member(org, username, actor=ctx.actor), field="member"
    )
    if refusal is not None:
        if _htmx(request):
            error = refusal.errors.popitem()[1]
            return await _member_row(request, ctx, principal, org, username, error=error)
        return await _row_refused(request, ctx, principal, org, username, refusal)
    if username == principal.name:
        flash(request, f"You left {org}.")
        target = path(request, "orgs")
        return Response(headers={"HX-Redirect": target}) if _htmx(request) else redirect(target)
    message = f"{username} no longer belongs to {org}."
    if _htmx(request):
        return render(request, "accounts/_gone_row.html", {"message": message, "columns": 3})
    flash(request, message)
    return redirect(path(request, "org", org=org) + "#members")


# -- robots ----------------------------------------------------------------------------------------------
@page
async def create_robot(request: Request, ctx: RequestContext) -> Response:
    principal, org, data = await _owner(request, ctx)
    name = text_field(data, "robot_name", limit=64)
    role = text_field(data, "robot_role", limit=16)
    values = {"robot_name": name, "robot_role": role}

    def create(sv: Services) -> str:
        return sv.accounts.create_robot(org, name, role, actor=ctx.actor)[1]

    secret, refusal = await attempt(ctx, create, field="robot_name")
    if refusal is not None or secret is None:
        assert refusal is not None
        field = "robot_role" if "role" in refusal.exc.message else "robot_name"
        errors = {"robot": {field: _robot_message(refusal)}}
        return await _show(request, ctx, principal, org, status=refusal.status, errors=errors, values=values)
    username = f"{org}+{name}"
    created = {
        "username": username,
        "secret": secret,
        "login": podman_login(ctx.state.settings, username, secret),
    }
    # Shown in this answer only (no redirect: the secret must not wait in a cookie for the next page).
    return await _show(request, ctx, principal, org, status=201, created=created)


def _robot_message(refusal: Refusal) -> str:
    if "role" in refusal.exc.message:
        return "A robot is a reader (pulls) or a maintainer (pulls and pushes)."
    return next(iter(refusal.errors.values()))


@page
async def delete_robot(request: Request, ctx: RequestContext) -> Response:
    _, org, _ = await _owner(request, ctx)
    name = request.path_params["name"]
    await ctx.call(lambda sv: sv.accounts.delete_robot(org, name, actor=ctx.actor))
    message = f"Robot {org}+{name} is deleted: its secret stopped working at once."
    if _htmx(request):
        return render(request, "accounts/_gone_row.html", {"message": message, "columns": 5})
    flash(request, message)
    return redirect(path(request, "org", org=org) + "#robots")


routes = [
    Route("/ui/orgs", orgs, methods=["GET", "POST"], name="orgs"),
    Route("/ui/orgs/{org}", org_page, methods=["GET"], name="org"),
    Route("/ui/orgs/{org}/members", add_member, methods=["POST"], name="org_members"),
    Route("/ui/orgs/{org}/members/{username}/role", change_role, methods=["POST"], name="org_member_role"),
    Route(
        "/ui/orgs/{org}/members/{username}/remove", remove_member, methods=["POST"], name="org_member_remove"
    ),
    Route("/ui/orgs/{org}/robots", create_robot, methods=["POST"], name="org_robots"),
    Route("/ui/orgs/{org}/robots/{name}/delete", delete_robot, methods=["POST"], name="org_robot_delete"),
]
