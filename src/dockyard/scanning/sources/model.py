"""What every image source yields, and the manifest walk that all of them share.

A source only has to fetch manifests and blobs by digest; turning an index or manifest into one
``ImageSource`` per platform is the same for an OCI layout on disk, an archive and a registry.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from dockyard.errors import DockyardError, Invalid
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import is_digest
from dockyard.oci.manifest import Descriptor
from dockyard.spec import new_hasher, parse_manifest

MAX_MANIFEST = 4 << 20  # the registry's own limit for a pushed manifest
MAX_CONFIG = 16 << 20
MAX_INDEX_DEPTH = 2  # an index may point at indexes; deeper nesting is not something tools write
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"  # what `docker save` annotates its OCI index with


class SourceError(DockyardError):
    """An image that cannot be opened: a missing file, a bad reference, failed authentication, bad data."""

    code = "SOURCE_ERROR"


@dataclass
class LayerRef:
    """One layer blob as stored (usually compressed); ``open()`` streams it and checks its digest."""

    digest: str
    media_type: str
    size: int
    opener: Callable[[], BinaryIO] = field(repr=False, compare=False)

    def open(self) -> BinaryIO:
        return self.opener()


@dataclass
class ImageSource:
    """One platform's image: its manifest digest, parsed config and layers, base layer first."""

    platform: str | None  # linux/amd64, linux/arm64/v8, ... (from the index, else the config)
    manifest_digest: str
    config: dict[str, Any]
    layers: list[LayerRef]
    config_digest: str = ""


class Fetcher(Protocol):
    """Reads content by digest from wherever an image lives."""

    def manifest(self, digest: str, size: int | None) -> bytes:
        """A manifest or index body, verified against its digest."""

    def blob(self, digest: str, limit: int) -> bytes:
        """A small blob (a config), verified against its digest."""

    def opener(self, digest: str, size: int) -> Callable[[], BinaryIO]:
        """A function that opens a (large) blob for streaming."""


def verify_bytes(body: bytes, digest: str, what: str) -> bytes:
    try:
        hasher = new_hasher(digest)
    except Invalid as exc:
        raise SourceError(f"{what}: invalid digest {digest!r}") from exc
    hasher.update(body)
    if f"{hasher.name}:{hasher.hexdigest()}" != digest:
        raise SourceError(f"{what}: content does not match its digest {digest}")
    return body


