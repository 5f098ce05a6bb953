"""Images in a registry (``docker://HOST/NAME:TAG`` or ``@sha256:...``), pulled over the distribution API.

Authentication is the Docker token flow every registry speaks: a 401 from ``/v2/`` carries a challenge
(``Bearer realm=...,service=...`` or ``Basic``); we ask the realm for a pull-scoped token with Basic
credentials, and renew it when a later request is refused. Credentials come from ``--creds`` or from the
auth files skopeo and docker read. Every manifest and blob is checked against its digest; layers are
streamed to private temporary files and verified before a consumer reads a byte of them.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import is_digest
from dockyard.oci.reference import NAME_RE, is_tag
from dockyard.scanning.sources.model import (
    MAX_MANIFEST,
    ImageSource,
    SourceError,
    images_from_manifest,
    sha256_digest,
    verify_bytes,
)
from dockyard.spec import new_hasher

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
ACCEPT = ", ".join(
    [mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST]
)  # never schema 1: we cannot read it
TIMEOUT = httpx.Timeout(30.0, read=300.0)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"|(\w+)=([^\s,]+)')


@dataclass(frozen=True)
class DockerRef:
    registry: str  # as written (docker.io for Docker Hub)
    repository: str
    tag: str | None
    digest: str | None

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"


def parse_docker_ref(text: str) -> DockerRef:
    """``//HOST/NAME[:TAG][@DIGEST]`` (what follows ``docker:``), with Docker Hub's short names."""
    if not text.startswith("//"):
        raise SourceError(f"docker:{text}: expected docker://HOST/NAME:TAG")
    rest, digest = text[2:], None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not is_digest(digest):
            raise SourceError(f"docker:{text}: invalid digest {digest!r}")
    tag = None
    name = rest
    if ":" in rest.rsplit("/", 1)[-1]:
        name, tag = rest.rsplit(":", 1)
        if not is_tag(tag):
            raise SourceError(f"docker:{text}: invalid tag {tag!r}")
    first, _, remainder = name.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
    else:
        registry, repository = DOCKER_HUB, name
        if "/" not in repository:
            repository = f"library/{repository}"
    if not NAME_RE.fullmatch(repository):
        raise SourceError(f"docker:{text}: invalid repository name {repository!r}")
    return DockerRef(registry, repository, tag, digest)


def _decode_auth_entry(entry: Any) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return (user, password) if sep else None
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return entry["username"], entry["password"]
    return None


def _auth_key_host(key: str) -> str:
    """``https://host:5000/v1/`` -> ``host:5000``: auth files key registries in several spellings."""
    key = key.split("://", 1)[-1]
    return key.split("/", 1)[0]


def auth_files(environ: Mapping[str, str]) -> list[Path]:
    """Where skopeo/podman and docker keep credentials, in the order skopeo consults them."""
    files = []
    if environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(environ["REGISTRY_AUTH_FILE"]))
    if environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    home = environ.get("HOME")
    if home:
        files.append(Path(home) / ".config" / "containers" / "auth.json")
    if environ.get("DOCKER_CONFIG"):
        files.append(Path(environ["DOCKER_CONFIG"]) / "config.json")
    elif home:
        files.append(Path(home) / ".docker" / "config.json")
    return files


