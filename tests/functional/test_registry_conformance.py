"""Checks the OCI distribution-spec v1.1 conformance workflows (pull, push, content discovery, content
management) make and the other protocol tests did not: each test names the workflow step it stands for.
Written from the spec and the steps' expectations, with our own data; the Go suite cannot run here."""

from __future__ import annotations

import base64
import json
import re

import pytest
from tests.support.factories import PASSWORD, make_user
from tests.support.registry_client import (
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryClient,
    assert_oci_error,
    protocol_guard,
    sha256,
)

UPLOAD_RE = r"/v2/{name}/blobs/uploads/[0-9a-f-]{{36}}"


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
    return f"{user}/conformance"


def encode(doc: dict) -> bytes:
    return json.dumps(doc, indent="\t").encode()  # pretty-printed, as Go's MarshalIndent writes it


def new_session(reg: RegistryClient, name: str) -> str:
    r = reg.request("POST", f"/v2/{name}/blobs/uploads/", name, headers={"Content-Length": "0"})
    assert r.status_code == 202, r.text
    assert re.fullmatch(UPLOAD_RE.format(name=name), r.headers["location"]), r.headers["location"]
    return r.headers["location"]


def uploads(app_state) -> list[str]:
    return [upload_id for upload_id, _ in app_state.blobs.list_uploads()]


# -- pull ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reference",
    [".INVALID_MANIFEST_NAME", "-bad", pytest.param("a" * 129, id="129-chars"), "a+b"],
)
def test_get_and_head_of_a_reference_that_cannot_exist_are_404(reg, name, reference):
    # Pull / "GET nonexistent manifest should return 404" and "HEAD request to nonexistent manifest should
    # return 404" ask with a reference no tag can have: nothing is stored under it, so it is not found.
    reg.push_image(name, "v1")
    assert_oci_error(reg.get_manifest(name, reference), 404, "MANIFEST_UNKNOWN")
    h = reg.get_manifest(name, reference, method="HEAD")
    assert h.status_code == 404
    assert h.content == b""
    # A repository that does not exist is still NAME_UNKNOWN.
    assert_oci_error(reg.get_manifest(f"{name}-none", reference), 404, "NAME_UNKNOWN")
    # Pushing to it is a client error: the tag is invalid.
    body = encode(reg.image_manifest(name, [b"layer"]))
    assert_oci_error(reg.put_manifest(name, reference, body), 400, "TAG_INVALID")


