"""Who is calling (``web.identity.api_principal``), resolved once per request, tested through a minimal
app: one route that answers the principal it resolved, and a sign-in route that starts a browser session.

Each credential is checked the one way: Basic (a password, a personal access token or a robot secret),
``Bearer dyt_...`` (a personal access token with its scopes), the session cookie (a server-side row);
registry JWTs are for /v2 only. What the functional tests already cover over the real API
(tests/functional/test_accounts_api.py: /me with each credential, registry tokens refused;
test_security.py: sessions ending at logout, password change and sign-out-everywhere) is not repeated:
here are the cases between them, as one table, and the precedence and origin rules.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD, make_org, make_robot, make_user

from dockyard.accounts.models import AccessToken, User
from dockyard.accounts.services import AccountService
from dockyard.authz import Scope
from dockyard.config import Settings
from dockyard.web.context import AppState, RequestContext, endpoint
from dockyard.web.errors import api_error_response
from dockyard.web.identity import api_principal, login, start_session
from dockyard.web.pages import session_middleware

BASE = "http://127.0.0.1:5999"


def make_app(state: AppState, settings: Settings) -> Starlette:
    @endpoint(api_error_response)
    async def who(request: Request, ctx: RequestContext) -> Response:
        scope = request.query_params.get("scope")
        p = await api_principal(ctx, Scope(scope) if scope else None)
        assert ctx.principal is p  # resolved once, kept on the request's context
        body = {"kind": p.kind, "name": p.name, "via": p.via, "scopes": sorted(p.scopes)}
        return JSONResponse(body)

    @endpoint(api_error_response)
    async def sign_in(request: Request, ctx: RequestContext) -> Response:
        form = await request.json()
        await start_session(ctx, await login(ctx, form["username"], form["password"]))
        return Response(status_code=204)

    app = Starlette(
        routes=[Route("/who", who, methods=["GET", "POST"]), Route("/sign-in", sign_in, methods=["POST"])],
        middleware=[session_middleware(settings)],
    )
    app.state.dockyard = state
    return app


@dataclass
class World:
    user: str
    other: str  # another active user
    robot: tuple[str, str]
    tokens: dict[str, str]  # name -> secret: "all", "pull", "revoked", "expired", "inactive"
    jwt: str  # a registry token from the signer /token uses


@pytest.fixture
def world(app_state: AppState) -> World:
    with app_state.sessions.begin() as s:
        accounts = AccountService(s, app_state.bus)
        user = make_user(s).username
        other = make_user(s).username
        idle = make_user(s).username
        org = make_org(s, owner=user)
        robot = make_robot(s, org, "ci")
        tokens = {
            "all": accounts.create_token(user, "all", scopes=frozenset(Scope))[1],
            "pull": accounts.create_token(user, "pull", scopes=frozenset({Scope.PULL}))[1],
            "revoked": accounts.create_token(user, "revoked", scopes=frozenset(Scope))[1],
            "expired": accounts.create_token(user, "expired", scopes=frozenset(Scope))[1],
            "inactive": accounts.create_token(idle, "inactive", scopes=frozenset(Scope))[1],
        }
        past = dt.datetime(2020, 1, 1)
        s.execute(update(AccessToken).where(AccessToken.name == "revoked").values(revoked=True))
        s.execute(update(AccessToken).where(AccessToken.name == "expired").values(expires_at=past))
        s.execute(update(User).where(User.username == idle).values(is_active=False))
    access = [{"type": "repository", "name": f"{org}/app", "actions": ["pull"]}]
    return World(user, other, robot, tokens, app_state.signer.issue(user, access))


@pytest.fixture
def client(app_state: AppState, settings: Settings) -> Iterator[TestClient]:
    with TestClient(make_app(app_state, settings), base_url=BASE) as c:
        yield c


def basic(username: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


ALL = ["api", "pull", "push"]
# One row per credential: the headers it is sent with, and the answer of GET /who (any scope):
# (kind, via, scopes) for a principal, or (status, a part of the error message).
Credential = Callable[[World], dict[str, str]]
CASES: dict[str, tuple[Credential, tuple[Any, ...]]] = {
    "nothing": (lambda w: {}, (401, "authentication required")),
    "password": (lambda w: basic(w.user, PASSWORD), ("user", "password", ALL)),
    "wrong password": (lambda w: basic(w.user, "not-the-password"), (401, "invalid username or password")),
    "malformed basic": (lambda w: {"Authorization": "Basic %%%"}, (401, "malformed Basic credentials")),
    "token as password": (lambda w: basic(w.user, w.tokens["pull"]), ("user", "token", ["pull"])),
    "token given as another user's": (lambda w: basic(w.other, w.tokens["all"]), (401, "invalid username")),
    "robot secret": (lambda w: basic(*w.robot), ("robot", "robot", ["pull", "push"])),
    "bearer token": (lambda w: bearer(w.tokens["all"]), ("user", "token", ALL)),
    "bearer pull-only token": (lambda w: bearer(w.tokens["pull"]), ("user", "token", ["pull"])),
    "bearer revoked token": (lambda w: bearer(w.tokens["revoked"]), (401, "revoked access token")),
    "bearer expired token": (lambda w: bearer(w.tokens["expired"]), (401, "expired")),
    "bearer token of a deactivated user": (lambda w: bearer(w.tokens["inactive"]), (401, "invalid")),
    "bearer token with a wrong secret": (
        lambda w: bearer(w.tokens["all"][:-4] + "AAAA"),
        (401, "invalid, expired or revoked"),
    ),
    "bearer registry jwt": (lambda w: bearer(w.jwt), (401, "registry tokens are for /v2 only")),
    "bearer robot secret": (lambda w: bearer(w.robot[1]), (401, "/v2 only")),
    "revoked token as password": (lambda w: basic(w.user, w.tokens["revoked"]), (401, "invalid")),
}


@pytest.mark.parametrize("case", CASES)
def test_each_credential_resolves_to_its_principal_or_is_refused(client: TestClient, world: World, case: str):
    headers, expected = CASES[case][0](world), CASES[case][1]
    r = client.get("/who", headers=headers)
    if isinstance(expected[0], int):
        status, message = expected
        assert r.status_code == status, r.text
        assert message in r.json()["error"]["message"]
        assert r.headers["www-authenticate"] == 'Basic realm="dockyard"'
    else:
        kind, via, scopes = expected
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["kind"], body["via"], body["scopes"]) == (kind, via, scopes)
        assert body["name"] == (world.robot[0] if kind == "robot" else world.user)


# Who may use a route that needs the ``api`` scope (the accounts API) or ``pull`` (the scan API).
SCOPED: dict[str, tuple[int, int]] = {
    #                          scope=api  scope=pull
    "password": (200, 200),
    "bearer token": (200, 200),
    "bearer pull-only token": (403, 200),
    "token as password": (403, 200),
    "robot secret": (403, 200),
}


@pytest.mark.parametrize("case", SCOPED)
def test_a_credential_is_used_only_within_its_scopes(client: TestClient, world: World, case: str) -> None:
    headers = CASES[case][0](world)
    for scope, status in zip(("api", "pull"), SCOPED[case], strict=True):
        r = client.get(f"/who?scope={scope}", headers=headers)
        assert r.status_code == status, r.text
        if status == 403:
            message = f"this credential lacks the '{scope}' scope"
            assert r.json()["error"] == {"code": "DENIED", "message": message}


def sign_in(client: TestClient, world: World) -> None:
    r = client.post("/sign-in", json={"username": world.user, "password": PASSWORD})
    assert r.status_code == 204, r.text


def test_a_session_cookie_is_a_principal(client: TestClient, world: World) -> None:
    assert client.get("/who").status_code == 401
    sign_in(client, world)
    body = client.get("/who?scope=api").json()
    assert (body["name"], body["via"], body["scopes"]) == (world.user, "session", ALL)


def test_a_session_ended_on_the_server_is_refused_and_the_cookie_cleared(
    client: TestClient, world: World, app_state: AppState
) -> None:
    sign_in(client, world)
    with app_state.sessions.begin() as s:
        AccountService(s, app_state.bus).sign_out_everywhere(world.user)
    r = client.get("/who")
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
    # The dead session's cookie is dropped (set to expire in 1970).
    assert "01 jan 1970" in r.headers.get("set-cookie", "").lower(), r.headers


def test_an_authorization_header_wins_over_the_session(client: TestClient, world: World) -> None:
    sign_in(client, world)
    assert client.get("/who", headers=bearer(world.tokens["pull"])).json()["via"] == "token"
    # A bad header is refused: no falling back to the session behind it.
    r = client.get("/who", headers=bearer(world.tokens["revoked"]))
    assert r.status_code == 401
    r = client.get("/who", headers=basic(world.user, "not-the-password"))
    assert r.status_code == 401
    assert client.get("/who").json()["via"] == "session"  # and the session itself still stands


@pytest.mark.parametrize(
    "origin,status",
    [
        (None, 200),  # no Origin nor Referer: not a cross-site browser request
        (BASE, 200),
        ("https://evil.example", 403),
        ("http://127.0.0.1:6000", 403),  # another port is another origin
    ],
)
def test_a_session_writes_only_from_its_own_site(
    client: TestClient, world: World, origin: str | None, status: int
) -> None:
    sign_in(client, world)
    headers = {"Origin": origin} if origin else {}
    r = client.post("/who", headers=headers)
    assert r.status_code == status, r.text
    if status == 403:
        assert r.json()["error"]["message"] == "cross-site request refused"
    referer = {"Referer": f"{origin}/ui/"} if origin else {}
    assert client.post("/who", headers=referer).status_code == status
    # Reads are not checked (a GET changes nothing), and credentials sent explicitly are no cookie.
    assert client.get("/who", headers=headers).status_code == 200
    assert client.post("/who", headers={**headers, **bearer(world.tokens["all"])}).status_code == 200
