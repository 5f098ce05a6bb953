"""Go modules compiled into ELF executables, read from the build information the Go linker embeds.

The linker writes a 32-byte header that starts with ``\\xff Go buildinf:`` at a 16-byte aligned offset
near the start of the data segment. Go 1.18+ sets flag 0x2 and follows the header with two varint-prefixed
strings (the toolchain version and the module info); older toolchains store two pointers to Go string
headers instead, which we resolve through the ELF program headers. The module info is the text
``go version -m`` prints: ``mod``, ``dep`` and ``=>`` (replacement) lines separated by tabs.

The file is read once, front to back, in chunks that overlap by the magic's length, so a detector never
needs the whole binary in memory. Pointer-format binaries need random access: when the input cannot seek
and the head of the file says it is a Go binary, the bytes are kept in a spooled temporary file.
"""

from __future__ import annotations

import re
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from packageurl import PackageURL

from dockyard.scanning.detectors.base import DetectorResult
from dockyard.scanning.types import Component, Ecosystem

MAGIC = b"\xff Go buildinf:"
HEADER_SIZE = 32
ALIGN = 16
CHUNK = 1 << 20
HEAD_SIZE = 64 << 10  # ELF and program headers and the Go build ID note live in the first page or so
MAX_INFO_STRING = 4 << 20  # Go's own reader stops at 1 MiB; a module list this long is hostile
ELF_MAGIC = b"\x7fELF"
PT_LOAD = 1
# Where a binary says it is Go before any of its code: the build ID note (type 4, name "Go\0\0") the Go
# linker puts in the first page, or the "Go build ID:" text some older and externally linked ones carry.
_GO_HEAD_MARKERS = (b"\x04\x00\x00\x00Go\x00\x00", b"Go build ID:")
_GO_RELEASE = re.compile(r"go(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:(rc|beta)(\d+))?$")


@dataclass(frozen=True)
class BuildInfo:
    go_version: str  # as embedded: go1.21.5, go1.22rc1, devel go1.23-abc, go1.21.5 X:boringcrypto
    mod_info: str  # "" when the binary was built outside module mode


@dataclass(frozen=True)
class Module:
    path: str
    version: str


@dataclass(frozen=True)
class ModInfo:
    main: Module | None
    deps: list[Module]


@dataclass(frozen=True)
class _Pointers:
    """A Go < 1.18 header: virtual addresses of the Go string headers of the version and module info."""

    ptr_size: int
    big_endian: bool
    vers_ptr: int
    mod_ptr: int


def stdlib_version(go_version: str) -> str | None:
    """``go1.21.5`` -> ``1.21.5``, ``go1.20`` -> ``1.20.0``, ``go1.21rc2`` -> ``1.21.0-rc.2`` (the semver form
    the Go vulnerability database uses); None for development toolchains, which match no release."""
    head = go_version.strip().split(" ", 1)[0]  # drop " X:boringcrypto" experiment suffixes
    m = _GO_RELEASE.match(head)
    if not m:
        return None
    major, minor, patch, pre, pre_n = m.groups()
    version = f"{major}.{minor or 0}.{patch or 0}"
    if pre:
        version += f"-{pre}.{pre_n}"
    return version


def parse_mod_info(text: str) -> ModInfo:
    """The ``mod``/``dep``/``=>`` lines of the module info; a replacement replaces the module before it."""
    main: Module | None = None
    deps: list[Module] = []
    for line in text.splitlines():
        fields = line.split("\t")
        kind = fields[0]
        if kind == "mod" and len(fields) >= 3:
            main = Module(fields[1], fields[2])
        elif kind == "dep" and len(fields) >= 3:
            deps.append(Module(fields[1], fields[2]))
        elif kind == "=>" and len(fields) >= 3 and deps:
            # A local directory replacement has no version: the code is not any published module version.
            deps[-1] = Module(fields[1], fields[2])
    return ModInfo(main, deps)