def sha256_digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def load_json(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise SourceError(f"{what}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise SourceError(f"{what}: expected a JSON object")
    return doc


def format_platform(platform: dict[str, Any] | None) -> str | None:
    if not platform or not platform.get("os") or not platform.get("architecture"):
        return None
    parts = [str(platform["os"]), str(platform["architecture"])]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)


def _is_attestation(d: Descriptor) -> bool:
    """BuildKit's provenance/SBOM manifests sit in the index as platform unknown/unknown."""
    annotations = d.annotations or {}
    if annotations.get("vnd.docker.reference.type") == "attestation-manifest":
        return True
    return (d.platform or {}).get("os") == "unknown"


def images_from_manifest(
    fetcher: Fetcher,
    body: bytes,
    digest: str,
    *,
    media_type: str | None = None,
    platform: str | None = None,
    depth: int = 0,
) -> list[ImageSource]:
    """Every platform image reachable from one manifest or index."""
    try:
        parsed = parse_manifest(body, media_type)
    except Invalid as exc:
        raise SourceError(f"manifest {digest}: {exc.message}") from exc
    if parsed.is_index:
        if depth >= MAX_INDEX_DEPTH:
            raise SourceError(f"manifest {digest}: indexes nested too deeply")
        images: list[ImageSource] = []
        for child in parsed.manifests:
            if _is_attestation(child) or child.media_type not in mt.MANIFEST_TYPES:
                continue
            child_body = fetcher.manifest(child.digest, child.size)
            images += images_from_manifest(
                fetcher,
                child_body,
                child.digest,
                media_type=child.media_type,
                platform=format_platform(child.platform) or platform,
                depth=depth + 1,
            )
        return images
    assert parsed.config is not None  # parse_manifest guarantees it for image manifests
    config = load_json(fetcher.blob(parsed.config.digest, MAX_CONFIG), f"config {parsed.config.digest}")
    layers = [
        LayerRef(d.digest, d.media_type, d.size, fetcher.opener(d.digest, d.size)) for d in parsed.layers
    ]
    return [
        ImageSource(
            platform=platform or format_platform(config),
            manifest_digest=digest,
            config=config,
            layers=layers,
            config_digest=parsed.config.digest,
        )
    ]


def select_descriptors(index: dict[str, Any], ref: str | None, where: str) -> list[dict[str, Any]]:
    """The descriptors of an OCI layout's index.json that ``ref`` names (a ref.name or a digest).

    Without a ref, a layout holding one image is unambiguous, and so is one whose entries carry no names
    at all (tools that write each platform's manifest straight into index.json)."""
    manifests = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
    if not manifests:
        raise SourceError(f"{where}: the layout holds no images")

    def names(d: dict[str, Any]) -> set[str]:
        annotations = d.get("annotations") or {}
        return {v for k, v in annotations.items() if k in (REF_NAME, CONTAINERD_NAME) and isinstance(v, str)}

    if ref:
        wanted = ref[1:] if ref.startswith("@") else ref
        if is_digest(wanted):
            chosen = [d for d in manifests if d.get("digest") == wanted]
        else:
            chosen = [d for d in manifests if wanted in names(d)]
        if not chosen:
            known = sorted(set().union(*(names(d) for d in manifests)))
            raise SourceError(f"{where}: no image named {ref!r} (names: {', '.join(known) or 'none'})")
        return chosen[:1]
    if len(manifests) == 1 or not any(names(d) for d in manifests):
        return manifests
    known = sorted(set().union(*(names(d) for d in manifests)))
    raise SourceError(f"{where}: holds {len(manifests)} images; name one of: {', '.join(known)}")


def images_from_layout_index(
    fetcher: Fetcher, index: dict[str, Any], ref: str | None, where: str
) -> list[ImageSource]:
    """Every platform image of the entries ``ref`` selects in a layout's index.json."""
    images: list[ImageSource] = []
    for d in select_descriptors(index, ref, where):
        digest, size = d.get("digest"), d.get("size")
        if not isinstance(digest, str) or not is_digest(digest):
            raise SourceError(f"{where}: index.json names an invalid digest {digest!r}")
        body = fetcher.manifest(digest, size if isinstance(size, int) else None)
        images += images_from_manifest(
            fetcher,
            body,
            digest,
            media_type=d.get("mediaType"),
            platform=format_platform(d.get("platform")),
        )
    return images


class VerifyingReader(io.RawIOBase):
    """A window of ``size`` bytes of a file, hashed as it is read front to back; reaching the end with
    the wrong digest or length raises SourceError. A seek switches verification off (the caller then reads
    out of order, and a partial hash proves nothing).

    A failure is sticky: every later read raises it again. The first read to fail may be one whose error is
    not seen (a thread inflating ahead that is stopped at the tar's end), and a reader that then read on and
    met a quiet end would take unverified bytes for verified ones."""

    def __init__(self, raw: BinaryIO, offset: int, size: int, digest: str | None, what: str) -> None:
        self._raw, self._offset, self._size, self._what = raw, offset, size, what
        self._digest = digest
        self._hasher = new_hasher(digest) if digest else None
        self._pos = 0
        self._failure: SourceError | None = None
        raw.seek(offset)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        new = max(0, min(self._size, base + pos))
        if new != self._pos:
            self._hasher = None
        self._pos = new
        self._raw.seek(self._offset + new)
        return new

    def readinto(self, buffer: Any) -> int:
        if self._failure is not None:
            raise self._failure
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        n = self._raw.readinto(memoryview(buffer)[:want])
        if not n:
            self._failure = SourceError(f"{self._what}: truncated at {self._pos} of {self._size} bytes")
            raise self._failure
        if self._hasher is not None:
            self._hasher.update(memoryview(buffer)[:n])
        self._pos += n
        if self._pos == self._size and self._hasher is not None:
            got = f"{self._hasher.name}:{self._hasher.hexdigest()}"
            self._hasher = None
            if got != self._digest:
                self._failure = SourceError(f"{self._what}: content does not match its digest {self._digest}")
                raise self._failure
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def open_window(path: str, offset: int, size: int, digest: str | None, what: str) -> BinaryIO:
    """A buffered, verifying reader over ``size`` bytes of ``path`` starting at ``offset``."""
    raw = open(path, "rb")  # noqa: SIM115 - owned and closed by the returned reader
    try:
        return io.BufferedReader(VerifyingReader(raw, offset, size, digest, what), 1 << 20)  # type: ignore[return-value]
    except BaseException:
        raw.close()
        raise