# -- push: blobs ---------------------------------------------------------------------------------------------
def test_streamed_patch_with_content_length_then_put_without_body(reg, name, app_state):
    # Push / "Blob Upload Streamed": one PATCH with Content-Type and Content-Length but no Content-Range,
    # then a PUT with the digest, Content-Length: 0 and no body.
    data = bytes(range(42))
    location = new_session(reg, name)
    r = reg.request(
        "PATCH",
        location,
        name,
        content=data,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
    )
    assert r.status_code == 202, r.text
    assert r.headers["location"] == location
    assert r.headers["range"] == f"0-{len(data) - 1}"
    digest = sha256(data)
    r = reg.request(
        "PUT",
        f"{location}?digest={digest}",
        name,
        headers={"Content-Type": "application/octet-stream", "Content-Length": "0"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v2/{name}/blobs/{digest}"
    assert reg.pull_blob(name, digest).content == data
    assert uploads(app_state) == []


def test_chunked_upload_in_the_suites_order(reg, name, app_state):
    # Push / "Blob Upload Chunked": the second chunk first is 416; the first chunk is 202 with its Range;
    # sending it again is 416; GET on the session is 204 with Location and Range; the second chunk is 202;
    # a PUT with Content-Length: 0 closes the session with 201.
    data = bytes(range(100, 142))
    first, second = data[:22], data[22:]
    first_range, second_range = f"0-{len(first) - 1}", f"{len(first)}-{len(data) - 1}"

    def patch(location: str, chunk: bytes, content_range: str):
        return reg.request(
            "PATCH",
            location,
            name,
            content=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(chunk)),
                "Content-Range": content_range,
            },
        )

    stray = new_session(reg, name)
    assert_oci_error(patch(stray, second, second_range), 416, "RANGE_INVALID")

    location = new_session(reg, name)
    r = patch(location, first, first_range)
    assert r.status_code == 202, r.text
    assert r.headers["range"] == first_range
    assert_oci_error(patch(location, first, first_range), 416, "RANGE_INVALID")
    r = reg.request("GET", location, name)
    assert r.status_code == 204
    assert r.headers["location"] == location
    assert r.headers["range"] == first_range
    r = patch(r.headers["location"], second, second_range)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == location
    assert r.headers["range"] == f"0-{len(data) - 1}"
    digest = sha256(data)
    r = reg.request(
        "PUT",
        f"{r.headers['location']}?digest={digest}",
        name,
        headers={"Content-Type": "application/octet-stream", "Content-Length": "0"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v2/{name}/blobs/{digest}"
    assert reg.pull_blob(name, digest).content == data
    assert uploads(app_state) == [stray.rsplit("/", 1)[1]]  # the refused session is still open


def test_out_of_order_final_chunk_in_the_closing_put_is_416(reg, name, app_state):
    # The suite after v1.1 ("OutOfOrderChunks" with the last chunk in the PUT): a closing PUT whose
    # Content-Range does not start at the end of the upload is 416, leaves the session as it was (a GET
    # tells where it stands), and the right PUT then completes it.
    data = b"0123456789abcdef"
    location = new_session(reg, name)
    r = reg.request("PATCH", location, name, content=data[:8], headers={"Content-Range": "0-7"})
    assert r.status_code == 202, r.text
    digest = sha256(data)
    for content_range in ("12-15", "4-11"):
        r = reg.request(
            "PUT",
            f"{location}?digest={digest}",
            name,
            content=data[8:12],
            headers={"Content-Range": content_range, "Content-Length": "4"},
        )
        assert_oci_error(r, 416, "RANGE_INVALID")
    r = reg.request("GET", location, name)
    assert r.status_code == 204
    assert r.headers["range"] == "0-7"
    r = reg.request(
        "PUT",
        f"{location}?digest={digest}",
        name,
        content=data[8:],
        headers={"Content-Range": "8-15", "Content-Length": "8"},
    )
    assert r.status_code == 201, r.text
    assert reg.pull_blob(name, digest).content == data
    assert uploads(app_state) == []


def test_single_post_with_a_digest_and_no_body(reg, name, app_state):
    # Push / "POST request with digest and blob should yield a 201 or 202", without the blob: the empty
    # blob is created; any other digest does not match the (empty) body, and nothing is left behind.
    empty = sha256(b"")
    r = reg.request("POST", f"/v2/{name}/blobs/uploads/?digest={empty}", name)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v2/{name}/blobs/{empty}"
    assert reg.pull_blob(name, empty).content == b""
    claimed = sha256(b"not sent")
    r = reg.request("POST", f"/v2/{name}/blobs/uploads/?digest={claimed}", name)
    assert_oci_error(r, 400, "DIGEST_INVALID")
    assert_oci_error(reg.pull_blob(name, claimed), 404, "BLOB_UNKNOWN")
    # An empty digest parameter is not a digest: refused like any malformed one, not a session start.
    r = reg.request("POST", f"/v2/{name}/blobs/uploads/?digest=", name)
    assert_oci_error(r, 400, "DIGEST_INVALID")
    assert uploads(app_state) == []


def test_mount_without_from_of_an_unknown_digest_opens_a_session(reg, user):
    # Push / "Cross-mounting of a blob without the from argument should yield session id" (dockyard has
    # no automatic content discovery, so it is 202 whether or not the blob exists somewhere).
    target = f"{user}/crossmount"
    r = reg.request("POST", f"/v2/{target}/blobs/uploads/?mount={sha256(b'hello world')}", target)
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    assert re.fullmatch(UPLOAD_RE.format(name=target), location), location
    assert reg.request("GET", location, target).status_code == 204


# -- push: manifests -----------------------------------------------------------------------------------------
def test_manifest_without_media_type_with_no_layers_and_extra_descriptor_fields(reg, name):
    # Push / "Registry should accept a manifest upload with no layers": no mediaType in the body (the
    # Content-Type says it), an empty layers list, and a config descriptor carrying `data` and a field the
    # image spec does not define.
    config = json.dumps({"architecture": "amd64", "os": "linux", "author": "conformance"}).encode()
    doc = {
        "schemaVersion": 2,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": reg.push_blob(name, config),
            "size": len(config),
            "data": base64.b64encode(config).decode(),
            "newUnspecifiedField": base64.b64encode(b"hello world").decode(),
        },
        "layers": [],
    }
    body = encode(doc)
    r = reg.put_manifest(name, "emptylayer", body, OCI_MANIFEST)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v2/{name}/manifests/{sha256(body)}"
    for reference in ("emptylayer", sha256(body)):
        g = reg.get_manifest(name, reference)
        assert g.status_code == 200
        assert g.content == body
        assert g.headers["content-type"] == OCI_MANIFEST
        assert g.headers["docker-content-digest"] == sha256(body)
    assert reg.request("DELETE", f"/v2/{name}/manifests/{sha256(body)}", name).status_code == 202
    assert_oci_error(reg.get_manifest(name, "emptylayer"), 404, "MANIFEST_UNKNOWN")


def test_nested_index(reg, name):
    # Push / "Registry should accept a manifest upload with nested image index": an index (with an
    # artifactType) whose only child is another index.
    image = reg.push_image(name, "v1")
    image_size = len(reg.get_manifest(name, image).content)
    inner = encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": "application/vnd.example.bundle",
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": image, "size": image_size}],
            "annotations": {"org.example.kind": "inner"},
        }
    )
    assert reg.put_manifest(name, sha256(inner), inner, OCI_INDEX).status_code == 201
    outer = encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": "application/vnd.example.bundle",
            "manifests": [{"mediaType": OCI_INDEX, "digest": sha256(inner), "size": len(inner)}],
        }
    )
    r = reg.put_manifest(name, "nested", outer, OCI_INDEX)
    assert r.status_code == 201, r.text
    g = reg.get_manifest(name, "nested")
    assert g.content == outer
    assert g.headers["content-type"] == OCI_INDEX


