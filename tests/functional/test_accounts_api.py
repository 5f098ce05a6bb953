"""The accounts JSON API under /api/v1: me, users, organisations, members, robots, tokens, visibility."""

from __future__ import annotations

import base64
import datetime as dt

import jwt
import pytest
from sqlalchemy import func, select
from tests.support.factories import PASSWORD, make_org, make_robot, make_user
from tests.support.registry_client import (
    RegistryClient,
    assert_api_error,
    get_token,
    protocol_guard,
    request_token,
)

from dockyard.accounts.models import AccessToken, Membership, Robot, User

BASIC = 'Basic realm="dockyard"'


def decode_access(token: str) -> list[dict]:
    return jwt.decode(token, options={"verify_signature": False})["access"]


def basic_header(username: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()}


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


@pytest.fixture
def people(app_state) -> dict[str, tuple[str, str]]:
    with app_state.sessions.begin() as s:
        admin = make_user(s, admin=True).username
        owner = make_user(s).username
        member = make_user(s).username
        outsider = make_user(s).username
        org = make_org(s, owner=owner, members={member: "maintainer"})
    return {
        "admin": (admin, PASSWORD),
        "owner": (owner, PASSWORD),
        "member": (member, PASSWORD),
        "outsider": (outsider, PASSWORD),
        "org": org,
    }


# -- /me -------------------------------------------------------------------------------------------------
def test_me_with_basic_bearer_and_token(client, people):
    owner = people["owner"]
    r = client.get("/api/v1/me", auth=owner)
    assert r.status_code == 200
    everything = ["api", "pull", "push"]
    assert r.json() == {
        "name": owner[0],
        "kind": "user",
        "staff": [],
        "via": "password",
        "scopes": everything,
    }
    r = client.get("/api/v1/me", auth=people["admin"])
    assert r.json() == {
        "name": people["admin"][0],
        "kind": "user",
        "staff": ["store-admin"],
        "via": "password",
        "scopes": everything,
    }
    # A personal access token, as a password or on its own as a bearer token, with its own scopes.
    secret = client.post("/api/v1/tokens", json={"name": "ci"}, auth=owner).json()["token"]
    for headers in ({"Authorization": f"Bearer {secret}"}, basic_header(owner[0], secret)):
        r = client.get("/api/v1/me", headers=headers)
        assert r.json() == {
            "name": owner[0],
            "kind": "user",
            "staff": [],
            "via": "token",
            "scopes": ["pull", "push"],
        }


def test_registry_tokens_are_no_api_identity(client, people, app_state):
    """A /token JWT (even one granting nothing) is for /v2 only: on the API it creates nothing."""
    owner, org = people["owner"], people["org"]
    token = get_token(client, [], *owner)
    bearer = {"Authorization": f"Bearer {token}"}
    r = client.get("/api/v1/me", headers=bearer)
    assert_api_error(r, 401, "UNAUTHORIZED")
    assert "/v2 only" in r.json()["error"]["message"]
    assert_api_error(client.post("/api/v1/tokens", json={"name": "x"}, headers=bearer), 401)
    assert_api_error(
        client.post(
            f"/api/v1/orgs/{org}/robots", json={"name": "evil", "role": "maintainer"}, headers=bearer
        ),
        401,
    )
    assert_api_error(
        client.put(
            f"/api/v1/orgs/{org}/members/{people['outsider'][0]}", json={"role": "owner"}, headers=bearer
        ),
        401,
    )
    with app_state.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AccessToken)) == 0
        assert s.scalar(select(func.count()).select_from(Robot)) == 0
    assert people["outsider"][0] not in {
        m["username"] for m in client.get(f"/api/v1/orgs/{org}/members", auth=owner).json()["members"]
    }


def test_me_as_robot(client, people, app_state):
    with app_state.sessions.begin() as s:
        robot, secret = make_robot(s, people["org"], "ci")
    r = client.get("/api/v1/me", auth=(robot, secret))
    assert r.json() == {
        "name": robot,
        "kind": "robot",
        "staff": [],
        "via": "robot",
        "scopes": ["pull", "push"],
    }


