"""A small OCI distribution client for protocol tests: Docker token auth, push and pull of blobs and
manifests, over any httpx-compatible client (Starlette's TestClient or a real httpx.Client)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_challenge(header: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


class RegistryClient:
    def __init__(self, http: Any, username: str | None = None, password: str | None = None) -> None:
        self.http = http
        self.username = username
        self.password = password
        self._tokens: dict[str, str] = {}

    # -- auth ----------------------------------------------------------------------------------
    def token(self, scope: str | list[str]) -> str:
        scopes = [scope] if isinstance(scope, str) else scope
        key = " ".join(scopes)
        if key not in self._tokens:
            params = [("service", "dockyard")] + [("scope", s) for s in scopes]
            auth = (self.username, self.password) if self.username else None
            r = self.http.get("/token", params=params, auth=auth)
            r.raise_for_status()
            self._tokens[key] = r.json()["token"]
        return self._tokens[key]

    def headers(self, name: str, actions: str = "pull,push,delete", extra: dict | None = None) -> dict:
        h = {"Authorization": f"Bearer {self.token(f'repository:{name}:{actions}')}"}
        h.update(extra or {})
        return h

    def request(self, method: str, url: str, name: str, actions: str = "pull,push,delete", **kw: Any):
        headers = self.headers(name, actions, kw.pop("headers", None))
        return self.http.request(method, url, headers=headers, **kw)

    # -- blobs ---------------------------------------------------------------------------------
    def push_blob(self, name: str, data: bytes) -> str:
        digest = sha256(data)
        r = self.request("POST", f"/v2/{name}/blobs/uploads/", name)
        assert r.status_code == 202, r.text
        location = r.headers["location"]
        sep = "&" if "?" in location else "?"
        r = self.request(
            "PUT",
            f"{location}{sep}digest={digest}",
            name,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        return digest

    def pull_blob(self, name: str, digest: str) -> httpx.Response:
        return self.request("GET", f"/v2/{name}/blobs/{digest}", name, "pull")

    # -- manifests -----------------------------------------------------------------------------
    def image_manifest(
        self, name: str, layers: list[bytes], config: bytes | None = None, **extra: Any
    ) -> dict[str, Any]:
        config = (
            config
            if config is not None
            else json.dumps(
                {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
            ).encode()
        )
        cfg_digest = self.push_blob(name, config)
        descs = []
        for layer in layers:
            descs.append({"mediaType": OCI_LAYER, "digest": self.push_blob(name, layer), "size": len(layer)})
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": extra.pop("config_media_type", OCI_CONFIG),
                "digest": cfg_digest,
                "size": len(config),
            },
            "layers": descs,
        }
        manifest.update(extra)
        return manifest

    def put_manifest(
        self, name: str, reference: str, manifest: dict | bytes, media_type: str = OCI_MANIFEST
    ) -> httpx.Response:
        body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        return self.request(
            "PUT",
            f"/v2/{name}/manifests/{reference}",
            name,
            content=body,
            headers={"Content-Type": media_type},
        )

    def push_image(self, name: str, tag: str, layers: list[bytes] | None = None, **extra: Any) -> str:
        manifest = self.image_manifest(
            name, layers if layers is not None else [b"layer-" + tag.encode()], **extra
        )
        r = self.put_manifest(name, tag, manifest)
        assert r.status_code == 201, r.text
        return r.headers["docker-content-digest"]

    def get_manifest(self, name: str, reference: str, method: str = "GET") -> httpx.Response:
        return self.request(
            method,
            f"/v2/{name}/manifests/{reference}",
            name,
            "pull",
            headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
        )
