"""The attacks of the security review (issue 7), each replayed over HTTP: credentials that must end when
revoked, registry tokens that are no API identity, the login throttle, browser sessions that end on the
server, security headers, and bad input that must be a 4xx in the protocol's own format, never a 5xx."""

from __future__ import annotations

import json
import threading
import time

import jwt
import pytest
from tests.support.factories import PASSWORD, make_org, make_robot, make_user
from tests.support.pages import sign_in, with_csrf
from tests.support.registry_client import (
    OCI_MANIFEST,
    RegistryClient,
    assert_api_error,
    assert_oci_error,
    bearer,
    protocol_guard,
    request_token,
)
from tests.support.store_world import published_world

from dockyard.accounts import passwords
from dockyard.accounts.services import AccountService
from dockyard.accounts.throttle import DEFAULT_LIMITS
from dockyard.db import MAX_ID
from dockyard.errors import TooManyRequests


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


@pytest.fixture
def alice(app_state) -> tuple[str, str]:
    with app_state.sessions.begin() as s:
        user = make_user(s).username
        make_org(s, name=f"{user}-org", owner=user)
    return user, PASSWORD


def refresh_token_for(client, username: str, secret: str) -> str:
    r = client.post(
        "/token",
        data={"grant_type": "password", "username": username, "password": secret, "service": "dockyard"},
    )
    assert r.status_code == 200, r.text
    return r.json()["refresh_token"]


def refresh(client, token: str, scope: str = ""):
    data = {"grant_type": "refresh_token", "refresh_token": token, "service": "dockyard"}
    if scope:
        data["scope"] = scope
    return client.post("/token", data=data)


# -- 2. refresh tokens end with the credential that minted them --------------------------------------------
def test_a_refresh_token_dies_with_the_access_token_it_came_from(client, alice, app_state):
    user = alice[0]
    repo = f"{user}-org/app"
    created = client.post("/api/v1/tokens", json={"name": "ci"}, auth=alice).json()
    refresh_token = refresh_token_for(client, user, created["token"])
    assert refresh(client, refresh_token, f"repository:{repo}:pull,push").status_code == 200
    assert client.delete(f"/api/v1/tokens/{created['id']}", auth=alice).status_code == 204
    # The attack: the old refresh token still got a push token, which then minted a new access token.
    r = refresh(client, refresh_token, f"repository:{repo}:pull,push")
    assert_oci_error(r, 401, "UNAUTHORIZED")


def test_a_refresh_token_dies_with_a_password_change_and_sign_out_everywhere(client, alice, app_state):
    user, password = alice
    refresh_token = refresh_token_for(client, user, password)
    assert refresh(client, refresh_token).status_code == 200
    # `dockyard user passwd` calls this service method (tests/functional/test_security_live.py runs the CLI).
    with app_state.sessions.begin() as s:
        AccountService(s, app_state.bus).set_password(user, "new-password-2")
    assert_oci_error(refresh(client, refresh_token), 401, "UNAUTHORIZED")
    fresh = refresh_token_for(client, user, "new-password-2")
    r = client.post("/api/v1/me/sign-out-everywhere", auth=(user, "new-password-2"))
    assert r.status_code == 204
    assert_oci_error(refresh(client, fresh), 401, "UNAUTHORIZED")


# -- 3. a registry token is not an API identity (more in test_accounts_api) -----------------------------
def test_a_pull_token_cannot_mint_an_access_token(client, alice):
    token = request_token(client, [], *alice).json()["token"]
    assert_api_error(client.post("/api/v1/tokens", json={"name": "x"}, headers=bearer(token)), 401)


