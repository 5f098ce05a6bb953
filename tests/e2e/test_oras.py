"""The ORAS Python SDK (oras 0.2.x) against dockyard: artifacts with an artifactType, and OCI 1.1 referrers
attached to an image that skopeo pushed, listed through GET /v2/<name>/referrers/<digest>.

The SDK talks plain HTTP here (``insecure=True``) with the default token backend: every request goes out
without credentials first, and a 401 makes it fetch a token with the Basic credentials and retry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import oras.auth.utils
import oras.oci
import oras.provider
import pytest

from tests.e2e.clients import Account, Clients, require_tools

require_tools("skopeo", "umoci")
pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SBOM_TYPE = "application/vnd.example.sbom.v1+json"
SIGNATURE_TYPE = "application/vnd.example.signature.v1"


@pytest.fixture(scope="module")
def alice(server):
    return server.user("alice")


@pytest.fixture(autouse=True)
def isolated_sdk(tmp_path, monkeypatch):
    """The SDK reads $DOCKER_CONFIG/config.json and only pushes files below the working directory."""
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text('{"auths": {}}')
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)


def sdk(server, account: Account) -> oras.provider.Registry:
    registry = oras.provider.Registry(hostname=server.host, insecure=True)
    registry.auth.set_basic_auth(account.username, account.token or account.password)
    return registry


def sdk_for_push(server, account: Account, name: str) -> oras.provider.Registry:
    """An SDK client holding a pull+push token for ``name``.

    The SDK keeps a single token and asks for one only on a 401, with the challenge's scope; its push
    starts with a HEAD (challenge: pull), so the POST that follows would be refused for that pull-only
    token (oras-py issue #187). Fetch the token with the challenge a push gets instead.
    """
    registry = sdk(server, account)
    challenge = registry.session.post(f"{server.url}/v2/{name}/blobs/uploads/")
    assert challenge.status_code == 401
    header = oras.auth.utils.parse_auth_header(challenge.headers["Www-Authenticate"])
    assert header.scope == f"repository:{name}:pull,push"
    token = registry.auth.request_token(header)
    assert token
    registry.auth.set_token_auth(token)
    return registry


def put_manifest_by_digest(registry, server, name: str, manifest: dict) -> str:
    """PUT a manifest by its digest with the SDK's request machinery; returns the digest."""
    body = json.dumps(manifest, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    r = registry.do_request(
        f"{server.url}/v2/{name}/manifests/{digest}", "PUT", data=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    return digest


def upload_file(registry, server, name: str, path: Path, media_type: str) -> dict:
    layer = oras.oci.NewLayer(str(path), media_type=media_type)
    r = registry.upload_blob(str(path), f"{server.host}/{name}", layer)
    assert r.status_code in (200, 201), r.text
    return layer


@pytest.fixture(scope="module")
def subject_image(server, alice, images, tmp_path_factory):
    """An image pushed by skopeo: the subject the artifacts refer to."""
    clients = Clients(tmp_path_factory.mktemp("oras-skopeo"))
    try:
        image = images.image("oras-subject")
        clients.copy(image.oci, server.ref("alice/app:v1"), dest_creds=alice.creds)
    finally:
        clients.close()
    return image


def test_artifact_with_artifact_type_round_trip(server, alice, tmp_path):
    name = "alice/artifacts"
    (tmp_path / "report.json").write_text(json.dumps({"findings": []}))
    (tmp_path / "config.json").write_text("{}")
    registry = sdk_for_push(server, alice, name)
    layer = upload_file(registry, server, name, tmp_path / "report.json", "application/json")
    layer["annotations"] = {"org.opencontainers.image.title": "report.json"}
    config = upload_file(registry, server, name, tmp_path / "config.json", OCI_EMPTY)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.report.v1",
        "config": config,
        "layers": [layer],
    }
    r = registry.upload_manifest(manifest, registry.get_container(f"{server.host}/{name}:report"))
    assert r.status_code == 201, r.text

    # A fresh client: unauthenticated first, then a token, as the SDK always does.
    reader = sdk(server, alice)
    fetched = reader.get_manifest(f"{server.host}/{name}:report")
    assert fetched["artifactType"] == "application/vnd.example.report.v1"
    delivered = server.delivered()
    files = reader.pull(target=f"{server.host}/{name}:report", outdir=str(tmp_path / "out"))
    assert [Path(f).name for f in files] == ["report.json"]
    assert Path(files[0]).read_text() == json.dumps({"findings": []})
    size = len(json.dumps({"findings": []}))
    assert server.delivered(at_least=delivered + size) - delivered >= size  # through the redirect
    assert reader.get_tags(f"{server.host}/{name}") == ["report"]


def test_referrers_of_an_image_pushed_by_skopeo(server, alice, subject_image, tmp_path):
    name = "alice/app"
    subject = oras.oci.Subject(OCI_MANIFEST, subject_image.digest, subject_image.size)
    registry = sdk_for_push(server, alice, name)

    # 1. An SBOM with the SDK's push(): its artifact type is the config's media type.
    (tmp_path / "sbom.spdx.json").write_text(json.dumps({"spdxVersion": "SPDX-2.3"}))
    (tmp_path / "sbom-config.json").write_text("{}")
    r = registry.push(
        target=f"{server.host}/{name}:sbom",
        files=["sbom.spdx.json:application/spdx+json"],
        manifest_config=f"sbom-config.json:{SBOM_TYPE}",
        manifest_annotations={"org.example.kind": "sbom"},
        subject=subject,
    )
    assert r.status_code == 201
    assert r.headers["OCI-Subject"] == subject_image.digest
    sbom_digest = r.headers["Docker-Content-Digest"]

    # 2. A signature with an explicit artifactType and the empty config, pushed by digest.
    (tmp_path / "sig").write_bytes(b"not-really-a-signature")
    (tmp_path / "empty.json").write_text("{}")
    signature = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_TYPE,
        "config": upload_file(registry, server, name, tmp_path / "empty.json", OCI_EMPTY),
        "layers": [upload_file(registry, server, name, tmp_path / "sig", "application/octet-stream")],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject_image.digest, "size": subject_image.size},
        "annotations": {"org.example.kind": "signature"},
    }
    signature_digest = put_manifest_by_digest(registry, server, name, signature)

    referrers_url = f"{server.url}/v2/{name}/referrers/{subject_image.digest}"
    r = registry.do_request(referrers_url, "GET", headers={"Accept": OCI_INDEX})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    index = r.json()
    assert index["mediaType"] == OCI_INDEX
    found = {d["digest"]: d for d in index["manifests"]}
    assert set(found) == {sbom_digest, signature_digest}
    assert found[sbom_digest]["artifactType"] == SBOM_TYPE
    assert found[sbom_digest]["annotations"] == {"org.example.kind": "sbom"}
    assert found[signature_digest]["artifactType"] == SIGNATURE_TYPE
    for digest, descriptor in found.items():
        assert descriptor["mediaType"] == OCI_MANIFEST
        payload = registry.do_request(f"{server.url}/v2/{name}/manifests/{digest}", "GET").content
        assert descriptor["size"] == len(payload)

    filtered = registry.do_request(f"{referrers_url}?artifactType={SIGNATURE_TYPE}", "GET")
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in filtered.json()["manifests"]] == [signature_digest]

    # The image itself is untouched, and a digest nothing refers to has an empty list.
    image = registry.get_manifest(f"{server.host}/{name}:v1")
    assert [layer["digest"] for layer in image["layers"]] == subject_image.layer_digests
    none = registry.do_request(f"{server.url}/v2/{name}/referrers/sha256:{'0' * 64}", "GET")
    assert none.status_code == 200
    assert none.json()["manifests"] == []


def test_referrers_need_pull_access(server, alice, subject_image):
    """Another user cannot list what refers to alice's private image."""
    outsider = server.user("outsider")
    registry = sdk(server, outsider)
    r = registry.do_request(f"{server.url}/v2/alice/app/referrers/{subject_image.digest}", "GET")
    assert r.status_code == 401
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
