"""Layers -> components: what each layer says (``LayerFacts``, cacheable by layer digest because a layer's
facts do not depend on the image it is in) and how the layers of one image combine (``merge``).

The facts of a layer record only what later merging needs: the components of every file a detector parsed
(an empty list still replaces a lower layer's copy), which package database declared which owned path,
whiteouts, opaque directories, the paths that non-regular entries take over (a symlink or device hides what
lower layers had at and below its path), and the texts of the os-release family of files.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, BinaryIO

from dockyard.scanning.detectors.apk import apk_purl
from dockyard.scanning.detectors.base import Detector, DetectorResult
from dockyard.scanning.detectors.dpkg import deb_purl
from dockyard.scanning.detectors.node import runtime_duplicates
from dockyard.scanning.detectors.npm import lockfile_duplicates
from dockyard.scanning.detectors.osrelease import MAX_OS_FILE, OS_FILES, detect_os, os_release_fields
from dockyard.scanning.detectors.rpm import rpm_purl
from dockyard.scanning.layers import (
    DEFAULT_LIMITS,
    DIR,
    FILE,
    HARDLINK,
    OPAQUE,
    SYMLINK,
    WHITEOUT,
    LayerError,
    LayerWalker,
    Limits,
    TarEntry,
    normalize_path,
)
from dockyard.scanning.types import Component, Ecosystem, ImageIndex, OSInfo, UnsafeInput

FORMAT = 4  # bump when LayerFacts or what any detector reports changes: cached facts are then stale
OS_ECOSYSTEMS = frozenset({Ecosystem.DEBIAN.value, Ecosystem.ALPINE.value, Ecosystem.RPM.value})
_LANGUAGE_DETECTORS = (
    ("python", "PythonDetector"),
    ("npm", "NpmDetector"),
    ("golang", "GoBinaryDetector"),
    ("java", "JavaArchiveDetector"),
    ("node", "NodeRuntimeDetector"),
)
SHARED_IN_MEMORY = 16 << 20  # a file two detectors read is copied once; above this size to a temporary file
_OS_FILE_SET = frozenset(OS_FILES)


def default_detectors() -> list[Detector]:
    """The OS package detectors, then every language detector that is importable."""
    from dockyard.scanning.detectors.apk import ApkDetector
    from dockyard.scanning.detectors.dpkg import DpkgDetector
    from dockyard.scanning.detectors.rpm import RpmDetector

    found: list[Detector] = [DpkgDetector(), ApkDetector(), RpmDetector()]
    for module, cls in _LANGUAGE_DETECTORS:
        try:  # they are written separately; the OS scanner must stand without them
            found.append(getattr(importlib.import_module(f"dockyard.scanning.detectors.{module}"), cls)())
        except (ImportError, AttributeError):
            continue
    return found


@dataclass
class LayerFacts:
    """What one layer contributes to any image that contains it."""

    digest: str
    files: dict[str, list[Component]] = field(default_factory=dict)  # every detector-parsed file
    owned: dict[str, str] = field(default_factory=dict)  # path -> owning OS package name
    owned_from: dict[str, str] = field(default_factory=dict)  # path in `owned` -> database file that said so
    whiteouts: set[str] = field(default_factory=set)
    opaque_dirs: set[str] = field(default_factory=set)
    hidden: set[str] = field(default_factory=set)  # symlinks, hard links, devices: they replace lower paths
    # Top-level symlinks to directories (merged /usr: bin -> usr/bin), so that a package database's
    # /bin/x names the usr/bin/x a layer holds.
    root_links: dict[str, str] = field(default_factory=dict)
    os_files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    detectors: list[str] = field(default_factory=list)  # names of the detectors that made `files`

    def to_json(self) -> str:
        """Compact JSON for the per-layer cache (components omit what the file key and digest imply)."""
        files = {
            path: [_component_to_dict(c, path, self.digest) for c in comps]
            for path, comps in self.files.items()
        }
        return json.dumps(
            {
                "format": FORMAT,
                "digest": self.digest,
                "files": files,
                "owned": self._owned_by_source(),
                "whiteouts": sorted(self.whiteouts),
                "opaque_dirs": sorted(self.opaque_dirs),
                "hidden": sorted(self.hidden),
                "root_links": self.root_links,
                "os_files": self.os_files,
                "warnings": self.warnings,
                "detectors": self.detectors,
            },
            separators=(",", ":"),
        )

    def _owned_by_source(self) -> dict[str, dict[str, list[str]]]:
        """{database file: {package: [paths]}}: each path once, where two flat maps would repeat it."""
        grouped: dict[str, dict[str, list[str]]] = {}
        for path, pkg in self.owned.items():
            grouped.setdefault(self.owned_from.get(path, ""), {}).setdefault(pkg, []).append(path)
        return grouped

    @classmethod
    def from_json(cls, text: str | bytes) -> LayerFacts:
        """The inverse of to_json; ValueError for facts of another format (re-index the layer)."""
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ValueError("layer facts of another format")
        digest = raw["digest"]
        owned: dict[str, str] = {}
        owned_from: dict[str, str] = {}
        for source, packages in raw["owned"].items():
            for pkg, paths in packages.items():
                owned.update(dict.fromkeys(paths, pkg))
                owned_from.update(dict.fromkeys(paths, source))
        return cls(
            digest=digest,
            files={
                p: [_component_from_dict(d, p, digest) for d in comps] for p, comps in raw["files"].items()
            },
            owned=owned,
            owned_from=owned_from,
            whiteouts=set(raw["whiteouts"]),
            opaque_dirs=set(raw["opaque_dirs"]),
            hidden=set(raw["hidden"]),
            root_links=dict(raw["root_links"]),
            os_files=dict(raw["os_files"]),
            warnings=list(raw["warnings"]),
            detectors=list(raw["detectors"]),
        )


def _component_to_dict(c: Component, path: str, digest: str) -> dict[str, Any]:
    data = {k: v for k, v in asdict(c).items() if v is not None and k != "owned_files"}
    if data["path"] == path:
        del data["path"]
    if data["layer_digest"] == digest:
        del data["layer_digest"]
    return data


def _component_from_dict(data: dict[str, Any], path: str, digest: str) -> Component:
    return Component(**{"path": path, "layer_digest": digest, **data})


class _LayerIndexer:
    def __init__(self, digest: str, detectors: Sequence[Detector], limits: Limits) -> None:
        self.facts = LayerFacts(digest=digest, detectors=sorted(d.name for d in detectors))
        self.detectors, self.limits = detectors, limits
        # Results by path and detector, so a hard link to a parsed file of this layer reuses them.
        self.parsed: dict[str, tuple[int, int, dict[str, DetectorResult]]] = {}
        self.declared: dict[str, list[str]] = {}  # database file -> the owned paths it declared

    def forget(self, path: str) -> None:
        """A later entry of the same layer replaces an earlier one at the same path."""
        facts = self.facts
        facts.files.pop(path, None)
        facts.os_files.pop(path, None)
        self.parsed.pop(path, None)
        for owned in self.declared.pop(path, ()):
            if facts.owned_from.get(owned) == path:
                del facts.owned_from[owned]
                del facts.owned[owned]

    def record(self, path: str, results: dict[str, DetectorResult]) -> None:
        facts = self.facts
        facts.files[path] = [c for r in results.values() for c in r.components]
        declared = self.declared.setdefault(path, [])
        for result in results.values():
            facts.owned.update(result.owned)
            facts.owned_from.update(dict.fromkeys(result.owned, path))
            declared.extend(result.owned)
            facts.warnings.extend(result.warnings)

    def file(self, entry: TarEntry) -> None:
        path, size = entry.path, entry.size
        if path in _OS_FILE_SET:
            if size <= MAX_OS_FILE:
                self.facts.os_files[path] = entry.open().read().decode("utf-8", "replace")
            else:
                self.facts.warnings.append(f"{path}: {size} bytes is too large for an os-release file")
            return
        wanting = [d for d in self.detectors if d.wants(path, entry.mode, size)]
        if not wanting:
            return
        readers: list[tuple[Detector, BinaryIO]] = []
        for det in wanting:
            cap = min(det.max_size, self.limits.max_file_read)
            if size > cap:
                self.facts.warnings.append(
                    f"{path}: {size} bytes is more than the {det.name} detector reads ({cap})"
                )
            else:
                readers.append((det, entry.open()))
        with contextlib.ExitStack() as stack:
            if len(readers) > 1 and size <= SHARED_IN_MEMORY:  # the stream can be read once: share a copy
                content = readers[0][1].read()
                readers = [(det, io.BytesIO(content)) for det, _ in readers]
            elif (
                len(readers) > 1
            ):  # ``node``, read by the Go and the Node.js detectors: ~100 MiB, not in memory
                copy = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=SHARED_IN_MEMORY))
                shutil.copyfileobj(readers[0][1], copy, 1 << 20)
                readers = [(det, io.BufferedReader(_Rewound(copy), 1 << 20)) for det, _ in readers]
            results: dict[str, DetectorResult] = {}
            for det, data in readers:
                try:
                    results[det.name] = det.parse(path, data, size, self.facts.digest)
                except UnsafeInput:  # includes LayerError: the layer or the database is hostile
                    raise
                except Exception as exc:  # one unreadable file must not hide the rest of the image
                    self.facts.warnings.append(f"{path}: the {det.name} detector failed: {exc}")
        self.record(path, results)
        self.parsed[path] = (entry.mode, size, results)

    def hardlink(self, entry: TarEntry) -> None:
        """A hard link reads as its target only when that is a file of this layer a detector parsed."""
        path = entry.path
        self.facts.hidden.add(path)
        target = self.parsed.get(entry.link_target or "")
        mode, size = (target[0], target[1]) if target else (entry.mode, 0)
        wanting = [d.name for d in self.detectors if d.wants(path, mode, size)]
        if not wanting:
            return
        if target is None:
            self.facts.warnings.append(
                f"{path}: hard link to {entry.linkname!r}, which this layer did not parse"
            )
            return
        results = {
            name: DetectorResult(
                components=[
                    replace(c, path=path) if c.path == entry.link_target else c for c in r.components
                ],
                owned=dict(r.owned),
            )
            for name, r in target[2].items()
            if name in wanting
        }
        self.record(path, results)
        self.parsed[path] = (mode, size, results)


class _Rewound(io.RawIOBase):
    """One detector's view of a shared copy: starts at offset 0 and keeps its own position."""

    def __init__(self, copy: Any) -> None:
        self.copy, self.pos = copy, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        end = self.copy.seek(0, io.SEEK_END)
        self.pos = {io.SEEK_SET: offset, io.SEEK_CUR: self.pos + offset, io.SEEK_END: end + offset}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: Any) -> int:
        self.copy.seek(self.pos)
        n = self.copy.readinto(buffer)
        self.pos += n
        return n