# -- 4. login throttle ---------------------------------------------------------------------------------
def test_wrong_passwords_on_token_are_throttled_and_the_right_one_waits_too(client, alice):
    user, password = alice
    for _ in range(DEFAULT_LIMITS.per_account_and_address):
        assert_oci_error(request_token(client, [], user, "wrong password"), 401, "UNAUTHORIZED")
    r = request_token(client, [], user, "wrong password")
    assert_oci_error(r, 429, "TOOMANYREQUESTS")
    assert 1 <= int(r.headers["retry-after"]) <= 15 * 60
    r = request_token(client, [], user, password)
    assert_oci_error(r, 429, "TOOMANYREQUESTS")
    # Basic credentials on the API count against the same limit, in the API's own format.
    r = client.get("/api/v1/me", auth=alice)
    assert_api_error(r, 429, "TOOMANYREQUESTS")
    assert "retry-after" in r.headers


def test_unknown_and_known_names_are_throttled_alike(client, alice):
    for name in (alice[0], "nobody-here"):
        statuses = [request_token(client, [], name, "wrong password").status_code for _ in range(6)]
        assert statuses == [401] * 5 + [429], name


def test_one_address_guessing_many_accounts_is_throttled(client, alice):
    statuses = [
        request_token(client, [], f"guess-{i}", "wrong password").status_code
        for i in range(DEFAULT_LIMITS.per_address + 1)
    ]
    assert statuses[:-1] == [401] * DEFAULT_LIMITS.per_address
    assert statuses[-1] == 429
    # Every account is refused from this address now, even with its right password.
    assert request_token(client, [], *alice).status_code == 429


def test_the_login_page_is_throttled(client, alice):
    user, password = alice
    for _ in range(DEFAULT_LIMITS.per_account_and_address):
        r = sign_in(client, user, "nope")
        assert r.status_code == 401
    r = sign_in(client, user, password)
    assert r.status_code == 429
    assert "Too many failed attempts" in r.text
    assert int(r.headers["retry-after"]) >= 1


def test_password_hashing_is_bounded_in_concurrency(monkeypatch):
    monkeypatch.setattr(passwords, "_slots", threading.BoundedSemaphore(1))
    monkeypatch.setattr(passwords, "HASH_WAIT", 0.2)
    stored = passwords.hash_password("some password")
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with passwords._slots:
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    try:
        started = time.monotonic()
        with pytest.raises(TooManyRequests):
            passwords.verify_password(stored, "some password")
        assert time.monotonic() - started < 2
    finally:
        release.set()
        holder.join()
    assert passwords.verify_password(stored, "some password")


# -- 6. browser sessions end on the server; security headers ------------------------------------------
def login_cookie(client, username: str, password: str) -> str:
    r = sign_in(client, username, password)
    assert r.status_code == 303, r.text
    return client.cookies["dockyard_session"]


def page_with(client, cookie: str):
    client.cookies.clear()
    client.cookies.set("dockyard_session", cookie)
    return client.get("/ui/", follow_redirects=False)


def test_a_copied_session_cookie_dies_at_logout(client, alice):
    cookie = login_cookie(client, *alice)
    assert page_with(client, cookie).status_code == 200
    client.cookies.set("dockyard_session", cookie)
    assert client.post("/ui/logout", data=with_csrf(client), follow_redirects=False).status_code == 303
    r = page_with(client, cookie)
    assert (r.status_code, r.headers["location"]) == (303, "/ui/login?next=/ui/")


def test_a_copied_session_cookie_dies_with_a_password_change(client, alice, app_state):
    cookie = login_cookie(client, *alice)
    assert page_with(client, cookie).status_code == 200
    with app_state.sessions.begin() as s:
        AccountService(s, app_state.bus).set_password(alice[0], "new-password-3")
    assert page_with(client, cookie).status_code == 303


def test_sign_out_everywhere_from_the_page(client, alice):
    first = login_cookie(client, *alice)
    client.cookies.clear()
    second = login_cookie(client, *alice)
    r = client.post("/ui/sign-out-everywhere", data=with_csrf(client), follow_redirects=False)
    assert r.status_code == 303
    assert page_with(client, first).status_code == 303
    assert page_with(client, second).status_code == 303


def test_a_token_is_no_password_for_the_pages(client, alice):
    secret = client.post("/api/v1/tokens", json={"name": "t"}, auth=alice).json()["token"]
    r = sign_in(client, alice[0], secret)
    assert r.status_code == 401