def test_me_errors(client, people):
    r = client.get("/api/v1/me")
    assert_api_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == BASIC
    r = client.get("/api/v1/me", auth=(people["owner"][0], "wrong password"))
    assert_api_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == BASIC
    assert_api_error(client.get("/api/v1/me", headers={"Authorization": "Bearer nonsense"}), 401)
    # An anonymous registry token is no identity for the API.
    anon = {"Authorization": f"Bearer {get_token(client, [])}"}
    assert_api_error(client.get("/api/v1/me", headers=anon), 401, "UNAUTHORIZED")
    assert_api_error(client.post("/api/v1/orgs", json={"name": "anon-org"}, headers=anon), 401)


# -- users -----------------------------------------------------------------------------------------------
def test_admin_creates_users(client, people, app_state):
    r = client.post(
        "/api/v1/users",
        json={"username": "newbie", "password": "long-enough-pw", "email": "n@example.com"},
        auth=people["admin"],
    )
    assert r.status_code == 201, r.text
    assert r.json() == {"username": "newbie", "email": "n@example.com", "active": True, "staff": []}
    assert client.get("/api/v1/me", auth=("newbie", "long-enough-pw")).status_code == 200
    r = client.post(
        "/api/v1/users",
        json={"username": "boss", "password": "long-enough-pw", "staff": ["store-reviewer"]},
        auth=people["admin"],
    )
    assert r.json() == {"username": "boss", "email": None, "active": True, "staff": ["store-reviewer"]}
    assert client.get("/api/v1/me", auth=("boss", "long-enough-pw")).json()["staff"] == ["store-reviewer"]
    # The personal namespace exists: the new user can push there.
    assert RegistryClient(client, "newbie", "long-enough-pw").push_image("newbie/app", "v1")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": "Bad Name", "password": "long-enough-pw"}, 400),
        ({"username": "x", "password": "long-enough-pw"}, 400),
        ({"username": "shorty", "password": "short"}, 400),
        ({"password": "long-enough-pw"}, 400),
        ({"username": "nopass"}, 400),
        ({"username": 5, "password": "long-enough-pw"}, 400),
        ({"username": "flag", "password": "long-enough-pw", "staff": ["overlord"]}, 400),
        ({"username": "flag", "password": "long-enough-pw", "unknown": 1}, 400),
        ({"username": "flag", "password": 12345678}, 400),
    ],
)
def test_create_user_validation(client, people, app_state, body, status):
    r = client.post("/api/v1/users", json=body, auth=people["admin"])
    assert_api_error(r, status)
    with app_state.sessions() as s:
        assert s.scalar(select(User.id).where(User.username.in_(["shorty", "nopass", "flag", "x"]))) is None


def test_create_user_conflicts_and_permissions(client, people, app_state):
    body = {"username": people["owner"][0], "password": "long-enough-pw"}
    assert_api_error(client.post("/api/v1/users", json=body, auth=people["admin"]), 409)
    body = {"username": people["org"], "password": "long-enough-pw"}  # the name of an organisation
    assert_api_error(client.post("/api/v1/users", json=body, auth=people["admin"]), 409)
    body = {"username": "sneaky", "password": "long-enough-pw"}
    assert_api_error(client.post("/api/v1/users", json=body, auth=people["owner"]), 403)
    assert_api_error(client.post("/api/v1/users", json=body), 401)
    assert_api_error(client.post("/api/v1/users", content=b"{not json", auth=people["admin"]), 400)
    assert_api_error(client.post("/api/v1/users", json=["list"], auth=people["admin"]), 400)
    with app_state.sessions() as s:
        assert s.scalar(select(User.id).where(User.username == "sneaky")) is None


# -- organisations and members -------------------------------------------------------------------------
def test_create_org(client, people):
    r = client.post("/api/v1/orgs", json={"name": "acme-corp"}, auth=people["outsider"])
    assert r.status_code == 201
    assert r.json() == {"name": "acme-corp"}
    r = client.get("/api/v1/orgs/acme-corp/members", auth=people["outsider"])
    assert r.json() == {
        "members": [{"username": people["outsider"][0], "role": "owner"}],
        "next_offset": None,
    }
    assert RegistryClient(client, *people["outsider"]).push_image("acme-corp/app", "v1")