def _uvarint(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    for i in range(pos, min(pos + 10, len(buf))):
        b = buf[i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i + 1
        shift += 7
    return None


class _Scanner:
    """Reads a stream forward, finding aligned build-info headers without holding the whole file."""

    def __init__(self, data: BinaryIO, limit: int, head: bytes, tee: BinaryIO | None) -> None:
        self.data, self.limit, self.tee = data, limit, tee
        self.buf = bytearray(head)
        self.base = 0  # file offset of buf[0]
        self.read_total = len(head)
        # Set by the caller when it can read at any offset; without it, pointer headers are only noted.
        self.resolve: Callable[[_Pointers], BuildInfo | None] | None = None
        self.unresolved = False

    def more(self) -> bool:
        if self.read_total >= self.limit:
            return False
        chunk = self.data.read(min(CHUNK, self.limit - self.read_total))
        if not chunk:
            return False
        self.read_total += len(chunk)
        if self.tee is not None:
            self.tee.write(chunk)
        self.buf += chunk
        return True

    def _need(self, end: int) -> bool:
        while len(self.buf) < end:
            if not self.more():
                return False
        return True

    def find(self) -> BuildInfo | None:
        start = 0
        while True:
            i = self.buf.find(MAGIC, start)
            if i < 0:
                # Keep the tail that may hold the start of a magic split across chunks.
                drop = max(0, len(self.buf) - (len(MAGIC) - 1))
                del self.buf[:drop]
                self.base += drop
                start = 0
                if not self.more():
                    return None
                continue
            start = i + 1
            if (self.base + i) % ALIGN:
                continue
            info = self._decode(i)
            if info is not None:
                return info

    def _decode(self, i: int) -> BuildInfo | None:
        if not self._need(i + HEADER_SIZE):
            return None
        ptr_size, flags = self.buf[i + 14], self.buf[i + 15]
        if ptr_size not in (4, 8) or flags & ~0x3:
            return None  # e.g. the magic as a string constant in a binary that embeds debug/buildinfo
        if not flags & 0x2:
            fmt = (">" if flags & 1 else "<") + ("I" if ptr_size == 4 else "Q")
            vers_ptr = struct.unpack_from(fmt, self.buf, i + 16)[0]
            mod_ptr = struct.unpack_from(fmt, self.buf, i + 16 + ptr_size)[0]
            if self.resolve is None:
                self.unresolved = True
                return None
            # A false match (bytes that merely look like a header) resolves to nothing: keep searching.
            return self.resolve(_Pointers(ptr_size, bool(flags & 1), vers_ptr, mod_ptr))
        pos = i + HEADER_SIZE
        strings = []
        for _ in range(2):
            self._need(pos + 10)
            decoded = _uvarint(self.buf, pos)
            if decoded is None or decoded[0] > MAX_INFO_STRING:
                return None
            length, pos = decoded
            if not self._need(pos + length):
                return None
            strings.append(bytes(self.buf[pos : pos + length]).decode("utf-8", errors="replace"))
            pos += length
        return _build_info(*strings)


def _build_info(vers: str, mod: str) -> BuildInfo | None:
    if not (vers.startswith("go") or vers.startswith("devel")):
        return None
    # The module info is framed by two 16-byte sentinels (cmd/go's infoStart/infoEnd); Go strips them the
    # same way, and treats anything unframed as "no module info".
    mod = mod[16:-16] if len(mod) >= 33 and mod[-17] == "\n" else ""
    return BuildInfo(vers, mod)


def _load_segments(head: bytes) -> list[tuple[int, int, int]] | None:
    """(vaddr, file offset, file size) of each PT_LOAD segment, from the ELF header at the file's start."""
    if len(head) < 52 or head[:4] != ELF_MAGIC or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    is64, end = head[4] == 2, "<" if head[5] == 1 else ">"
    if is64:
        if len(head) < 64:
            return None
        phoff, phentsize, phnum = (
            struct.unpack_from(end + "Q", head, 32)[0],
            *struct.unpack_from(end + "HH", head, 54),
        )
    else:
        phoff, phentsize, phnum = (
            struct.unpack_from(end + "I", head, 28)[0],
            *struct.unpack_from(end + "HH", head, 42),
        )
    segments = []
    for n in range(phnum):
        at = phoff + n * phentsize
        if at + (56 if is64 else 32) > len(head):
            return segments  # program headers beyond the head: rare, and pointers then stay unresolved
        if is64:
            p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(end + "IIQQQQ", head, at)
        else:
            p_type, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(end + "IIIII", head, at)
        if p_type == PT_LOAD:
            segments.append((p_vaddr, p_offset, p_filesz))
    return segments


def _resolve_pointers(
    fmt: _Pointers, segments: list[tuple[int, int, int]], read_at: Callable[[int, int], bytes]
) -> BuildInfo | None:
    """Go < 1.18: each pointer addresses a Go string header (data pointer, length)."""
    word = (">" if fmt.big_endian else "<") + ("I" if fmt.ptr_size == 4 else "Q")

    def read_vaddr(addr: int, size: int) -> bytes:
        for vaddr, offset, filesz in segments:
            if vaddr <= addr < vaddr + filesz:
                return read_at(offset + addr - vaddr, min(size, vaddr + filesz - addr))
        return b""

    def read_string(addr: int) -> str:
        header = read_vaddr(addr, 2 * fmt.ptr_size)
        if len(header) < 2 * fmt.ptr_size:
            return ""
        ptr, length = struct.unpack_from(word, header)[0], struct.unpack_from(word, header, fmt.ptr_size)[0]
        if length > MAX_INFO_STRING:
            return ""
        return read_vaddr(ptr, length).decode("utf-8", errors="replace")

    return _build_info(read_string(fmt.vers_ptr), read_string(fmt.mod_ptr))


def read_build_info(data: BinaryIO, size: int, warnings: list[str] | None = None) -> BuildInfo | None:
    """The embedded build info of an ELF executable, or None when it is not a Go binary."""
    head = data.read(HEAD_SIZE)
    segments = _load_segments(head)
    if segments is None:
        return None
    tee = None
    if not _seekable(data) and any(marker in head for marker in _GO_HEAD_MARKERS):
        tee = tempfile.SpooledTemporaryFile(max_size=16 << 20)  # noqa: SIM115 - closed below
        tee.write(head)
    try:
        scanner = _Scanner(data, size, head, tee)
        if tee is not None or _seekable(data):
            source = tee if tee is not None else data

            def read_at(offset: int, n: int) -> bytes:
                # Go < 1.18 string headers sit after the build info header (in .noptrdata), the bytes
                # before it (in .rodata): read forward as far as needed, then step back and return.
                while tee is not None and scanner.read_total < offset + n and scanner.more():
                    pass
                resume = source.tell()
                source.seek(offset)
                out = source.read(n)
                source.seek(resume)
                return out

            scanner.resolve = lambda fmt: _resolve_pointers(fmt, segments, read_at)
        info = scanner.find()
        if info is None and scanner.unresolved and warnings is not None:
            warnings.append("Go < 1.18 build info needs random access to an unseekable input")
        return info
    finally:
        if tee is not None:
            tee.close()


def _seekable(data: BinaryIO) -> bool:
    try:
        return bool(data.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _component(name: str, version: str, path: str, layer_digest: str) -> Component:
    namespace, _, bare = name.rpartition("/")
    purl = PackageURL(type="golang", namespace=namespace or None, name=bare, version=version).to_string()
    return Component(
        name=name,
        version=version,
        ecosystem=Ecosystem.GO.value,
        purl=purl,
        layer_digest=layer_digest,
        path=path,
    )


class GoBinaryDetector:
    """Go toolchain (as module ``stdlib``), main module and dependencies of Go executables."""

    name = "go-binary"
    max_size = 512 << 20
    min_size = 1024  # smaller than any ELF executable Go can link

    def wants(self, path: str, mode: int, size: int) -> bool:
        return bool(mode & 0o111) and size >= self.min_size

    def parse(self, path: str, data: BinaryIO, size: int, layer_digest: str) -> DetectorResult:
        result = DetectorResult()
        info = read_build_info(data, min(size, self.max_size), result.warnings)
        if info is None:
            result.warnings = [f"{path}: {w}" for w in result.warnings]
            return result
        found: list[Component] = []
        std = stdlib_version(info.go_version)
        if std:
            found.append(_component("stdlib", std, path, layer_digest))
        mods = parse_mod_info(info.mod_info)
        # "(devel)" is a main module built from a work tree, which no advisory can name.
        if mods.main and mods.main.version and mods.main.version != "(devel)":
            found.append(_component(mods.main.path, mods.main.version, path, layer_digest))
        for dep in mods.deps:
            if dep.version and dep.version != "(devel)":
                found.append(_component(dep.path, dep.version, path, layer_digest))
        seen: set[tuple[str, str]] = set()
        for c in found:
            if (c.name, c.version) not in seen:
                seen.add((c.name, c.version))
                result.components.append(c)
        return result
