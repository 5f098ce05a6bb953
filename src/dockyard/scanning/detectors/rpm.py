"""RPM packages from the sqlite rpm database (Fedora 33+, RHEL/Rocky/Alma 9, Amazon Linux 2023).

``rpmdb.sqlite`` keeps each installed package as one header blob in ``Packages(hnum, blob)``. A header blob
(rpm's ``headerImport`` format, without the lead and magic of a package file) is::

    int32 il, int32 dl                          big-endian: number of index entries, bytes of data
    il x { int32 tag, type, offset, count }     index entries, big-endian
    dl bytes of data                            strings NUL-terminated, integers big-endian

Every count and offset is checked against the blob before it is used. sqlite needs a real file, so the
database is spooled to a private temporary directory and opened read-only and immutable (nothing is
written beside it), with untrusted-schema protections and a bound on the work a query may do.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import tempfile
import time
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import quote

from packageurl import PackageURL

from dockyard.scanning.detectors.base import DetectorResult
from dockyard.scanning.types import Component, Ecosystem, UnsafeInput

RPMDB_PATHS = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")

NAME, VERSION, RELEASE, EPOCH, ARCH, SOURCERPM = 1000, 1001, 1002, 1003, 1022, 1044
DIRINDEXES, BASENAMES, DIRNAMES = 1116, 1117, 1118
_INT32, _STRING, _STRING_ARRAY, _I18NSTRING = 4, 6, 8, 9
_WANTED = {NAME, VERSION, RELEASE, EPOCH, ARCH, SOURCERPM, DIRINDEXES, BASENAMES, DIRNAMES}
_MAX_INDEX = 0xFFFF  # rpm's own bounds (HEADER_TAGS_MAX, HEADER_DATA_MAX)
_MAX_DATA = 0x0FFFFFFF
_QUERY_SECONDS = 30.0


def _strings(data: bytes, offset: int, count: int) -> list[str]:
    if count > len(data) - offset:  # each string takes at least its NUL
        raise ValueError("string count beyond the data")
    out, pos = [], offset
    for _ in range(count):
        end = data.find(b"\0", pos)
        if end < 0:
            raise ValueError("unterminated string")
        out.append(data[pos:end].decode("utf-8", "surrogateescape"))
        pos = end + 1
    return out


def parse_header(blob: bytes) -> dict[int, str | int | list[str] | list[int]]:
    """The tags we use from one header blob; ValueError if the blob is malformed."""
    if len(blob) < 8:
        raise ValueError("header blob shorter than its preamble")
    il, dl = struct.unpack_from(">II", blob)
    if il > _MAX_INDEX or dl > _MAX_DATA:
        raise ValueError(f"header claims {il} entries and {dl} data bytes")
    start = 8 + 16 * il
    if start + dl > len(blob):
        raise ValueError("header blob shorter than its index and data")
    data = blob[start : start + dl]
    tags: dict[int, str | int | list[str] | list[int]] = {}
    for i in range(il):
        tag, kind, offset, count = struct.unpack_from(">IIII", blob, 8 + 16 * i)
        if tag not in _WANTED:
            continue
        if offset >= dl or count == 0:
            raise ValueError(f"tag {tag}: offset {offset} or count {count} out of range")
        if kind == _INT32:
            if offset + 4 * count > dl:
                raise ValueError(f"tag {tag}: {count} integers beyond the data")
            ints = list(struct.unpack_from(f">{count}I", data, offset))
            tags[tag] = ints if tag == DIRINDEXES else ints[0]
        elif kind == _STRING:
            tags[tag] = _strings(data, offset, 1)[0]
        elif kind in (_STRING_ARRAY, _I18NSTRING):
            values = _strings(data, offset, count)
            tags[tag] = values if kind == _STRING_ARRAY else values[0]
    return tags


def split_source_rpm(filename: str) -> tuple[str, str] | None:
    """``openssl-3.0.7-27.el9.src.rpm`` -> (``openssl``, ``3.0.7-27.el9``)."""
    for suffix in (".src.rpm", ".nosrc.rpm"):
        if filename.endswith(suffix):
            parts = filename[: -len(suffix)].rsplit("-", 2)
            if len(parts) == 3 and all(parts):
                return parts[0], f"{parts[1]}-{parts[2]}"
    return None


def rpm_purl(
    name: str, version: str, arch: str | None, namespace: str | None = None, distro: str = ""
) -> str:
    """``version`` as in Component.version (``[epoch:]version-release``); the epoch becomes a qualifier."""
    epoch, sep, rest = version.partition(":")
    if not sep or not epoch.isdigit():
        epoch, rest = "", version
    qualifiers = {k: v for k, v in (("arch", arch), ("epoch", epoch), ("distro", distro)) if v}
    return PackageURL("rpm", namespace, name, rest, qualifiers).to_string()


class RpmDetector:
    """Installed RPM packages and the files they own, from rpmdb.sqlite."""

    name = "rpm"
    max_size = 512 << 20  # a full Fedora workstation's rpmdb.sqlite is ~200 MiB

    def __init__(
        self,
        max_packages: int = 50_000,
        max_size: int | None = None,
        max_header: int = 64 << 20,
        max_owned: int = 2_000_000,
    ) -> None:
        self.max_packages = max_packages
        self.max_header = max_header  # one package's header blob (the biggest real ones are ~10 MiB)
        self.max_owned = max_owned
        if max_size is not None:
            self.max_size = max_size

    def wants(self, path: str, mode: int, size: int) -> bool:
        return path in RPMDB_PATHS

    def parse(self, path: str, data: BinaryIO, size: int, layer_digest: str) -> DetectorResult:
        with tempfile.TemporaryDirectory(prefix="dockyard-rpmdb-") as tmp:
            db = os.path.join(tmp, "rpmdb.sqlite")
            written = 0
            with open(db, "xb") as out:
                while chunk := data.read(1 << 20):
                    written += len(chunk)
                    if written > self.max_size:
                        raise UnsafeInput(f"{path}: larger than {self.max_size} bytes")
                    out.write(chunk)
            result = DetectorResult()
            for blob in self._blobs(path, db):
                try:
                    tags = parse_header(blob)
                except ValueError as exc:
                    raise UnsafeInput(f"{path}: malformed package header: {exc}") from None
                self._add(result, tags, path, layer_digest)
                if len(result.owned) > self.max_owned:
                    raise UnsafeInput(f"{path}: more than {self.max_owned} owned files")
            return result

    def _blobs(self, path: str, db: str) -> Iterator[bytes]:
        conn = sqlite3.connect(f"file:{quote(db)}?mode=ro&immutable=1", uri=True)
        try:
            # A hostile database may carry views, triggers or huge values: trust nothing in its schema and
            # stop any statement that runs too long.
            conn.execute("PRAGMA trusted_schema = OFF")
            conn.execute("PRAGMA cell_size_check = ON")
            conn.execute("PRAGMA mmap_size = 0")
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self.max_header)
            deadline = time.monotonic() + _QUERY_SECONDS
            conn.set_progress_handler(lambda: time.monotonic() > deadline, 100_000)
            kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'Packages'").fetchone()
            if kind is None or kind[0] != "table":
                raise ValueError(f"{path}: no Packages table")
            for count, (blob,) in enumerate(conn.execute("SELECT blob FROM Packages"), 1):
                if count > self.max_packages:
                    raise UnsafeInput(f"{path}: more than {self.max_packages} packages")
                if not isinstance(blob, bytes):
                    raise UnsafeInput(f"{path}: a Packages row is not a blob")
                yield blob
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise UnsafeInput(
                    f"{path}: reading the database took longer than {_QUERY_SECONDS}s"
                ) from None
            raise ValueError(f"{path}: unreadable rpm database: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{path}: unreadable rpm database: {exc}") from None
        finally:
            conn.close()

    @staticmethod
    def _add(result: DetectorResult, tags: dict, path: str, layer_digest: str) -> None:
        name, version, release = tags.get(NAME), tags.get(VERSION), tags.get(RELEASE)
        if not isinstance(name, str) or not isinstance(version, str) or not isinstance(release, str):
            return
        if name == "gpg-pubkey":  # imported signing keys are recorded as packages; they are not software
            return
        epoch = tags.get(EPOCH)
        prefix = f"{epoch}:" if isinstance(epoch, int) and epoch > 0 else ""
        full = f"{prefix}{version}-{release}"
        arch = tags.get(ARCH) if isinstance(tags.get(ARCH), str) else None
        source = split_source_rpm(tags[SOURCERPM]) if isinstance(tags.get(SOURCERPM), str) else None
        result.components.append(
            Component(
                name=name,
                version=full,
                ecosystem=Ecosystem.RPM.value,
                purl=rpm_purl(name, full, arch),  # type: ignore[arg-type]
                layer_digest=layer_digest,
                path=path,
                source_name=source[0] if source else name,
                source_version=f"{prefix}{source[1]}" if source else full,
                arch=arch,  # type: ignore[arg-type]
            )
        )
        basenames, dirnames, indexes = tags.get(BASENAMES), tags.get(DIRNAMES), tags.get(DIRINDEXES)
        if isinstance(basenames, list) and isinstance(dirnames, list) and isinstance(indexes, list):
            for base, index in zip(basenames, indexes, strict=False):
                if isinstance(index, int) and index < len(dirnames):
                    owned = f"{dirnames[index]}{base}".strip("/")
                    if owned:
                        result.owned[owned] = name
