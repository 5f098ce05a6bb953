"""Stream one image layer (a tar, possibly gzip or zstd compressed) entry by entry, never extracting it.

Layers are hostile input. The walker is its own tar reader rather than ``tarfile`` because ``tarfile`` reads
pax and GNU long-name headers whole into memory, parses pax records with a regular expression (CVE-2024-6232
on the Python we support), cannot tell a layer that merely lacks its end-of-archive blocks (what umoci 0.4.7
``insert`` writes) from one cut inside an entry, and does not bound anything. Here every size is checked
against ``Limits`` before it is trusted, nothing is written to disk, and a detector only ever reads a regular
file's own bytes: symlinks are reported, never followed, and a hard link is resolved only to an earlier
regular file of the same layer.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import BinaryIO

from dockyard.scanning.decompress import DecompressedStream, LayerError

__all__ = ["DEFAULT_LIMITS", "EntryType", "LayerError", "LayerWalker", "Limits", "TarEntry", "walk_layer"]

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_MAX_EXTENSION_HEADERS = 16  # pax/GNU headers allowed before one entry


@dataclass(frozen=True)
class Limits:
    """Bounds on one layer; the defaults admit every real image we know of."""

    max_layer_bytes: int = 4 * GIB  # decompressed tar size
    bomb_min_bytes: int = 100 * MIB  # the ratio guard applies once this much has been decompressed
    max_ratio: int = 200  # decompressed : compressed
    max_entries: int = 1_000_000
    max_path_length: int = 4096
    max_path_depth: int = 256
    max_file_read: int = 512 * MIB  # most bytes of one file handed to a detector (its max_size also applies)
    max_header_bytes: int = 1 * MIB  # data of one pax or GNU long-name header


DEFAULT_LIMITS = Limits()


class EntryType(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    OTHER = "other"  # sparse files, unknown types: present in the image, never read
    WHITEOUT = "whiteout"  # path = what it deletes from lower layers
    OPAQUE = "opaque"  # path = the directory whose lower-layer contents are hidden


# Members as plain module constants: on Python 3.11 every ``EntryType.X`` lookup costs half a microsecond,
# which adds up over the ~10 lookups per entry of a layer with 100k entries.
FILE, DIR, SYMLINK, HARDLINK = EntryType.FILE, EntryType.DIR, EntryType.SYMLINK, EntryType.HARDLINK
OTHER, WHITEOUT, OPAQUE = EntryType.OTHER, EntryType.WHITEOUT, EntryType.OPAQUE

_TYPES = {
    b"0": EntryType.FILE,
    b"\0": EntryType.FILE,
    b"7": EntryType.FILE,
    b"1": EntryType.HARDLINK,
    b"2": EntryType.SYMLINK,
    b"3": EntryType.CHAR,
    b"4": EntryType.BLOCK,
    b"5": EntryType.DIR,
    b"6": EntryType.FIFO,
}
# Types whose size field does not announce data (Go's archive/tar ignores it too).
_HEADER_ONLY = {
    EntryType.HARDLINK,
    EntryType.SYMLINK,
    EntryType.CHAR,
    EntryType.BLOCK,
    EntryType.DIR,
    EntryType.FIFO,
}


@dataclass(slots=True, eq=False)
class TarEntry:
    """One entry. ``open()`` is valid for regular files until the walker moves to the next entry."""

    path: str  # normalised: no leading "/" or "./", no "." components, no trailing "/"
    type: EntryType
    mode: int
    size: int
    linkname: str = ""  # symlink target as written; hard link target normalised
    link_target: str | None = None  # hard links: the earlier regular file of this layer it names, if any
    _walker: LayerWalker | None = field(default=None, repr=False)
    _generation: int = field(default=0, repr=False)

    def open(self) -> BinaryIO:
        """A reader of exactly this regular file's bytes (it raises LayerError if the layer is truncated)."""
        if self.type is not FILE or self._walker is None:
            raise ValueError(f"{self.path} is a {self.type}, not a regular file of a layer being walked")
        return io.BufferedReader(_EntryReader(self._walker, self._generation, self.size), 64 * KIB)


