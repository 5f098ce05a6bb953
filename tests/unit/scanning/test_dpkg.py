"""The dpkg detector on hand-written databases; tests/unit/scanning/test_indexer.py holds it against
dpkg-query on a real Debian root filesystem."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from dockyard.scanning.detectors.dpkg import DpkgDetector
from dockyard.scanning.types import UnsafeInput

STATUS = b"""\
Package: libssl3
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: openssl
Version: 3.0.15-1~deb12u1
Description: Secure Sockets Layer toolkit - shared libraries
 caf\xe9 is not UTF-8 here, and must not break parsing

Package: libc6
Status: hold ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u9

Package: libc6
Status: install ok installed
Architecture: i386
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u9

Package: libgnutls30
Status: install ok installed
Architecture: amd64
Source: gnutls28 (3.7.9-2+deb12u3)
Version: 3.7.9-2+deb12u3+b1

Package: old-config
Status: deinstall ok config-files
Architecture: all
Version: 1.0

Package: half
Status: install reinstreq half-installed
Architecture: all
Version: 2.0

Package: login
Status: install ok installed
Architecture: amd64
Version: 1:4.13+dfsg1-1+b1
"""


def _parse(path: str, data: bytes, det: DpkgDetector | None = None):
    return (det or DpkgDetector()).parse(path, io.BytesIO(data), len(data), "sha256:l1")


def test_status_lists_installed_packages_only() -> None:
    comps = _parse("var/lib/dpkg/status", STATUS).components
    got = [(c.name, c.version, c.arch, c.source_name, c.source_version) for c in comps]
    assert got == [
        ("libssl3", "3.0.15-1~deb12u1", "amd64", "openssl", "3.0.15-1~deb12u1"),
        ("libc6", "2.36-9+deb12u9", "amd64", "glibc", "2.36-9+deb12u9"),  # held is still installed
        ("libc6", "2.36-9+deb12u9", "i386", "glibc", "2.36-9+deb12u9"),
        ("libgnutls30", "3.7.9-2+deb12u3+b1", "amd64", "gnutls28", "3.7.9-2+deb12u3"),  # binNMU
        ("login", "1:4.13+dfsg1-1+b1", "amd64", "login", "1:4.13+dfsg1-1+b1"),
    ]
    first = comps[0]
    assert (first.ecosystem, first.path, first.layer_digest) == ("Debian", "var/lib/dpkg/status", "sha256:l1")
    assert first.purl == "pkg:deb/debian/libssl3@3.0.15-1~deb12u1?arch=amd64"


@pytest.mark.skipif(not shutil.which("dpkg-query"), reason="dpkg-query is not installed")
def test_the_selection_agrees_with_dpkg_query(tmp_path: Path) -> None:
    (tmp_path / "updates").mkdir()
    (tmp_path / "status").write_bytes(STATUS)
    out = subprocess.run(
        ["dpkg-query", f"--admindir={tmp_path}", "-W", "-f=${db:Status-Status} ${Package} ${Version}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = sorted(line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("installed "))
    ours = sorted(f"{c.name} {c.version}" for c in _parse("var/lib/dpkg/status", STATUS).components)
    assert ours == installed


def test_distroless_status_d_has_no_status_field_and_may_hold_several_stanzas() -> None:
    data = b"Package: base-files\nVersion: 12.4+deb12u8\nArchitecture: amd64\n\n"
    data += b"Package: netbase\nVersion: 6.4\n"
    comps = _parse("var/lib/dpkg/status.d/base", data).components
    assert [(c.name, c.version, c.arch) for c in comps] == [
        ("base-files", "12.4+deb12u8", "amd64"),
        ("netbase", "6.4", None),
    ]


def test_owned_files_from_list_and_md5sums() -> None:
    listing = b"/.\n/etc\n/lib/x86_64-linux-gnu/libc.so.6\n/usr/share/doc/libc6\n"
    result = _parse("var/lib/dpkg/info/libc6:amd64.list", listing)
    assert result.components == []
    assert result.owned == {
        "etc": "libc6",
        "lib/x86_64-linux-gnu/libc.so.6": "libc6",
        "usr/share/doc/libc6": "libc6",
    }
    md5 = b"0f1e2d3c4b5a69788796a5b4c3d2e1f0  usr/lib/x86_64-linux-gnu/libssl.so.3\n"
    assert _parse("var/lib/dpkg/status.d/libssl3.md5sums", md5).owned == {
        "usr/lib/x86_64-linux-gnu/libssl.so.3": "libssl3"
    }


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("var/lib/dpkg/status", True),
        ("var/lib/dpkg/status-old", False),
        ("var/lib/dpkg/status.d/libc6", True),
        ("var/lib/dpkg/status.d/libc6.md5sums", True),
        ("var/lib/dpkg/status.d/sub/x", False),
        ("var/lib/dpkg/info/bash.list", True),
        ("var/lib/dpkg/info/bash.md5sums", False),
        ("var/lib/dpkg/info/bash.postinst", False),
        ("srv/var/lib/dpkg/status", False),
    ],
)
def test_wants(path: str, wanted: bool) -> None:
    assert DpkgDetector().wants(path, 0o644, 100) is wanted


def test_stanza_and_file_counts_are_bounded() -> None:
    many = b"".join(b"Package: p%d\nVersion: 1\nStatus: install ok installed\n\n" % i for i in range(50))
    with pytest.raises(UnsafeInput, match="more than 20 package stanzas"):
        _parse("var/lib/dpkg/status", many, DpkgDetector(max_packages=20))
    listing = b"".join(b"/usr/share/f%d\n" % i for i in range(50))
    with pytest.raises(UnsafeInput, match="more than 10 files"):
        _parse("var/lib/dpkg/info/x.list", listing, DpkgDetector(max_owned=10))