@pytest.mark.parametrize("path", ["/ui/login", "/api/v1/me", "/static/dockyard.css"])
def test_security_headers(client, path):
    r = client.get(path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "same-origin"
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_security_headers_on_the_store_pages(client, app_state, tmp_path):
    """The store's pages came after the headers: each of them, signed in or not, found or not, carries
    them too (a page that set a looser header of its own would win over the middleware's)."""
    world = published_world(app_state, tmp_path / "feed")
    product = f"/products/{world.org}/{world.slug}"
    pages = ["/", "/search?q=app", product, f"{product}/get?tier=Community", f"/publishers/{world.org}"]
    pages += ["/products/nobody/nothing", "/ui/subscriptions"]
    for signed_in in (False, True):
        if signed_in:
            assert sign_in(client, world.users["customer"], PASSWORD).status_code == 303
        for path in pages:
            r = client.get(path, follow_redirects=False)
            assert r.status_code in (200, 303, 404), (path, r.status_code)
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["x-frame-options"] == "DENY", path
            assert r.headers["referrer-policy"] == "same-origin", path
            csp = r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, path
        assert client.get(product).status_code == 200


def test_pages_carry_no_inline_script(client):
    r = client.get("/ui/login")
    assert "<script>" not in r.text and " on" + "submit=" not in r.text


# -- 7. bad input is a 4xx ----------------------------------------------------------------------------
def test_a_huge_finding_id_is_a_400_naming_the_field(client, alice):
    r = client.post(
        "/api/v1/findings/99999999999999999999999/reclassify", json={"severity": None}, auth=alice
    )
    error = assert_api_error(r, 400, "INVALID")
    assert error["detail"][0]["field"] == "path.finding_id"


def test_ids_beyond_what_the_database_holds_are_a_400(client, alice, app_state):
    """Integer ids are 32-bit on PostgreSQL: an id of 2**31 up to 2**63-1 was let through, and was a 500
    there (found by test_api_schema). The API's bound is now the database's."""
    with app_state.sessions.begin() as s:
        admin = (make_user(s, admin=True).username, PASSWORD)
    error = assert_api_error(client.delete(f"/api/v1/tokens/{MAX_ID + 1}", auth=alice), 400, "INVALID")
    assert error["detail"][0]["field"] == "path.token_id"
    assert_api_error(client.delete(f"/api/v1/tokens/{MAX_ID}", auth=alice), 404, "NOT_FOUND")
    body = {"severity": "Minor", "reason": "accepted risk"}
    r = client.post(f"/api/v1/findings/{MAX_ID + 1}/reclassify", json=body, auth=admin)
    assert assert_api_error(r, 400, "INVALID")["detail"][0]["field"] == "path.finding_id"
    r = client.post(f"/api/v1/findings/{MAX_ID}/reclassify", json=body, auth=admin)
    assert_api_error(r, 404, "NOT_FOUND")


def test_nul_characters_in_a_url_are_refused_in_every_protocol(client, alice, app_state):
    """PostgreSQL cannot compare text holding a NUL: one in a path or query parameter was a 500 there
    wherever it reached a query (an organisation or user name, a tags or catalog cursor, an artifactType
    filter). It is invalid input now, refused at the edge in the protocol's own format."""
    user, password = alice
    repo = f"{user}-org/app"
    registry = RegistryClient(client, user, password)
    digest = registry.push_image(repo, "v1")
    pulls = registry.headers(repo, "pull")
    with app_state.sessions.begin() as s:
        admin = (make_user(s, admin=True).username, PASSWORD)
    catalog = bearer(request_token(client, ["registry:catalog:*"], *admin).json()["token"])
    for url in (f"/api/v1/orgs/{user}-org%00/members", "/api/v1/staff/a%00b/finance"):
        r = client.request("GET" if "orgs" in url else "PUT", url, auth=admin)
        assert_api_error(r, 400, "NAME_INVALID")
    assert_api_error(client.get("/api/v1/tokens?limit=1&x=%00", auth=alice), 400, "NAME_INVALID")
    for url, headers in (
        (f"/v2/{repo}/tags/list?last=v%00", pulls),
        (f"/v2/{repo}/referrers/{digest}?artifactType=application/x%00", pulls),
        ("/v2/_catalog?last=a%00b", catalog),
    ):
        assert_oci_error(client.get(url, headers=headers), 400, "NAME_INVALID")
    r = client.get("/ui/login?next=/ui/%00")
    assert r.status_code == 400 and "text/html" in r.headers["content-type"]


@pytest.mark.parametrize("where", ["basic", "token form", "login page"])
def test_nul_characters_in_credentials_are_wrong_credentials(client, alice, where):
    """A NUL in a username or secret reached the login throttle's and audit's rows: a 500 on PostgreSQL."""
    user, password = alice
    for username, secret in ((f"{user}\x00", password), (user, password + "\x00"), ("a\x00b", "x")):
        if where == "basic":
            r = client.get("/api/v1/me", auth=(username, secret))
            assert_api_error(r, 401, "UNAUTHORIZED")
        elif where == "token form":
            form = {"grant_type": "password", "username": username, "password": secret, "service": "dockyard"}
            assert_oci_error(client.post("/token", data=form), 401, "UNAUTHORIZED")
        else:
            r = client.post("/ui/login", data=with_csrf(client, {"username": username, "password": secret}))
            assert r.status_code == 401 and "text/html" in r.headers["content-type"]
    assert client.get("/api/v1/me", auth=alice).status_code == 200


@pytest.mark.parametrize(
    "url,body",
    [
        ("/api/v1/tokens", {"name": "a\x00b"}),
        ("/api/v1/users", {"username": "nul-mail", "password": PASSWORD, "email": "a\x00@b"}),
        ("/api/v1/users", {"username": "nul-pass", "password": PASSWORD + "\x00"}),
    ],
)
def test_nul_characters_in_api_text_are_a_400(client, alice, app_state, url, body):
    """JSON's "\\u0000" in a free-text field was stored on SQLite and a 500 on PostgreSQL."""
    with app_state.sessions.begin() as s:
        admin = (make_user(s, admin=True).username, PASSWORD)
    error = assert_api_error(client.post(url, json=body, auth=admin), 400, "INVALID")
    assert error["detail"][0]["field"].startswith("body.")


def test_a_manifest_with_a_duplicate_key_is_refused(client, alice):
    user, password = alice
    repo = f"{user}-org/app"
    registry = RegistryClient(client, user, password)
    manifest = registry.image_manifest(repo, [b"layer"])
    unchecked = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + "0" * 64, "size": 1}
    ]
    # Two "layers" keys: a parser keeping the first would serve a list nobody checked.
    body = json.dumps(manifest)[:-1] + ', "layers": ' + json.dumps(unchecked) + "}"
    assert body.count('"layers"') == 2
    r = client.put(
        f"/v2/{repo}/manifests/dup",
        content=body,
        headers=registry.headers(repo, extra={"Content-Type": OCI_MANIFEST}),
    )
    error = assert_oci_error(r, 400, "MANIFEST_INVALID")
    assert "duplicate key" in json.dumps(error)