def find_credentials(registry: str, creds: str | None, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """``--creds user:pass`` first, then the first auth file with an entry for ``registry``."""
    if creds is not None:
        user, sep, password = creds.partition(":")
        if not sep or not user:
            raise SourceError("--creds must be USER:PASSWORD")
        return user, password
    wanted = {registry}
    if registry == DOCKER_HUB:
        wanted |= {"index.docker.io", DOCKER_HUB_API}
    for path in auth_files(environ):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        auths = doc.get("auths") if isinstance(doc, dict) else None
        if not isinstance(auths, dict):
            continue
        for key, entry in auths.items():
            if isinstance(key, str) and _auth_key_host(key) in wanted:
                found = _decode_auth_entry(entry)
                if found:
                    return found
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in _CHALLENGE_PARAM.finditer(rest):
        key = m.group(1) or m.group(3)
        params[key.lower()] = m.group(2) if m.group(1) else m.group(4)
    return scheme.lower(), params


def _is_loopback(host: str) -> bool:
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    hostname = hostname.strip("[]")
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


class RegistryFetcher:
    """Reads one repository of one registry, authenticating as needed."""

    def __init__(
        self,
        ref: DockerRef,
        client: httpx.Client,
        credentials: tuple[str, str] | None,
        tmpdir: Path,
        allow_http: bool,
    ) -> None:
        self.ref, self.client, self.credentials, self.tmpdir = ref, client, credentials, tmpdir
        self.allow_http = allow_http
        self.base = f"https://{ref.api_host}"
        self.authorization: str | None = None
        self._downloaded: dict[str, Path] = {}

    # -- connection and authentication

    def connect(self) -> None:
        """Find the scheme (falling back to http only where allowed) and authenticate up front."""
        try:
            response = self.client.get(f"{self.base}/v2/")
        except httpx.HTTPError as exc:
            if not self.allow_http:
                raise SourceError(
                    f"{self.ref.registry}: cannot reach the registry over https ({exc})"
                ) from exc
            self.base = f"http://{self.ref.api_host}"
            try:
                response = self.client.get(f"{self.base}/v2/")
            except httpx.HTTPError as exc2:
                raise SourceError(f"{self.ref.registry}: cannot reach the registry ({exc2})") from exc2
        if response.status_code == 401:
            self._authenticate(response)
        elif response.status_code >= 400:
            raise SourceError(f"{self.ref.registry}: /v2/ answered {response.status_code}")

    def _authenticate(self, response: httpx.Response) -> None:
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if not self.credentials:
                raise SourceError(f"{self.ref.registry}: the registry requires credentials")
            user, password = self.credentials
            self.authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            return
        if scheme != "bearer" or not params.get("realm"):
            raise SourceError(f"{self.ref.registry}: unsupported authentication challenge {scheme!r}")
        query = {"scope": f"repository:{self.ref.repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        auth = httpx.BasicAuth(*self.credentials) if self.credentials else None
        try:
            token_response = self.client.get(params["realm"], params=query, auth=auth)
        except httpx.HTTPError as exc:
            raise SourceError(f"{self.ref.registry}: token request failed ({exc})") from exc
        if token_response.status_code in (401, 403):
            raise SourceError(f"{self.ref.registry}: authentication failed (check the credentials)")
        if token_response.status_code >= 400:
            raise SourceError(f"{self.ref.registry}: token endpoint answered {token_response.status_code}")
        try:
            body = token_response.json()
        except ValueError as exc:
            raise SourceError(f"{self.ref.registry}: the token endpoint did not answer JSON") from exc
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceError(f"{self.ref.registry}: the token endpoint returned no token")
        self.authorization = f"Bearer {token}"

    @contextmanager
    def _get(self, path: str, accept: str | None = None) -> Iterator[httpx.Response]:
        """A streamed GET; one refusal renews the token (it may have expired or lack this scope)."""
        url = f"{self.base}/v2/{self.ref.repository}/{path}"
        for attempt in range(2):
            headers = {"Accept": accept} if accept else {}
            if self.authorization:
                headers["Authorization"] = self.authorization
            try:
                with self.client.stream("GET", url, headers=headers) as response:
                    if response.status_code == 401 and attempt == 0:
                        response.read()
                        self._authenticate(response)
                        continue
                    self._check(response, path)
                    yield response
                    return
            except httpx.HTTPError as exc:
                raise SourceError(f"{self.ref.registry}: GET {path} failed ({exc})") from exc

    def _check(self, response: httpx.Response, path: str) -> None:
        status = response.status_code
        if status < 400:
            return
        where = f"{self.ref.registry}/{self.ref.repository}"
        if status in (401, 403):
            raise SourceError(f"{where}: access denied to {path} (check the credentials)")
        if status == 404:
            raise SourceError(f"{where}: {path} not found")
        raise SourceError(f"{where}: GET {path} answered {status}")

    def _read_bounded(self, response: httpx.Response, limit: int, what: str) -> bytes:
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise SourceError(f"{what}: larger than {limit} bytes")
        return bytes(body)

    # -- the Fetcher protocol

    def top_manifest(self) -> tuple[bytes, str, str | None]:
        """The manifest the reference names: body, digest, media type."""
        reference = self.ref.reference
        with self._get(f"manifests/{reference}", ACCEPT) as response:
            body = self._read_bounded(response, MAX_MANIFEST, f"manifest {reference}")
            media_type = response.headers.get("Content-Type")
        if self.ref.digest:
            return verify_bytes(body, self.ref.digest, f"manifest {reference}"), self.ref.digest, media_type
        return body, sha256_digest(body), media_type

    def manifest(self, digest: str, size: int | None) -> bytes:
        with self._get(f"manifests/{digest}", ACCEPT) as response:
            body = self._read_bounded(response, MAX_MANIFEST, f"manifest {digest}")
        return verify_bytes(body, digest, f"manifest {digest}")

    def blob(self, digest: str, limit: int) -> bytes:
        with self._get(f"blobs/{digest}") as response:
            body = self._read_bounded(response, limit, f"blob {digest}")
        return verify_bytes(body, digest, f"blob {digest}")

    def opener(self, digest: str, size: int) -> Callable[[], BinaryIO]:
        return lambda: self._download(digest, size).open("rb")

    def _download(self, digest: str, size: int) -> Path:
        """The verified layer in a temporary file (downloaded once per open_image)."""
        if digest in self._downloaded:
            return self._downloaded[digest]
        target = self.tmpdir / ("blob-" + hashlib.sha256(digest.encode()).hexdigest()[:32])
        hasher = new_hasher(digest)
        written = 0
        with self._get(f"blobs/{digest}") as response, target.open("wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                written += len(chunk)
                if written > size:
                    raise SourceError(f"blob {digest}: longer than the {size} bytes the manifest says")
                hasher.update(chunk)
                out.write(chunk)
        if written != size or f"{hasher.name}:{hasher.hexdigest()}" != digest:
            target.unlink(missing_ok=True)
            raise SourceError(f"blob {digest}: content does not match its digest and size")
        self._downloaded[digest] = target
        return target


def open_registry(
    text: str,
    *,
    creds: str | None,
    tls_verify: bool,
    environ: Mapping[str, str],
    tmpdir: Path,
    client: httpx.Client,
) -> list[ImageSource]:
    """Every platform image ``docker:text`` names."""
    ref = parse_docker_ref(text)
    fetcher = RegistryFetcher(
        ref,
        client,
        find_credentials(ref.registry, creds, environ),
        tmpdir,
        allow_http=not tls_verify or _is_loopback(ref.api_host),
    )
    fetcher.connect()
    body, digest, media_type = fetcher.top_manifest()
    return images_from_manifest(fetcher, body, digest, media_type=media_type)


def make_client(tls_verify: bool, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    # httpx drops the Authorization header when a blob GET redirects to another host (object storage).
    return httpx.Client(timeout=TIMEOUT, follow_redirects=True, verify=tls_verify, transport=transport)
