"""Java archives (jar, war, ear and kin): the Maven coordinates their builds record inside them.

Maven writes ``META-INF/maven/<groupId>/<artifactId>/pom.properties`` into every archive it builds, and a
shaded or fat jar keeps one per bundled artifact. Archives nested inside (``WEB-INF/lib/*.jar``,
``BOOT-INF/lib/*.jar``) are opened in turn, a few levels deep. When an archive has no pom.properties at all,
its ``META-INF/MANIFEST.MF`` may still name it. Every archive is a potential zip bomb: declared sizes,
compression ratios, entry counts and the total bytes inflated per top-level file are all bounded.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
import zlib
from typing import IO, BinaryIO

from packageurl import PackageURL

from dockyard.scanning.detectors.base import DetectorResult
from dockyard.scanning.types import Component, Ecosystem, UnsafeInput

ARCHIVE_SUFFIXES = (".jar", ".war", ".ear", ".par", ".jpi", ".hpi")
MAX_DEPTH = 3  # the file itself is depth 0: a war's lib jar's shaded jar's jar is as deep as we go
MAX_TEXT = 1 << 20  # pom.properties and MANIFEST.MF are a few hundred bytes
MAX_NESTED = 256 << 20
MAX_TOTAL_INFLATED = 1 << 30  # per top-level archive, all levels together
MAX_ENTRIES = 200_000
MAX_RATIO = 200  # deflate tops out near 1032:1; real jars stay far below 100:1
SPOOL_IN_MEMORY = 8 << 20
# What a corrupt (not hostile) archive raises while being read: reported as a warning, not a failure.
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, OSError)
_POM_PROPERTIES = re.compile(r"META-INF/maven/[^/]+/[^/]+/pom\.properties")
_MAVEN_ID = re.compile(r"[A-Za-z0-9_.\-]+")


def parse_properties(text: str) -> dict[str, str]:
    """Java ``.properties``: ``key=value``, ``key: value`` or ``key value``; ``#``/``!`` comments;
    backslash line continuations and escapes."""
    props: dict[str, str] = {}
    logical: list[str] = []
    for raw in text.splitlines():
        line = raw.lstrip() if logical else raw
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2:  # an odd run of backslashes continues the line
            logical.append(line[:-1])
            continue
        logical.append(line)
        entry, logical = "".join(logical).strip(), []
        if not entry or entry[0] in "#!":
            continue
        m = re.match(r"((?:\\.|[^=:\s\\])*)\s*[=:\s]?\s*(.*)", entry)
        if m:
            props[_unescape(m.group(1))] = _unescape(m.group(2))
    return props


def _unescape(s: str) -> str:
    def repl(m: re.Match[str]) -> str:
        c = m.group(1)
        if c.startswith("u") and len(c) == 5:
            return chr(int(c[1:], 16))
        return {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(c, c)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", repl, s)


def parse_manifest(text: str) -> dict[str, str]:
    """The main section of a JAR manifest; continuation lines start with one space."""
    attrs: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line:
            break  # the per-entry sections that follow describe files, not the archive
        if line.startswith(" ") and last:
            attrs[last] += line[1:]
            continue
        key, sep, value = line.partition(":")
        if sep:
            last = key.strip()
            attrs[last] = value.strip()
    return attrs


def coordinates_from_manifest(attrs: dict[str, str]) -> tuple[str, str, str] | None:
    """(groupId, artifactId, version) from manifest attributes, or None when they do not name an artifact.

    The group comes from Implementation-Vendor-Id or the OSGi Bundle-SymbolicName less its last segment;
    human-readable vendor names ("The Apache Software Foundation") are not groups and are not used."""
    group = attrs.get("Implementation-Vendor-Id", "")
    if not group:
        symbolic = attrs.get("Bundle-SymbolicName", "").split(";", 1)[0].strip()
        group = symbolic.rpartition(".")[0]
    artifact = attrs.get("Implementation-Title") or attrs.get("Specification-Title") or ""
    version = (
        attrs.get("Implementation-Version")
        or attrs.get("Specification-Version")
        or attrs.get("Bundle-Version")
        or ""
    )
    if all(_MAVEN_ID.fullmatch(x) for x in (group, artifact, version)):
        return group, artifact, version
    return None


class _Budget:
    def __init__(self, total: int) -> None:
        self.left = total

    def take(self, n: int, what: str) -> None:
        self.left -= n
        if self.left < 0:
            raise UnsafeInput(f"{what}: archive inflates past {MAX_TOTAL_INFLATED} bytes")


def _check_entry(info: zipfile.ZipInfo, limit: int, where: str) -> None:
    if info.file_size > limit:
        raise UnsafeInput(f"{where}: {info.filename} declares {info.file_size} bytes")
    if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise UnsafeInput(f"{where}: {info.filename} compresses {info.file_size // info.compress_size}:1")


def _read_text(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget, where: str) -> str:
    _check_entry(info, MAX_TEXT, where)
    budget.take(info.file_size, where)
    with zf.open(info) as f:
        # zipfile stops at the declared size, so the bound above is also the bound on what is inflated.
        return f.read(MAX_TEXT).decode("utf-8", errors="replace")


def _copy_bounded(src: IO[bytes], dst: IO[bytes], limit: int, where: str) -> None:
    copied = 0
    while chunk := src.read(1 << 20):
        copied += len(chunk)
        if copied > limit:
            raise UnsafeInput(f"{where}: larger than {limit} bytes")
        dst.write(chunk)


def maven_component(group: str, artifact: str, version: str, path: str, layer_digest: str) -> Component:
    purl = PackageURL(type="maven", namespace=group, name=artifact, version=version).to_string()
    return Component(
        name=f"{group}:{artifact}",
        version=version,
        ecosystem=Ecosystem.MAVEN.value,
        purl=purl,
        layer_digest=layer_digest,
        path=path,
    )


class JavaArchiveDetector:
    """Maven artifacts in Java archives and in the archives nested inside them."""

    name = "java-archive"
    max_size = 1 << 30

    def wants(self, path: str, mode: int, size: int) -> bool:
        return path.lower().endswith(ARCHIVE_SUFFIXES)

    def parse(self, path: str, data: BinaryIO, size: int, layer_digest: str) -> DetectorResult:
        result = DetectorResult()
        # zipfile reads the central directory at the end, so it needs a seekable file; a tar member
        # streamed out of a compressed layer is not one.
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            _copy_bounded(data, spool, self.max_size, path)
            spool.seek(0)
            try:
                self._archive(spool, path, 0, _Budget(MAX_TOTAL_INFLATED), layer_digest, result)
            except _CORRUPT as exc:
                result.warnings.append(f"{path}: corrupt archive ({exc})")
        seen: set[tuple[str, str, str]] = set()
        unique = []
        for c in result.components:
            if (c.name, c.version, c.path) not in seen:
                seen.add((c.name, c.version, c.path))
                unique.append(c)
        result.components = unique
        return result

    def _archive(
        self, f: IO[bytes], path: str, depth: int, budget: _Budget, layer_digest: str, result: DetectorResult
    ) -> None:
        try:
            zf = zipfile.ZipFile(f)
        except _CORRUPT as exc:
            result.warnings.append(f"{path}: not a readable zip archive ({exc})")
            return
        with zf:
            infos = zf.infolist()
            if len(infos) > MAX_ENTRIES:
                raise UnsafeInput(f"{path}: {len(infos)} entries")
            poms = [i for i in infos if _POM_PROPERTIES.fullmatch(i.filename) and not i.flag_bits & 0x1]
            for info in poms:
                props = parse_properties(_read_text(zf, info, budget, path))
                _, _, group, artifact, _ = info.filename.split("/")
                group = props.get("groupId", group).strip()
                artifact = props.get("artifactId", artifact).strip()
                version = props.get("version", "").strip()
                if group and artifact and version:
                    result.components.append(maven_component(group, artifact, version, path, layer_digest))
            if not poms:
                self._manifest(zf, path, budget, layer_digest, result)
            if depth >= MAX_DEPTH:
                return
            for info in infos:
                if info.is_dir() or not info.filename.lower().endswith(ARCHIVE_SUFFIXES):
                    continue
                if info.flag_bits & 0x1:
                    continue  # encrypted
                _check_entry(info, MAX_NESTED, path)
                budget.take(info.file_size, path)
                inner = f"{path}/{info.filename}"
                with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
                    try:
                        with zf.open(info) as member:
                            shutil.copyfileobj(member, spool, 1 << 20)
                        spool.seek(0)
                        self._archive(spool, inner, depth + 1, budget, layer_digest, result)
                    except _CORRUPT as exc:  # one broken library must not hide the others
                        result.warnings.append(f"{inner}: corrupt archive ({exc})")

    def _manifest(
        self, zf: zipfile.ZipFile, path: str, budget: _Budget, layer_digest: str, result: DetectorResult
    ) -> None:
        try:
            info = zf.getinfo("META-INF/MANIFEST.MF")
        except KeyError:
            return
        coords = coordinates_from_manifest(parse_manifest(_read_text(zf, info, budget, path)))
        if coords:
            result.components.append(maven_component(*coords, path, layer_digest))
