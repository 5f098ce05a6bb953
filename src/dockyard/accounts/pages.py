"""Account pages: sign-in, sign-out and "sign out everywhere"."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.errors import NotFound, TooManyRequests, Unauthenticated
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
        return render(request, "accounts/login.html", {"next": target, "error": None, "username": ""})
    data = await form(request)
    username = text_field(data, "username", limit=64)
    password = data.get("password")
    password = password if isinstance(password, str) else ""
    target = safe_next(text_field(data, "next"), AFTER_LOGIN)
    context = {"next": target, "username": username}
    try:
        # Robots use the API, not the pages: their names never sign in here.
        principal = await login_with(ctx, username if "+" not in username else "-", password)
    except TooManyRequests as exc:
        error = f"Too many failed attempts. Try again in {_wait(exc.retry_after)}."
        return render(request, "accounts/login.html", {**context, "error": error}, 429, headers=exc.headers)
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
    return redirect("/ui/login")


@page
async def sign_out_everywhere(request: Request, ctx: RequestContext) -> Response:
    await form(request)
    principal = await session_principal(ctx)
    await ctx.run(ctx.accounts().sign_out_everywhere, principal.name, actor=ctx.actor)
    request.session.clear()
    flash(request, "Every session and refresh token of your account has ended, on every device.")
    return redirect("/ui/login")


routes = [
    Route("/ui/login", login, methods=["GET", "POST"], name="login"),
    Route("/ui/logout", logout, methods=["POST"], name="logout"),
    Route("/ui/sign-out-everywhere", sign_out_everywhere, methods=["POST"], name="sign_out_everywhere"),
]


@page
async def not_yet(request: Request, ctx: RequestContext) -> Response:
    # Placeholders for the sign-up, password-reset, account and organisation pages being built.
    raise NotFound("not yet")


routes += [
    Route("/ui/signup", not_yet, methods=["GET"], name="signup"),
    Route("/ui/password/forgot", not_yet, methods=["GET"], name="password_forgot"),
    Route("/ui/account", not_yet, methods=["GET"], name="account"),
    Route("/ui/orgs", not_yet, methods=["GET"], name="orgs"),
]
