"""Signing in and out: the sign-in form, sign-out, and "sign out everywhere"."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.accounts.pages.forms import password_field, path
from dockyard.errors import EmailUnverified, TooManyRequests, Unauthenticated
from dockyard.web.context import RequestContext
from dockyard.web.identity import end_session, session_principal, start_session
from dockyard.web.identity import login as login_with
from dockyard.web.pages import flash, form, page, redirect, render, safe_next, text_field

AFTER_LOGIN = "/ui/"


def _wait(seconds: int) -> str:
    return f"{-(-seconds // 60)} minutes" if seconds > 90 else f"{seconds} seconds"


@page
async def login(request: Request, ctx: RequestContext) -> Response:
    if request.method in ("GET", "HEAD"):
        target = safe_next(request.query_params.get("next"), AFTER_LOGIN)
        context = {"next": target, "error": None, "username": "", "unverified": False}
        return render(request, "accounts/login.html", context)
    data = await form(request)
    username = text_field(data, "username", limit=64)
    password = password_field(data, "password")
    target = safe_next(text_field(data, "next"), AFTER_LOGIN)
    context = {"next": target, "username": username, "unverified": False}
    try:
        # Robots use the API, not the pages: their names never sign in here.
        principal = await login_with(ctx, username if "+" not in username else "-", password)
    except TooManyRequests as exc:
        error = f"Too many failed attempts. Try again in {_wait(exc.retry_after)}."
        return render(request, "accounts/login.html", {**context, "error": error}, 429, headers=exc.headers)
    except EmailUnverified:
        # The password was right: say what is missing, and offer a new link (the edge commits the audit row).
        return render(request, "accounts/login.html", {**context, "error": None, "unverified": True}, 403)
    except Unauthenticated:
        # The view answers normally, so the edge commits the failure's audit row and throttle count.
        error = "Invalid username or password."
        return render(request, "accounts/login.html", {**context, "error": error}, 401)
    if principal.kind != "user" or principal.via != "password":
        error = "Sign in with your password; access tokens are for the API and registry clients."
        return render(request, "accounts/login.html", {**context, "error": error}, 401)
    await start_session(ctx, principal)
    return redirect(target)


@page
async def logout(request: Request, ctx: RequestContext) -> Response:
    await form(request)
    await end_session(ctx)
    flash(request, "You are signed out.")
    return redirect(path(request, "login"))


@page
async def sign_out_everywhere(request: Request, ctx: RequestContext) -> Response:
    await form(request)
    principal = await session_principal(ctx)
    await ctx.run(ctx.accounts().sign_out_everywhere, principal.name, actor=ctx.actor)
    request.session.clear()
    flash(request, "Every session and refresh token of your account has ended, on every device.")
    return redirect(path(request, "login"))


routes = [
    Route("/ui/login", login, methods=["GET", "POST"], name="login"),
    Route("/ui/logout", logout, methods=["POST"], name="logout"),
    Route("/ui/sign-out-everywhere", sign_out_everywhere, methods=["POST"], name="sign_out_everywhere"),
]
