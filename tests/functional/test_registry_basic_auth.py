"""Basic credentials straight on /v2 (``curl -u user:secret``), as Distribution with htpasswd and Harbor
take them: passwords, personal access tokens and robot secrets, granted what a token from /token would
carry, refused in the OCI format with the usual Bearer challenge, and throttled as /token is."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tests.support.factories import PASSWORD, make_org, make_robot, make_user
from tests.support.registry_client import (
    OCI_MANIFEST,
    RegistryClient,
    assert_oci_error,
    basic_auth,
    protocol_guard,
    request_token,
    sha256,
)

from dockyard.accounts.throttle import DEFAULT_LIMITS
from dockyard.audit.models import AuditEvent

PUBLIC_URL = "http://127.0.0.1:5999"
CHALLENGE = f'Bearer realm="{PUBLIC_URL}/token",service="dockyard"'


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


@pytest.fixture
def acme(client, app_state):
    """Organisation acme-N: an owner, a reader, an outsider, a reader and a maintainer robot, one image."""
    with app_state.sessions.begin() as s:
        owner, reader, outsider = (make_user(s).username for _ in range(3))
        org = make_org(s, owner=owner, members={reader: "reader"})
        bot_reader = make_robot(s, org, "pull", role="reader")
        bot_maintainer = make_robot(s, org, "push", role="maintainer")
    repo = f"{org}/app"
    digest = RegistryClient(client, owner, PASSWORD).push_image(repo, "v1", [b"layer-bytes"])
    return {
        "org": org,
        "repo": repo,
        "digest": digest,
        "owner": (owner, PASSWORD),
        "reader": (reader, PASSWORD),
        "outsider": (outsider, PASSWORD),
        "bot_reader": bot_reader,
        "bot_maintainer": bot_maintainer,
    }


def audit(app_state, tag: str) -> list[AuditEvent]:
    with app_state.sessions() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.id)))


def test_base_accepts_basic_and_still_advertises_bearer(client, acme):
    for path in ("/v2/", "/v2"):
        r = client.get(path, auth=acme["owner"])
        assert r.status_code == 200, r.text
        assert r.json() == {}
        assert r.headers["docker-distribution-api-version"] == "registry/2.0"
        assert client.head(path, auth=acme["reader"]).status_code == 200
        # Without credentials the challenge is Bearer, as before: clients that follow it are unchanged.
        assert client.get(path).headers["www-authenticate"] == CHALLENGE


def test_a_whole_push_and_pull_with_basic_credentials(client, acme, app_state):
    """Every /v2 endpoint, with a password on each request and no token anywhere."""
    user, password = acme["owner"]
    reg = RegistryClient(client, user, password, basic=True)
    repo = f"{acme['org']}/basic"
    digest = reg.push_image(repo, "v1", [b"basic layer one", b"basic layer two"])
    auth = basic_auth(user, password)
    r = client.get(f"/v2/{repo}/manifests/v1", headers={**auth, "Accept": OCI_MANIFEST})
    assert r.status_code == 200 and r.headers["docker-content-digest"] == digest
    assert client.head(f"/v2/{repo}/manifests/{digest}", headers=auth).status_code == 200
    layer = sha256(b"basic layer one")
    r = client.get(f"/v2/{repo}/blobs/{layer}", headers=auth)
    assert r.status_code == 200 and r.content == b"basic layer one"
    assert client.get(f"/v2/{repo}/tags/list", headers=auth).json() == {"name": repo, "tags": ["v1"]}
    r = client.get(f"/v2/{repo}/referrers/{digest}", headers=auth)
    assert r.status_code == 200 and r.json()["manifests"] == []
    # A chunked upload: start, PATCH, GET its status, PUT to finish; a mount from the other repository.
    r = client.post(f"/v2/{repo}/blobs/uploads/", headers=auth)
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    assert client.patch(location, content=b"chunk", headers=auth).status_code == 202
    assert client.get(location, headers=auth).status_code == 204
    r = client.put(f"{location}?digest={sha256(b'chunk')}", headers=auth)
    assert r.status_code == 201, r.text
    r = client.post(
        f"/v2/{repo}/blobs/uploads/?mount={sha256(b'layer-bytes')}&from={acme['repo']}", headers=auth
    )
    assert r.status_code == 201, r.text
    r = client.post(f"/v2/{repo}/blobs/uploads/", headers=auth)
    assert client.delete(r.headers["location"], headers=auth).status_code == 204
    assert client.delete(f"/v2/{repo}/blobs/{sha256(b'chunk')}", headers=auth).status_code == 202
    assert client.delete(f"/v2/{repo}/manifests/{digest}", headers=auth).status_code == 202
    # Each request was a login, recorded as /token records one.
    logins = [e for e in audit(app_state, "user:login") if e.actor_name == user]
    assert len(logins) >= 15


def test_readers_and_reader_robots_pull_but_cannot_push(client, acme):
    repo = acme["repo"]
    for who in ("reader", "bot_reader"):
        auth = basic_auth(*acme[who])
        assert client.get(f"/v2/{repo}/tags/list", headers=auth).json()["tags"] == ["v1"]
        # Refused exactly as a bearer token for this scope would be: 401, insufficient_scope.
        r = client.post(f"/v2/{repo}/blobs/uploads/", headers=auth)
        assert_oci_error(r, 401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"] == (
            f'{CHALLENGE},scope="repository:{repo}:pull,push",error="insufficient_scope"'
        )
        r = client.delete(f"/v2/{repo}/manifests/{acme['digest']}", headers=auth)
        assert_oci_error(r, 401, "UNAUTHORIZED")


def test_a_maintainer_robot_pushes_with_org_plus_name(client, acme, app_state):
    robot, secret = acme["bot_maintainer"]
    reg = RegistryClient(client, robot, secret, basic=True)
    reg.push_image(acme["repo"], "from-robot", [b"robot layer"])
    pushes = [e for e in audit(app_state, "manifest:push") if e.actor_name == robot]
    assert [(e.actor_kind, e.namespace) for e in pushes] == [("robot", acme["org"])]
    # A robot has no business outside its organisation.
    with app_state.sessions.begin() as s:
        other = make_org(s, owner=acme["owner"][0])
    r = client.get(f"/v2/{other}/app/tags/list", headers=basic_auth(robot, secret))
    assert_oci_error(r, 401, "UNAUTHORIZED")


def test_outsiders_get_the_same_answer_for_private_and_missing_repositories(client, acme):
    auth = basic_auth(*acme["outsider"])
    private = client.get(f"/v2/{acme['repo']}/tags/list", headers=auth)
    missing = client.get(f"/v2/{acme['org']}/missing/tags/list", headers=auth)
    assert_oci_error(private, 401, "UNAUTHORIZED")
    assert (missing.status_code, missing.json()) == (private.status_code, private.json())
    scope = private.headers["www-authenticate"].replace(acme["repo"], "NAME")
    assert scope == missing.headers["www-authenticate"].replace(f"{acme['org']}/missing", "NAME")


def test_the_catalog_is_for_administrators(client, acme, app_state):
    with app_state.sessions.begin() as s:
        admin = make_user(s, admin=True).username
    r = client.get("/v2/_catalog", auth=(admin, PASSWORD))
    assert r.status_code == 200 and acme["repo"] in r.json()["repositories"]
    r = client.get("/v2/_catalog", auth=acme["owner"])
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_access_tokens_keep_their_scopes(client, acme):
    user = acme["owner"][0]
    repo = acme["repo"]
    secrets = {}
    for scopes in (["pull"], ["pull", "push"], ["api"]):
        r = client.post(
            "/api/v1/tokens", json={"name": "-".join(scopes), "scopes": scopes}, auth=acme["owner"]
        )
        assert r.status_code == 201, r.text
        secrets[",".join(scopes)] = r.json()["token"]
    pull_only = basic_auth(user, secrets["pull"])
    assert client.get(f"/v2/{repo}/tags/list", headers=pull_only).status_code == 200
    assert_oci_error(client.post(f"/v2/{repo}/blobs/uploads/", headers=pull_only), 401, "UNAUTHORIZED")
    push = basic_auth(user, secrets["pull,push"])
    assert client.post(f"/v2/{repo}/blobs/uploads/", headers=push).status_code == 202
    # An API-only token opens no repository at all (its login is right: /v2/ itself answers).
    api_only = basic_auth(user, secrets["api"])
    assert client.get("/v2/", headers=api_only).status_code == 200
    assert_oci_error(client.get(f"/v2/{repo}/tags/list", headers=api_only), 401, "UNAUTHORIZED")
    # A token is checked as the user's: another name with it is no login.
    r = client.get(f"/v2/{repo}/tags/list", headers=basic_auth(acme["reader"][0], secrets["pull"]))
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert 'error="insufficient_scope"' not in r.headers["www-authenticate"]


@pytest.mark.parametrize(
    "username,secret",
    [("owner", "wrong password"), ("nobody-here", "wrong password"), ("owner", "dyt_0000_wrong")],
)
def test_wrong_credentials_are_401_with_the_bearer_challenge(client, acme, app_state, username, secret):
    name = acme["owner"][0] if username == "owner" else username
    repo = acme["repo"]
    r = client.get(f"/v2/{repo}/tags/list", headers=basic_auth(name, secret))
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == f'{CHALLENGE},scope="repository:{repo}:pull"'
    r = client.get("/v2/", headers=basic_auth(name, secret))
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == CHALLENGE
    assert client.head(f"/v2/{repo}/manifests/v1", headers=basic_auth(name, secret)).status_code == 401
    failed = [e for e in audit(app_state, "user:login_failed") if e.actor_name == name]
    assert len(failed) == 3


def test_a_robot_name_with_a_wrong_secret_is_401(client, acme):
    robot, _ = acme["bot_reader"]
    r = client.get(f"/v2/{acme['repo']}/tags/list", headers=basic_auth(robot, "wrong"))
    assert_oci_error(r, 401, "UNAUTHORIZED")


def test_malformed_basic_credentials_are_401(client, acme):
    r = client.get(f"/v2/{acme['repo']}/tags/list", headers={"Authorization": "Basic !!!not-base64"})
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"].startswith("Bearer realm=")


def test_an_inactive_user_is_refused(client, acme, app_state):
    from dockyard.accounts.models import User

    user = acme["reader"][0]
    with app_state.sessions.begin() as s:
        s.scalar(select(User).where(User.username == user)).is_active = False
    assert_oci_error(client.get(f"/v2/{acme['repo']}/tags/list", auth=acme["reader"]), 401, "UNAUTHORIZED")


# -- the login throttle, shared with /token ---------------------------------------------------------------
def test_wrong_passwords_on_v2_are_throttled_and_the_right_one_waits_too(client, acme):
    user, password = acme["reader"]
    url = f"/v2/{acme['repo']}/tags/list"
    for _ in range(DEFAULT_LIMITS.per_account_and_address):
        assert_oci_error(client.get(url, auth=(user, "wrong password")), 401, "UNAUTHORIZED")
    r = client.get(url, auth=(user, "wrong password"))
    assert_oci_error(r, 429, "TOOMANYREQUESTS")
    assert 1 <= int(r.headers["retry-after"]) <= 15 * 60
    assert_oci_error(client.get(url, auth=(user, password)), 429, "TOOMANYREQUESTS")
    # One count for both doors: /token refuses too.
    assert_oci_error(request_token(client, [], user, password), 429, "TOOMANYREQUESTS")
    assert client.head(f"/v2/{acme['repo']}/manifests/v1", auth=(user, password)).status_code == 429


def test_v2_and_token_failures_add_up(client, acme):
    user, password = acme["reader"]
    half = DEFAULT_LIMITS.per_account_and_address // 2
    for _ in range(half):
        assert request_token(client, [], user, "wrong password").status_code == 401
    url = f"/v2/{acme['repo']}/tags/list"
    for _ in range(DEFAULT_LIMITS.per_account_and_address - half):
        assert client.get(url, auth=(user, "wrong password")).status_code == 401
    assert_oci_error(client.get(url, auth=(user, password)), 429, "TOOMANYREQUESTS")


def test_a_right_password_forgets_the_failures_from_its_address(client, acme):
    user, password = acme["reader"]
    url = f"/v2/{acme['repo']}/tags/list"
    for _ in range(3):
        for _ in range(DEFAULT_LIMITS.per_account_and_address - 1):
            assert client.get(url, auth=(user, "wrong password")).status_code == 401
        assert client.get(url, auth=(user, password)).status_code == 200


def test_tokens_and_robots_on_v2_are_not_throttled(client, acme):
    user = acme["owner"][0]
    for _ in range(DEFAULT_LIMITS.per_account):
        client.get("/v2/", auth=(user, "guess"))
    assert client.get("/v2/", auth=acme["owner"]).status_code == 429
    secret = client.post("/api/v1/tokens", json={"name": "ci"}, auth=acme["reader"]).json()["token"]
    for _ in range(DEFAULT_LIMITS.per_address + 1):
        assert client.get("/v2/", auth=(user, "dyt_0000_wrong")).status_code == 401
    assert client.get(f"/v2/{acme['repo']}/tags/list", auth=(acme["reader"][0], secret)).status_code == 200
    assert client.get(f"/v2/{acme['repo']}/tags/list", auth=acme["bot_reader"]).status_code == 200
