"""Images on disk: an OCI layout directory, an OCI layout in a tar (oci-archive), a ``docker save`` tarball.

Archives are never extracted. An uncompressed tar is indexed once (headers only) and each blob is read in
place at its data offset, so a hostile member name can do nothing: names are only looked up, never used as
paths. A compressed archive is first inflated to one private temporary tar, within a size bound.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import posixpath
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO

import zstandard

from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import is_digest
from dockyard.scanning.sources.model import (
    MAX_CONFIG,
    MAX_MANIFEST,
    ImageSource,
    LayerRef,
    SourceError,
    format_platform,
    images_from_layout_index,
    load_json,
    open_window,
    sha256_digest,
    verify_bytes,
)
from dockyard.spec import parse_digest

MAX_INFLATED_ARCHIVE = 64 << 30
MAX_LINK_HOPS = 8


class Files:
    """Read-only access to the files of a layout or archive by relative path."""

    where: str

    def size(self, name: str) -> int | None:
        raise NotImplementedError

    def read(self, name: str, limit: int) -> bytes:
        raise NotImplementedError

    def open(self, name: str, digest: str | None) -> BinaryIO:
        raise NotImplementedError


def _norm(name: str) -> str:
    """A member or file name made relative and free of ``..``: it can only name something inside."""
    return posixpath.normpath("/" + name).lstrip("/")


class DirFiles(Files):
    def __init__(self, root: Path, where: str) -> None:
        self.root, self.where = root, where

    def _path(self, name: str) -> Path:
        return self.root / _norm(name)  # normalised under "/" first, so it cannot climb out

    def size(self, name: str) -> int | None:
        p = self._path(name)
        return p.stat().st_size if p.is_file() else None

    def read(self, name: str, limit: int) -> bytes:
        size = self.size(name)
        if size is None:
            raise SourceError(f"{self.where}: {name} is missing")
        if size > limit:
            raise SourceError(f"{self.where}: {name} is {size} bytes, more than {limit}")
        return self._path(name).read_bytes()

    def open(self, name: str, digest: str | None) -> BinaryIO:
        size = self.size(name)
        if size is None:
            raise SourceError(f"{self.where}: {name} is missing")
        return open_window(str(self._path(name)), 0, size, digest, f"{self.where}: {name}")


class TarFiles(Files):
    """Members of an uncompressed tar, looked up by normalised name and read at their data offsets."""

    def __init__(self, path: Path, where: str) -> None:
        self.path, self.where = path, where
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            with tarfile.open(path, "r:") as tf:
                for member in tf:
                    self.members[_norm(member.name)] = member  # a later entry replaces an earlier one
        except (tarfile.TarError, OSError) as exc:
            raise SourceError(f"{where}: not a readable tar archive ({exc})") from exc

    def _member(self, name: str) -> tarfile.TarInfo | None:
        name = _norm(name)
        for _ in range(MAX_LINK_HOPS):
            member = self.members.get(name)
            if member is None:
                return None
            if member.issym():  # docker save links repeated layers to the first copy
                name = _norm(posixpath.join(posixpath.dirname(name), member.linkname))
            elif member.islnk():
                name = _norm(member.linkname)
            elif member.isfile() and not member.issparse():
                return member
            else:
                return None
        return None

    def size(self, name: str) -> int | None:
        member = self._member(name)
        return member.size if member else None

    def read(self, name: str, limit: int) -> bytes:
        member = self._member(name)
        if member is None:
            raise SourceError(f"{self.where}: {name} is missing")
        if member.size > limit:
            raise SourceError(f"{self.where}: {name} is {member.size} bytes, more than {limit}")
        with open_window(str(self.path), member.offset_data, member.size, None, self.where) as f:
            return f.read()

    def open(self, name: str, digest: str | None) -> BinaryIO:
        member = self._member(name)
        if member is None:
            raise SourceError(f"{self.where}: {name} is missing")
        return open_window(str(self.path), member.offset_data, member.size, digest, f"{self.where}: {name}")


def _decompressor(head: bytes) -> Callable[[IO[bytes]], IO[bytes]] | None:
    if head.startswith(b"\x1f\x8b"):
        return lambda f: gzip.GzipFile(fileobj=f)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return lambda f: zstandard.ZstdDecompressor().stream_reader(f)  # type: ignore[return-value]
    if head.startswith(b"BZh"):
        return lambda f: bz2.BZ2File(f)
    if head.startswith(b"\xfd7zXZ\x00"):
        return lambda f: lzma.LZMAFile(f)
    return None


def open_tar(path: Path, where: str, tmpdir: Path) -> TarFiles:
    """Index a (possibly compressed) tar archive."""
    if not path.is_file():
        raise SourceError(f"{where}: no such file")
    with path.open("rb") as f:
        decompress = _decompressor(f.read(6))
    if decompress is None:
        return TarFiles(path, where)
    inflated = tmpdir / "archive.tar"
    written = 0
    try:
        with path.open("rb") as raw, decompress(raw) as src, inflated.open("wb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > MAX_INFLATED_ARCHIVE:
                    raise SourceError(f"{where}: inflates past {MAX_INFLATED_ARCHIVE} bytes")
                dst.write(chunk)
    except (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError) as exc:
        raise SourceError(f"{where}: cannot decompress ({exc})") from exc
    return TarFiles(inflated, where)


def _blob_path(digest: str) -> str:
    algorithm, encoded = parse_digest(digest)
    return f"blobs/{algorithm}/{encoded}"


class LayoutFetcher:
    """The blobs of an OCI image layout (a directory or a tar of one)."""

    def __init__(self, files: Files) -> None:
        self.files = files

    def manifest(self, digest: str, size: int | None) -> bytes:
        return verify_bytes(self.files.read(_blob_path(digest), MAX_MANIFEST), digest, self.files.where)

    def blob(self, digest: str, limit: int) -> bytes:
        return verify_bytes(self.files.read(_blob_path(digest), limit), digest, self.files.where)

    def opener(self, digest: str, size: int) -> Callable[[], BinaryIO]:
        name = _blob_path(digest)
        actual = self.files.size(name)
        if actual is None:
            raise SourceError(f"{self.files.where}: blob {digest} is missing")
        if actual != size:
            raise SourceError(
                f"{self.files.where}: blob {digest} is {actual} bytes, the manifest says {size}"
            )
        return lambda: self.files.open(name, digest)


def open_oci_layout(files: Files, ref: str | None) -> list[ImageSource]:
    if files.size("oci-layout") is None or files.size("index.json") is None:
        raise SourceError(f"{files.where}: not an OCI image layout (no oci-layout or index.json)")
    index = load_json(files.read("index.json", MAX_MANIFEST), f"{files.where}: index.json")
    return images_from_layout_index(LayoutFetcher(files), index, ref, files.where)


def _repo_tag_matches(wanted: str, tag: str) -> bool:
    """``docker save`` writes short names (``alpine:3``); skopeo users may write the full one."""
    short = wanted.removeprefix("docker.io/").removeprefix("library/")
    return tag in (wanted, short) or tag.removeprefix("docker.io/").removeprefix("library/") == short


def _select_docker_entry(entries: list[Any], ref: str | None, where: str) -> dict[str, Any]:
    entries = [e for e in entries if isinstance(e, dict)]
    if not entries:
        raise SourceError(f"{where}: manifest.json lists no images")
    if ref and ref.startswith("@"):
        try:
            return entries[int(ref[1:])]
        except (ValueError, IndexError) as exc:
            raise SourceError(f"{where}: no image at index {ref[1:]} of {len(entries)}") from exc
    if ref:
        for entry in entries:
            if any(_repo_tag_matches(ref, t) for t in entry.get("RepoTags") or [] if isinstance(t, str)):
                return entry
        raise SourceError(f"{where}: no image tagged {ref!r}")
    if len(entries) > 1:
        raise SourceError(f"{where}: holds {len(entries)} images; name one (NAME:TAG or @INDEX)")
    return entries[0]


def open_docker_archive(files: Files, ref: str | None) -> list[ImageSource]:
    where = files.where
    if files.size("manifest.json") is None:
        raise SourceError(f"{where}: not a docker-archive (no manifest.json)")
    try:
        entries = json.loads(files.read("manifest.json", MAX_MANIFEST))
    except (ValueError, RecursionError) as exc:
        raise SourceError(f"{where}: manifest.json is not valid JSON ({exc})") from exc
    if not isinstance(entries, list):
        raise SourceError(f"{where}: manifest.json is not a list of images")
    entry = _select_docker_entry(entries, ref, where)
    config_path, layer_paths = entry.get("Config"), entry.get("Layers")
    if not isinstance(config_path, str) or not isinstance(layer_paths, list):
        raise SourceError(f"{where}: manifest.json entry without Config and Layers")
    config_bytes = files.read(config_path, MAX_CONFIG)
    config_digest = sha256_digest(config_bytes)
    # Docker 25+ saves an OCI layout too: when it has this image, its real manifest digest and layer
    # media types are better than anything we could reconstruct.
    if files.size("index.json") is not None and files.size("oci-layout") is not None:
        index = load_json(files.read("index.json", MAX_MANIFEST), f"{where}: index.json")
        try:
            images = images_from_layout_index(LayoutFetcher(files), index, None, where)
        except SourceError:
            images = []
        for image in images:
            if image.config_digest == config_digest:
                return [image]
    config = load_json(config_bytes, f"{where}: {config_path}")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    layers = [
        _legacy_layer(files, p, diff_ids[i] if i < len(diff_ids) else None) for i, p in enumerate(layer_paths)
    ]
    # There is no manifest in a legacy archive; this is the one a registry push would write (modulo
    # compression), so the digest is stable for the same image.
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "size": len(config_bytes), "digest": config_digest},
        "layers": [{"mediaType": la.media_type, "size": la.size, "digest": la.digest} for la in layers],
    }
    manifest_digest = sha256_digest(json.dumps(manifest, separators=(",", ":")).encode())
    return [ImageSource(format_platform(config), manifest_digest, config, layers, config_digest)]


def _layer_media_type(head: bytes) -> str:
    """What a legacy archive's layer is, by its first bytes (the archive does not say)."""
    if head.startswith(b"\x1f\x8b"):
        return mt.DOCKER_LAYER
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return mt.OCI_LAYER_TAR_ZSTD
    return mt.OCI_LAYER_TAR  # `docker save` writes layers uncompressed


def _legacy_layer(files: Files, path: Any, diff_id: Any) -> LayerRef:
    if not isinstance(path, str):
        raise SourceError(f"{files.where}: manifest.json names a layer that is not a path")
    size = files.size(path)
    if size is None:
        raise SourceError(f"{files.where}: layer {path} is missing")
    with files.open(path, None) as f:
        media_type = _layer_media_type(f.read(4))
    name = _norm(path)
    named = name.removeprefix("blobs/").replace("/", ":", 1)
    if name.startswith("blobs/") and is_digest(named):
        digest = named
    elif media_type == mt.OCI_LAYER_TAR and isinstance(diff_id, str) and is_digest(diff_id):
        digest = diff_id  # an uncompressed layer's digest is its diff ID; checked as it is read
    else:
        digest = _hash_file(files, path)
    return LayerRef(digest, media_type, size, lambda: files.open(path, digest))


def _hash_file(files: Files, path: str) -> str:
    hasher = hashlib.sha256()
    with files.open(path, None) as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()
