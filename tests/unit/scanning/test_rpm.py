"""The rpm detector: rpmdb.sqlite databases written here header by header, and one written by rpm itself.

A header blob, as rpm stores it in ``Packages.blob`` (``headerExport`` without lead and magic)::

    int32 il, int32 dl                                   big-endian
    il x (int32 tag, int32 type, int32 offset, int32 count)
    dl bytes of data

Real headers start with a region tag (63, HEADER_IMMUTABLE, type BIN, 16 bytes) whose data, the "trailer"
at the end of the data store, is itself an index entry with a negative offset; the builder below writes it
too, so the parser is shown to skip tags it does not use. Types: 4 INT32 (4-aligned, big-endian), 6 STRING,
8 STRING_ARRAY (``count`` NUL-terminated strings), 7 BIN.
"""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from dockyard.scanning.detectors.rpm import RpmDetector, parse_header, rpm_purl, split_source_rpm
from dockyard.scanning.types import UnsafeInput

INT32, STRING, BIN, STRING_ARRAY = 4, 6, 7, 8
NAME, VERSION, RELEASE, EPOCH, ARCH, SOURCERPM = 1000, 1001, 1002, 1003, 1022, 1044
DIRINDEXES, BASENAMES, DIRNAMES = 1116, 1117, 1118
SUMMARY, SIZE = 1004, 1009  # present in real headers, unused by the detector


def header_blob(tags: list[tuple[int, int, object]]) -> bytes:
    index, data = [], bytearray()
    for tag, kind, value in tags:
        if kind == INT32:
            data += bytes(-len(data) % 4)
            values = value if isinstance(value, list) else [value]
            index.append((tag, kind, len(data), len(values)))
            data += struct.pack(f">{len(values)}I", *values)
        elif kind == STRING:
            index.append((tag, kind, len(data), 1))
            data += str(value).encode() + b"\0"
        elif kind == STRING_ARRAY:
            assert isinstance(value, list)
            index.append((tag, kind, len(data), len(value)))
            data += b"".join(v.encode() + b"\0" for v in value)
    il = len(index) + 1
    trailer = struct.pack(">IIiI", 63, BIN, -16 * il, 16)
    index.insert(0, (63, BIN, len(data), 16))
    data += trailer
    return struct.pack(">II", il, len(data)) + b"".join(struct.pack(">IIII", *e) for e in index) + bytes(data)


def package(
    name: str, version: str, release: str, arch: str, files: list[str], epoch: int | None = None
) -> bytes:
    dirs = sorted({f.rsplit("/", 1)[0] + "/" for f in files})
    tags: list[tuple[int, int, object]] = [
        (NAME, STRING, name),
        (VERSION, STRING, version),
        (RELEASE, STRING, release),
        (SUMMARY, STRING, f"the {name} package"),
        (SIZE, INT32, 12345),
        (ARCH, STRING, arch),
        (SOURCERPM, STRING, f"{name.split('-')[0]}-{version}-{release}.src.rpm"),
    ]
    if epoch is not None:
        tags.insert(3, (EPOCH, INT32, epoch))
    if files:
        tags += [
            (DIRINDEXES, INT32, [dirs.index(f.rsplit("/", 1)[0] + "/") for f in files]),
            (BASENAMES, STRING_ARRAY, [f.rsplit("/", 1)[1] for f in files]),
            (DIRNAMES, STRING_ARRAY, dirs),
        ]
    return header_blob(tags)


def rpmdb(path: Path, blobs: list[bytes]) -> bytes:
    with sqlite3.connect(path) as conn:  # the schema rpm 4.16+ creates (other index tables left out)
        conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
        conn.executemany("INSERT INTO Packages (blob) VALUES (?)", [(b,) for b in blobs])
    conn.close()
    return path.read_bytes()


def _parse(data: bytes, det: RpmDetector | None = None):
    return (det or RpmDetector()).parse("var/lib/rpm/rpmdb.sqlite", io.BytesIO(data), len(data), "sha256:r1")


ROCKY = [
    package("bash", "5.1.8", "9.el9", "x86_64", ["/usr/bin/bash", "/usr/bin/sh"]),
    package("openssl-libs", "3.0.7", "27.el9", "x86_64", ["/usr/lib64/libssl.so.3"], epoch=1),
    package("gpg-pubkey", "350d275d", "6279464b", "(none)", []),
    package("tzdata", "2024a", "1.el9", "noarch", [], epoch=0),
]


def test_packages_versions_sources_and_owned_files(tmp_path: Path) -> None:
    result = _parse(rpmdb(tmp_path / "db", ROCKY))
    got = [(c.name, c.version, c.arch, c.source_name, c.source_version) for c in result.components]
    assert got == [
        ("bash", "5.1.8-9.el9", "x86_64", "bash", "5.1.8-9.el9"),
        ("openssl-libs", "1:3.0.7-27.el9", "x86_64", "openssl", "1:3.0.7-27.el9"),
        ("tzdata", "2024a-1.el9", "noarch", "tzdata", "2024a-1.el9"),  # epoch 0 is no epoch; keys skipped
    ]
    assert result.components[1].purl == "pkg:rpm/openssl-libs@3.0.7-27.el9?arch=x86_64&epoch=1"
    assert result.owned == {
        "usr/bin/bash": "bash",
        "usr/bin/sh": "bash",
        "usr/lib64/libssl.so.3": "openssl-libs",
    }