def test_create_org_errors(client, people, app_state):
    assert_api_error(client.post("/api/v1/orgs", json={"name": people["org"]}, auth=people["owner"]), 409)
    assert_api_error(
        client.post("/api/v1/orgs", json={"name": people["owner"][0]}, auth=people["owner"]), 409
    )
    assert_api_error(client.post("/api/v1/orgs", json={"name": "Bad_"}, auth=people["owner"]), 400)
    assert_api_error(client.post("/api/v1/orgs", json={}, auth=people["owner"]), 400)
    assert_api_error(client.post("/api/v1/orgs", json={"name": "anon-org"}), 401)
    with app_state.sessions.begin() as s:
        robot, secret = make_robot(s, people["org"], "ci", role="maintainer")
    # Robots pull and push; they never manage accounts.
    assert_api_error(client.post("/api/v1/orgs", json={"name": "robot-org"}, auth=(robot, secret)), 403)


def test_members(client, people, app_state):
    org, owner = people["org"], people["owner"]
    r = client.get(f"/api/v1/orgs/{org}/members", auth=owner)
    assert r.status_code == 200
    assert r.json() == {
        "members": sorted(
            [
                {"username": owner[0], "role": "owner"},
                {"username": people["member"][0], "role": "maintainer"},
            ],
            key=lambda m: m["username"],
        ),
        "next_offset": None,
    }
    outsider = people["outsider"][0]
    r = client.put(f"/api/v1/orgs/{org}/members/{outsider}", json={"role": "reader"}, auth=owner)
    assert r.status_code == 200
    assert r.json() == {"username": outsider, "role": "reader"}
    # The new reader can pull from the organisation but not push.
    RegistryClient(client, *owner).push_image(f"{org}/app", "v1")
    reader = RegistryClient(client, *people["outsider"])
    assert reader.get_manifest(f"{org}/app", "v1").status_code == 200
    assert reader.request("POST", f"/v2/{org}/app/blobs/uploads/", f"{org}/app").status_code == 401
    # Promote, then remove.
    r = client.put(f"/api/v1/orgs/{org}/members/{outsider}", json={"role": "maintainer"}, auth=owner)
    assert r.json() == {"username": outsider, "role": "maintainer"}
    r = client.delete(f"/api/v1/orgs/{org}/members/{outsider}", auth=owner)
    assert r.status_code == 204
    assert r.content == b""
    fresh = RegistryClient(client, *people["outsider"])
    assert fresh.get_manifest(f"{org}/app", "v1").status_code == 401


def test_member_errors(client, people, app_state):
    org, owner = people["org"], people["owner"]
    url = f"/api/v1/orgs/{org}/members"
    assert_api_error(client.put(f"{url}/{people['outsider'][0]}", json={"role": "god"}, auth=owner), 400)
    assert_api_error(client.put(f"{url}/{people['outsider'][0]}", json={}, auth=owner), 400)
    assert_api_error(client.put(f"{url}/nobody-at-all", json={"role": "reader"}, auth=owner), 404)
    assert_api_error(client.delete(f"{url}/{people['outsider'][0]}", auth=owner), 404)
    # The last owner can neither leave nor be demoted.
    assert_api_error(client.delete(f"{url}/{owner[0]}", auth=owner), 409)
    assert_api_error(client.put(f"{url}/{owner[0]}", json={"role": "reader"}, auth=owner), 409)
    # Only owners (and administrators) manage members.
    for who in ("member", "outsider"):
        assert_api_error(client.get(url, auth=people[who]), 403)
        r = client.put(f"{url}/{people[who][0]}", json={"role": "owner"}, auth=people[who])
        assert_api_error(r, 403)
    assert_api_error(client.get(url), 401)
    assert client.get(url, auth=people["admin"]).status_code == 200
    # An organisation that does not exist looks like one that is not yours.
    assert_api_error(client.get("/api/v1/orgs/no-such-org/members", auth=owner), 403)
    assert_api_error(client.get("/api/v1/orgs/no-such-org/members", auth=people["admin"]), 404)
    # A personal namespace has no members to manage.
    r = client.put(
        f"/api/v1/orgs/{owner[0]}/members/{people['member'][0]}", json={"role": "reader"}, auth=owner
    )
    assert_api_error(r, 400)
    with app_state.sessions() as s:
        roles = sorted(s.scalars(select(Membership.role)))
    # admin, owner, member, outsider personal owners + org owner + org maintainer
    assert roles == ["maintainer", "owner", "owner", "owner", "owner", "owner"]


