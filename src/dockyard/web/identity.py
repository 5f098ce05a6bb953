"""Who is calling: the one login flow, and the principal of an API request or a page.

Every credential has one place where it is checked:
- a password, a personal access token or a robot secret given as a password (Basic, the /token form, the
  login page) goes through ``login``: throttled, verified outside the write lock, recorded;
- ``Authorization: Bearer dyt_...`` is a personal access token, with the scopes it was made with;
- registry tokens from /token are for /v2 only: a leaked five-minute pull token must not become an API
  identity that can mint permanent credentials;
- browser sessions are server-side rows (``BrowserSession``); the signed cookie holds only their secret.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session
from starlette.requests import Request

from dockyard.accounts.authentication import is_throttled_kind
from dockyard.accounts.services import TOKEN_PREFIX, AccountService
from dockyard.accounts.throttle import LoginThrottle
from dockyard.authz import Principal, Scope, require_scope
from dockyard.errors import Forbidden, LoginFailed, Unauthenticated
from dockyard.web.context import RequestContext

SESSION_KEY = "sid"


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """(username, secret) of ``Authorization: Basic``, None without one."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        username, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unauthenticated("malformed Basic credentials") from exc
    return username, password


def _accounts(ctx: RequestContext, session: Session) -> AccountService:
    return AccountService(session, ctx.state.bus, ctx.state.verified_passwords)


async def login(ctx: RequestContext, username: str, secret: str, *, record_apart: bool = False) -> Principal:
    """Check credentials the one way: a password attempt is counted (or refused, when throttled) and
    committed before any hashing, verified in a read transaction of its own (argon2 never holds SQLite's
    write lock), then recorded either way (a success forgets the count). A password this process verified
    moments ago is confirmed against the user row instead (no argon2), once the throttle lets it through.

    ``record_apart``: record the login in a write transaction of its own rather than the request's (/v2,
    whose reads run in read transactions that must not turn into writes)."""
    if "\x00" in username or "\x00" in secret:
        # No account name or secret holds a NUL, and PostgreSQL cannot store or compare text holding one:
        # refused as wrong credentials are, before any database work (it was a 500 there).
        raise LoginFailed("invalid username or password")
    ip = ctx.actor.ip
    found: Principal | None = None
    reservation = None
    if is_throttled_kind(username, secret):
        if ctx.state.verified_passwords.recall(username, secret) is not None:  # no hop for the others
            found = await ctx.read(lambda s: _accounts(ctx, s).recall_password(username, secret, ip))
        if found is None:
            reservation = await ctx.write_apart(lambda s: _accounts(ctx, s).reserve_attempt(username, ip))
    if found is None:
        found = await ctx.read(lambda s: _accounts(ctx, s).verify_credentials(username, secret))
        if reservation is not None:
            # Settled in a transaction of its own too: the request's may still roll back (a later 4xx).
            ok = found is not None
            await ctx.write_apart(lambda s: LoginThrottle(s).finish(reservation, username, ip, ok=ok))
    if not record_apart:
        return await ctx.run(ctx.accounts().record_login, username, found, actor=ctx.actor)
    actor = ctx.actor
    refused: list[LoginFailed] = []

    def record(session: Session) -> Principal | None:
        try:
            return _accounts(ctx, session).record_login(username, found, actor=actor)
        except LoginFailed as exc:  # returned, not raised: the failed login's audit row is committed
            refused.append(exc)
            return None

    principal = await ctx.write_apart(record)
    if principal is None:
        raise refused[0]
    return principal


async def confirm_password(ctx: RequestContext, principal: Principal, password: str) -> None:
    """Check a signed-in user's password again before a change that needs it (a new password or email
    address): throttled and recorded like a login, so a stolen session cannot guess it at speed.
    LoginFailed (its audit row kept) when wrong; TooManyRequests past the throttle's limits."""
    ip, username = ctx.actor.ip, principal.name
    reservation = await ctx.write_apart(lambda s: _accounts(ctx, s).reserve_attempt(username, ip))
    found = await ctx.read(lambda s: _accounts(ctx, s).verify_credentials(username, password))
    # Only the password itself: an access token typed into the field proves nothing here.
    ok = found is not None and found.via == "password" and found.user_id == principal.user_id
    await ctx.write_apart(lambda s: LoginThrottle(s).finish(reservation, username, ip, ok=ok))
    if not ok:
        await ctx.run(ctx.accounts().record_login, username, None, actor=ctx.actor)  # raises LoginFailed


async def api_principal(ctx: RequestContext, scope: Scope | None = None) -> Principal:
    """The caller of an /api/v1 request, which must hold ``scope`` (None: any authenticated caller)."""
    request = ctx.request
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        value = header[7:].strip()
        if not value.startswith(TOKEN_PREFIX):
            raise Unauthenticated(
                "registry tokens are for /v2 only: use a personal access token, a robot secret or a session"
            )
        principal = await ctx.read(lambda s: _accounts(ctx, s).token_principal(value))
        if principal is None:
            raise Unauthenticated("invalid, expired or revoked access token")
    elif (credentials := basic_credentials(request)) is not None:
        principal = await login(ctx, *credentials)
    elif request.session.get(SESSION_KEY):
        if request.method not in ("GET", "HEAD"):
            check_origin(request)
        principal = await session_principal(ctx)
    else:
        raise Unauthenticated("authentication required")
    ctx.principal = principal
    if scope is not None:
        require_scope(principal, scope)
    return principal


async def session_principal(ctx: RequestContext) -> Principal:
    """The signed-in user of this browser (Unauthenticated once the session has ended anywhere)."""
    secret = str(ctx.request.session.get(SESSION_KEY) or "")
    if not secret:
        raise Unauthenticated("login required")
    try:
        principal = await ctx.read(lambda s: _accounts(ctx, s).session_principal(secret))
    except Unauthenticated:
        ctx.request.session.clear()
        raise
    ctx.principal = ctx.request.state.principal = principal
    return principal


async def optional_session_principal(ctx: RequestContext) -> Principal:
    """The signed-in user of this browser, or the anonymous principal (pages anyone may see)."""
    if not ctx.request.session.get(SESSION_KEY):
        return ctx.principal
    try:
        return await session_principal(ctx)
    except Unauthenticated:
        return ctx.principal


async def start_session(ctx: RequestContext, principal: Principal) -> None:
    secret = await ctx.run(ctx.accounts().start_session, principal, actor=ctx.actor)
    ctx.request.session.clear()
    ctx.request.session[SESSION_KEY] = secret


async def end_session(ctx: RequestContext) -> None:
    secret = str(ctx.request.session.get(SESSION_KEY) or "")
    ctx.request.session.clear()
    if secret:
        await ctx.run(ctx.accounts().end_session, secret)


def check_origin(request: Request) -> None:
    """Refuse cross-site writes: the Origin (or Referer) must be this site when the browser sends one."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if not sent:
        return
    parts = urlsplit(sent)
    origin = f"{parts.scheme}://{parts.netloc}"
    own = {f"{request.url.scheme}://{request.url.netloc}"}
    public: Any = request.app.state.dockyard.settings.public_url
    if public:
        p = urlsplit(public)
        own.add(f"{p.scheme}://{p.netloc}")
    if origin not in own:
        raise Forbidden("cross-site request refused")
