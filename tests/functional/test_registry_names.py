"""Repository names, tags and digests: the grammar of the distribution spec on every endpoint."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from tests.support.factories import PASSWORD, make_org, make_user
from tests.support.registry_client import (
    OCI_MANIFEST,
    RegistryClient,
    assert_oci_error,
    protocol_guard,
    sha256,
)

from dockyard.registry.models import Repository


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


@pytest.fixture
def user(app_state) -> str:
    with app_state.sessions.begin() as s:
        return make_user(s).username


@pytest.fixture
def reg(client, user) -> RegistryClient:
    return RegistryClient(client, user, PASSWORD)


def test_nested_names(client, app_state):
    with app_state.sessions.begin() as s:
        owner = make_user(s).username
        org = make_org(s, owner=owner)
    reg = RegistryClient(client, owner, PASSWORD)
    name = f"{org}/product/variant"
    digest = reg.push_image(name, "v1", [b"nested layer"])
    r = reg.get_manifest(name, "v1")
    assert r.status_code == 200
    assert r.headers["docker-content-digest"] == digest
    assert reg.pull_blob(name, sha256(b"nested layer")).content == b"nested layer"
    tags = reg.request("GET", f"/v2/{name}/tags/list", name, "pull").json()
    assert tags == {"name": name, "tags": ["v1"]}
    assert reg.request("GET", f"/v2/{name}/referrers/{digest}", name, "pull").status_code == 200
    # The parent path is a different repository, which does not exist.
    parent = f"{org}/product"
    assert_oci_error(reg.get_manifest(parent, "v1"), 404, "NAME_UNKNOWN")
    # Deeply nested, separators of every kind.
    deep = f"{org}/a.b/c_d/e__f/g-h/i--j/k/l"
    reg.push_image(deep, "v1")
    assert reg.get_manifest(deep, "v1").status_code == 200


INVALID_NAMES = [
    "{user}/App",
    "{user}//b",
    "{user}/app-",
    "{user}/-app",
    "{user}/app_",
    "{user}/.app",
    "{user}/a...b",
    "{user}/a___b",
    "{user}/app/",
    "{user}/" + "a" * 256,
    "{user}/a:b",
    "{user}/a%20b",
    "{user}/a@b",
]


def endpoints(name: str) -> list[tuple[str, str]]:
    digest = sha256(b"x")
    return [
        ("GET", f"/v2/{name}/manifests/v1"),
        ("HEAD", f"/v2/{name}/manifests/v1"),
        ("PUT", f"/v2/{name}/manifests/v1"),
        ("DELETE", f"/v2/{name}/manifests/{digest}"),
        ("GET", f"/v2/{name}/blobs/{digest}"),
        ("DELETE", f"/v2/{name}/blobs/{digest}"),
        ("POST", f"/v2/{name}/blobs/uploads/"),
        ("POST", f"/v2/{name}/blobs/uploads/?digest={digest}"),
        ("PATCH", f"/v2/{name}/blobs/uploads/00000000-0000-0000-0000-000000000000"),
        ("GET", f"/v2/{name}/tags/list"),
        ("GET", f"/v2/{name}/referrers/{digest}"),
    ]


@pytest.mark.parametrize("template", INVALID_NAMES)
def test_invalid_names_are_name_invalid_everywhere(client, reg, user, app_state, template):
    name = template.format(user=user)
    token = reg.token(f"repository:{name}:pull,push,delete")
    for method, path in endpoints(name):
        for headers in ({"Authorization": f"Bearer {token}"}, {}):
            r = client.request(
                method, path, headers=headers, content=b"x" if method in ("PUT", "POST") else None
            )
            if method == "HEAD":
                assert r.status_code == 400, (method, path)
            else:
                assert_oci_error(r, 400, "NAME_INVALID")
    with app_state.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Repository)) == 0


def test_token_for_an_invalid_name_grants_nothing(client, user):
    r = client.get(
        "/token",
        params={"service": "dockyard", "scope": f"repository:{user}/App:pull,push"},
        auth=(user, PASSWORD),
    )
    from tests.support.registry_client import access_of

    assert access_of(r.json()["token"]) == {("repository", f"{user}/App"): []}


@pytest.mark.parametrize(
    "tag",
    ["-bad", ".bad", "a" * 129, "a+b", "t%C3%A4g", "a%20b", "a%2Fb"],
)
def test_invalid_tags_are_tag_invalid(reg, user, app_state, tag):
    name = f"{user}/app"
    body = json.dumps(reg.image_manifest(name, [b"layer"])).encode()
    r = reg.put_manifest(name, tag, body)
    assert r.status_code in (400, 404), r.text
    if r.status_code == 400:
        assert r.json()["errors"][0]["code"] == "TAG_INVALID"
    else:  # an encoded slash makes the path another endpoint
        assert r.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    assert r.status_code == 400 or tag == "a%2Fb"
    with app_state.sessions() as s:
        from dockyard.registry.models import Manifest

        assert s.scalar(select(func.count()).select_from(Manifest)) == 0
    if r.status_code == 400:
        # Nothing can be stored under an invalid tag: pulling it is a plain 404 (the conformance suite's
        # pull workflow asks for that), only pushing to it is a client error.
        assert_oci_error(reg.get_manifest(name, tag), 404, "MANIFEST_UNKNOWN")


def test_longest_valid_tag(reg, user):
    name = f"{user}/app"
    tag = "_" + "a" * 127
    reg.push_image(name, tag)
    assert reg.get_manifest(name, tag).status_code == 200


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:abc",
        "sha256:" + "A" * 64,
        "sha256:" + "g" * 64,
        "sha256:" + "a" * 65,
        "md5:" + "a" * 32,
        "sha512:" + "a" * 64,
        ":" + "a" * 64,
        "sha256:",
    ],
)
def test_invalid_digests_are_digest_invalid(reg, user, digest):
    name = f"{user}/app"
    reg.push_image(name, "v1")
    assert_oci_error(reg.get_manifest(name, digest), 400, "DIGEST_INVALID")
    assert_oci_error(reg.pull_blob(name, digest), 400, "DIGEST_INVALID")
    assert reg.request("HEAD", f"/v2/{name}/blobs/{digest}", name, "pull").status_code == 400
    location = reg.request("POST", f"/v2/{name}/blobs/uploads/", name).headers["location"]
    assert_oci_error(
        reg.request("PUT", f"{location}?digest={digest}", name, content=b"x"), 400, "DIGEST_INVALID"
    )
    r = reg.request("POST", f"/v2/{name}/blobs/uploads/?digest={digest}", name, content=b"x")
    assert_oci_error(r, 400, "DIGEST_INVALID")
    body = json.dumps(reg.image_manifest(name, [b"layer"])).encode()
    assert_oci_error(reg.put_manifest(name, digest, body, OCI_MANIFEST), 400, "DIGEST_INVALID")


def test_unknown_v2_paths(reg, user):
    reg.push_image(f"{user}/app", "v1")
    r = reg.request("GET", f"/v2/{user}/app", f"{user}/app", "pull")
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] in {"NAME_UNKNOWN", "UNSUPPORTED"}
    r = reg.request("GET", f"/v2/{user}/app/whatever/x", f"{user}/app", "pull")
    assert r.status_code == 404
