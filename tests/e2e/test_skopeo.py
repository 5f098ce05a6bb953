"""skopeo 1.9 against dockyard: copies that keep digests, tags, deletes, image indexes, cross-repo mounts."""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.clients import require_tools
from tests.support.images import OCI_INDEX, check_layer_blob, descriptor_for, read_blob

require_tools("skopeo", "umoci")
pytestmark = pytest.mark.e2e


def sha256(data: str | bytes) -> str:
    return "sha256:" + hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@pytest.fixture(scope="module")
def alice(server):
    return server.user("alice")


def test_copy_to_dockyard_and_back_keeps_every_digest(server, alice, clients, images, oci_dir):
    image = images.image("skopeo-roundtrip")
    ref = server.ref("alice/roundtrip:v1")
    clients.copy(image.oci, ref, dest_creds=alice.creds)

    raw = clients.inspect(ref, alice.creds, raw=True).stdout.encode()
    assert raw == read_blob(image.layout, image.digest)  # byte for byte, so the digest is kept
    assert sha256(raw) == image.digest
    info = clients.inspect_json(ref, alice.creds)
    assert info["Digest"] == image.digest
    assert info["Layers"] == image.layer_digests
    assert info["Architecture"] == "amd64"
    assert info["Labels"]["org.opencontainers.image.title"] == "skopeo-roundtrip"
    config = clients.skopeo("inspect", "--config", "--raw", "--tls-verify=false", "--creds", alice.creds, ref)
    assert sha256(config.stdout) == image.config_digest
    by_digest = clients.inspect_json(server.ref(f"alice/roundtrip@{image.digest}"), alice.creds)
    assert by_digest["Digest"] == image.digest

    back = oci_dir("roundtrip")
    delivered = server.delivered()
    clients.copy(ref, f"oci:{back}:v1", src_creds=alice.creds)
    # skopeo followed the blob GETs' redirects: the delivery server sent every blob.
    total = sum(len(read_blob(image.layout, d)) for d in image.blob_digests)
    assert server.delivered(at_least=delivered + total) - delivered >= total
    assert descriptor_for(back, "v1")["digest"] == image.digest
    for digest in image.blob_digests:
        assert read_blob(back, digest) == read_blob(image.layout, digest)
    for digest in image.layer_digests:
        check_layer_blob(back, digest)  # whole tars came back, not just the right number of bytes


def test_list_tags_and_delete(server, alice, clients, images):
    first, second = images.image("skopeo-tags-a"), images.image("skopeo-tags-b")
    clients.copy(first.oci, server.ref("alice/tagged:v1"), dest_creds=alice.creds)
    clients.copy(first.oci, server.ref("alice/tagged:latest"), dest_creds=alice.creds)
    clients.copy(second.oci, server.ref("alice/tagged:v2"), dest_creds=alice.creds)

    def tags() -> list[str]:
        out = clients.skopeo(
            "list-tags", "--tls-verify=false", "--creds", alice.creds, server.ref("alice/tagged")
        )
        return json.loads(out.stdout)["Tags"]

    assert sorted(tags()) == ["latest", "v1", "v2"]

    # skopeo deletes the manifest the tag names (by digest): every tag of it goes with it.
    clients.skopeo("delete", "--tls-verify=false", "--creds", alice.creds, server.ref("alice/tagged:v1"))
    missing = clients.inspect(server.ref("alice/tagged:v1"), alice.creds, check=False)
    assert missing.returncode != 0
    assert "manifest unknown" in missing.stderr
    gone = clients.inspect(server.ref(f"alice/tagged@{first.digest}"), alice.creds, raw=True, check=False)
    assert gone.returncode != 0
    assert tags() == ["v2"]
    assert clients.inspect_json(server.ref("alice/tagged:v2"), alice.creds)["Digest"] == second.digest