# -- 8. token limits ------------------------------------------------------------------------------------
def test_token_scope_count_and_size_are_capped(client, alice):
    scopes = [f"repository:{alice[0]}-org/r{i}:pull" for i in range(300)]
    r = client.get(
        "/token", params=[("service", "dockyard")] + [("scope", s) for s in scopes[:40]], auth=alice
    )
    assert_oci_error(r, 400, "DENIED")
    r = client.get("/token", params=[("service", "dockyard")] + [("scope", s) for s in scopes], auth=alice)
    assert r.status_code == 400
    assert len(client.get("/token", params={"scope": scopes[0]}, auth=alice).json()["token"]) < 2000


def test_a_jwt_without_expiry_is_refused(client, alice, app_state):
    signer = app_state.signer
    claims = {
        "iss": signer.issuer,
        "aud": signer.service,
        "sub": alice[0],
        "iat": int(time.time()),
        "access": [{"type": "repository", "name": f"{alice[0]}-org/app", "actions": ["pull", "push"]}],
    }
    token = jwt.encode(claims, signer.private_key, algorithm="ES256", headers={"kid": signer.kid})
    r = client.get(f"/v2/{alice[0]}-org/app/tags/list", headers=bearer(token))
    assert_oci_error(r, 401, "UNAUTHORIZED")
    for missing in ("iat", "aud", "iss"):
        incomplete = {**claims, "exp": int(time.time()) + 60}
        incomplete.pop(missing)
        token = jwt.encode(incomplete, signer.private_key, algorithm="ES256", headers={"kid": signer.kid})
        assert_oci_error(client.get("/v2/", headers=bearer(token)), 401, "UNAUTHORIZED")