def test_second_owner_lets_the_first_leave(client, people):
    org, owner = people["org"], people["owner"]
    member = people["member"][0]
    assert (
        client.put(f"/api/v1/orgs/{org}/members/{member}", json={"role": "owner"}, auth=owner).status_code
        == 200
    )
    assert client.delete(f"/api/v1/orgs/{org}/members/{owner[0]}", auth=owner).status_code == 204
    assert_api_error(client.get(f"/api/v1/orgs/{org}/members", auth=owner), 403)
    assert client.get(f"/api/v1/orgs/{org}/members", auth=people["member"]).status_code == 200


# -- robots ----------------------------------------------------------------------------------------------
def test_robots_lifecycle(client, people, app_state):
    org, owner = people["org"], people["owner"]
    r = client.post(f"/api/v1/orgs/{org}/robots", json={"name": "ci", "role": "maintainer"}, auth=owner)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["username"] == f"{org}+ci"
    assert body["role"] == "maintainer"
    secret = body["secret"]
    assert len(secret) >= 32
    r = client.post(f"/api/v1/orgs/{org}/robots", json={"name": "puller"}, auth=owner)
    assert r.json()["role"] == "reader"
    r = client.get(f"/api/v1/orgs/{org}/robots", auth=owner)
    assert r.json() == {
        "robots": [
            {"username": f"{org}+ci", "role": "maintainer"},
            {"username": f"{org}+puller", "role": "reader"},
        ],
        "next_offset": None,
    }
    r = client.get(f"/api/v1/orgs/{org}/robots", params={"limit": 1}, auth=owner)
    assert (len(r.json()["robots"]), r.json()["next_offset"]) == (1, 1)
    r = client.get(f"/api/v1/orgs/{org}/robots", params={"limit": 1, "offset": 1}, auth=owner)
    assert r.json() == {"robots": [{"username": f"{org}+puller", "role": "reader"}], "next_offset": None}
    assert_api_error(client.get(f"/api/v1/orgs/{org}/robots", params={"limit": 0}, auth=owner), 400)
    assert_api_error(client.get(f"/api/v1/orgs/{org}/robots", params={"limit": 10**6}, auth=owner), 400)
    assert "secret" not in r.text
    with app_state.sessions() as s:
        assert secret not in s.scalar(select(Robot.secret_hash).where(Robot.name == "ci"))
    assert RegistryClient(client, f"{org}+ci", secret).push_image(f"{org}/app", "v1")

    r = client.delete(f"/api/v1/orgs/{org}/robots/ci", auth=owner)
    assert r.status_code == 204
    assert request_token(client, [], f"{org}+ci", secret).status_code == 401
    assert_api_error(client.delete(f"/api/v1/orgs/{org}/robots/ci", auth=owner), 404)