def test_multi_arch_index_with_all_and_preserve_digests(server, alice, clients, images, oci_dir):
    index = images.index("skopeo-multi")
    ref = server.ref("alice/multi:v1")
    clients.copy(index.oci, ref, dest_creds=alice.creds, flags=["--all", "--preserve-digests"])

    raw = clients.inspect(ref, alice.creds, raw=True).stdout
    assert sha256(raw) == index.digest
    doc = json.loads(raw)
    assert doc["mediaType"] == OCI_INDEX
    assert {d["platform"]["architecture"]: d["digest"] for d in doc["manifests"]} == {
        arch: image.digest for arch, image in index.images.items()
    }
    for arch, image in index.images.items():
        # Each platform resolves through the index, and pulls whole.
        info = clients.inspect_json(ref, alice.creds, global_flags=["--override-arch", arch])
        assert info["Architecture"] == arch
        assert info["Layers"] == image.layer_digests
        out = oci_dir(f"multi-{arch}")
        clients.skopeo(
            "--override-arch", arch, "copy", "--src-tls-verify=false", "--src-creds", alice.creds,
            ref, f"oci:{out}:{arch}",
        )  # fmt: skip
        assert descriptor_for(out, arch)["digest"] == image.digest
        for digest in image.layer_digests:
            check_layer_blob(out, digest)

    # And the whole index comes back with its digest.
    whole = oci_dir("multi-all")
    clients.copy(ref, f"oci:{whole}:multi", src_creds=alice.creds, flags=["--all", "--preserve-digests"])
    assert descriptor_for(whole, "multi")["digest"] == index.digest


def test_second_repository_mounts_blobs_instead_of_uploading(server, alice, clients, images):
    image = images.image("skopeo-mount")
    clients.copy(image.oci, server.ref("alice/mount-src:v1"), dest_creds=alice.creds)
    result = clients.copy(image.oci, server.ref("alice/mount-dst:v1"), dest_creds=alice.creds, debug=True)

    log = result.stderr
    assert "Trying to mount" in log, log[-3000:]
    assert log.count("mount OK") == len(image.layer_digests), log[-3000:]
    mounts = server.audit("blob:mount", "alice/mount-dst")
    assert {m.digest for m in mounts} == set(image.layer_digests), (mounts, log[-3000:])
    assert {m.data["from"] for m in mounts} == {"alice/mount-src"}
    pushed = {e.digest for e in server.audit("blob:push", "alice/mount-dst")}
    assert pushed.isdisjoint(image.layer_digests)  # no layer was uploaded a second time
    assert clients.inspect_json(server.ref("alice/mount-dst:v1"), alice.creds)["Digest"] == image.digest


def test_mount_from_a_repository_the_user_cannot_read_uploads_instead(server, alice, clients, images):
    """A mount names its source; one the pusher may not read must not leak into their repository."""
    image = images.image("skopeo-mount-private")
    mallory = server.user("mallory")
    clients.copy(image.oci, server.ref("alice/secret:v1"), dest_creds=alice.creds)
    # mallory knows the digests but not the content; a mount from alice/secret would hand it over.
    result = clients.copy(image.oci, server.ref("mallory/copy:v1"), dest_creds=mallory.creds, debug=True)
    assert "mount OK" not in result.stderr
    assert server.audit("blob:mount", "mallory/copy") == []


def test_parallel_pushes_and_logins_do_not_stall(server, alice, clients, images):
    """Many writers at once: pushes by skopeo while more password logins arrive than the server has
    worker threads. Writers used to wait for SQLite's lock inside those threads (or on the event loop),
    so the lock's holder could not finish: everything stalled for busy_timeout (30 s), then failed."""
    burst = (os.cpu_count() or 2) + 4 + 4  # more than asyncio's default thread pool
    pushes = [images.image(f"skopeo-parallel-{i}") for i in range(4)]

    def push(i: int) -> int:
        ref = server.ref(f"alice/parallel-{i}:v1")
        return clients.copy(pushes[i].oci, ref, dest_creds=alice.password_creds).returncode

    def login(_: int) -> int:
        params = {"service": "dockyard", "scope": "repository:alice/parallel-0:pull,push"}
        auth = (alice.username, alice.password)
        return httpx.get(f"{server.url}/token", params=params, auth=auth, timeout=120).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(len(pushes) + burst) as pool:
        copies = [pool.submit(push, i) for i in range(len(pushes))]
        logins = [pool.submit(login, i) for i in range(burst)]
        assert [f.result() for f in logins] == [200] * burst
        assert [f.result() for f in copies] == [0] * len(pushes)
    assert time.monotonic() - started < 25, "requests waited for SQLite's busy timeout"
    for i, image in enumerate(pushes):
        assert (
            clients.inspect_json(server.ref(f"alice/parallel-{i}:v1"), alice.creds)["Digest"] == image.digest
        )
