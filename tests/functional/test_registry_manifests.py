"""Pushing manifests: by tag and digest, validation of content and references, size limit, subject."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from tests.support.factories import PASSWORD, make_user
from tests.support.registry_client import (
    DOCKER_MANIFEST,
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    RegistryClient,
    assert_oci_error,
    protocol_guard,
    sha256,
)

from dockyard.registry.models import Manifest, Tag

FOUR_MIB = 4 * 1024 * 1024


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


def manifest_count(app_state) -> int:
    with app_state.sessions() as s:
        return s.scalar(select(func.count()).select_from(Manifest)) or 0


def tag_names(app_state) -> list[str]:
    with app_state.sessions() as s:
        return sorted(s.scalars(select(Tag.name)))


def encode(doc: dict) -> bytes:
    return json.dumps(doc).encode()


# -- accepted pushes --------------------------------------------------------------------------------------
def test_put_by_tag(reg, name, app_state):
    body = encode(reg.image_manifest(name, [b"layer"]))
    r = reg.put_manifest(name, "v1", body)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == sha256(body)
    assert r.headers["location"] == f"/v2/{name}/manifests/{sha256(body)}"
    assert r.headers["content-length"] == "0"
    assert "oci-subject" not in r.headers
    assert reg.get_manifest(name, "v1").content == body
    assert tag_names(app_state) == ["v1"]


def test_put_by_digest(reg, name, app_state):
    body = encode(reg.image_manifest(name, [b"layer"]))
    r = reg.put_manifest(name, sha256(body), body)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == sha256(body)
    assert r.headers["location"] == f"/v2/{name}/manifests/{sha256(body)}"
    assert reg.get_manifest(name, sha256(body)).content == body
    assert tag_names(app_state) == []
    assert reg.request("GET", f"/v2/{name}/tags/list", name, "pull").json() == {"name": name, "tags": []}


def test_put_by_sha512_digest(reg, name):
    import hashlib

    body = encode(reg.image_manifest(name, [b"layer"]))
    digest = "sha512:" + hashlib.sha512(body).hexdigest()
    r = reg.put_manifest(name, digest, body)
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == digest
    assert reg.get_manifest(name, digest).content == body


def test_retag_moves_the_tag(reg, name):
    first = reg.push_image(name, "latest", [b"one"])
    second = reg.push_image(name, "latest", [b"two"])
    assert first != second
    assert reg.get_manifest(name, "latest").headers["docker-content-digest"] == second
    assert reg.get_manifest(name, first).status_code == 200


def test_same_manifest_under_two_tags_and_again(reg, name, app_state):
    body = encode(reg.image_manifest(name, [b"layer"]))
    for tag in ("a", "b", "a"):
        assert reg.put_manifest(name, tag, body).status_code == 201
    assert manifest_count(app_state) == 1
    assert tag_names(app_state) == ["a", "b"]


def test_nondistributable_layers_need_not_be_pushed(reg, name):
    doc = reg.image_manifest(name, [])
    doc["layers"] = [
        {
            "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "digest": sha256(b"windows base layer"),
            "size": 18,
            "urls": ["https://example.com/layer"],
        }
    ]
    assert reg.put_manifest(name, "win", doc).status_code == 201


def test_subject_is_answered_with_oci_subject(reg, name):
    subject = reg.push_image(name, "v1")
    empty = reg.push_blob(name, EMPTY_JSON)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [{"mediaType": OCI_EMPTY, "digest": empty, "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 10},
    }
    body = encode(doc)
    r = reg.put_manifest(name, sha256(body), body)
    assert r.status_code == 201, r.text
    assert r.headers["oci-subject"] == subject


def test_subject_that_does_not_exist_yet_is_accepted(reg, name):
    missing = sha256(b"not pushed yet")
    empty = reg.push_blob(name, EMPTY_JSON)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": missing, "size": 10},
    }
    r = reg.put_manifest(name, "sig", doc)
    assert r.status_code == 201
    assert r.headers["oci-subject"] == missing


# -- rejected pushes: nothing is stored -------------------------------------------------------------------
def assert_nothing_stored(reg: RegistryClient, name: str, app_state, body: bytes, tag: str | None) -> None:
    assert manifest_count(app_state) == 0
    assert tag_names(app_state) == []
    r = reg.get_manifest(name, sha256(body))
    assert r.status_code == 404
    if tag:
        assert reg.get_manifest(name, tag).status_code == 404


def test_put_by_digest_with_mismatching_digest(reg, name, app_state):
    body = encode(reg.image_manifest(name, [b"layer"]))
    claimed = sha256(b"another manifest")
    r = reg.put_manifest(name, claimed, body)
    assert_oci_error(r, 400, "DIGEST_INVALID")
    assert_nothing_stored(reg, name, app_state, body, None)
    assert_oci_error(reg.get_manifest(name, claimed), 404, "MANIFEST_UNKNOWN")


def test_manifest_referencing_a_missing_blob(reg, name, app_state):
    doc = reg.image_manifest(name, [b"pushed"])
    missing = sha256(b"never pushed")
    doc["layers"].append({"mediaType": OCI_LAYER, "digest": missing, "size": 12})
    body = encode(doc)
    error = assert_oci_error(reg.put_manifest(name, "v1", body), 400, "MANIFEST_BLOB_UNKNOWN")
    assert error.get("detail") in (None, {"digest": missing})
    assert_nothing_stored(reg, name, app_state, body, "v1")


def test_manifest_referencing_a_missing_config(reg, name, app_state):
    doc = reg.image_manifest(name, [b"pushed"])
    doc["config"]["digest"] = sha256(b"no config")
    body = encode(doc)
    assert_oci_error(reg.put_manifest(name, "v1", body), 400, "MANIFEST_BLOB_UNKNOWN")
    assert_nothing_stored(reg, name, app_state, body, "v1")


def test_manifest_referencing_a_blob_of_another_repository(reg, user, name, app_state):
    doc = reg.image_manifest(f"{user}/other", [b"elsewhere"])  # blobs pushed to the other repository
    reg.push_blob(name, b"make the repository exist")
    body = encode(doc)
    assert_oci_error(reg.put_manifest(name, "v1", body), 400, "MANIFEST_BLOB_UNKNOWN")
    assert reg.get_manifest(name, sha256(body)).status_code == 404


def test_index_referencing_a_missing_manifest(reg, name, app_state):
    reg.push_image(name, "present")
    missing = sha256(b"no such child")
    index = encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 100}],
        }
    )
    error = assert_oci_error(reg.put_manifest(name, "multi", index, OCI_INDEX), 400, "MANIFEST_BLOB_UNKNOWN")
    assert error.get("detail") in (None, {"digest": missing})
    assert reg.get_manifest(name, "multi").status_code == 404
    assert reg.get_manifest(name, sha256(index)).status_code == 404
    assert tag_names(app_state) == ["present"]


def test_manifest_larger_than_4_mib(reg, name, app_state):
    doc = reg.image_manifest(name, [b"layer"])
    doc["annotations"] = {"padding": "x" * FOUR_MIB}
    body = encode(doc)
    assert len(body) > FOUR_MIB
    assert_oci_error(reg.put_manifest(name, "big", body), 413, "MANIFEST_TOO_LARGE")
    # Also when the body is streamed without a Content-Length.
    r = reg.request(
        "PUT",
        f"/v2/{name}/manifests/big",
        name,
        content=iter([body[:FOUR_MIB], body[FOUR_MIB:]]),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert_oci_error(r, 413, "MANIFEST_TOO_LARGE")
    assert manifest_count(app_state) == 0
    # Exactly 4 MiB is allowed.
    doc["annotations"]["padding"] = ""
    doc["annotations"]["padding"] = "x" * (FOUR_MIB - len(encode(doc)))
    body = encode(doc)
    assert len(body) == FOUR_MIB
    assert reg.put_manifest(name, "max", body).status_code == 201


def test_manifest_with_truncated_body(reg, name, app_state):
    body = encode(reg.image_manifest(name, [b"layer"]))
    r = reg.request(
        "PUT",
        f"/v2/{name}/manifests/v1",
        name,
        content=body[:-10],
        headers={"Content-Type": OCI_MANIFEST, "Content-Length": str(len(body))},
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] in {"MANIFEST_INVALID", "SIZE_INVALID"}
    assert_nothing_stored(reg, name, app_state, body, "v1")


VALID_CONFIG = {"mediaType": OCI_CONFIG, "digest": sha256(b"{}"), "size": 2}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", OCI_MANIFEST),
        (b"", OCI_MANIFEST),
        (b"[1, 2, 3]", OCI_MANIFEST),
        (b'"a string"', OCI_MANIFEST),
        (b"\xff\xfe{}", OCI_MANIFEST),
        (b'{"schemaVersion": 2, "config": NaN}', OCI_MANIFEST),
        (encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}), OCI_MANIFEST),
        (encode({"schemaVersion": 3, "mediaType": OCI_MANIFEST, "config": VALID_CONFIG, "layers": []}), None),
        (
            encode({"schemaVersion": "2", "mediaType": OCI_MANIFEST, "config": VALID_CONFIG, "layers": []}),
            None,
        ),
        (encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": VALID_CONFIG, "layers": {}}), None),
        (
            encode(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": "sha256:nothex", "size": 2},
                    "layers": [],
                }
            ),
            None,
        ),
        (
            encode(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": sha256(b"{}"), "size": -1},
                    "layers": [],
                }
            ),
            None,
        ),
        (encode({"schemaVersion": 2, "mediaType": "application/x-unknown", "config": VALID_CONFIG}), None),
        # mediaType in the body disagrees with Content-Type
        (
            encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": VALID_CONFIG, "layers": []}),
            OCI_INDEX,
        ),
        # an index that also has layers (the manifest/index confusion)
        (encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "layers": []}), OCI_INDEX),
        # a manifest that also lists manifests
        (
            encode(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": VALID_CONFIG,
                    "layers": [],
                    "manifests": [],
                }
            ),
            OCI_MANIFEST,
        ),
        # no mediaType and a generic Content-Type and nothing to tell the kind by
        (encode({"schemaVersion": 2}), "application/json"),
        (
            encode(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": VALID_CONFIG,
                    "layers": [],
                    "annotations": {"a": 1},
                }
            ),
            None,
        ),
    ],
)
def test_malformed_manifests_are_manifest_invalid(reg, name, app_state, body, content_type):
    reg.push_blob(name, b"{}")
    r = reg.request(
        "PUT",
        f"/v2/{name}/manifests/bad",
        name,
        content=body,
        headers={"Content-Type": content_type} if content_type else {},
    )
    assert_oci_error(r, 400, "MANIFEST_INVALID")
    assert manifest_count(app_state) == 0


SCHEMA1 = {
    "schemaVersion": 1,
    "name": "x/app",
    "tag": "v1",
    "architecture": "amd64",
    "fsLayers": [{"blobSum": sha256(b"layer")}],
    "history": [{"v1Compatibility": "{}"}],
}


@pytest.mark.parametrize(
    "content_type",
    [
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/json",
        None,
    ],
)
def test_schema1_manifests_are_rejected(reg, name, app_state, content_type):
    r = reg.request(
        "PUT",
        f"/v2/{name}/manifests/v1",
        name,
        content=encode(SCHEMA1),
        headers={"Content-Type": content_type} if content_type else {},
    )
    assert_oci_error(r, 400, "MANIFEST_INVALID")
    assert manifest_count(app_state) == 0


def test_docker_manifest_body_with_oci_content_type_is_rejected(reg, name, app_state):
    doc = reg.image_manifest(name, [b"layer"])
    doc["mediaType"] = DOCKER_MANIFEST
    assert_oci_error(reg.put_manifest(name, "v1", doc, OCI_MANIFEST), 400, "MANIFEST_INVALID")
    assert manifest_count(app_state) == 0
