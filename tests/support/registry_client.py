"""A small OCI distribution client for protocol tests: Docker token auth, push and pull of blobs and
manifests, over any httpx-compatible client (Starlette's TestClient or a real httpx.Client)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
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
    """``basic``: send the credentials with every /v2 request (Basic) instead of fetching tokens."""

    def __init__(
        self, http: Any, username: str | None = None, password: str | None = None, *, basic: bool = False
    ) -> None:
        self.http = http
        self.username = username
        self.password = password
        self.basic = basic
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
        if self.basic:
            h = basic_auth(self.username or "", self.password or "")
        else:
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


# -- helpers for protocol tests (token requests, assertions, a per-test guard) ----------------------------
OCI_ERROR_CODES = frozenset(
    {
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
        # Not in the spec's table, but used by registries for these cases.
        "TAG_INVALID",
        "PAGINATION_NUMBER_INVALID",
        "RANGE_INVALID",
        "MANIFEST_TOO_LARGE",
    }
)
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"


def request_token(
    http: Any,
    scopes: list[str] | str = (),
    username: str | None = None,
    password: str | None = None,
    *,
    service: str | None = "dockyard",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """GET /token with optional Basic credentials; returns the raw response."""
    scopes = [scopes] if isinstance(scopes, str) else list(scopes)
    params = ([("service", service)] if service else []) + [("scope", s) for s in scopes]
    auth = (username, password or "") if username is not None else None
    return http.get("/token", params=params, auth=auth, headers=headers)


def get_token(
    http: Any, scopes: list[str] | str = (), username: str | None = None, password: str | None = None
):
    """A bearer token for ``scopes``; fails the test when the token endpoint refuses."""
    r = request_token(http, scopes, username, password)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def bearer(token: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **(extra or {})}


def basic_auth(username: str, secret: str) -> dict[str, str]:
    """``Authorization: Basic`` for ``username:secret``."""
    raw = f"{username}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def decode_token(token: str) -> dict[str, Any]:
    """The claims of a registry token, without checking its signature (what tests inspect)."""
    import jwt

    return jwt.decode(token, options={"verify_signature": False})


def access_of(token: str) -> dict[tuple[str, str], list[str]]:
    """``{(type, name): actions}`` of a token's ``access`` claim."""
    return {(a["type"], a["name"]): a["actions"] for a in decode_token(token)["access"]}


def assert_oci_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is ``status`` with an OCI error envelope whose first error is ``code``."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"errors"}, body
    assert len(body["errors"]) == 1, body
    error = body["errors"][0]
    assert error["code"] == code, body
    assert isinstance(error["message"], str) and error["message"], body
    assert set(error) <= {"code", "message", "detail"}, body
    return error


def assert_api_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with the JSON API's ``{"error": {"code", "message"}}`` body."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body
    assert set(error) <= {"code", "message", "detail"}, body
    if code is not None:
        assert error["code"] == code, body
    return error


def _check_response_shape(response: httpx.Response, problems: list[str]) -> None:
    request = response.request
    where = f"{request.method} {request.url.path} -> {response.status_code}"
    if response.status_code >= 500:
        response.read()
        problems.append(f"{where}: server error {response.text[:300]}")
        return
    if response.status_code < 400 or request.method == "HEAD":
        return
    response.read()
    path = request.url.path
    # pages (the store's customer pages too), and the images they show: HTML errors
    if path.startswith(("/ui/", "/catalog-images/", "/products/", "/publishers/")):
        if "text/html" not in response.headers.get("content-type", ""):
            problems.append(f"{where}: a page error that is not an HTML page")
        return
    if response.status_code == 416 and "/blobs/" in path and "/uploads/" not in path and not response.content:
        return  # an unsatisfiable Range on a blob GET is plain HTTP (as in Distribution), not an OCI error
    try:
        body = response.json()
    except ValueError:
        problems.append(f"{where}: error body is not JSON: {response.text[:200]!r}")
        return
    if path.startswith("/v2") or path == "/token":
        errors = body.get("errors") if isinstance(body, dict) else None
        if not (
            isinstance(errors, list)
            and errors
            and all(
                isinstance(e, dict)
                and e.get("code") in OCI_ERROR_CODES
                and isinstance(e.get("message"), str)
                and set(e) <= {"code", "message", "detail"}
                for e in errors
            )
        ):
            problems.append(f"{where}: not an OCI error envelope: {body}")
    elif path.startswith("/api/"):
        error = body.get("error") if isinstance(body, dict) else None
        if not (isinstance(error, dict) and isinstance(error.get("code"), str) and "message" in error):
            problems.append(f"{where}: not an API error body: {body}")


def protocol_guard(client: Any, monkeypatch: Any) -> Iterator[list[str]]:
    """Per-test guard for protocol tests: no response is a 5xx, every error body is in its protocol's
    envelope; and argon2 runs with cheap parameters so logins do not dominate the suite's time."""
    from argon2 import PasswordHasher

    from dockyard.accounts import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    problems: list[str] = []
    client.event_hooks["response"].append(lambda r: _check_response_shape(r, problems))
    yield problems
    assert not problems, "\n".join(problems)
