"""/v2/ and who may do what: challenges, roles, robots, public repositories, hidden existence."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tests.support.factories import PASSWORD, make_org, make_robot, make_user
from tests.support.registry_client import (
    OCI_CONFIG,
    OCI_MANIFEST,
    RegistryClient,
    assert_api_error,
    assert_oci_error,
    bearer,
    get_token,
    parse_challenge,
    protocol_guard,
    sha256,
)

from dockyard.registry.models import Repository

PUBLIC_URL = "http://127.0.0.1:5999"
CHALLENGE = f'Bearer realm="{PUBLIC_URL}/token",service="dockyard"'


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


def challenge(scope: str, error: str | None = "insufficient_scope") -> str:
    value = f'{CHALLENGE},scope="{scope}"'
    return value + (f',error="{error}"' if error else "")


@pytest.fixture
def org_setup(client, app_state):
    """An organisation with an owner, a maintainer, a reader, an outsider, two robots and one image."""
    with app_state.sessions.begin() as s:
        owner = make_user(s).username
        maintainer = make_user(s).username
        reader = make_user(s).username
        outsider = make_user(s).username
        org = make_org(s, owner=owner, members={maintainer: "maintainer", reader: "reader"})
        bot_reader = make_robot(s, org, "pull", role="reader")
        bot_maintainer = make_robot(s, org, "push", role="maintainer")
    repo = f"{org}/app"
    digest = RegistryClient(client, owner, PASSWORD).push_image(repo, "v1", [b"layer-bytes"])
    return {
        "org": org,
        "repo": repo,
        "digest": digest,
        "layer": sha256(b"layer-bytes"),
        "owner": (owner, PASSWORD),
        "maintainer": (maintainer, PASSWORD),
        "reader": (reader, PASSWORD),
        "outsider": (outsider, PASSWORD),
        "bot_reader": bot_reader,
        "bot_maintainer": bot_maintainer,
    }


def token_for(client, setup, who: str | None, scope: str) -> str:
    if who is None:
        return get_token(client, scope)
    return get_token(client, scope, *setup[who])


# -- /v2/ ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v2/", "/v2"])
def test_base_without_token_is_challenged(client, path):
    for method in ("GET", "HEAD"):
        r = client.request(method, path)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == CHALLENGE
        if method == "GET":
            assert_oci_error(r, 401, "UNAUTHORIZED")
        else:
            assert r.content == b""
    # Wrong Basic credentials get the same challenge (right ones: test_registry_basic_auth.py).
    r = client.get(path, auth=("admin", "whatever"))
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == CHALLENGE


def test_base_with_token(client, app_state):
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    token = get_token(client, [], user, PASSWORD)
    for path in ("/v2/", "/v2"):
        r = client.get(path, headers=bearer(token))
        assert r.status_code == 200
        assert r.json() == {}
        assert r.headers["docker-distribution-api-version"] == "registry/2.0"
    r = client.head("/v2/", headers=bearer(token))
    assert r.status_code == 200
    assert r.content == b""


def test_challenge_names_the_scope_a_client_must_ask_for(client, org_setup):
    repo = org_setup["repo"]
    r = client.get(f"/v2/{repo}/manifests/v1")
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == challenge(f"repository:{repo}:pull", None)
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.headers["www-authenticate"] == challenge(f"repository:{repo}:pull,push", None)
    r = client.delete(f"/v2/{repo}/manifests/{org_setup['digest']}")
    assert r.headers["www-authenticate"] == challenge(f"repository:{repo}:delete", None)
    # The challenge's parameters are all a client needs to get a token that works.
    params = parse_challenge(client.get(f"/v2/{repo}/tags/list").headers["www-authenticate"])
    assert params == {
        "realm": f"{PUBLIC_URL}/token",
        "service": "dockyard",
        "scope": f"repository:{repo}:pull",
    }
    r = client.get(
        "/token", params={"service": params["service"], "scope": params["scope"]}, auth=org_setup["reader"]
    )
    r = client.get(f"/v2/{repo}/tags/list", headers=bearer(r.json()["token"]))
    assert r.status_code == 200
    assert r.json() == {"name": repo, "tags": ["v1"]}


# -- private repositories: outsiders and anonymous users learn nothing -----------------------------
def pull_requests(repo: str, digest: str, layer: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/v2/{repo}/manifests/v1"),
        ("HEAD", f"/v2/{repo}/manifests/v1"),
        ("GET", f"/v2/{repo}/manifests/{digest}"),
        ("GET", f"/v2/{repo}/blobs/{layer}"),
        ("HEAD", f"/v2/{repo}/blobs/{layer}"),
        ("GET", f"/v2/{repo}/tags/list"),
        ("GET", f"/v2/{repo}/referrers/{digest}"),
    ]


@pytest.mark.parametrize("who", ["outsider", None])
def test_outsiders_cannot_pull_nor_tell_whether_a_private_repository_exists(client, org_setup, who):
    repo, digest, layer = org_setup["repo"], org_setup["digest"], org_setup["layer"]
    missing = f"{org_setup['org']}/does-not-exist"
    tokens = {name: token_for(client, org_setup, who, f"repository:{name}:pull") for name in (repo, missing)}
    seen = []
    for name in (repo, missing):
        answers = []
        for method, path in pull_requests(name, digest, layer):
            r = client.request(method, path, headers=bearer(tokens[name]))
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["www-authenticate"] == challenge(f"repository:{name}:pull")
            if method == "GET":
                assert_oci_error(r, 401, "UNAUTHORIZED")
            answers.append((r.status_code, r.content, r.headers["www-authenticate"].replace(name, "NAME")))
        seen.append(answers)
    assert seen[0] == seen[1]


@pytest.mark.parametrize("who", ["outsider", None])
def test_outsiders_cannot_push_or_delete(client, org_setup, who):
    repo = org_setup["repo"]
    token = token_for(client, org_setup, who, f"repository:{repo}:pull,push,delete")
    r = client.post(f"/v2/{repo}/blobs/uploads/", headers=bearer(token))
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == challenge(f"repository:{repo}:pull,push")
    r = client.delete(f"/v2/{repo}/manifests/{org_setup['digest']}", headers=bearer(token))
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert RegistryClient(client, *org_setup["owner"]).get_manifest(repo, "v1").status_code == 200


def test_token_for_one_repository_does_not_open_another(client, org_setup, app_state):
    with app_state.sessions.begin() as s:
        other = make_user(s).username
    own = get_token(client, f"repository:{other}/app:pull,push", other, PASSWORD)
    repo = org_setup["repo"]
    r = client.get(f"/v2/{repo}/manifests/v1", headers=bearer(own))
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == challenge(f"repository:{repo}:pull")


def test_bearer_token_of_owner_without_requested_scope_is_insufficient(client, org_setup):
    token = get_token(client, [], *org_setup["owner"])
    r = client.get(f"/v2/{org_setup['repo']}/manifests/v1", headers=bearer(token))
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


# -- roles ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["reader", "bot_reader"])
def test_readers_pull_but_cannot_push_or_delete(client, org_setup, who):
    repo, digest = org_setup["repo"], org_setup["digest"]
    reg = RegistryClient(client, *org_setup[who])
    r = reg.get_manifest(repo, "v1")
    assert r.status_code == 200
    assert r.headers["docker-content-digest"] == digest
    assert reg.pull_blob(repo, org_setup["layer"]).content == b"layer-bytes"

    r = reg.request("POST", f"/v2/{repo}/blobs/uploads/", repo)
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == challenge(f"repository:{repo}:pull,push")
    r = reg.request("POST", f"/v2/{repo}/blobs/uploads/?digest={sha256(b'x')}", repo, content=b"x")
    assert_oci_error(r, 401, "UNAUTHORIZED")
    config = b'{"os":"linux"}'
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": org_setup["layer"], "size": 11},
        "layers": [],
    }
    assert_oci_error(reg.put_manifest(repo, "v2", manifest), 401, "UNAUTHORIZED")
    r = reg.request("DELETE", f"/v2/{repo}/manifests/{digest}", repo)
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == challenge(f"repository:{repo}:delete")
    r = reg.request("DELETE", f"/v2/{repo}/blobs/{org_setup['layer']}", repo)
    assert_oci_error(r, 401, "UNAUTHORIZED")

    # Nothing changed.
    owner = RegistryClient(client, *org_setup["owner"])
    tags = owner.request("GET", f"/v2/{repo}/tags/list", repo, "pull").json()["tags"]
    assert tags == ["v1"]
    assert owner.get_manifest(repo, digest).status_code == 200
    assert owner.request("HEAD", f"/v2/{repo}/blobs/{sha256(b'x')}", repo, "pull").status_code == 404
    assert owner.request("HEAD", f"/v2/{repo}/blobs/{sha256(config)}", repo, "pull").status_code == 404


@pytest.mark.parametrize("who", ["maintainer", "bot_maintainer", "owner"])
def test_maintainers_push_and_delete(client, org_setup, who):
    repo = org_setup["repo"]
    reg = RegistryClient(client, *org_setup[who])
    digest = reg.push_image(repo, "v2", [b"new layer"])
    assert reg.get_manifest(repo, "v2").headers["docker-content-digest"] == digest
    # A new repository in the organisation is created by the first push.
    assert reg.push_image(f"{org_setup['org']}/brand-new", "v1")
    r = reg.request("DELETE", f"/v2/{repo}/manifests/v2", repo)
    assert r.status_code == 202
    assert_oci_error(reg.get_manifest(repo, "v2"), 404, "MANIFEST_UNKNOWN")
    r = reg.request("DELETE", f"/v2/{repo}/manifests/{org_setup['digest']}", repo)
    assert r.status_code == 202
    assert_oci_error(reg.get_manifest(repo, "v1"), 404, "MANIFEST_UNKNOWN")


def test_robot_cannot_touch_another_organisation(client, org_setup, app_state):
    with app_state.sessions.begin() as s:
        other_org = make_org(s)
    reg = RegistryClient(client, *org_setup["bot_maintainer"])
    r = reg.request("POST", f"/v2/{other_org}/app/blobs/uploads/", f"{other_org}/app")
    assert_oci_error(r, 401, "UNAUTHORIZED")


def test_user_namespace_is_private_to_its_owner(client, app_state):
    with app_state.sessions.begin() as s:
        alice = make_user(s).username
        bob = make_user(s).username
    RegistryClient(client, alice, PASSWORD).push_image(f"{alice}/app", "v1")
    bob_reg = RegistryClient(client, bob, PASSWORD)
    assert_oci_error(bob_reg.get_manifest(f"{alice}/app", "v1"), 401, "UNAUTHORIZED")
    r = bob_reg.request("POST", f"/v2/{alice}/app/blobs/uploads/", f"{alice}/app")
    assert_oci_error(r, 401, "UNAUTHORIZED")


def test_administrator_may_pull_and_push_anywhere(client, org_setup, app_state):
    with app_state.sessions.begin() as s:
        admin = make_user(s, admin=True).username
    reg = RegistryClient(client, admin, PASSWORD)
    repo = org_setup["repo"]
    assert reg.get_manifest(repo, "v1").status_code == 200
    assert reg.push_image(repo, "by-admin")


def test_first_push_into_a_missing_namespace_is_name_unknown(client, app_state):
    with app_state.sessions.begin() as s:
        admin = make_user(s, admin=True).username
    reg = RegistryClient(client, admin, PASSWORD)
    r = reg.request("POST", "/v2/no-such-namespace/app/blobs/uploads/", "no-such-namespace/app")
    assert_oci_error(r, 404, "NAME_UNKNOWN")
    with app_state.sessions() as s:
        assert s.scalar(select(Repository.id)) is None


# -- visibility ---------------------------------------------------------------------------------------
def test_public_repository_allows_anonymous_pull_only(client, org_setup):
    repo, digest, layer = org_setup["repo"], org_setup["digest"], org_setup["layer"]
    r = client.put(f"/api/v1/repositories/{repo}/visibility", json={"public": True}, auth=org_setup["owner"])
    assert r.status_code == 200, r.text
    assert r.json() == {"name": repo, "public": True}

    anon = RegistryClient(client)
    assert anon.get_manifest(repo, "v1").headers["docker-content-digest"] == digest
    assert anon.pull_blob(repo, layer).content == b"layer-bytes"
    r = anon.request("GET", f"/v2/{repo}/tags/list", repo, "pull")
    assert r.json() == {"name": repo, "tags": ["v1"]}
    r = anon.request("POST", f"/v2/{repo}/blobs/uploads/", repo)
    assert_oci_error(r, 401, "UNAUTHORIZED")
    r = anon.request("DELETE", f"/v2/{repo}/manifests/{digest}", repo)
    assert_oci_error(r, 401, "UNAUTHORIZED")
    # Outsiders too may pull, but not push.
    outsider = RegistryClient(client, *org_setup["outsider"])
    assert outsider.get_manifest(repo, "v1").status_code == 200
    r = outsider.request("POST", f"/v2/{repo}/blobs/uploads/", repo)
    assert_oci_error(r, 401, "UNAUTHORIZED")

    # Private again: anonymous pulls stop (with a new token).
    r = client.put(f"/api/v1/repositories/{repo}/visibility", json={"public": False}, auth=org_setup["owner"])
    assert r.json() == {"name": repo, "public": False}
    assert_oci_error(RegistryClient(client).get_manifest(repo, "v1"), 401, "UNAUTHORIZED")


def test_public_repository_does_not_open_its_neighbours(client, org_setup):
    repo, org = org_setup["repo"], org_setup["org"]
    owner = RegistryClient(client, *org_setup["owner"])
    owner.push_image(f"{org}/secret", "v1")
    client.put(f"/api/v1/repositories/{repo}/visibility", json={"public": True}, auth=org_setup["owner"])
    assert_oci_error(RegistryClient(client).get_manifest(f"{org}/secret", "v1"), 401, "UNAUTHORIZED")


@pytest.mark.parametrize("who", ["maintainer", "reader", "outsider", "bot_maintainer"])
def test_only_owners_change_visibility(client, org_setup, who):
    repo = org_setup["repo"]
    r = client.put(f"/api/v1/repositories/{repo}/visibility", json={"public": True}, auth=org_setup[who])
    assert_api_error(r, 403)
    assert_oci_error(RegistryClient(client).get_manifest(repo, "v1"), 401, "UNAUTHORIZED")


def test_visibility_errors(client, org_setup, app_state):
    repo = org_setup["repo"]
    r = client.put(f"/api/v1/repositories/{repo}/visibility", json={"public": True})
    assert_api_error(r, 401)
    assert r.headers["www-authenticate"] == 'Basic realm="dockyard"'
    owner = org_setup["owner"]
    r = client.put(
        f"/api/v1/repositories/{org_setup['org']}/nope/visibility", json={"public": True}, auth=owner
    )
    assert_api_error(r, 404)
    r = client.put(f"/api/v1/repositories/{repo}/visibility", json={"public": "yes"}, auth=owner)
    assert_api_error(r, 400)
    r = client.put(f"/api/v1/repositories/{repo}/visibility", json={}, auth=owner)
    assert_api_error(r, 400)
    r = client.put(f"/api/v1/repositories/{repo}/visibility", content=b"not json", auth=owner)
    assert_api_error(r, 400)
    with app_state.sessions() as s:
        assert s.scalar(select(Repository.is_public).where(Repository.name == repo)) is False
