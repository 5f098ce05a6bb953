"""Pulling: manifests of every kind by tag and digest, GET and HEAD, blobs with ranges, isolation."""

from __future__ import annotations

import json

import pytest
from tests.support.factories import PASSWORD, make_user
from tests.support.registry_client import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryClient,
    assert_oci_error,
    protocol_guard,
    sha256,
)


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


def encode(doc: dict) -> bytes:
    return json.dumps(doc, indent=1).encode()  # not canonical: the registry must keep the exact bytes


def push(reg: RegistryClient, name: str, reference: str, doc: dict | bytes, content_type: str) -> str:
    body = doc if isinstance(doc, bytes) else encode(doc)
    r = reg.put_manifest(name, reference, body, content_type)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == sha256(body)
    return sha256(body)


def assert_manifest(reg: RegistryClient, name: str, body: bytes, media_type: str, tag: str | None) -> None:
    digest = sha256(body)
    for reference in [digest] + ([tag] if tag else []):
        r = reg.get_manifest(name, reference)
        assert r.status_code == 200, r.text
        assert r.content == body
        assert r.headers["content-type"] == media_type
        assert r.headers["docker-content-digest"] == digest
        assert r.headers["content-length"] == str(len(body))
        h = reg.get_manifest(name, reference, method="HEAD")
        assert h.status_code == 200
        assert h.content == b""
        assert h.headers["content-type"] == media_type
        assert h.headers["docker-content-digest"] == digest
        assert h.headers["content-length"] == str(len(body))


# -- manifests ----------------------------------------------------------------------------------------
def test_oci_image_manifest_by_tag_and_digest(reg, user):
    name = f"{user}/app"
    doc = reg.image_manifest(name, [b"a", b"b"])
    body = encode(doc)
    push(reg, name, "v1", body, OCI_MANIFEST)
    assert_manifest(reg, name, body, OCI_MANIFEST, "v1")
    assert reg.get_manifest(name, "v1").headers["etag"] == f'"{sha256(body)}"'


def test_oci_index(reg, user):
    name = f"{user}/multi"
    children = []
    for arch in ("amd64", "arm64"):
        child = encode(reg.image_manifest(name, [arch.encode()]))
        push(reg, name, sha256(child), child, OCI_MANIFEST)
        children.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256(child),
                "size": len(child),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
    push(reg, name, "latest", index, OCI_INDEX)
    assert_manifest(reg, name, index, OCI_INDEX, "latest")


def docker_image(reg: RegistryClient, name: str, layer: bytes) -> bytes:
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": reg.push_blob(name, config), "size": len(config)},
        "layers": [{"mediaType": DOCKER_LAYER, "digest": reg.push_blob(name, layer), "size": len(layer)}],
    }
    return encode(doc)


def test_docker_schema2_manifest_and_manifest_list(reg, user):
    name = f"{user}/docker"
    body = docker_image(reg, name, b"docker layer")
    push(reg, name, "single", body, DOCKER_MANIFEST)
    assert_manifest(reg, name, body, DOCKER_MANIFEST, "single")
    manifest_list = encode(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_LIST,
            "manifests": [
                {
                    "mediaType": DOCKER_MANIFEST,
                    "digest": sha256(body),
                    "size": len(body),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    )
    push(reg, name, "list", manifest_list, DOCKER_MANIFEST_LIST)
    assert_manifest(reg, name, manifest_list, DOCKER_MANIFEST_LIST, "list")


def test_artifact_manifest_with_artifact_type(reg, user):
    name = f"{user}/artifacts"
    empty = reg.push_blob(name, EMPTY_JSON)
    payload = b"signature bytes"
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [
            {"mediaType": "application/octet-stream", "digest": reg.push_blob(name, payload), "size": 15}
        ],
        "annotations": {"org.example": "yes"},
    }
    body = encode(doc)
    push(reg, name, "sig", body, OCI_MANIFEST)
    assert_manifest(reg, name, body, OCI_MANIFEST, "sig")
    assert json.loads(reg.get_manifest(name, "sig").content)["artifactType"] == doc["artifactType"]


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        (DOCKER_MANIFEST, "image"),
        (OCI_MANIFEST, "image"),
        (OCI_INDEX, "index"),
        (DOCKER_MANIFEST_LIST, "index"),
    ],
)
def test_manifest_without_media_type_is_typed_by_content_type(reg, user, content_type, kind):
    name = f"{user}/untyped"
    if kind == "image":
        doc = json.loads(docker_image(reg, name, b"untyped layer"))
        if content_type == OCI_MANIFEST:
            doc["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json"
            doc["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    else:
        child = encode(reg.image_manifest(name, [b"child"]))
        push(reg, name, sha256(child), child, OCI_MANIFEST)
        doc = {
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(child), "size": len(child)}],
        }
    doc.pop("mediaType", None)
    body = encode(doc)
    push(reg, name, "t", body, content_type)
    assert_manifest(reg, name, body, content_type, "t")