class _EntryReader(io.RawIOBase):
    def __init__(self, walker: LayerWalker, generation: int, size: int) -> None:
        self._walker, self._generation, self._left = walker, generation, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if self._walker._generation != self._generation:
            raise ValueError("the layer walker has moved past this entry")
        n = self._left if size is None or size < 0 else min(size, self._left)
        if n <= 0:
            return b""
        data = self._walker._read_data(n) if size is not None and size >= 0 else self._readall(n)
        self._left -= len(data)
        return data

    def _readall(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            part = self._walker._read_data(n - got)
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def readall(self) -> bytes:
        return self.read(-1)


def normalize_path(name: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """An entry name as a path relative to the image root; LayerError for ``..`` and absurd paths.

    A leading "/" is dropped rather than refused: like containerd and Docker we read it relative to the
    root, so it cannot name anything outside the image.
    """
    if len(name) > limits.max_path_length:
        raise LayerError(f"path longer than {limits.max_path_length} characters: {name[:80]!r}...")
    if name.startswith("./"):
        name = name[2:]
    # Fast path for the usual clean name: no empty, "." or ".." components (checked via "/." and "//").
    if not name.startswith((".", "/")) and "/." not in name and "//" not in name and "\0" not in name:
        name = name.rstrip("/")
        if name.count("/") >= limits.max_path_depth:
            raise LayerError(f"path deeper than {limits.max_path_depth} components: {name[:80]!r}...")
        return name
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise LayerError(f"path traversal in layer entry {name!r}")
    if len(parts) > limits.max_path_depth:
        raise LayerError(f"path deeper than {limits.max_path_depth} components: {name[:80]!r}...")
    if "\0" in name:
        raise LayerError(f"NUL byte in layer entry name {name[:80]!r}")
    return "/".join(parts)


def _number(field: bytes) -> int:
    try:  # the usual "0000644\0" or "00000001234 "
        value = int(field.strip(b" \0"), 8)
        if value >= 0:
            return value
    except ValueError:
        pass
    if field[:1] and field[0] & 0x80:  # GNU base-256 for values octal cannot hold
        if field[0] & 0x40:
            raise LayerError("corrupt tar header: negative number")
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if text.isdigit():  # isdigit() also refuses signs, which int() would accept
        try:
            return int(text, 8)
        except ValueError:
            pass
    raise LayerError(f"corrupt tar header: bad number {field!r}")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _cstring(raw: bytes) -> bytes:
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]


def _check_checksum(block: bytes) -> None:
    stored = _number(block[148:156])
    field_sum = sum(block[148:156])
    # The byte sum of a header is at most 130560 and adler32's low half is (1 + byte sum) mod 65521, so C
    # code gives the sum modulo 65521; a stored value 65521 off is no checksum a writer could produce.
    # sum() over the block costs more than the rest of the header parsing together.
    if (stored + field_sum - 8 * 0x20 + 1) % 65521 == zlib.adler32(block) & 0xFFFF:
        return
    unsigned = sum(block) - field_sum + 8 * 0x20  # the field itself counts as eight spaces
    # Some old writers summed signed chars.
    high = sum(b for b in block[:148] if b > 127) + sum(b for b in block[156:] if b > 127)
    if stored != unsigned - 256 * high:
        raise LayerError("corrupt tar: header checksum mismatch (not a tar, or a damaged layer)")


def parse_pax(data: bytes) -> dict[str, str]:
    """Pax extended header records ``"%d %s=%s\\n"``, parsed by their length prefixes (no regex)."""
    records: dict[str, str] = {}
    pos, n = 0, len(data)
    while pos < n and data[pos] != 0:
        space = data.find(b" ", pos, min(n, pos + 21))
        if space < 0 or not data[pos:space].isdigit():
            raise LayerError("corrupt pax header: bad record length")
        length = int(data[pos:space])
        end = pos + length
        if length <= space - pos + 1 or end > n or data[end - 1] != 0x0A:
            raise LayerError("corrupt pax header: record length does not fit")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise LayerError("corrupt pax header: record without '='")
        records[_text(key)] = _text(value)
        pos = end
    return records


class LayerWalker:
    """Iterate over the entries of one layer blob; see the module docstring for the guarantees."""

    def __init__(
        self,
        fileobj: BinaryIO,
        limits: Limits = DEFAULT_LIMITS,
        media_type: str | None = None,
        prefetch: bool = False,
    ) -> None:
        self.limits = limits
        self.media_type = media_type  # a hint only: the magic bytes decide
        self.warnings: list[str] = []
        self.entries = 0
        self._stream = DecompressedStream(
            fileobj, limits.max_layer_bytes, limits.bomb_min_bytes, limits.max_ratio, prefetch
        )
        self.compression = self._stream.compression  # "gzip", "zstd" or "none"
        self._generation = 0
        self._remaining = 0  # data bytes of the current entry not yet consumed
        self._regular: set[str] = set()  # regular files seen so far (hard links may name only these)
        self._hardlinks: dict[str, str] = {}  # hard link path -> the regular file it resolves to

    def close(self) -> None:
        """Stop inflating ahead (``prefetch``): the walker then reads no more of ``fileobj``."""
        self._stream.close()

    def source_failure(self) -> BaseException | None:
        """See DecompressedStream.source_failure."""
        return self._stream.source_failure()

    @property
    def decompressed_bytes(self) -> int:
        return self._stream.total

    def _read_data(self, n: int) -> bytes:
        n = min(n, self._remaining)
        if n <= 0:
            return b""
        data = self._stream.read(n)
        if not data:
            raise LayerError("truncated layer: it ends inside a file's data")
        self._remaining -= len(data)
        return data

    def _finish_entry(self, path: str, size: int) -> None:
        self._generation += 1
        if self._remaining and self._stream.skip(self._remaining) < self._remaining:
            raise LayerError(f"truncated layer: it ends inside the data of {path!r}")
        self._remaining = 0
        # The padding of the last entry may be missing (umoci insert): that is an end, not a cut.
        self._stream.skip(-size % BLOCK)

    def _read_extension(self, size: int, what: str) -> bytes:
        if size > self.limits.max_header_bytes:
            raise LayerError(f"{what} header of {size} bytes (limit {self.limits.max_header_bytes})")
        data = self._stream.read_exact(size)
        if len(data) < size:
            raise LayerError(f"truncated layer: it ends inside a {what} header")
        self._stream.skip(-size % BLOCK)
        return data

    def __iter__(self) -> Iterator[TarEntry]:
        global_pax: dict[str, str] = {}
        while True:
            header = self._next_header(global_pax)
            if header is None:
                return
            entry, data_size = header
            self.entries += 1
            if self.entries > self.limits.max_entries:
                raise LayerError(f"layer has more than {self.limits.max_entries} entries")
            self._remaining = data_size
            if entry is not None:
                yield entry
            self._finish_entry(entry.path if entry else "", data_size)

    def _next_header(self, global_pax: dict[str, str]) -> tuple[TarEntry | None, int] | None:
        pax: dict[str, str] = {}
        long_name = long_link = None
        for _ in range(_MAX_EXTENSION_HEADERS + 1):
            block = self._stream.read_exact(BLOCK)
            if not block:  # ends at an entry boundary without end-of-archive blocks: umoci insert
                if pax or long_name is not None or long_link is not None:
                    raise LayerError("truncated layer: it ends after an extension header")
                return None
            if len(block) < BLOCK:
                raise LayerError("truncated layer: it ends inside a tar header")
            if block == _ZERO_BLOCK:
                if pax or long_name is not None or long_link is not None:
                    raise LayerError("corrupt tar: extension header without an entry")
                return None  # end-of-archive; anything after it is not part of the layer
            _check_checksum(block)
            flag = block[156:157]
            size = _number(block[124:136])
            if flag in (b"x", b"g"):
                records = parse_pax(self._read_extension(size, "pax"))
                (pax if flag == b"x" else global_pax).update(records)
                continue
            if flag in (b"L", b"K"):
                value = _text(_cstring(self._read_extension(size, "GNU long name")))
                long_name, long_link = (value, long_link) if flag == b"L" else (long_name, value)
                continue
            if global_pax:
                pax = {**global_pax, **pax}
            return self._make_entry(block, flag, size, pax, long_name, long_link)
        raise LayerError(f"corrupt tar: more than {_MAX_EXTENSION_HEADERS} extension headers for one entry")

    def _make_entry(
        self,
        block: bytes,
        flag: bytes,
        size: int,
        pax: dict[str, str],
        long_name: str | None,
        long_link: str | None,
    ) -> tuple[TarEntry | None, int]:
        name = _cstring(block[:100])
        if block[257:263] == b"ustar\0":  # POSIX ustar: a prefix field holds the start of long names
            prefix = _cstring(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        raw_name = pax.get("path") or pax.get("GNU.sparse.name") or long_name or _text(name)
        linkname = pax.get("linkpath") or long_link or _text(_cstring(block[157:257]))
        if len(linkname) > self.limits.max_path_length:
            raise LayerError(f"link target longer than {self.limits.max_path_length} characters")
        if "size" in pax:
            if not pax["size"].isdigit():
                raise LayerError(f"corrupt pax header: size {pax['size'][:40]!r}")
            size = int(pax["size"])
        if flag in (b"V", b"M", b"N"):  # volume labels, multi-volume continuations, old GNU names
            return None, size
        kind = _TYPES.get(flag, OTHER)
        if kind is FILE and flag == b"\0" and raw_name.endswith("/"):
            kind = DIR  # pre-POSIX tars mark directories only by the trailing slash
        if flag == b"S" or (pax and any(k.startswith("GNU.sparse.") for k in pax)):
            kind = OTHER  # sparse: the stored bytes are not the file, so nobody reads them
            if flag == b"S" and block[482]:
                self._skip_sparse_extensions()
        data_size = 0 if kind in _HEADER_ONLY else size
        mode = _number(block[100:108]) & 0o7777
        path = normalize_path(raw_name, self.limits)
        if not path:  # the root directory itself
            return None, data_size
        base = path.rpartition("/")[2]
        if base.startswith(".wh."):
            return self._whiteout(path, base), data_size
        entry = TarEntry(path, kind, mode, size if kind is FILE else 0, linkname)
        if kind is FILE:
            entry._walker, entry._generation = self, self._generation
            self._regular.add(path)
            self._hardlinks.pop(path, None)
        elif kind is HARDLINK:
            target = normalize_path(linkname, self.limits)
            entry.linkname = target
            entry.link_target = self._hardlinks.get(target, target if target in self._regular else None)
            if entry.link_target is not None:
                self._hardlinks[path] = entry.link_target
            self._regular.discard(path)
        else:
            self._regular.discard(path)
            self._hardlinks.pop(path, None)
        return entry, data_size

    def _whiteout(self, path: str, base: str) -> TarEntry | None:
        parent = path.rpartition("/")[0]
        if base == ".wh..wh..opq":
            return TarEntry(parent, OPAQUE, 0, 0)
        if base.startswith(".wh..wh."):  # aufs bookkeeping (.wh..wh.plnk and friends): not content
            return None
        target = normalize_path(f"{parent}/{base[4:]}", self.limits)
        if not target or target.rpartition("/")[0] != parent:
            raise LayerError(f"whiteout {path!r} names something outside its directory")
        return TarEntry(target, WHITEOUT, 0, 0)

    def _skip_sparse_extensions(self) -> None:
        for _ in range(self.limits.max_header_bytes // BLOCK):
            block = self._stream.read_exact(BLOCK)
            if len(block) < BLOCK:
                raise LayerError("truncated layer: it ends inside a sparse-file header")
            if not block[504]:
                return
        raise LayerError("corrupt tar: too many sparse-file extension headers")


def walk_layer(
    fileobj: BinaryIO, limits: Limits = DEFAULT_LIMITS, media_type: str | None = None
) -> Iterator[TarEntry]:
    """Shorthand for ``iter(LayerWalker(...))`` when the walker's counters are not needed."""
    return iter(LayerWalker(fileobj, limits, media_type))
