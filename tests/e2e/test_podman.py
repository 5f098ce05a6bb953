"""podman 4.3 against dockyard (vfs storage under the test's directory; podman cannot run containers here).

podman re-compresses layers when it pushes from its own storage and uploads them as streams: a chunked
PATCH of unknown length, then the PUT with the digest. With ``--format v2s2`` it sends Docker schema 2.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.e2e.clients import require_tools

require_tools("podman", "skopeo", "umoci")
pytestmark = pytest.mark.e2e

DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def alice(server):
    return server.user("alice")


def podman_push(clients, local: str, dest: str, creds: str, *flags: str, debug: bool = False):
    log = ["--log-level", "debug"] if debug else []
    return clients.podman(*log, "push", "--tls-verify=false", "--creds", creds, *flags, local, dest)


def podman_pull(clients, ref: str, creds: str, *flags: str) -> str:
    """Pull ``ref`` and return the local image ID (podman prints it last)."""
    out = clients.podman("pull", "--tls-verify=false", "--creds", creds, *flags, ref)
    return out.stdout.strip().splitlines()[-1]


def image_inspect(clients, name: str) -> dict:
    return json.loads(clients.podman("image", "inspect", name).stdout)[0]


def load_from_layout(clients, image) -> str:
    """``podman pull oci:DIR:REF`` into the private storage; the local image ID (the config's digest)."""
    out = clients.podman("pull", image.oci)
    image_id = out.stdout.strip().splitlines()[-1]
    assert "sha256:" + image_id == image.config_digest
    return image_id


def test_push_and_pull_back(server, alice, clients, images):
    image = images.image("podman-roundtrip")
    image_id = load_from_layout(clients, image)
    dest = f"{server.host}/alice/podman:v1"
    push = podman_push(clients, image_id, dest, alice.creds, debug=True)
    # Layers from podman's storage are recompressed, so their size is unknown: streamed, chunked PATCHes.
    assert "PATCH http://" in push.stderr

    raw = clients.inspect(f"docker://{dest}", alice.creds, raw=True).stdout
    manifest = json.loads(raw)
    assert "mediaType" not in manifest  # like umoci's: the type came only with the PUT's Content-Type
    served = server.get_manifest("alice/podman", "v1", alice)
    assert served.headers["content-type"] == OCI_MANIFEST
    assert served.content == raw.encode()
    assert manifest["config"]["digest"] == image.config_digest  # the config travels unchanged
    assert len(manifest["layers"]) == len(image.layer_digests)

    clients.podman("rmi", "--all", "--force")
    delivered = server.delivered()
    pulled = podman_pull(clients, dest, alice.creds)
    assert pulled == image_id  # podman checked every layer against the config's diff_ids
    assert server.delivered(at_least=delivered + 1) > delivered  # the layers came through the blob redirect
    info = image_inspect(clients, pulled)
    assert info["Labels"]["org.opencontainers.image.title"] == "podman-roundtrip"
    assert f"{dest.rsplit(':', 1)[0]}@{info['Digest']}" in info["RepoDigests"]
    skopeo_digest = clients.inspect_json(f"docker://{dest}", alice.creds)["Digest"]
    assert info["Digest"] == skopeo_digest


def test_push_docker_schema2(server, alice, clients, images):
    image = images.image("podman-v2s2")
    image_id = load_from_layout(clients, image)
    dest = f"{server.host}/alice/podman-v2s2:v1"
    push = podman_push(clients, image_id, dest, alice.creds, "--format", "v2s2", debug=True)
    assert "PATCH http://" in push.stderr

    manifest = json.loads(clients.inspect(f"docker://{dest}", alice.creds, raw=True).stdout)
    assert manifest["mediaType"] == DOCKER_V2S2
    assert {layer["mediaType"] for layer in manifest["layers"]} == {DOCKER_LAYER}
    # The streamed uploads ended with the sizes the manifest declares (none was cut short or padded).
    stored = {e.digest: e.data["size"] for e in server.audit("blob:push", "alice/podman-v2s2")}
    for layer in manifest["layers"]:
        assert stored[layer["digest"]] == layer["size"]
    digest = clients.inspect_json(f"docker://{dest}", alice.creds)["Digest"]

    clients.podman("rmi", "--all", "--force")
    by_digest = f"{server.host}/alice/podman-v2s2@{digest}"
    assert podman_pull(clients, by_digest, alice.creds) == image_id
    assert image_inspect(clients, image_id)["Digest"] == digest


@pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap not installed")
def test_real_debian_root(server, alice, clients, images):
    """A Debian root built by mmdebstrap (about 2 MiB of real binaries), plus a layer deleting a file."""
    image = images.debian("podman-debian")
    image_id = load_from_layout(clients, image)
    dest = f"{server.host}/alice/debian:bookworm"
    podman_push(clients, image_id, dest, alice.creds)
    clients.podman("rmi", "--all", "--force")
    assert podman_pull(clients, dest, alice.creds) == image_id
    info = image_inspect(clients, image_id)
    assert info["Size"] > 1_000_000
    history = clients.podman("image", "history", "--format", "{{.CreatedBy}}", image_id).stdout
    assert "layer 0" in history and "layer 1" in history


def test_manifest_list_push_all(server, alice, clients, images):
    """``podman manifest push --all``: both platform images, then the list that names them."""
    index = images.index("podman-multi")
    clients.podman("manifest", "create", "multi")
    for image in index.images.values():
        clients.podman("manifest", "add", "multi", image.oci)
    dest = f"docker://{server.host}/alice/podman-multi:v1"
    clients.podman(
        "manifest", "push", "--all", "--tls-verify=false", "--creds", alice.creds, "multi", dest
    )  # fmt: skip
    raw = clients.inspect(dest, alice.creds, raw=True).stdout
    doc = json.loads(raw)
    platforms = {d["platform"]["architecture"]: d["digest"] for d in doc["manifests"]}
    assert set(platforms) == {"amd64", "arm64"}
    for arch, image in index.images.items():
        # skopeo picks the platform's manifest through the list (and reports the list's digest) ...
        info = clients.inspect_json(dest, alice.creds, global_flags=["--override-arch", arch])
        assert info["Architecture"] == arch
        assert info["Digest"] == clients.inspect_json(dest, alice.creds)["Digest"]
        # ... and the manifest the list names is there by digest, with the right config.
        child = dest.rsplit(":", 1)[0] + "@" + platforms[arch]
        assert clients.inspect_json(child, alice.creds)["Architecture"] == arch
        config = clients.skopeo(
            "inspect", "--config", "--raw", "--tls-verify=false", "--creds", alice.creds, child
        )
        assert json.loads(config.stdout)["architecture"] == image.architecture == arch