def test_robot_errors(client, people, app_state):
    org, owner = people["org"], people["owner"]
    url = f"/api/v1/orgs/{org}/robots"
    assert client.post(url, json={"name": "ci"}, auth=owner).status_code == 201
    assert_api_error(client.post(url, json={"name": "ci"}, auth=owner), 409)
    assert_api_error(client.post(url, json={"name": "boss", "role": "owner"}, auth=owner), 400)
    assert_api_error(client.post(url, json={"name": "Bad Name"}, auth=owner), 400)
    assert_api_error(client.post(url, json={}, auth=owner), 400)
    for who in ("member", "outsider"):
        assert_api_error(client.post(url, json={"name": "mine"}, auth=people[who]), 403)
        assert_api_error(client.get(url, auth=people[who]), 403)
        assert_api_error(client.delete(f"{url}/ci", auth=people[who]), 403)
    assert_api_error(client.get(url), 401)
    # Personal namespaces have no robots.
    r = client.post(f"/api/v1/orgs/{owner[0]}/robots", json={"name": "mine"}, auth=owner)
    assert_api_error(r, 400)
    with app_state.sessions() as s:
        assert sorted(s.scalars(select(Robot.name))) == ["ci"]


# -- personal access tokens -------------------------------------------------------------------------------
def test_tokens_lifecycle(client, people, app_state):
    owner = people["owner"]
    r = client.post("/api/v1/tokens", json={"name": "laptop", "expires_in_days": 30}, auth=owner)
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == {"id", "name", "scopes", "token"}
    assert (created["name"], created["scopes"]) == ("laptop", ["pull", "push"])
    secret = created["token"]
    # The token works as a password for the API and the registry.
    assert client.get("/api/v1/me", auth=(owner[0], secret)).json()["name"] == owner[0]
    r = client.get("/api/v1/tokens", auth=owner)
    (listed,) = r.json()["tokens"]
    assert listed["id"] == created["id"]
    assert listed["name"] == "laptop"
    assert listed["revoked"] is False
    assert listed["last_used_at"] is not None
    # RFC 3339 date-times, as documented: naive UTC from the database went out without an offset.
    for key in ("created_at", "expires_at", "last_used_at"):
        assert listed[key].endswith("Z"), listed
        assert dt.datetime.fromisoformat(listed[key]).utcoffset() == dt.timedelta(0)
    assert secret not in r.text
    with app_state.sessions() as s:
        assert s.scalar(select(AccessToken.expires_at)) is not None

    r = client.delete(f"/api/v1/tokens/{created['id']}", auth=owner)
    assert r.status_code == 204
    assert client.get("/api/v1/tokens", auth=owner).json()["tokens"][0]["revoked"] is True
    assert_api_error(client.get("/api/v1/me", auth=(owner[0], secret)), 401)
    assert request_token(client, [], owner[0], secret).status_code == 401