# -- content discovery: referrers ----------------------------------------------------------------------------
ANNOTATION = "org.example.conformance"
TYPE_A = "application/vnd.example.peanut.butter"
TYPE_B = "application/vnd.example.strawberry.jam"
TYPE_INDEX = "application/vnd.example.food.stand"


def subject_descriptor(digest: str, size: int) -> dict:
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": size}


def config_typed(reg: RegistryClient, name: str, artifact_type: str, subject: dict, note: str) -> bytes:
    """A referrer without artifactType: its type is the config's mediaType."""
    payload = f"{artifact_type} payload".encode()
    return encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": artifact_type,
                "digest": reg.push_blob(name, payload),
                "size": len(payload),
            },
            "layers": [{"mediaType": OCI_EMPTY, "digest": reg.push_blob(name, EMPTY_JSON), "size": 2}],
            "subject": subject,
            "annotations": {ANNOTATION: note},
        }
    )


def artifact_typed(
    reg: RegistryClient, name: str, artifact_type: str, subject: dict, note: str | None
) -> bytes:
    """A referrer with artifactType and the empty config."""
    payload = f"{artifact_type} layer".encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, "digest": reg.push_blob(name, EMPTY_JSON), "size": 2},
        "layers": [
            {"mediaType": artifact_type, "digest": reg.push_blob(name, payload), "size": len(payload)}
        ],
        "subject": subject,
    }
    if note is not None:
        doc["annotations"] = {ANNOTATION: note}
    return encode(doc)


def put_referrer(reg: RegistryClient, name: str, body: bytes, media_type: str, subject: str) -> str:
    r = reg.put_manifest(name, sha256(body), body, media_type)
    assert r.status_code == 201, r.text
    assert r.headers["oci-subject"] == subject
    return sha256(body)


def list_referrers(reg: RegistryClient, name: str, digest: str, query: str = "") -> list[dict]:
    r = reg.request("GET", f"/v2/{name}/referrers/{digest}{query}", name, "pull")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    return index["manifests"]