def index_layer(
    fileobj: BinaryIO,
    digest: str,
    detectors: Sequence[Detector] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    media_type: str | None = None,
    prefetch: bool = False,
) -> LayerFacts:
    """Stream one layer blob once and return its facts; UnsafeInput if the layer cannot be read safely.
    ``prefetch``: inflate in a thread beside the walk (a second core's worth of work when one is free)."""
    indexer = _LayerIndexer(digest, default_detectors() if detectors is None else detectors, limits)
    walker = LayerWalker(fileobj, limits, media_type, prefetch)
    try:
        facts = _walk(indexer, walker, limits)
    finally:
        walker.close()
    failure = walker.source_failure()
    if failure is not None:  # met by the inflating thread past the tar's end: not the layer it claims to be
        raise failure
    return facts


def _walk(indexer: _LayerIndexer, walker: LayerWalker, limits: Limits) -> LayerFacts:
    facts = indexer.facts
    for entry in walker:
        kind = entry.type
        if kind is WHITEOUT:
            facts.whiteouts.add(entry.path)
            continue
        if kind is OPAQUE:
            facts.opaque_dirs.add(entry.path)
            continue
        indexer.forget(entry.path)
        if kind is FILE:
            indexer.file(entry)
        elif kind is HARDLINK:
            indexer.hardlink(entry)
        elif kind is not DIR:  # a directory merges with lower ones; anything else replaces them
            facts.hidden.add(entry.path)
            if kind is SYMLINK and "/" not in entry.path:
                target = _root_link_target(entry.linkname, limits)
                if target:
                    facts.root_links[entry.path] = target
    facts.warnings.extend(walker.warnings)
    return facts


