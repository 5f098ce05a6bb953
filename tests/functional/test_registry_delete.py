"""Content management: deleting manifests by digest, tags, and blobs."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from tests.support.factories import PASSWORD, make_user
from tests.support.registry_client import RegistryClient, assert_oci_error, protocol_guard, sha256

from dockyard.registry.models import Manifest, RepositoryBlob, Tag


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


@pytest.fixture
def name(user) -> str:
    return f"{user}/app"


def tags(reg, name: str) -> list[str]:
    return reg.request("GET", f"/v2/{name}/tags/list", name, "pull").json()["tags"]


def count(app_state, model) -> int:
    with app_state.sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_delete_manifest_by_digest_removes_its_tags(reg, name, app_state):
    digest = reg.push_image(name, "v1")
    body = reg.get_manifest(name, "v1").content
    assert reg.put_manifest(name, "also", body).status_code == 201
    keep = reg.push_image(name, "keep", [b"other layer"])
    r = reg.request("DELETE", f"/v2/{name}/manifests/{digest}", name)
    assert r.status_code == 202
    assert r.content == b""
    assert_oci_error(reg.get_manifest(name, digest), 404, "MANIFEST_UNKNOWN")
    assert_oci_error(reg.get_manifest(name, "v1"), 404, "MANIFEST_UNKNOWN")
    assert_oci_error(reg.get_manifest(name, "also"), 404, "MANIFEST_UNKNOWN")
    assert reg.get_manifest(name, "method", method="HEAD").status_code == 404
    assert tags(reg, name) == ["keep"]
    assert reg.get_manifest(name, "keep").headers["docker-content-digest"] == keep
    assert count(app_state, Manifest) == 1
    # Deleting it again: unknown.
    assert_oci_error(reg.request("DELETE", f"/v2/{name}/manifests/{digest}", name), 404, "MANIFEST_UNKNOWN")


def test_delete_tag_only(reg, name, app_state):
    digest = reg.push_image(name, "v1")
    body = reg.get_manifest(name, "v1").content
    reg.put_manifest(name, "v1.0", body)
    r = reg.request("DELETE", f"/v2/{name}/manifests/v1", name)
    assert r.status_code == 202
    assert_oci_error(reg.get_manifest(name, "v1"), 404, "MANIFEST_UNKNOWN")
    r = reg.get_manifest(name, digest)
    assert r.status_code == 200
    assert r.content == body
    assert reg.get_manifest(name, "v1.0").status_code == 200
    assert tags(reg, name) == ["v1.0"]
    assert count(app_state, Tag) == 1
    assert_oci_error(reg.request("DELETE", f"/v2/{name}/manifests/v1", name), 404, "MANIFEST_UNKNOWN")


def test_delete_unknown_manifest_or_repository(reg, user, name):
    reg.push_image(name, "v1")
    missing = sha256(b"missing")
    assert_oci_error(reg.request("DELETE", f"/v2/{name}/manifests/{missing}", name), 404, "MANIFEST_UNKNOWN")
    assert_oci_error(reg.request("DELETE", f"/v2/{name}/manifests/nope", name), 404, "MANIFEST_UNKNOWN")
    none = f"{user}/none"
    assert_oci_error(reg.request("DELETE", f"/v2/{none}/manifests/{missing}", none), 404, "NAME_UNKNOWN")
    assert_oci_error(reg.request("DELETE", f"/v2/{none}/blobs/{missing}", none), 404, "NAME_UNKNOWN")


def test_delete_manifest_with_invalid_reference(reg, name):
    reg.push_image(name, "v1")
    assert_oci_error(reg.request("DELETE", f"/v2/{name}/manifests/sha256:abc", name), 400, "DIGEST_INVALID")
    assert_oci_error(reg.request("DELETE", f"/v2/{name}/manifests/-bad", name), 400, "TAG_INVALID")
    assert tags(reg, name) == ["v1"]


def test_delete_blob(reg, name, app_state):
    data = b"to be deleted"
    digest = reg.push_blob(name, data)
    other = reg.push_blob(name, b"stays")
    r = reg.request("DELETE", f"/v2/{name}/blobs/{digest}", name)
    assert r.status_code == 202
    assert r.content == b""
    assert_oci_error(reg.pull_blob(name, digest), 404, "BLOB_UNKNOWN")
    assert reg.request("HEAD", f"/v2/{name}/blobs/{digest}", name, "pull").status_code == 404
    assert reg.pull_blob(name, other).content == b"stays"
    assert count(app_state, RepositoryBlob) == 1
    assert_oci_error(reg.request("DELETE", f"/v2/{name}/blobs/{digest}", name), 404, "BLOB_UNKNOWN")
    # The blob can be pushed again afterwards.
    assert reg.push_blob(name, data) == digest
    assert reg.pull_blob(name, digest).content == data


def test_delete_blob_in_one_repository_keeps_it_in_another(reg, user, name):
    data = b"shared"
    digest = reg.push_blob(name, data)
    other = f"{user}/other"
    reg.push_blob(other, data)
    assert reg.request("DELETE", f"/v2/{name}/blobs/{digest}", name).status_code == 202
    assert reg.pull_blob(other, digest).content == data
    assert reg.pull_blob(name, digest).status_code == 404


def test_delete_blob_with_invalid_digest(reg, name):
    reg.push_blob(name, b"x")
    assert_oci_error(reg.request("DELETE", f"/v2/{name}/blobs/sha256:abc", name), 400, "DIGEST_INVALID")


def test_delete_of_a_blob_not_in_this_repository(reg, user, name):
    digest = reg.push_blob(f"{user}/other", b"elsewhere")
    reg.push_blob(name, b"here")
    assert_oci_error(reg.request("DELETE", f"/v2/{name}/blobs/{digest}", name), 404, "BLOB_UNKNOWN")
    assert reg.pull_blob(f"{user}/other", digest).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/tags/list"),
        ("PUT", "/tags/list"),
        ("POST", "/manifests/v1"),
        ("PATCH", "/manifests/v1"),
        ("PUT", "/blobs/" + sha256(b"x")),
        ("POST", "/referrers/" + sha256(b"x")),
    ],
)
def test_unsupported_methods(reg, name, method, path):
    reg.push_image(name, "v1")
    assert_oci_error(reg.request(method, f"/v2/{name}{path}", name, content=b"x"), 405, "UNSUPPORTED")


@pytest.mark.parametrize("path", ["/v2/", "/v2/{name}/manifests/v1", "/v2/{name}/tags/list"])
def test_methods_no_endpoint_takes_are_refused_in_the_oci_envelope(reg, name, path):
    # /v2 is served ahead of Starlette's router: an unknown method must still get the OCI error, not text.
    r = reg.request("OPTIONS", path.format(name=name), name)
    assert_oci_error(r, 405, "UNSUPPORTED")


def test_an_unexpected_error_under_v2_is_a_500_in_the_oci_envelope(_guard, client, reg, name, monkeypatch):
    from dockyard.registry import views

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    reg.push_image(name, "v1")
    parse_n = views.parse_n
    monkeypatch.setattr(views, "parse_n", explode)  # a fault inside a view, past auth
    r = client.get(f"/v2/{name}/tags/list?n=1", headers=reg.headers(name, "pull", None))
    assert r.status_code == 500
    _guard.clear()  # the one 5xx this test asks for
    assert r.json() == {"errors": [{"code": "UNKNOWN", "message": "internal server error"}]}
    assert "boom" not in r.text
    # ... and once the fault is gone, the next request is served normally.
    monkeypatch.setattr(views, "parse_n", parse_n)
    assert reg.request("GET", f"/v2/{name}/tags/list", name, "pull").json()["tags"] == ["v1"]
