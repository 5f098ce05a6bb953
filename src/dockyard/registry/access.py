"""Who is calling /v2 and what they may do there.

Two credentials are accepted:
- ``Authorization: Bearer <jwt>``, a registry token from /token: its signature is checked here, without the
  database (the fast path every docker, podman and skopeo request takes);
- ``Authorization: Basic``: a password, a personal access token or a robot secret (``org+name``), as
  Distribution with htpasswd and Harbor accept them. Each such request is a login, exactly as /token does it
  (throttled, recorded, a recently verified password confirmed without argon2), and is granted what a token
  from /token for this request's scopes would carry, by the same ``grant``.

Either way the view then checks ``ctx.claims`` alone, so both credentials get the same answers, refusals
included. The advertised challenge stays ``Bearer``: clients that follow it behave as before.
"""

from __future__ import annotations

from dockyard.errors import LoginFailed, Unauthenticated
from dockyard.registry.auth import (
    Scope,
    bearer_challenge,
    granted_actions,
    principal_claims,
    principal_from_claims,
)
from dockyard.registry.services import grant
from dockyard.web.context import RequestContext
from dockyard.web.identity import basic_credentials, login

CATALOG = ("registry", "catalog", "*")


class AuthChallenge(Unauthenticated):
    def __init__(self, message: str, headers: dict[str, str]) -> None:
        super().__init__(message, code="UNAUTHORIZED")
        self.headers = headers


def challenge_actions(action: str) -> str:
    """The actions a challenge (and so a token request) names for ``action``: a push needs pull too."""
    return "pull,push" if action == "push" else action


async def authenticate(ctx: RequestContext, *wanted: tuple[str, str, str]) -> None:
    """Read and verify the credentials, if any; anonymous otherwise. ``wanted``: the (type, name, actions)
    this request needs, which a Basic caller is granted as far as a token would allow."""
    header = ctx.request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        claims = ctx.state.signer.verify(header[7:].strip())
        ctx.claims = claims
        ctx.principal = principal_from_claims(claims)
    elif header[:6].lower() == "basic ":
        await _basic(ctx, wanted)


async def _basic(ctx: RequestContext, wanted: tuple[tuple[str, str, str], ...]) -> None:
    username, secret = basic_credentials(ctx.request)
    try:
        # Recorded apart: the view's own transaction may be a read (a pull), which must not start writing.
        principal = await login(ctx, username, secret, record_apart=True)
    except LoginFailed as exc:
        # The challenge an anonymous request gets: wrong credentials are no reason to stop following it.
        scope = ":".join(wanted[0]) if wanted else None
        exc.headers = {"WWW-Authenticate": bearer_challenge(ctx.state.settings, scope)}
        raise
    scopes = [Scope(type_, name, frozenset(actions.split(","))) for type_, name, actions in wanted]
    access = await ctx.read(lambda s: grant(ctx.state.services(s).registry, principal, scopes))
    ctx.principal = principal
    ctx.claims = {"sub": principal.name, "access": access, **principal_claims(principal)}


async def authorize(ctx: RequestContext, name: str, action: str, *, pull_from: str | None = None) -> None:
    """Authenticate, then 401 with a challenge naming the scope unless ``action`` on repository ``name``
    is granted. ``pull_from``: a repository a blob may be mounted from (its pull is checked with ``can``)."""
    wanted = [("repository", name, challenge_actions(action))]
    if pull_from:
        wanted.append(("repository", pull_from, "pull"))
    await authenticate(ctx, *wanted)
    require(ctx, name, action)


def require(ctx: RequestContext, name: str, action: str) -> None:
    """401 with a challenge naming the scope unless the credentials grant ``action`` on ``name``."""
    if ctx.claims is not None and action in granted_actions(ctx.claims, "repository", name):
        return
    scope = f"repository:{name}:{challenge_actions(action)}"
    error = "insufficient_scope" if ctx.claims is not None else None
    raise AuthChallenge(
        "authentication required",
        {"WWW-Authenticate": bearer_challenge(ctx.state.settings, scope, error)},
    )


def can(ctx: RequestContext, name: str, action: str) -> bool:
    return ctx.claims is not None and action in granted_actions(ctx.claims, "repository", name)