def _root_link_target(linkname: str, limits: Limits) -> str | None:
    """Where a top-level symlink points, as a path from the root; None if it leaves the root."""
    try:
        return normalize_path(linkname, limits) or None
    except LayerError:
        return None


def _deleted(path: str, gone: set[str], opaque: set[str]) -> bool:
    """Whether a lower layer's path is removed by this layer's whiteouts, hidden paths or opaque dirs."""
    if path in gone:
        return True
    if "" in opaque:
        return True
    cut = path.rfind("/")
    while cut > 0:
        parent = path[:cut]
        if parent in gone or parent in opaque:
            return True
        cut = path.rfind("/", 0, cut)
    return False


_Key = tuple[str, str, str, str | None]


def _key(c: Component) -> _Key:
    return (c.ecosystem, c.name, c.version, c.arch)


def merge(layers: Sequence[LayerFacts], platform: str | None = None) -> ImageIndex:
    """The image's components from its layers' facts, lowest layer first."""
    # path -> (layer index, components, layer index that introduced each component)
    files: dict[str, tuple[int, list[Component], dict[_Key, int]]] = {}
    os_files: dict[str, str] = {}
    root_links: dict[str, str] = {}
    warnings: list[str] = []
    for i, layer in enumerate(layers):
        gone = layer.whiteouts | layer.hidden
        if gone or layer.opaque_dirs:
            for view in (files, os_files, root_links):
                for path in [p for p in view if _deleted(p, gone, layer.opaque_dirs)]:
                    del view[path]
        root_links.update(layer.root_links)
        for path, comps in layer.files.items():
            before = files[path][2] if path in files else {}
            files[path] = (i, comps, {_key(c): before.get(_key(c), i) for c in comps})
        os_files.update(layer.os_files)
        warnings.extend(f"layer {layer.digest}: {w}" for w in layer.warnings)

    owned = _surviving_owned(layers, files)
    owned_here = _with_root_links(owned, root_links)
    os_info = detect_os(os_files)
    if os_info is None and any(c.ecosystem in OS_ECOSYSTEMS for _, comps, _ in files.values() for c in comps):
        warnings.append("OS packages found but no os-release: purls carry no distro")
    fields = os_release_fields(os_files)
    by_package: dict[str, set[str]] = {}
    for path, pkg in owned.items():
        by_package.setdefault(pkg, set()).add(path)

    components: list[Component] = []
    seen: set[_Key] = set()
    for path in sorted(files):
        _, comps, intro = files[path]
        for c in comps:
            digest = layers[intro[_key(c)]].digest
            if c.ecosystem in OS_ECOSYSTEMS:
                if _key(c) in seen:  # the same package in two databases (status and status.d)
                    continue
                seen.add(_key(c))
                owned_files = frozenset(by_package.get(c.name, ()))
                c = replace(
                    c, layer_digest=digest, purl=_os_purl(c, os_info, fields), owned_files=owned_files
                )
            elif c.path in owned_here:  # shipped by an OS package: the OS package is what gets reported
                continue
            else:
                c = replace(c, layer_digest=digest)
            components.append(c)
    duplicates = lockfile_duplicates(components)  # a lockfile only fills in what node_modules lacks
    duplicates |= runtime_duplicates(components)  # node's headers only stand in for an unreadable binary
    components = [c for i, c in enumerate(components) if i not in duplicates]
    components.sort(key=lambda c: (c.ecosystem, c.name, c.version, c.arch or "", c.path))
    return ImageIndex(
        os=os_info,
        components=components,
        layers=[x.digest for x in layers],
        platform=platform,
        warnings=warnings,
    )


