"""Images for the registry browser's tests, pushed over HTTP with RegistryClient (a TestClient or a live
server's httpx.Client): a scannable Debian image with a config worth showing, a second tag, a two-platform
index, an SBOM referrer, and a public repository."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.support.registry_client import OCI_INDEX, OCI_MANIFEST, RegistryClient, sha256
from tests.support.scanimages import debian_layer, file_layer

SBOM_TYPE = "application/vnd.example.sbom.v1+json"
EVIL_LABEL = "<script>alert('label')</script>"
PACKAGES = [("zlib1g", "1:1.2.13.dfsg-1", "zlib"), ("libfoo1", "1.0-1", "foo")]


def config(arch: str, *, variant: str | None = None, labels: dict[str, str] | None = None) -> bytes:
    doc: dict[str, Any] = {
        "architecture": arch,
        "os": "linux",
        "created": "2026-03-01T12:34:56.123456789Z",
        "config": {
            "Entrypoint": ["/usr/bin/app"],
            "Cmd": ["--serve", "--port=8080"],
            "Env": ["PATH=/usr/bin", "APP_MODE=production"],
            "WorkingDir": "/srv",
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": labels or {},
        },
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created_by": "ADD rootfs"}, {"created_by": "COPY app"}],
    }
    if variant:
        doc["variant"] = variant
    return json.dumps(doc, sort_keys=True).encode()


@dataclass
class Pushed:
    repo: str
    public_repo: str
    v1: str  # digest of app:v1 (scannable: zlib and foo are in it)
    v2: str
    index: str  # app:multi, two platforms
    amd64: str
    arm64: str
    sbom: str  # a referrer of v1


def put(reg: RegistryClient, name: str, reference: str, doc: dict[str, Any], media_type: str) -> str:
    body = json.dumps(doc).encode()
    r = reg.put_manifest(name, reference, body, media_type)
    assert r.status_code == 201, r.text
    return r.headers["docker-content-digest"]


def push_world(http: Any, username: str, password: str, org: str) -> Pushed:
    """Push the browser's world into organisation ``org`` as ``username``, its owner (who makes one
    repository public)."""
    reg = RegistryClient(http, username, password)
    repo, public_repo = f"{org}/app", f"{org}/public-tools"
    labels = {"org.opencontainers.image.title": "app", "evil": EVIL_LABEL}
    v1_doc = reg.image_manifest(
        repo, [debian_layer(PACKAGES), file_layer("srv/app", "v1")], config=config("amd64", labels=labels)
    )
    v1 = put(reg, repo, "v1", v1_doc, OCI_MANIFEST)
    v2_doc = reg.image_manifest(repo, [debian_layer(PACKAGES[:1])], config=config("amd64"))
    v2 = put(reg, repo, "v2", v2_doc, OCI_MANIFEST)

    children = []
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        doc = reg.image_manifest(
            repo, [file_layer(f"srv/{arch}", arch * 50)], config=config(arch, variant=variant)
        )
        body = json.dumps(doc).encode()
        digest = put(reg, repo, sha256(body), doc, OCI_MANIFEST)
        platform = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
        children.append(
            {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body), "platform": platform}
        )
    index = put(
        reg, repo, "multi", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}, OCI_INDEX
    )

    empty = reg.push_blob(repo, b"{}")
    sbom_blob = json.dumps({"spdxVersion": "SPDX-2.3", "name": "app"}).encode()
    sbom_doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [
            {
                "mediaType": "application/spdx+json",
                "digest": reg.push_blob(repo, sbom_blob),
                "size": len(sbom_blob),
            }
        ],
        "subject": {"mediaType": OCI_MANIFEST, "digest": v1, "size": len(json.dumps(v1_doc).encode())},
        "annotations": {
            "org.opencontainers.image.created": "2026-03-02T00:00:00Z",
            "com.example.tool": "syft",
        },
    }
    sbom_body = json.dumps(sbom_doc).encode()
    sbom = put(reg, repo, sha256(sbom_body), sbom_doc, OCI_MANIFEST)

    tools = reg.image_manifest(public_repo, [file_layer("bin/tool", "tool")], config=config("amd64"))
    put(reg, public_repo, "1.0", tools, OCI_MANIFEST)
    r = http.put(
        f"/api/v1/repositories/{public_repo}/visibility", json={"public": True}, auth=(username, password)
    )
    assert r.status_code == 200, r.text
    return Pushed(repo, public_repo, v1, v2, index, children[0]["digest"], children[1]["digest"], sbom)


def push_many_tags(http: Any, username: str, password: str, name: str, count: int) -> str:
    """One image under ``count`` tags t000, t001...; returns its digest."""
    reg = RegistryClient(http, username, password)
    doc = reg.image_manifest(name, [file_layer("srv/many", "many")], config=config("amd64"))
    digest = ""
    for i in range(count):
        digest = put(reg, name, f"t{i:03d}", doc, OCI_MANIFEST)
    return digest
