"""The Docker token endpoint (/token): Basic credentials, the OAuth2 form, scopes and their grants."""

from __future__ import annotations

import datetime as dt
import time

import jwt
import pytest
from sqlalchemy import select, update
from tests.support.factories import PASSWORD, make_org, make_robot, make_user
from tests.support.registry_client import (
    RegistryClient,
    access_of,
    assert_oci_error,
    bearer,
    decode_token,
    get_token,
    protocol_guard,
    request_token,
)

from dockyard.accounts.models import AccessToken, User
from dockyard.accounts.services import AccountService
from dockyard.audit.models import AuditEvent
from dockyard.events import EventBus
from dockyard.registry.auth import TokenSigner

PUBLIC_URL = "http://127.0.0.1:5999"


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


def audit_rows(app_state, tag: str) -> list[AuditEvent]:
    with app_state.sessions() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.id)))


def v2_status(client, token: str) -> int:
    return client.get("/v2/", headers=bearer(token)).status_code


# -- anonymous and password logins ------------------------------------------------------------------
def test_anonymous_token_has_no_access_to_a_private_repository(client, app_state):
    with app_state.sessions.begin() as s:
        owner = make_user(s).username
    RegistryClient(client, owner, PASSWORD).push_image(f"{owner}/app", "v1")

    r = request_token(client, f"repository:{owner}/app:pull")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    assert body["issued_at"].endswith("Z")
    dt.datetime.fromisoformat(body["issued_at"].replace("Z", "+00:00"))
    assert "refresh_token" not in body
    claims = decode_token(body["token"])
    assert claims["sub"] == "anonymous"
    assert claims["aud"] == "dockyard"
    assert claims["iss"] == PUBLIC_URL
    assert claims["exp"] - claims["iat"] == 300
    assert claims["access"] == [{"type": "repository", "name": f"{owner}/app", "actions": []}]
    assert jwt.get_unverified_header(body["token"])["alg"] == "ES256"
    assert jwt.get_unverified_header(body["token"])["kid"]
    # The anonymous token is a valid token: /v2/ answers 200 to it.
    assert v2_status(client, body["token"]) == 200
    # Only the owner's push logged in; an anonymous token is no login.
    assert [e.actor_name for e in audit_rows(app_state, "user:login")] == [owner]