def test_unknown_manifests_are_404(reg, user):
    name = f"{user}/app"
    reg.push_image(name, "v1")
    missing = sha256(b"no such manifest")
    for reference in ("nope", missing):
        error = assert_oci_error(reg.get_manifest(name, reference), 404, "MANIFEST_UNKNOWN")
        assert error["message"]
        h = reg.get_manifest(name, reference, method="HEAD")
        assert h.status_code == 404
        assert h.content == b""
    # A repository that does not exist (in one's own namespace) is NAME_UNKNOWN.
    assert_oci_error(reg.get_manifest(f"{user}/none", "v1"), 404, "NAME_UNKNOWN")


def test_manifest_of_one_repository_is_not_served_by_another(reg, user):
    digest = reg.push_image(f"{user}/a", "v1")
    reg.push_image(f"{user}/b", "other")
    assert_oci_error(reg.get_manifest(f"{user}/b", digest), 404, "MANIFEST_UNKNOWN")
    assert_oci_error(reg.get_manifest(f"{user}/b", "v1"), 404, "MANIFEST_UNKNOWN")


# -- blobs -------------------------------------------------------------------------------------------
DATA = bytes(range(256)) * 40  # 10240 bytes


def test_blob_get_and_head(reg, user):
    name = f"{user}/app"
    digest = reg.push_blob(name, DATA)
    r = reg.pull_blob(name, digest)
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["docker-content-digest"] == digest
    assert r.headers["content-length"] == str(len(DATA))
    assert r.headers["content-type"] == "application/octet-stream"
    h = reg.request("HEAD", f"/v2/{name}/blobs/{digest}", name, "pull")
    assert h.status_code == 200
    assert h.content == b""
    assert h.headers["content-length"] == str(len(DATA))
    assert h.headers["docker-content-digest"] == digest


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=100-1123", 100, 1123),
        ("bytes=10000-", 10000, 10239),
        ("bytes=-40", 10200, 10239),
    ],
)
def test_blob_range_requests(reg, user, range_header, start, end):
    name = f"{user}/app"
    digest = reg.push_blob(name, DATA)
    r = reg.request("GET", f"/v2/{name}/blobs/{digest}", name, "pull", headers={"Range": range_header})
    assert r.status_code == 206, r.text
    assert r.headers["content-range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert r.headers["content-length"] == str(end - start + 1)
    assert r.content == DATA[start : end + 1]


def test_blob_range_beyond_the_end_is_416(reg, user):
    name = f"{user}/app"
    digest = reg.push_blob(name, DATA)
    r = reg.request("GET", f"/v2/{name}/blobs/{digest}", name, "pull", headers={"Range": "bytes=20000-20010"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(DATA)}"


def test_unknown_blob_is_404(reg, user):
    name = f"{user}/app"
    reg.push_blob(name, b"something")
    missing = sha256(b"missing")
    error = assert_oci_error(reg.pull_blob(name, missing), 404, "BLOB_UNKNOWN")
    assert error.get("detail") in (None, {"digest": missing})
    h = reg.request("HEAD", f"/v2/{name}/blobs/{missing}", name, "pull")
    assert h.status_code == 404
    assert h.content == b""


def test_blob_of_one_repository_is_not_served_by_another_until_mounted(reg, user):
    a, b = f"{user}/a", f"{user}/b"
    digest = reg.push_blob(a, b"private to a")
    reg.push_blob(b, b"b exists")
    assert_oci_error(reg.pull_blob(b, digest), 404, "BLOB_UNKNOWN")
    assert reg.request("HEAD", f"/v2/{b}/blobs/{digest}", b, "pull").status_code == 404
    token = reg.token([f"repository:{b}:pull,push", f"repository:{a}:pull"])
    r = reg.http.post(
        f"/v2/{b}/blobs/uploads/?mount={digest}&from={a}", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 201
    assert reg.pull_blob(b, digest).content == b"private to a"
