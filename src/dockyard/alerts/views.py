"""The notifications API: my preferences (and my entitlements' security mail), my watched repositories,
and watching or unwatching a repository. Thin views: parse, one service call (which authorizes), shape.
A repository the caller may not read answers exactly as a missing one does (404)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from starlette.responses import Response

from dockyard.alerts import schemas as s
from dockyard.authz import Principal, Scope
from dockyard.services import Services
from dockyard.web.api import AUTHENTICATED, Ctx, UnitOfWorkRoute, caller, errors

router = APIRouter(route_class=UnitOfWorkRoute, tags=["notifications"], responses=AUTHENTICATED)
Account = Annotated[Principal, caller(Scope.API)]
RepoName = Annotated[str, Path(min_length=1, max_length=255)]


@router.get("/me/notifications", response_model=s.Notifications, responses=errors(403))
async def notifications(ctx: Ctx, who: Account) -> dict[str, Any]:
    """My mail preferences, and the security mail of each of my active entitlements."""

    def work(sv: Services) -> dict[str, Any]:
        return s.notifications_out(sv.alerts.preferences(who), sv.alerts.security_mail(who))

    return await ctx.call(work)


@router.put("/me/notifications", response_model=s.Notifications, responses=errors(400, 403, 404))
async def set_notifications(body: s.NotificationsIn, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Change my mail preferences and my entitlements' security mail (fields left out stay; audited)."""

    def work(sv: Services) -> dict[str, Any]:
        prefs = sv.alerts.set_preferences(
            who, ctx.actor, critical_now=body.critical_now, daily_digest=body.daily_digest
        )
        for change in body.security_mail:
            sv.alerts.set_security_mail(who, change.entitlement, change.notify_security, ctx.actor)
        return s.notifications_out(prefs, sv.alerts.security_mail(who))

    return await ctx.call(work)


@router.get("/me/watches", response_model=s.WatchList, responses=errors(403))
async def watches(ctx: Ctx, who: Account) -> dict[str, Any]:
    """The repositories I watch (new-vulnerability notifications), by name."""
    found = await ctx.call(lambda sv: sv.alerts.watches(who))
    return {"watches": [s.watch_out(w) for w in found]}


@router.put(
    "/repositories/{name:path}/watch",
    response_model=s.Watch,
    tags=["repositories"],
    responses=errors(403, 404),
)
async def watch(name: RepoName, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Subscribe to new-vulnerability notifications of a repository I may read (idempotent): new findings
    of the images its tags point to are mailed, Critical ones at once and the others in my daily digest."""
    view, _ = await ctx.call(lambda sv: sv.alerts.watch(who, name, ctx.actor))
    return s.watch_out(view)


@router.delete(
    "/repositories/{name:path}/watch", status_code=204, tags=["repositories"], responses=errors(403, 404)
)
async def unwatch(name: RepoName, ctx: Ctx, who: Account) -> Response:
    """Stop the notifications of a repository (idempotent)."""
    await ctx.call(lambda sv: sv.alerts.unwatch(who, name, ctx.actor))
    return Response(status_code=204)