def test_purls_and_source_rpm_names() -> None:
    assert rpm_purl("openssl-libs", "1:3.0.7-27.el9", "x86_64", "rocky", "rocky-9.3") == (
        "pkg:rpm/rocky/openssl-libs@3.0.7-27.el9?arch=x86_64&distro=rocky-9.3&epoch=1"
    )
    assert split_source_rpm("python3.11-3.11.5-1.el9_3.src.rpm") == ("python3.11", "3.11.5-1.el9_3")
    assert split_source_rpm("garbage") is None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: struct.pack(">II", 0x10000, 4) + b[8:],  # more index entries than rpm allows
        lambda b: b[:8] + struct.pack(">IIII", NAME, STRING, 10**6, 1) + b[24:],  # offset past the data
        lambda b: b[:8] + struct.pack(">IIII", BASENAMES, STRING_ARRAY, 0, 10**6) + b[24:],  # absurd count
        lambda b: b[: len(b) // 2],  # shorter than its header says
        lambda b: b[:4],
    ],
    ids=["index-count", "offset", "count", "short", "tiny"],
)
def test_malformed_headers_are_unsafe(tmp_path: Path, mangle) -> None:
    with pytest.raises(UnsafeInput, match="malformed package header"):
        _parse(rpmdb(tmp_path / "db", [mangle(ROCKY[0])]))


def test_unterminated_strings_are_refused() -> None:
    blob = struct.pack(">II", 1, 4) + struct.pack(">IIII", NAME, STRING, 0, 1) + b"bash"  # no NUL in the data
    with pytest.raises(ValueError, match="unterminated"):
        parse_header(blob)
    assert parse_header(blob[:-1] + b"\0") == {NAME: "bas"}


def test_a_packages_view_or_not_a_database_is_not_read(tmp_path: Path) -> None:
    db = tmp_path / "view.sqlite"
    with sqlite3.connect(db) as conn:  # a view that would never finish if it were queried
        conn.execute(
            "CREATE VIEW Packages AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
            "SELECT zeroblob(10) AS blob FROM n"
        )
    conn.close()
    with pytest.raises(ValueError, match="no Packages table"):
        _parse(db.read_bytes())
    with pytest.raises(ValueError, match="unreadable rpm database"):
        _parse(b"SQLite format 3\0" + b"\xff" * 5000)


def test_sizes_and_counts_are_bounded(tmp_path: Path) -> None:
    data = rpmdb(tmp_path / "db", ROCKY * 5)
    with pytest.raises(UnsafeInput, match="more than 5 packages"):
        _parse(data, RpmDetector(max_packages=5))
    with pytest.raises(UnsafeInput, match="larger than"):
        _parse(data, RpmDetector(max_size=4096))


def test_the_spooled_copy_is_private_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    _parse(rpmdb(tmp_path / "db", ROCKY))
    assert list((tmp_path / "tmp").iterdir()) == []


def test_wants_both_database_locations() -> None:
    det = RpmDetector()
    assert det.wants("var/lib/rpm/rpmdb.sqlite", 0o644, 1)
    assert det.wants("usr/lib/sysimage/rpm/rpmdb.sqlite", 0o644, 1)
    assert not det.wants("var/lib/rpm/Packages", 0o644, 1)


SPEC = """\
Name: hello-dockyard
Version: 1.2.3
Release: 4.fc40
Epoch: 2
Summary: test package
License: MIT
BuildArch: noarch
%description
test package
%install
mkdir -p %{buildroot}/usr/share/hello-dockyard
echo hi > %{buildroot}/usr/share/hello-dockyard/a.txt
%files
/usr/share/hello-dockyard/a.txt
"""


def test_a_database_written_by_rpm_itself(tmp_path: Path) -> None:
    if not shutil.which("rpmbuild") or not shutil.which("rpmdb"):
        # `make test` installs them (scripts/install-test-deps.sh, Debian package rpm): there, fail.
        if os.environ.get("DOCKYARD_REQUIRE_SYSTEM_DEPS") == "1":
            pytest.fail("rpmbuild and rpmdb are required: install the Debian package rpm (make system-deps)")
        pytest.skip("rpm tools not installed")
    (tmp_path / "hello.spec").write_text(SPEC)
    top, db = tmp_path / "top", tmp_path / "db"
    subprocess.run(
        ["rpmbuild", "--define", f"_topdir {top}", "--define", "_build_id_links none", "-bb", "hello.spec"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    (built,) = (top / "RPMS" / "noarch").glob("*.rpm")
    db.mkdir()
    for cmd in (
        ["rpmdb", "--initdb", "--dbpath", str(db), "--define", "_db_backend sqlite"],
        [
            "rpm",
            "-i",
            "--justdb",
            "--nodeps",
            "--noscripts",
            "--nosignature",
            "--dbpath",
            str(db),
            str(built),
        ],
    ):
        subprocess.run(cmd, check=True, capture_output=True)
    query = [
        "rpm",
        "-qa",
        "--dbpath",
        str(db),
        "--qf",
        "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH}\\n",
    ]
    expected = subprocess.run(query, check=True, capture_output=True, text=True).stdout.split()
    result = _parse((db / "rpmdb.sqlite").read_bytes())
    (comp,) = result.components
    assert [comp.name, comp.version, comp.arch] == expected
    assert comp.source_name == "hello-dockyard" and comp.source_version == "2:1.2.3-4.fc40"
    assert result.owned == {"usr/share/hello-dockyard/a.txt": "hello-dockyard"}