def test_referrers_pushed_before_and_after_their_subject_including_an_index(reg, name):
    # Content Discovery / "References setup" and "listing references": referrers (image manifests typed by
    # artifactType or by config.mediaType, and an index) pushed before the subject exists, more after it;
    # then the list, the artifactType filter, and the list of a subject that is never pushed.
    subject_body = encode(reg.image_manifest(name, [b"subject layer"]))
    subject = sha256(subject_body)
    descriptor = subject_descriptor(subject, len(subject_body))
    notes: dict[str, str] = {}

    before = [
        config_typed(reg, name, TYPE_A, descriptor, "config a"),
        artifact_typed(reg, name, TYPE_A, descriptor, "layer a"),
    ]
    for body, note in zip(before, ("config a", "layer a"), strict=True):
        notes[put_referrer(reg, name, body, OCI_MANIFEST, subject)] = note
    index = encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": TYPE_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b), "size": len(b)} for b in before],
            "subject": descriptor,
            "annotations": {ANNOTATION: "index"},
        }
    )
    notes[put_referrer(reg, name, index, OCI_INDEX, subject)] = "index"
    # An index without artifactType: its descriptor in the list has none either.
    untyped = encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(before[0]), "size": len(before[0])}],
            "subject": descriptor,
            "annotations": {ANNOTATION: "untyped index"},
        }
    )
    notes[put_referrer(reg, name, untyped, OCI_INDEX, subject)] = "untyped index"
    assert len(list_referrers(reg, name, subject)) == 4  # listed while the subject does not exist yet

    assert reg.put_manifest(name, "tagtest0", subject_body).status_code == 201
    for body, note in (
        (config_typed(reg, name, TYPE_B, descriptor, "config b"), "config b"),
        (artifact_typed(reg, name, TYPE_B, descriptor, "layer b"), "layer b"),
    ):
        notes[put_referrer(reg, name, body, OCI_MANIFEST, subject)] = note

    listed = list_referrers(reg, name, subject)
    assert sorted(d["digest"] for d in listed) == sorted(notes)
    for d in listed:
        assert d["annotations"] == {ANNOTATION: notes[d["digest"]]}, d
    by_note = {notes[d["digest"]]: d for d in listed}
    assert by_note["index"]["mediaType"] == OCI_INDEX
    assert by_note["index"]["artifactType"] == TYPE_INDEX
    assert by_note["index"]["size"] == len(index)
    assert by_note["untyped index"]["mediaType"] == OCI_INDEX
    assert "artifactType" not in by_note["untyped index"]
    for note, artifact_type in (("config a", TYPE_A), ("layer a", TYPE_A), ("config b", TYPE_B)):
        assert by_note[note]["mediaType"] == OCI_MANIFEST
        assert by_note[note]["artifactType"] == artifact_type

    r = reg.request("GET", f"/v2/{name}/referrers/{subject}?artifactType={TYPE_A}", name, "pull")
    assert r.headers["oci-filters-applied"] == "artifactType"
    assert sorted(notes[d["digest"]] for d in r.json()["manifests"]) == ["config a", "layer a"]

    # A referrer of a subject that is never pushed is listed under that subject only.
    other = sha256(b"a manifest nobody pushed")
    dangling = put_referrer(
        reg, name, artifact_typed(reg, name, TYPE_B, subject_descriptor(other, 7), None), OCI_MANIFEST, other
    )
    assert [d["digest"] for d in list_referrers(reg, name, other)] == [dangling]
    assert "annotations" not in list_referrers(reg, name, other)[0]
    assert len(list_referrers(reg, name, subject)) == 6


# -- content management --------------------------------------------------------------------------------------
def test_manifest_whose_config_blob_was_deleted_from_the_repository(reg, name):
    # The suite's Pull teardown deletes config[0] from the repository and Content Management then pushes
    # manifest[0], which references it. A registry MAY refuse that (spec: MANIFEST_BLOB_UNKNOWN);
    # dockyard does, since a blob deleted from a repository is no longer readable there.
    config = b'{"architecture":"amd64","os":"linux","author":"teardown"}'
    body = encode(reg.image_manifest(name, [b"layer"], config=config))
    assert reg.request("DELETE", f"/v2/{name}/blobs/{sha256(config)}", name).status_code == 202
    assert_oci_error(reg.put_manifest(name, sha256(body), body), 400, "MANIFEST_BLOB_UNKNOWN")
    # Pushed again, the blob is there and the manifest is accepted.
    reg.push_blob(name, config)
    assert reg.put_manifest(name, sha256(body), body).status_code == 201