def test_password_login_grants_what_was_asked_and_allowed(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
        other = make_user(s).username
    token = get_token(
        client,
        [f"repository:{user}/app:pull,push", f"repository:{other}/app:pull,push"],
        user,
        PASSWORD,
    )
    claims = decode_token(token)
    assert claims["sub"] == user
    assert claims["dockyard"]["kind"] == "user"
    assert "admin" not in claims["dockyard"]  # roles are checked when the token is issued, not carried
    assert access_of(token) == {
        ("repository", f"{user}/app"): ["pull", "push"],
        ("repository", f"{other}/app"): [],
    }
    assert v2_status(client, token) == 200


def test_only_requested_actions_are_granted(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    token = get_token(client, f"repository:{user}/app:pull", user, PASSWORD)
    assert access_of(token) == {("repository", f"{user}/app"): ["pull"]}
    # Without scope the token carries no access at all, but still logs in.
    token = get_token(client, [], user, PASSWORD)
    assert decode_token(token)["access"] == []
    assert v2_status(client, token) == 200


def test_several_scope_parameters_and_space_separated_scopes(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    r = client.get(
        "/token",
        params=[
            ("service", "dockyard"),
            ("scope", f"repository:{user}/a:pull"),
            ("scope", f"repository:{user}/b:push repository:{user}/c:delete"),
        ],
        auth=(user, PASSWORD),
    )
    assert r.status_code == 200, r.text
    assert access_of(r.json()["token"]) == {
        ("repository", f"{user}/a"): ["pull"],
        ("repository", f"{user}/b"): ["push"],
        ("repository", f"{user}/c"): ["delete"],
    }


def test_star_action_means_every_allowed_action(client, app_state):
    with app_state.sessions.begin() as s:
        owner = make_user(s).username
        reader = make_user(s).username
        org = make_org(s, owner=owner, members={reader: "reader"})
    owner_token = get_token(client, f"repository:{org}/app:*", owner, PASSWORD)
    reader_token = get_token(client, f"repository:{org}/app:*", reader, PASSWORD)
    assert access_of(owner_token) == {("repository", f"{org}/app"): ["delete", "pull", "push"]}
    assert access_of(reader_token) == {("repository", f"{org}/app"): ["pull"]}


def test_catalog_scope_only_for_administrators(client, app_state):
    with app_state.sessions.begin() as s:
        admin = make_user(s, admin=True).username
        user = make_user(s).username
    admin_token = get_token(client, "registry:catalog:*", admin, PASSWORD)
    user_token = get_token(client, "registry:catalog:*", user, PASSWORD)
    anon_token = get_token(client, "registry:catalog:*")
    assert access_of(admin_token) == {("registry", "catalog"): ["*"]}
    assert access_of(user_token) == {("registry", "catalog"): []}
    assert access_of(anon_token) == {("registry", "catalog"): []}
    RegistryClient(client, user, PASSWORD).push_image(f"{user}/app", "v1")

    r = client.get("/v2/_catalog", headers=bearer(admin_token))
    assert r.status_code == 200
    assert r.json() == {"repositories": [f"{user}/app"]}
    for token in (user_token, anon_token):
        r = client.get("/v2/_catalog", headers=bearer(token))
        assert_oci_error(r, 401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"] == (
            f'Bearer realm="{PUBLIC_URL}/token",service="dockyard",'
            'scope="registry:catalog:*",error="insufficient_scope"'
        )
    r = client.get("/v2/_catalog")
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == (
        f'Bearer realm="{PUBLIC_URL}/token",service="dockyard",scope="registry:catalog:*"'
    )


def test_unknown_resource_types_are_granted_nothing(client, app_state):
    with app_state.sessions.begin() as s:
        admin = make_user(s, admin=True).username
    token = get_token(client, ["registry:other:*", "thing:x:pull"], admin, PASSWORD)
    assert access_of(token) == {("registry", "other"): [], ("thing", "x"): []}


def test_old_docker_resource_class_is_accepted(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    token = get_token(client, f"repository(plugin):{user}/app:pull", user, PASSWORD)
    assert access_of(token) == {("repository", f"{user}/app"): ["pull"]}


def test_unknown_service_is_rejected(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    r = request_token(client, f"repository:{user}/app:pull", user, PASSWORD, service="elsewhere")
    assert_oci_error(r, 400, "UNSUPPORTED")
    # No service parameter at all is fine (the registry's own service is assumed).
    r = request_token(client, f"repository:{user}/app:pull", user, PASSWORD, service=None)
    assert r.status_code == 200


def test_malformed_scope_is_rejected(client, app_state):
    r = request_token(client, "repository:only-two")
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] in {"DENIED", "UNSUPPORTED"}


# -- failed logins ------------------------------------------------------------------------------------
def test_wrong_password_is_401_and_recorded(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    r = request_token(
        client, f"repository:{user}/app:pull", user, "wrong-password", headers={"User-Agent": "probe/1.0"}
    )
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == 'Basic realm="dockyard"'
    assert "token" not in r.json()
    rows = audit_rows(app_state, "user:login_failed")
    assert [(e.actor_name, e.actor_kind, e.ip, e.user_agent) for e in rows] == [
        (user, "anonymous", "testclient", "probe/1.0")
    ]
    assert audit_rows(app_state, "user:login") == []


@pytest.mark.parametrize("who", ["nobody-here", "org1+nobot"])
def test_unknown_account_is_401(client, app_state, who):
    r = request_token(client, [], who, PASSWORD)
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert [e.actor_name for e in audit_rows(app_state, "user:login_failed")] == [who]


def test_malformed_basic_header_is_401(client):
    r = client.get("/token", params={"service": "dockyard"}, headers={"Authorization": "Basic %%%not-b64"})
    assert_oci_error(r, 401, "UNAUTHORIZED")


def test_inactive_user_cannot_log_in(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
        s.execute(update(User).where(User.username == user).values(is_active=False))
    assert_oci_error(request_token(client, [], user, PASSWORD), 401, "UNAUTHORIZED")


# -- personal access tokens ---------------------------------------------------------------------------
def test_personal_access_token_from_the_api_works_as_password(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    r = client.post("/api/v1/tokens", json={"name": "ci"}, auth=(user, PASSWORD))
    assert r.status_code == 201, r.text
    pat = r.json()["token"]
    assert pat.startswith("dyt_")
    token = get_token(client, f"repository:{user}/app:pull,push", user, pat)
    assert access_of(token) == {("repository", f"{user}/app"): ["pull", "push"]}
    logins = audit_rows(app_state, "user:login")
    assert [e.data["via"] for e in logins] == ["password", "token"]
    # The token's last use is recorded.
    with app_state.sessions() as s:
        assert s.scalar(select(AccessToken.last_used_at)) is not None
    # A personal access token of one user is not a password of another.
    with app_state.sessions.begin() as s:
        other = make_user(s).username
    assert_oci_error(request_token(client, [], other, pat), 401, "UNAUTHORIZED")


def test_revoked_and_expired_personal_access_tokens_are_refused(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
        accounts = AccountService(s, EventBus())
        revoked, revoked_secret = accounts.create_token(user, "old")
        _, expired_secret = accounts.create_token(user, "expired", expires_in_days=1)
        _, good_secret = accounts.create_token(user, "good", expires_in_days=30)
        accounts.revoke_token(user, revoked.id)
        s.execute(
            update(AccessToken)
            .where(AccessToken.name == "expired")
            .values(expires_at=dt.datetime(2000, 1, 1))
        )
    assert_oci_error(request_token(client, [], user, revoked_secret), 401, "UNAUTHORIZED")
    assert_oci_error(request_token(client, [], user, expired_secret), 401, "UNAUTHORIZED")
    assert request_token(client, [], user, good_secret).status_code == 200


# -- robots -------------------------------------------------------------------------------------------
def test_robot_secret_logs_in_as_org_plus_name(client, app_state):
    with app_state.sessions.begin() as s:
        org = make_org(s)
        robot, secret = make_robot(s, org, "ci", role="maintainer")
    assert robot == f"{org}+ci"
    token = get_token(client, [f"repository:{org}/app:pull,push,delete"], robot, secret)
    claims = decode_token(token)
    assert claims["sub"] == robot
    assert claims["dockyard"]["kind"] == "robot"
    assert claims["dockyard"]["rid"] is not None
    assert access_of(token) == {("repository", f"{org}/app"): ["delete", "pull", "push"]}
    assert_oci_error(request_token(client, [], robot, "not-the-secret"), 401, "UNAUTHORIZED")
    assert [e.data["via"] for e in audit_rows(app_state, "user:login")] == ["robot"]


def test_robot_has_no_access_outside_its_organisation(client, app_state):
    with app_state.sessions.begin() as s:
        org = make_org(s)
        other = make_org(s)
        user = make_user(s).username
        robot, secret = make_robot(s, org, "ci", role="maintainer")
    token = get_token(
        client, [f"repository:{other}/app:pull,push", f"repository:{user}/app:pull"], robot, secret
    )
    assert access_of(token) == {("repository", f"{other}/app"): [], ("repository", f"{user}/app"): []}


# -- OAuth2 form ----------------------------------------------------------------------------------------
def test_oauth2_password_grant_and_refresh(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    r = client.post(
        "/token",
        data={
            "grant_type": "password",
            "username": user,
            "password": PASSWORD,
            "service": "dockyard",
            "client_id": "tests",
            "scope": f"repository:{user}/app:pull,push",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert access_of(body["access_token"]) == {("repository", f"{user}/app"): ["pull", "push"]}
    refresh = body["refresh_token"]
    assert decode_token(refresh)["typ"] == "refresh"
    assert decode_token(refresh)["sub"] == user

    r = client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "service": "dockyard",
            "client_id": "tests",
            "scope": f"repository:{user}/other:pull",
        },
    )
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    assert decode_token(access)["sub"] == user
    assert access_of(access) == {("repository", f"{user}/other"): ["pull"]}
    assert v2_status(client, access) == 200


def test_oauth2_password_grant_with_wrong_password(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    r = client.post(
        "/token",
        data={"grant_type": "password", "username": user, "password": "nope-nope", "service": "dockyard"},
    )
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert [e.actor_name for e in audit_rows(app_state, "user:login_failed")] == [user]


def test_oauth2_refresh_with_an_access_token_or_garbage_is_refused(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    access = get_token(client, [], user, PASSWORD)
    for value in (access, "garbage", ""):
        r = client.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": value, "service": "dockyard"}
        )
        assert_oci_error(r, 401, "UNAUTHORIZED")


def test_oauth2_refresh_for_a_deactivated_user_is_refused(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    r = client.post("/token", data={"grant_type": "password", "username": user, "password": PASSWORD})
    refresh = r.json()["refresh_token"]
    with app_state.sessions.begin() as s:
        s.execute(update(User).where(User.username == user).values(is_active=False))
    r = client.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
    assert_oci_error(r, 401, "UNAUTHORIZED")


def test_oauth2_unknown_grant_type(client):
    r = client.post("/token", data={"grant_type": "client_credentials", "service": "dockyard"})
    assert r.status_code == 400
    r = client.post("/token", data={"service": "dockyard"})
    assert r.status_code == 400


def test_offline_token_on_get_returns_a_refresh_token(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    r = client.get("/token", params={"service": "dockyard", "offline_token": "true"}, auth=(user, PASSWORD))
    assert decode_token(r.json()["refresh_token"])["typ"] == "refresh"
    r = client.get("/token", params={"service": "dockyard", "offline_token": "true"})
    assert "refresh_token" not in r.json()


def test_refresh_token_is_not_a_bearer_token(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    r = client.post("/token", data={"grant_type": "password", "username": user, "password": PASSWORD})
    refresh = r.json()["refresh_token"]
    assert_oci_error(client.get("/v2/", headers=bearer(refresh)), 401, "UNAUTHORIZED")
    r = client.get("/api/v1/me", headers=bearer(refresh))
    assert r.status_code == 401


# -- tokens the registry must refuse ------------------------------------------------------------------
def test_expired_foreign_and_misaddressed_tokens_are_refused(client, app_state, tmp_path):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    signer = app_state.signer
    scope = [{"type": "repository", "name": f"{user}/app", "actions": ["pull"]}]
    expired = signer.issue(user, scope, ttl=-60)
    foreign = TokenSigner.from_dir(tmp_path / "other-keys", issuer=PUBLIC_URL, service="dockyard", ttl=300)
    other_key = foreign.issue(user, scope)
    wrong_audience = TokenSigner(signer.private_key, PUBLIC_URL, "other-service", 300).issue(user, scope)
    wrong_issuer = TokenSigner(signer.private_key, "http://evil", "dockyard", 300).issue(user, scope)
    unsigned = jwt.encode(
        {"sub": user, "aud": "dockyard", "iss": PUBLIC_URL, "exp": int(time.time()) + 60, "access": scope},
        None,
        algorithm="none",
    )
    for token in (expired, other_key, wrong_audience, wrong_issuer, unsigned, "not.a.jwt"):
        r = client.get("/v2/", headers=bearer(token))
        assert_oci_error(r, 401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"].startswith(f'Bearer realm="{PUBLIC_URL}/token"')
        r = client.get(f"/v2/{user}/app/tags/list", headers=bearer(token))
        assert_oci_error(r, 401, "UNAUTHORIZED")


def test_oauth2_for_robots_and_refresh_after_deletion(client, app_state):
    with app_state.sessions.begin() as s:
        org = make_org(s)
        robot, secret = make_robot(s, org, "ci", role="reader")
    r = client.post(
        "/token",
        data={
            "grant_type": "password",
            "username": robot,
            "password": secret,
            "scope": f"repository:{org}/a:pull",
        },
    )
    assert r.status_code == 200, r.text
    refresh = r.json()["refresh_token"]
    assert access_of(r.json()["access_token"]) == {("repository", f"{org}/a"): ["pull"]}
    r = client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "scope": f"repository:{org}/a:pull,push",
        },
    )
    assert r.status_code == 200, r.text
    assert decode_token(r.json()["access_token"])["sub"] == robot
    assert access_of(r.json()["access_token"]) == {("repository", f"{org}/a"): ["pull"]}
    with app_state.sessions.begin() as s:
        AccountService(s, EventBus()).delete_robot(org, "ci")
    r = client.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh})
    assert_oci_error(r, 401, "UNAUTHORIZED")


def test_refresh_reflects_a_changed_role(client, app_state):
    with app_state.sessions.begin() as s:
        owner = make_user(s).username
        member = make_user(s).username
        org = make_org(s, owner=owner, members={member: "maintainer"})
    r = client.post("/token", data={"grant_type": "password", "username": member, "password": PASSWORD})
    refresh = r.json()["refresh_token"]
    with app_state.sessions.begin() as s:
        AccountService(s, EventBus()).remove_member(org, member)
    r = client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "scope": f"repository:{org}/a:pull,push",
        },
    )
    assert r.status_code == 200
    assert access_of(r.json()["access_token"]) == {("repository", f"{org}/a"): []}
