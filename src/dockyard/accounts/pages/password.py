"""Forgotten passwords: ask for a reset link (the same answer, in the same time, whether or not an account
matches), and choose a new password with it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.accounts.models import TokenPurpose
from dockyard.accounts.notifications import FORGOT_PATH, RESET_PATH
from dockyard.accounts.pages.forms import attempt, password_field, path, send_link_form
from dockyard.accounts.pages.signup import link_invalid
from dockyard.accounts.selfservice import LINK_TTL, LinkInvalid, password_problem
from dockyard.web.context import RequestContext
from dockyard.web.identity import optional_session_principal
from dockyard.web.pages import flash, form, page, redirect, render, text_field

RESET_HOURS = int(LINK_TTL[TokenPurpose.RESET].total_seconds() // 3600)


@page
async def forgot(request: Request, ctx: RequestContext) -> Response:
    await optional_session_principal(ctx)
    context = {"identifier": "", "error": None, "sent": False, "hours": RESET_HOURS}

    def sent(identifier: str) -> Response:
        return render(request, "accounts/forgot.html", {**context, "identifier": identifier, "sent": True})

    return await send_link_form(request, ctx, TokenPurpose.RESET, "accounts/forgot.html", context, sent)


@page
async def reset(request: Request, ctx: RequestContext) -> Response:
    """GET: the new-password form of a valid link; POST: set it."""
    await optional_session_principal(ctx)
    if request.method in ("GET", "HEAD"):
        secret = request.query_params.get("token", "")
    else:
        data = await form(request)
        secret = text_field(data, "token", limit=128)
    try:
        link = await ctx.call(lambda sv: sv.selfservice.check_link(TokenPurpose.RESET, secret))
    except LinkInvalid as exc:
        return link_invalid(request, exc, TokenPurpose.RESET)
    context = {"link": link, "token": secret, "errors": {}}
    if request.method in ("GET", "HEAD"):
        return render(request, "accounts/reset.html", context)
    password, confirm = password_field(data, "password"), password_field(data, "confirm")
    problem = password_problem(password)
    errors = {"password": problem} if problem else {}
    if not problem and password != confirm:
        errors["confirm"] = "The two passwords are not the same."
    if errors:
        return render(request, "accounts/reset.html", {**context, "errors": errors}, 400)
    _, refusal = await attempt(
        ctx, lambda sv: sv.selfservice.reset_password(secret, password, actor=ctx.actor), field="password"
    )
    if refusal is not None:
        if isinstance(refusal.exc, LinkInvalid):
            return link_invalid(request, refusal.exc, TokenPurpose.RESET)
        return render(request, "accounts/reset.html", {**context, "errors": refusal.errors}, refusal.status)
    flash(
        request, "Your password is changed and every session of the account was signed out. Sign in with it."
    )
    return redirect(path(request, "login"))


routes = [
    Route(FORGOT_PATH, forgot, methods=["GET", "POST"], name="password_forgot"),
    Route(RESET_PATH, reset, methods=["GET", "POST"], name="password_reset"),
]
