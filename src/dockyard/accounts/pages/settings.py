"""Account settings: the profile (and a new email address), the password, personal access tokens, "sign
out everywhere" and the store-team roles held."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.accounts.notifications import ACCOUNT_PATH
from dockyard.accounts.pages.forms import attempt, password_field, path, podman_login
from dockyard.accounts.services import MAX_TOKEN_DAYS
from dockyard.authz import Permission, Principal, Scope
from dockyard.errors import LoginFailed, TooManyRequests
from dockyard.services import Services
from dockyard.web.context import RequestContext
from dockyard.web.identity import confirm_password, session_principal, start_session
from dockyard.web.pages import flash, form, page, redirect, render, text_field

EXPIRY_CHOICES = (
    ("7", "7 days"),
    ("30", "30 days"),
    ("90", "90 days"),
    ("365", "a year"),
    ("never", "never"),
)
DEFAULT_EXPIRY = "30"
SCOPE_HINTS = {
    Scope.PULL: "pull images (registry clients)",
    Scope.PUSH: "push and delete images",
    Scope.API: "manage tokens, organisations, members and robots through the API",
}


async def _show(
    request: Request,
    ctx: RequestContext,
    principal: Principal,
    *,
    status: int = 200,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, Any] | None = None,
    created: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    settings = await ctx.call(lambda sv: sv.account_reads.settings_of(principal.name))
    context = {
        "account": settings,
        "errors": errors or {},
        "values": {"token_name": "", "scopes": ["pull", "push"], "expires": DEFAULT_EXPIRY, **(values or {})},
        "created": created,
        "expiry_choices": EXPIRY_CHOICES,
        "scope_hints": SCOPE_HINTS,
    }
    return render(request, "accounts/account.html", context, status, headers=headers)


@page
async def account(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    return await _show(request, ctx, principal)


async def _password_refused(ctx: RequestContext, principal: Principal, password: str) -> str | None:
    """Why the current password given is refused (None: it is right); throttled like a login."""
    try:
        await confirm_password(ctx, principal, password)
    except TooManyRequests as exc:
        minutes = -(-exc.retry_after // 60)
        return f"Too many wrong passwords. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    except LoginFailed:
        return "That is not your current password."
    return None


@page
async def change_email(request: Request, ctx: RequestContext) -> Response:
    data = await form(request)
    principal = await session_principal(ctx)
    email = text_field(data, "email", limit=320)
    values = {"email": email}
    wrong = await _password_refused(ctx, principal, password_field(data, "current_password"))
    if wrong:
        errors = {"email": {"current_password": wrong}}
        return await _show(request, ctx, principal, status=400, errors=errors, values=values)
    _, refusal = await attempt(
        ctx,
        lambda sv: sv.selfservice.request_email_change(principal.name, email, actor=ctx.actor),
        field="email",
    )
    if refusal is not None:
        errors = {"email": refusal.errors}
        return await _show(request, ctx, principal, status=refusal.status, errors=errors, values=values)
    flash(request, f"We sent a link to {email.strip().lower()}: your address changes once you open it.")
    return redirect(path(request, "account") + "#profile")


@page
async def change_password(request: Request, ctx: RequestContext) -> Response:
    data = await form(request)
    principal = await session_principal(ctx)
    new, confirm = password_field(data, "new_password"), password_field(data, "confirm_password")
    wrong = await _password_refused(ctx, principal, password_field(data, "current_password"))
    if wrong:
        return await _show(
            request, ctx, principal, status=400, errors={"password": {"current_password": wrong}}
        )
    if new != confirm:
        errors = {"password": {"confirm_password": "The two passwords are not the same."}}
        return await _show(request, ctx, principal, status=400, errors=errors)
    _, refusal = await attempt(
        ctx,
        lambda sv: sv.selfservice.change_password(principal.name, new, actor=ctx.actor),
        field="new_password",
    )
    if refusal is not None:
        return await _show(
            request, ctx, principal, status=refusal.status, errors={"password": refusal.errors}
        )
    # Every session of the account ended with the old password; this browser goes on with a new one.
    await start_session(ctx, principal)
    flash(request, "Your password is changed. Every other browser and device was signed out.")
    return redirect(path(request, "account") + "#password")


def _token_form(data: Any) -> tuple[dict[str, Any], dict[str, str], tuple[str, frozenset[Scope], int | None]]:
    """(values to show again, errors, (name, scopes, days)) of the new-token form."""
    name = text_field(data, "token_name", limit=200)
    scopes = [s for s in data.getlist("scopes") if isinstance(s, str)]
    expires = text_field(data, "expires", limit=8) or DEFAULT_EXPIRY
    values = {"token_name": name, "scopes": scopes, "expires": expires}
    errors: dict[str, str] = {}
    if not name:
        errors["token_name"] = "Give the token a name, such as the machine or job that will use it."
    elif len(name) > 100:
        errors["token_name"] = "Use at most 100 characters."
    known = {s.value for s in Scope}
    if not scopes or not set(scopes) <= known:
        errors["scopes"] = "Choose at least one scope."
    days: int | None = None
    if expires != "never":
        if not expires.isdigit() or not 1 <= int(expires) <= MAX_TOKEN_DAYS:
            errors["expires"] = "Choose when the token expires."
        else:
            days = int(expires)
    chosen = frozenset(Scope(s) for s in scopes if s in known)
    return values, errors, (name, chosen, days)


@page
async def create_token(request: Request, ctx: RequestContext) -> Response:
    data = await form(request)
    principal = await session_principal(ctx)
    values, errors, (name, scopes, days) = _token_form(data)
    if errors:
        return await _show(request, ctx, principal, status=400, errors={"token": errors}, values=values)

    def create(sv: Services) -> tuple[int, str]:
        sv.accounts.require(principal, Permission.ACCOUNT_MANAGE)
        token, secret = sv.accounts.create_token(
            principal.name, name, expires_in_days=days, scopes=scopes, actor=ctx.actor
        )
        return token.id, secret

    created, refusal = await attempt(ctx, create, field="token_name")
    if refusal is not None or created is None:
        assert refusal is not None
        return await _show(
            request, ctx, principal, status=refusal.status, errors={"token": refusal.errors}, values=values
        )
    token_id, secret = created
    registry = Scope.PULL in scopes or Scope.PUSH in scopes
    shown = {
        "id": token_id,
        "name": name,
        "secret": secret,
        "login": podman_login(ctx.state.settings, principal.name, secret) if registry else None,
        "api_url": f"{ctx.state.settings.public_url}/api/v1/me",
    }
    # Shown in this answer only (no redirect: the secret must not wait in a cookie for the next page).
    return await _show(request, ctx, principal, status=201, created=shown)


@page
async def revoke_token(request: Request, ctx: RequestContext) -> Response:
    await form(request)
    principal = await session_principal(ctx)
    token_id = request.path_params["token_id"]

    def revoke(sv: Services) -> str:
        sv.accounts.require(principal, Permission.ACCOUNT_MANAGE)
        return sv.accounts.revoke_token(principal.name, token_id, actor=ctx.actor).name

    name = await ctx.call(revoke)
    message = f"Token “{name}” is revoked: it stopped working at once."
    if request.headers.get("hx-request") == "true":
        return render(request, "accounts/_gone_row.html", {"message": message, "columns": 6})
    flash(request, message)
    return redirect(path(request, "account") + "#tokens")


routes = [
    Route(ACCOUNT_PATH, account, methods=["GET"], name="account"),
    Route(ACCOUNT_PATH + "/email", change_email, methods=["POST"], name="account_email"),
    Route(ACCOUNT_PATH + "/password", change_password, methods=["POST"], name="account_password"),
    Route(ACCOUNT_PATH + "/tokens", create_token, methods=["POST"], name="account_tokens"),
    Route(
        ACCOUNT_PATH + "/tokens/{token_id:int}/revoke",
        revoke_token,
        methods=["POST"],
        name="account_token_revoke",
    ),
]