def _surviving_owned(
    layers: Sequence[LayerFacts], files: dict[str, tuple[int, list[Component], dict[_Key, int]]]
) -> dict[str, str]:
    """Ownership declared by the package database files that survive, later layers winning."""
    sources: dict[int, set[str]] = {}
    for path, (i, _, _) in files.items():
        sources.setdefault(i, set()).add(path)
    owned: dict[str, str] = {}
    for i in sorted(sources):
        layer, alive = layers[i], sources[i]
        owned.update((p, pkg) for p, pkg in layer.owned.items() if layer.owned_from.get(p) in alive)
    return owned


def _with_root_links(owned: dict[str, str], root_links: dict[str, str]) -> dict[str, str]:
    """``owned`` plus, for paths under a top-level symlink (bin/x with bin -> usr/bin), the path the
    file really has in the layers (usr/bin/x)."""
    if not root_links:
        return owned
    aliased = dict(owned)
    for path, pkg in owned.items():
        top, sep, rest = path.partition("/")
        if sep and top in root_links:
            aliased.setdefault(f"{root_links[top]}/{rest}", pkg)
    return aliased


def _os_purl(c: Component, os_info: OSInfo | None, fields: dict[str, str]) -> str:
    if os_info is None:
        return c.purl
    like = {os_info.id, *fields.get("ID_LIKE", "").split()}
    release = os_info.version_id or os_info.codename
    if c.ecosystem == Ecosystem.DEBIAN.value:
        namespace = os_info.id if like & {"debian", "ubuntu"} else "debian"
        return deb_purl(c.name, c.version, c.arch, namespace, f"{namespace}-{release}" if release else "")
    if c.ecosystem == Ecosystem.ALPINE.value:
        namespace = os_info.id if like & {"alpine", "wolfi", "chainguard"} else "alpine"
        return apk_purl(c.name, c.version, c.arch, namespace, release)
    namespace = "redhat" if os_info.id == "rhel" else os_info.id
    return rpm_purl(c.name, c.version, c.arch, namespace, f"{namespace}-{release}" if release else "")


def index_image(
    layers: Iterable[tuple[BinaryIO, str]], detectors: Sequence[Detector] | None = None
) -> ImageIndex:
    """Index and merge (fileobj, digest) layers in order; convenience for callers without a facts cache."""
    dets = default_detectors() if detectors is None else detectors
    return merge([index_layer(f, d, dets) for f, d in layers])