def test_the_catalog_answers_only_get(client, app_state):
    for method in ("POST", "PUT", "DELETE"):
        assert_oci_error(client.request(method, "/v2/_catalog"), 405, "UNSUPPORTED")


def test_head_on_the_login_page_is_no_login_attempt(client, alice):
    for _ in range(DEFAULT_LIMITS.per_address + 1):
        assert client.head("/ui/login").status_code == 200
    assert request_token(client, [], *alice).status_code == 200


def test_a_locked_account_keeps_its_access_tokens_and_robots_working(client, alice, app_state):
    """Guessing a user's password from everywhere must not stop their CI: tokens and robots are not
    throttled (128+ random bits, nothing to guess), only passwords are."""
    user, password = alice
    secret = client.post("/api/v1/tokens", json={"name": "ci"}, auth=alice).json()["token"]
    with app_state.sessions.begin() as s:
        robot, robot_secret = make_robot(s, f"{user}-org", "ci", role="maintainer")
    for i in range(DEFAULT_LIMITS.per_account):
        request_token(client, [], user, f"guess-{i}")
    assert request_token(client, [], user, password).status_code == 429
    repo = f"{user}-org/app"
    r = request_token(client, [f"repository:{repo}:pull,push"], user, secret)
    assert r.status_code == 200, r.text
    assert request_token(client, [f"repository:{repo}:pull"], robot, robot_secret).status_code == 200
    # A wrong token is a plain 401, and counts towards nothing.
    for _ in range(DEFAULT_LIMITS.per_address + 1):
        assert request_token(client, [], user, "dyt_0000_wrong").status_code == 401


def test_no_password_may_look_like_an_access_token(client, app_state):
    with app_state.sessions.begin() as s:
        admin = make_user(s, admin=True).username
    body = {"username": "mimic", "password": "dyt_looks_like_a_token"}
    error = assert_api_error(client.post("/api/v1/users", json=body, auth=(admin, PASSWORD)), 400)
    assert "dyt_" in error["message"]


@pytest.mark.parametrize("field", ["artifactType", "config.mediaType", "layers.0.mediaType"])
def test_media_types_that_no_database_can_store_are_refused(client, alice, field):
    """A JSON "\\ud800" decodes to a lone surrogate: it was a 500 when stored; now a 400."""
    user, password = alice
    repo = f"{user}-org/app"
    registry = RegistryClient(client, user, password)
    manifest = registry.image_manifest(repo, [b"layer"])
    marker = "application/x-marker"
    if field == "artifactType":
        manifest["artifactType"] = marker
    elif field == "config.mediaType":
        manifest["config"]["mediaType"] = marker
    else:
        manifest["layers"][0]["mediaType"] = marker
    body = json.dumps(manifest).replace(marker, "\\ud800")
    r = client.put(
        f"/v2/{repo}/manifests/bad",
        content=body,
        headers=registry.headers(repo, extra={"Content-Type": OCI_MANIFEST}),
    )
    assert_oci_error(r, 400, "MANIFEST_INVALID")
