"""Notification pages: ``/ui/account/notifications`` (mail preferences, watched repositories, the security
mail of each active entitlement) and the Watch / Unwatch form of a repository's page. Every change is a
plain form (CSRF) that redirects back: usable without JavaScript."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.accounts.notifications import ACCOUNT_PATH
from dockyard.services import Services
from dockyard.web.context import RequestContext
from dockyard.web.identity import session_principal
from dockyard.web.pages import flash, form, page, redirect, render, safe_next, text_field

NOTIFICATIONS_PATH = ACCOUNT_PATH + "/notifications"


def _path(request: Request, route: str, **params: Any) -> str:
    return str(request.app.url_path_for(route, **{k: str(v) for k, v in params.items()}))


@page
async def notifications(request: Request, ctx: RequestContext) -> Response:
    """The caller's preferences, watched repositories and per-entitlement security mail."""
    principal = await session_principal(ctx)

    def work(sv: Services) -> dict[str, Any]:
        return {
            "prefs": sv.alerts.preferences(principal),
            "watches": sv.alerts.watches(principal),
            "entitlements": sv.alerts.security_mail(principal),
        }

    return render(request, "alerts/notifications.html", await ctx.call(work))


@page
async def save_preferences(request: Request, ctx: RequestContext) -> Response:
    """Save the two mail preferences (an unticked box is sent as nothing: off)."""
    data = await form(request)
    principal = await session_principal(ctx)
    critical_now, daily_digest = data.get("critical_now") == "on", data.get("daily_digest") == "on"
    await ctx.call(
        lambda sv: sv.alerts.set_preferences(
            principal, ctx.actor, critical_now=critical_now, daily_digest=daily_digest
        )
    )
    flash(request, "Your mail preferences are saved.")
    return redirect(_path(request, "account_notifications") + "#preferences")


@page
async def security_mail(request: Request, ctx: RequestContext) -> Response:
    """Turn one entitlement's security mail on or off."""
    data = await form(request)
    principal = await session_principal(ctx)
    entitlement_id = request.path_params["entitlement_id"]
    on = text_field(data, "notify_security", limit=8) == "on"
    row = await ctx.call(lambda sv: sv.alerts.set_security_mail(principal, entitlement_id, on, ctx.actor))
    flash(request, f"Security mail {'on' if row.notify_security else 'off'} for that product.")
    return redirect(_path(request, "account_notifications") + "#security-mail")


@page
async def watch(request: Request, ctx: RequestContext) -> Response:
    """Watch or unwatch a repository (``action``), then back to ``next`` or the repository's page."""
    data = await form(request)
    principal = await session_principal(ctx)
    name = request.path_params["name"]
    unwatch = text_field(data, "action", limit=16) == "unwatch"
    back = safe_next(text_field(data, "next", limit=1024), _path(request, "repository", name=name))

    def work(sv: Services) -> bool:
        if unwatch:
            return sv.alerts.unwatch(principal, name, ctx.actor)
        return sv.alerts.watch(principal, name, ctx.actor)[1]

    await ctx.call(work)
    if unwatch:
        flash(request, f"You no longer watch {name}: its new vulnerabilities are not mailed to you.")
    else:
        flash(request, f"You watch {name}: new vulnerabilities in its tagged images are mailed to you.")
    return redirect(back)


routes = [
    Route(NOTIFICATIONS_PATH, notifications, methods=["GET"], name="account_notifications"),
    Route(NOTIFICATIONS_PATH, save_preferences, methods=["POST"], name="account_notifications_save"),
    Route(
        NOTIFICATIONS_PATH + "/entitlements/{entitlement_id:int}",
        security_mail,
        methods=["POST"],
        name="account_security_mail",
    ),
    # Before the registry's pages: "/-/" cannot be part of a repository name (see registry/pages.py).
    Route("/ui/repositories/{name:path}/-/watch", watch, methods=["POST"], name="repository_watch"),
]
