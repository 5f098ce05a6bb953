"""Sign-up and email confirmation: the sign-up form, the confirmation link's page, and "send the link
again". See accounts/selfservice.py for the rules (and why a link is confirmed with a button, not by
opening it: mail scanners open links too)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.accounts.models import TokenPurpose
from dockyard.accounts.notifications import VERIFY_PATH
from dockyard.accounts.pages.forms import attempt, password_field, path, send_link_form
from dockyard.accounts.selfservice import LinkInvalid, normalise_email, signup_problems
from dockyard.errors import DockyardError
from dockyard.services import Services
from dockyard.web.context import RequestContext
from dockyard.web.identity import optional_session_principal
from dockyard.web.pages import flash, form, page, redirect, render, text_field

SIGNED_UP = "signed_up"  # the session remembers the address a sign-up just mailed, for "check your inbox"


@page
async def signup(request: Request, ctx: RequestContext) -> Response:
    principal = await optional_session_principal(ctx)
    if principal.kind == "user":
        return redirect(path(request, "dashboard"))
    closed = not ctx.state.settings.signup_open
    context = {"closed": closed, "values": {"username": "", "email": ""}, "errors": {}}
    if request.method in ("GET", "HEAD"):
        return render(request, "accounts/signup.html", context)
    data = await form(request)
    if closed:
        return render(request, "accounts/signup.html", context, 403)
    username = text_field(data, "username", limit=64)
    email = text_field(data, "email", limit=320)
    password, confirm = password_field(data, "password"), password_field(data, "confirm")
    context["values"] = {"username": username, "email": email}
    errors = signup_problems(username, email, password)
    if "password" not in errors and password != confirm:
        errors["confirm"] = "The two passwords are not the same."
    if errors:
        return render(request, "accounts/signup.html", {**context, "errors": errors}, 400)
    _, refusal = await attempt(
        ctx, lambda sv: sv.selfservice.sign_up(username, email, password, actor=ctx.actor), field="username"
    )
    if refusal is not None:
        return render(request, "accounts/signup.html", {**context, "errors": refusal.errors}, refusal.status)
    request.session[SIGNED_UP] = {"username": username, "email": normalise_email(email)}
    return redirect(path(request, "verify_resend"))


@page
async def verify_email(request: Request, ctx: RequestContext) -> Response:
    """GET: what the link confirms, with a button; POST (the button): confirm it."""
    principal = await optional_session_principal(ctx)
    if request.method in ("GET", "HEAD"):
        secret = request.query_params.get("token", "")
        try:
            link = await ctx.call(lambda sv: sv.selfservice.check_link(TokenPurpose.VERIFY, secret))
        except LinkInvalid as exc:
            return link_invalid(request, exc, TokenPurpose.VERIFY)
        return render(request, "accounts/verify.html", {"link": link, "token": secret})
    data = await form(request)
    secret = text_field(data, "token", limit=128)

    def confirm(sv: Services) -> tuple[int, str | None]:
        user = sv.selfservice.verify_email(secret, actor=ctx.actor)
        return user.id, user.email

    try:
        user_id, email = await ctx.call(confirm)
    except DockyardError as exc:
        await ctx.finish(commit=False)
        return link_invalid(request, exc, TokenPurpose.VERIFY)
    request.session.pop(SIGNED_UP, None)
    if principal.user_id == user_id:
        flash(request, f"Your email address is now {email}.")
        return redirect(path(request, "account"))
    flash(request, f"Thank you: {email} is confirmed. Sign in to start using your account.")
    return redirect(path(request, "login"))


def link_invalid(request: Request, exc: DockyardError, purpose: TokenPurpose) -> Response:
    """A link that no longer works (or never did): say why, and offer a new one."""
    context = {"message": exc.message, "purpose": purpose.value}
    return render(request, "accounts/link_invalid.html", context, 409 if exc.code == "CONFLICT" else 400)


@page
async def verify_resend(request: Request, ctx: RequestContext) -> Response:
    """GET: "check your inbox" after a sign-up, or a form asking for the account; POST: mail a new link
    (the same answer whether or not an account awaits one)."""
    await optional_session_principal(ctx)
    signed_up = request.session.get(SIGNED_UP)
    context = {
        "signed_up": signed_up if isinstance(signed_up, dict) else None,
        "error": None,
        "identifier": "",
    }

    def sent(identifier: str) -> Response:
        flash(
            request,
            "If an account awaits confirmation under that name or address, a new link is on its way. "
            "It can take a minute or two; check your spam folder too.",
            "info",
        )
        return redirect(path(request, "verify_resend"))

    return await send_link_form(
        request, ctx, TokenPurpose.VERIFY, "accounts/verify_resend.html", context, sent
    )


routes = [
    Route("/ui/signup", signup, methods=["GET", "POST"], name="signup"),
    Route(VERIFY_PATH, verify_email, methods=["GET", "POST"], name="verify_email"),
    Route(VERIFY_PATH + "/resend", verify_resend, methods=["GET", "POST"], name="verify_resend"),
]
