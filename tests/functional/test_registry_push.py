"""Pushing blobs: monolithic, single-POST and chunked uploads, upload sessions, mounts, and rejections."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import func, select
from tests.support.factories import PASSWORD, make_user
from tests.support.registry_client import (
    RegistryClient,
    assert_oci_error,
    bearer,
    protocol_guard,
    sha256,
)

from dockyard.registry.models import Blob, Repository, RepositoryBlob

UPLOAD_RE = r"/v2/{name}/blobs/uploads/([0-9a-f-]{{36}})"


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


def start(reg: RegistryClient, name: str) -> str:
    r = reg.request("POST", f"/v2/{name}/blobs/uploads/", name)
    assert r.status_code == 202, r.text
    match = re.fullmatch(UPLOAD_RE.format(name=name), r.headers["location"])
    assert match, r.headers["location"]
    assert r.headers["docker-upload-uuid"] == match.group(1)
    assert r.headers["range"] == "0-0"
    assert r.headers["content-length"] == "0"
    return r.headers["location"]


def assert_not_stored(app_state, reg: RegistryClient, name: str, *digests: str) -> None:
    for digest in digests:
        assert app_state.blobs.size(digest) is None, digest
        r = reg.request("HEAD", f"/v2/{name}/blobs/{digest}", name, "pull")
        assert r.status_code in (401, 404), r.status_code  # 401 when the repository was never created
    with app_state.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Blob).where(Blob.digest.in_(digests))) == 0


def stored(app_state, reg: RegistryClient, name: str, digest: str, data: bytes) -> None:
    assert reg.pull_blob(name, digest).content == data
    assert app_state.blobs.size(digest) == len(data)


def uploads(app_state) -> list[str]:
    return [upload_id for upload_id, _ in app_state.blobs.list_uploads()]


# -- successful uploads --------------------------------------------------------------------------------
def test_monolithic_post_then_put(reg, name, app_state):
    data = b"monolithic blob"
    location = start(reg, name)
    assert len(uploads(app_state)) == 1
    digest = sha256(data)
    r = reg.request(
        "PUT",
        f"{location}?digest={digest}",
        name,
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v2/{name}/blobs/{digest}"
    assert r.headers["docker-content-digest"] == digest
    stored(app_state, reg, name, digest, data)
    assert uploads(app_state) == []
    # The session is over.
    assert_oci_error(reg.request("GET", location, name), 404, "BLOB_UPLOAD_UNKNOWN")


def test_single_post_with_digest(reg, name, app_state):
    data = b"single post blob"
    digest = sha256(data)
    r = reg.request(
        "POST",
        f"/v2/{name}/blobs/uploads/?digest={digest}",
        name,
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v2/{name}/blobs/{digest}"
    assert r.headers["docker-content-digest"] == digest
    stored(app_state, reg, name, digest, data)
    assert uploads(app_state) == []


def test_empty_blob(reg, name, app_state):
    digest = sha256(b"")
    location = start(reg, name)
    r = reg.request("PUT", f"{location}?digest={digest}", name)
    assert r.status_code == 201, r.text
    stored(app_state, reg, name, digest, b"")


def test_single_post_of_an_empty_blob(reg, name, app_state):
    digest = sha256(b"")
    r = reg.request("POST", f"/v2/{name}/blobs/uploads/?digest={digest}", name, content=b"")
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == digest
    stored(app_state, reg, name, digest, b"")


def test_chunked_upload(reg, name, app_state):
    data = bytes(range(256)) * 8
    digest = sha256(data)
    location = start(reg, name)
    for offset in range(0, 2048, 700):
        chunk = data[offset : offset + 700]
        r = reg.request(
            "PATCH",
            location,
            name,
            content=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                "Content-Length": str(len(chunk)),
            },
        )
        assert r.status_code == 202, r.text
        assert r.headers["location"] == location
        assert r.headers["range"] == f"0-{offset + len(chunk) - 1}"
        assert r.headers["content-length"] == "0"
        g = reg.request("GET", location, name)
        assert g.status_code == 204
        assert g.headers["range"] == f"0-{offset + len(chunk) - 1}"
    r = reg.request("PUT", f"{location}?digest={digest}", name)
    assert r.status_code == 201, r.text
    stored(app_state, reg, name, digest, data)


def test_streamed_patch_without_content_range_then_put_with_last_chunk(reg, name, app_state):
    data = b"first half|second half"
    digest = sha256(data)
    location = start(reg, name)

    def body():
        yield b"first "
        yield b"half|"

    r = reg.request("PATCH", location, name, content=body())
    assert r.status_code == 202, r.text
    assert r.headers["range"] == "0-10"
    r = reg.request(
        "PUT",
        f"{location}?digest={digest}",
        name,
        content=b"second half",
        headers={"Content-Range": "11-21", "Content-Length": "11"},
    )
    assert r.status_code == 201, r.text
    stored(app_state, reg, name, digest, data)


def test_get_upload_status(reg, name):
    location = start(reg, name)
    upload_id = location.rsplit("/", 1)[1]
    r = reg.request("GET", location, name)
    assert r.status_code == 204
    assert r.headers["location"] == location
    assert r.headers["range"] == "0-0"
    assert r.headers["docker-upload-uuid"] == upload_id
    assert r.content == b""
    reg.request("PATCH", location, name, content=b"12345", headers={"Content-Range": "0-4"})
    r = reg.request("GET", location, name)
    assert r.status_code == 204
    assert r.headers["range"] == "0-4"


def test_pushing_an_existing_blob_again(reg, name, app_state):
    data = b"twice"
    assert reg.push_blob(name, data) == reg.push_blob(name, data)
    stored(app_state, reg, name, sha256(data), data)
    with app_state.sessions() as s:
        assert s.scalar(select(func.count()).select_from(RepositoryBlob)) == 1


# -- upload sessions ----------------------------------------------------------------------------------
def test_delete_upload(reg, name, app_state):
    location = start(reg, name)
    reg.request("PATCH", location, name, content=b"abc", headers={"Content-Range": "0-2"})
    r = reg.request("DELETE", location, name)
    assert r.status_code == 204
    assert uploads(app_state) == []
    assert_oci_error(reg.request("GET", location, name), 404, "BLOB_UPLOAD_UNKNOWN")
    r = reg.request("PUT", f"{location}?digest={sha256(b'abc')}", name)
    assert_oci_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_oci_error(reg.request("DELETE", location, name), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_not_stored(app_state, reg, name, sha256(b"abc"))


@pytest.mark.parametrize("upload_id", [str(uuid.uuid4()), "not-a-uuid", "0" * 36, "owner", "..."])
def test_unknown_upload(reg, name, upload_id):
    start(reg, name)  # the repository exists
    location = f"/v2/{name}/blobs/uploads/{upload_id}"
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = reg.request(method, f"{location}?digest={sha256(b'')}", name, content=b"")
        assert_oci_error(r, 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("upload_id", ["..", "%2E%2E", "abc%2F..%2Fdef", "x%00y"])
def test_upload_ids_cannot_escape_the_staging_directory(reg, name, app_state, upload_id):
    location = start(reg, name)
    r = reg.request("PATCH", f"/v2/{name}/blobs/uploads/{upload_id}", name, content=b"evil")
    if "%00" in upload_id:  # a NUL anywhere in a URL is refused at the edge (web.context.refuse_nul)
        assert_oci_error(r, 400, "NAME_INVALID")
    else:
        assert r.status_code == 404
        assert r.json()["errors"][0]["code"] in {"BLOB_UPLOAD_UNKNOWN", "NAME_UNKNOWN"}
    assert reg.request("GET", location, name).headers["range"] == "0-0"


def test_upload_session_belongs_to_its_repository(reg, user, name, app_state):
    location = start(reg, name)
    other = f"{user}/other"
    start(reg, other)
    foreign = location.replace(f"/v2/{name}/", f"/v2/{other}/")
    assert_oci_error(reg.request("GET", foreign, other), 404, "BLOB_UPLOAD_UNKNOWN")
    r = reg.request("PUT", f"{foreign}?digest={sha256(b'')}", other)
    assert_oci_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    assert reg.request("GET", location, name).status_code == 204


def test_upload_session_of_another_user_is_unusable(client, reg, name, app_state):
    location = start(reg, name)
    with app_state.sessions.begin() as s:
        mallory = make_user(s).username
    evil = RegistryClient(client, mallory, PASSWORD)
    r = evil.request("PATCH", location, name, content=b"evil")
    assert_oci_error(r, 401, "UNAUTHORIZED")
    # Under the attacker's own name the session does not exist.
    own = location.replace(f"/v2/{name}/", f"/v2/{mallory}/app/")
    assert_oci_error(
        evil.request("PATCH", own, f"{mallory}/app", content=b"evil"), 404, "BLOB_UPLOAD_UNKNOWN"
    )
    assert reg.request("GET", location, name).headers["range"] == "0-0"


# -- rejected uploads ------------------------------------------------------------------------------------
def test_out_of_order_chunk_is_416_with_the_session_state(reg, name, app_state):
    location = start(reg, name)
    r = reg.request("PATCH", location, name, content=b"01234", headers={"Content-Range": "0-4"})
    assert r.status_code == 202
    for content_range in ("7-9", "0-2", "4-6"):
        r = reg.request(
            "PATCH",
            location,
            name,
            content=b"xyz",
            headers={"Content-Range": content_range, "Content-Length": "3"},
        )
        assert_oci_error(r, 416, "RANGE_INVALID")
        assert r.headers["location"] == location
        assert r.headers["range"] == "0-4"
    # The session is intact and can be finished correctly.
    assert reg.request("GET", location, name).headers["range"] == "0-4"
    r = reg.request("PATCH", location, name, content=b"56789", headers={"Content-Range": "5-9"})
    assert r.status_code == 202
    digest = sha256(b"0123456789")
    assert reg.request("PUT", f"{location}?digest={digest}", name).status_code == 201
    stored(app_state, reg, name, digest, b"0123456789")


@pytest.mark.parametrize("content_range", ["garbage", "5-2", "0-9"])
def test_bad_content_range_is_416(reg, name, content_range):
    location = start(reg, name)
    r = reg.request(
        "PATCH",
        location,
        name,
        content=b"abc",
        headers={"Content-Range": content_range, "Content-Length": "3"},
    )
    assert_oci_error(r, 416, "RANGE_INVALID")
    assert reg.request("GET", location, name).headers["range"] == "0-0"


def test_put_with_wrong_digest(reg, name, app_state):
    data = b"the real content"
    claimed = sha256(b"something else")
    location = start(reg, name)
    r = reg.request("PUT", f"{location}?digest={claimed}", name, content=data)
    error = assert_oci_error(r, 400, "DIGEST_INVALID")
    assert error.get("detail") in (None, {"expected": claimed, "actual": sha256(data)})
    assert_not_stored(app_state, reg, name, claimed, sha256(data))
    # The session is gone with its bytes.
    assert_oci_error(reg.request("GET", location, name), 404, "BLOB_UPLOAD_UNKNOWN")
    assert uploads(app_state) == []


def test_chunked_put_with_wrong_digest(reg, name, app_state):
    location = start(reg, name)
    reg.request("PATCH", location, name, content=b"chunk", headers={"Content-Range": "0-4"})
    r = reg.request("PUT", f"{location}?digest={sha256(b'chunk!')}", name)
    assert_oci_error(r, 400, "DIGEST_INVALID")
    assert_not_stored(app_state, reg, name, sha256(b"chunk"), sha256(b"chunk!"))
    assert uploads(app_state) == []


@pytest.mark.parametrize("query", ["", "?digest=", "?digest=sha256:abc", "?digest=md5:" + "0" * 32])
def test_put_without_a_valid_digest(reg, name, app_state, query):
    location = start(reg, name)
    r = reg.request("PUT", f"{location}{query}", name, content=b"data")
    assert_oci_error(r, 400, "DIGEST_INVALID")
    assert_not_stored(app_state, reg, name, sha256(b"data"))


def test_single_post_with_wrong_digest(reg, name, app_state):
    claimed = sha256(b"claimed")
    r = reg.request("POST", f"/v2/{name}/blobs/uploads/?digest={claimed}", name, content=b"actual")
    assert_oci_error(r, 400, "DIGEST_INVALID")
    assert_not_stored(app_state, reg, name, claimed, sha256(b"actual"))
    assert uploads(app_state) == []


def test_single_post_with_invalid_digest(reg, name, app_state):
    r = reg.request("POST", f"/v2/{name}/blobs/uploads/?digest=sha256:xyz", name, content=b"actual")
    assert_oci_error(r, 400, "DIGEST_INVALID")
    assert_not_stored(app_state, reg, name, sha256(b"actual"))
    assert uploads(app_state) == []


def test_put_with_truncated_body(reg, name, app_state):
    data = b"0123456789"
    location = start(reg, name)
    r = reg.request(
        "PUT", f"{location}?digest={sha256(data)}", name, content=data[:4], headers={"Content-Length": "10"}
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] in {"BLOB_UPLOAD_INVALID", "SIZE_INVALID"}
    assert_not_stored(app_state, reg, name, sha256(data), sha256(data[:4]))
    # Whatever reached the disk was dropped: the session still has its old size.
    r = reg.request("GET", location, name)
    if r.status_code == 204:
        assert r.headers["range"] == "0-0"
    else:
        assert_oci_error(r, 404, "BLOB_UPLOAD_UNKNOWN")


def test_patch_with_truncated_body_keeps_the_earlier_chunks(reg, name, app_state):
    location = start(reg, name)
    reg.request("PATCH", location, name, content=b"01234", headers={"Content-Range": "0-4"})
    r = reg.request(
        "PATCH", location, name, content=b"567", headers={"Content-Range": "5-9", "Content-Length": "5"}
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] in {"BLOB_UPLOAD_INVALID", "SIZE_INVALID"}
    assert reg.request("GET", location, name).headers["range"] == "0-4"
    assert (
        reg.request("PATCH", location, name, content=b"56789", headers={"Content-Range": "5-9"}).status_code
        == 202
    )
    digest = sha256(b"0123456789")
    assert reg.request("PUT", f"{location}?digest={digest}", name).status_code == 201
    stored(app_state, reg, name, digest, b"0123456789")


def test_single_post_with_truncated_body(reg, name, app_state):
    data = b"0123456789"
    r = reg.request(
        "POST",
        f"/v2/{name}/blobs/uploads/?digest={sha256(data)}",
        name,
        content=data[:3],
        headers={"Content-Length": "10"},
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] in {"BLOB_UPLOAD_INVALID", "SIZE_INVALID"}
    assert_not_stored(app_state, reg, name, sha256(data), sha256(data[:3]))
    assert uploads(app_state) == []


def test_bad_content_length_header(reg, name, app_state):
    location = start(reg, name)
    r = reg.request("PATCH", location, name, content=b"abc", headers={"Content-Length": "three"})
    assert r.status_code == 400
    assert reg.request("GET", location, name).headers["range"] == "0-0"


# -- cross-repository mounts --------------------------------------------------------------------------
def mount(reg: RegistryClient, target: str, source: str, digest: str, scopes: list[str] | None = None):
    token = reg.token(scopes or [f"repository:{target}:pull,push", f"repository:{source}:pull"])
    return reg.http.post(f"/v2/{target}/blobs/uploads/?mount={digest}&from={source}", headers=bearer(token))


def test_mount_from_a_readable_repository(reg, user, app_state):
    source, target = f"{user}/source", f"{user}/target"
    digest = reg.push_blob(source, b"shared layer")
    r = mount(reg, target, source, digest)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v2/{target}/blobs/{digest}"
    assert r.headers["docker-content-digest"] == digest
    stored(app_state, reg, target, digest, b"shared layer")
    assert uploads(app_state) == []
    with app_state.sessions() as s:
        assert s.scalar(select(Repository.id).where(Repository.name == target)) is not None


def test_mount_from_another_users_private_repository_opens_an_upload_instead(client, reg, user, app_state):
    with app_state.sessions.begin() as s:
        victim = make_user(s).username
    source = f"{victim}/secret"
    digest = RegistryClient(client, victim, PASSWORD).push_blob(source, b"victim's layer")
    target = f"{user}/target"
    r = mount(reg, target, source, digest)
    assert r.status_code == 202, r.text
    assert re.fullmatch(UPLOAD_RE.format(name=target), r.headers["location"])
    assert r.headers["range"] == "0-0"
    assert_oci_error(reg.pull_blob(target, digest), 404, "BLOB_UNKNOWN")
    # The same answer as for a blob that exists nowhere: the mount tells nothing.
    r2 = mount(reg, target, source, sha256(b"nowhere"))
    assert r2.status_code == 202


def test_mount_from_a_public_repository_of_another_user(client, reg, user, app_state):
    with app_state.sessions.begin() as s:
        other = make_user(s).username
    source = f"{other}/public"
    digest = RegistryClient(client, other, PASSWORD).push_blob(source, b"public layer")
    r = client.put(f"/api/v1/repositories/{source}/visibility", json={"public": True}, auth=(other, PASSWORD))
    assert r.status_code == 200
    r = mount(reg, f"{user}/target", source, digest)
    assert r.status_code == 201, r.text
    stored(app_state, reg, f"{user}/target", digest, b"public layer")


def test_mount_without_pull_on_the_source_in_the_token(reg, user):
    source, target = f"{user}/source", f"{user}/target"
    digest = reg.push_blob(source, b"layer")
    r = mount(reg, target, source, digest, scopes=[f"repository:{target}:pull,push"])
    assert r.status_code == 202
    assert_oci_error(reg.pull_blob(target, digest), 404, "BLOB_UNKNOWN")


def test_mount_of_a_blob_the_source_does_not_have(reg, user):
    source, target = f"{user}/source", f"{user}/target"
    reg.push_blob(source, b"something")
    elsewhere = reg.push_blob(f"{user}/elsewhere", b"elsewhere")
    r = mount(reg, target, source, elsewhere)
    assert r.status_code == 202
    assert_oci_error(reg.pull_blob(target, elsewhere), 404, "BLOB_UNKNOWN")


def test_mount_with_invalid_digest_or_source(reg, user, app_state):
    target = f"{user}/target"
    assert_oci_error(mount(reg, target, f"{user}/source", "sha256:short"), 400, "DIGEST_INVALID")
    digest = reg.push_blob(f"{user}/source", b"x")
    r = mount(reg, target, "Not/A/Valid/Name", digest)
    assert r.status_code == 202
    r = reg.request("POST", f"/v2/{target}/blobs/uploads/?mount={digest}", target)  # no from=
    assert r.status_code == 202
    assert_oci_error(reg.pull_blob(target, digest), 404, "BLOB_UNKNOWN")