def test_token_scopes_limit_what_a_token_does(client, people, app_state):
    owner, org = people["owner"], people["org"]
    RegistryClient(client, *owner).push_image(f"{org}/app", "v1")
    pull_only = client.post("/api/v1/tokens", json={"name": "ro", "scopes": ["pull"]}, auth=owner).json()[
        "token"
    ]
    # The registry grants a pull-only token pull, never push, whatever the owner's role.
    r = request_token(client, [f"repository:{org}/app:pull,push"], owner[0], pull_only)
    assert r.status_code == 200
    assert decode_access(r.json()["token"]) == [
        {"type": "repository", "name": f"{org}/app", "actions": ["pull"]}
    ]
    # No account management without the api scope: no new tokens, robots or members.
    assert_api_error(client.post("/api/v1/tokens", json={"name": "y"}, auth=(owner[0], pull_only)), 403)
    assert_api_error(
        client.post(f"/api/v1/orgs/{org}/robots", json={"name": "r"}, auth=(owner[0], pull_only)), 403
    )
    admin_token = client.post("/api/v1/tokens", json={"name": "adm", "scopes": ["api"]}, auth=owner).json()[
        "token"
    ]
    r = client.post("/api/v1/tokens", json={"name": "z"}, headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 201
    # ... but an api-only token pulls nothing.
    r = request_token(client, [f"repository:{org}/app:pull"], owner[0], admin_token)
    assert decode_access(r.json()["token"])[0]["actions"] == []


def test_malformed_json_bodies_are_400(client, people):
    owner = people["owner"]
    deep = b"[" * 100_000 + b"]" * 100_000
    r = client.post("/api/v1/tokens", content=deep, auth=owner, headers={"content-type": "application/json"})
    assert_api_error(r, 400)
    r = client.post(
        "/api/v1/orgs", content=b'{"name": ', auth=owner, headers={"content-type": "application/json"}
    )
    assert_api_error(r, 400)


def test_passwords_are_bounded(client, people):
    r = client.post(
        "/api/v1/users", json={"username": "long-pass", "password": "x" * 1025}, auth=people["admin"]
    )
    assert_api_error(r, 400)
    # A 5 MB one is not even read: the API refuses bodies over 1 MiB.
    r = client.post(
        "/api/v1/users", json={"username": "huge-pass", "password": "x" * 5_000_000}, auth=people["admin"]
    )
    assert_api_error(r, 413)
    r = client.post(
        "/api/v1/users", json={"username": "short-pass", "password": "short"}, auth=people["admin"]
    )
    assert_api_error(r, 400)


def test_token_errors(client, people, app_state):
    owner = people["owner"]
    r = client.post("/api/v1/tokens", json={"name": "x"}, auth=owner)
    token_id = r.json()["id"]
    # Another user's token cannot be revoked, nor listed.
    assert_api_error(client.delete(f"/api/v1/tokens/{token_id}", auth=people["outsider"]), 404)
    assert client.get("/api/v1/tokens", auth=people["outsider"]).json() == {"tokens": [], "next_offset": None}
    assert_api_error(client.delete("/api/v1/tokens/999999", auth=owner), 404)
    assert_api_error(client.post("/api/v1/tokens", json={}, auth=owner), 400)
    assert_api_error(
        client.post("/api/v1/tokens", json={"name": "x", "expires_in_days": "soon"}, auth=owner), 400
    )
    assert_api_error(client.post("/api/v1/tokens", json={"name": "x"}), 401)
    # A boolean is no number of days, and a token is not made already expired or to outlive us all.
    for days in (True, -5, 0, 99999999999, 1.5):
        r = client.post("/api/v1/tokens", json={"name": "x", "expires_in_days": days}, auth=owner)
        assert_api_error(r, 400)
    assert_api_error(client.post("/api/v1/tokens", json={"name": "x", "scopes": ["root"]}, auth=owner), 400)
    assert_api_error(client.post("/api/v1/tokens", json={"name": "x", "scopes": "api"}, auth=owner), 400)
    # An id beyond 64 bits is refused as input (400, naming the field), not an overflow.
    assert_api_error(client.delete("/api/v1/tokens/99999999999999999999999", auth=owner), 400)
    with app_state.sessions.begin() as s:
        robot, secret = make_robot(s, people["org"], "ci")
    assert_api_error(client.post("/api/v1/tokens", json={"name": "x"}, auth=(robot, secret)), 403)
    with app_state.sessions() as s:
        assert s.scalar(select(AccessToken.revoked).where(AccessToken.id == token_id)) is False


# -- visibility ---------------------------------------------------------------------------------------------
def test_visibility_by_owner_and_admin(client, people):
    org = people["org"]
    RegistryClient(client, *people["owner"]).push_image(f"{org}/app", "v1")
    url = f"/api/v1/repositories/{org}/app/visibility"
    r = client.put(url, json={"public": True}, auth=people["owner"])
    assert r.status_code == 200
    assert r.json() == {"name": f"{org}/app", "public": True}
    assert RegistryClient(client).get_manifest(f"{org}/app", "v1").status_code == 200
    r = client.put(url, json={"public": False}, auth=people["admin"])
    assert r.json() == {"name": f"{org}/app", "public": False}
    assert RegistryClient(client).get_manifest(f"{org}/app", "v1").status_code == 401
    assert_api_error(client.put(url, json={"public": True}, auth=people["member"]), 403)


def test_unknown_api_paths_and_methods(client, people):
    assert_api_error(client.get("/api/v1/nothing-here", auth=people["owner"]), 404)
    r = client.delete("/api/v1/users", auth=people["admin"])
    assert_api_error(r, 405)
    assert "GET" in r.headers["allow"]
    assert_api_error(client.delete("/api/v1/tokens/not-a-number", auth=people["owner"]), 400)
