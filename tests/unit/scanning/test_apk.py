"""The apk detector on an Alpine 3.19 database (tests/support/rootfs.py: alpine:3.19.1 stanzas, trimmed)."""

from __future__ import annotations

import io

import pytest
from tests.support.rootfs import ALPINE_INSTALLED as INSTALLED

from dockyard.scanning.detectors.apk import ApkDetector
from dockyard.scanning.types import UnsafeInput


def _parse(data: bytes, det: ApkDetector | None = None):
    return (det or ApkDetector()).parse("lib/apk/db/installed", io.BytesIO(data), len(data), "sha256:a1")


def test_packages_with_origins() -> None:
    comps = _parse(INSTALLED.encode()).components
    got = [(c.name, c.version, c.arch, c.source_name, c.source_version) for c in comps]
    assert got == [
        ("musl", "1.2.4_git20230717-r4", "x86_64", "musl", "1.2.4_git20230717-r4"),
        ("busybox", "1.36.1-r15", "x86_64", "busybox", "1.36.1-r15"),
        ("ssl_client", "1.36.1-r15", "x86_64", "busybox", "1.36.1-r15"),
        ("libcrypto3", "3.1.4-r5", "x86_64", "openssl", "3.1.4-r5"),
    ]
    assert comps[1].purl == "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64"
    assert {c.ecosystem for c in comps} == {"Alpine"}


def test_owned_files_follow_the_last_directory() -> None:
    owned = _parse(INSTALLED.encode()).owned
    assert owned == {
        "lib/ld-musl-x86_64.so.1": "musl",
        "lib/libc.musl-x86_64.so.1": "musl",
        "bin/busybox": "busybox",
        "bin/sh": "busybox",
        "etc/securetty": "busybox",
        "usr/bin/ssl_client": "ssl_client",
        "lib/libcrypto.so.3": "libcrypto3",
        "usr/lib/engines-3/afalg.so": "libcrypto3",
    }


def test_stanzas_without_name_or_version_and_junk_lines_are_skipped() -> None:
    data = b"P:ghost\n\nV:1.0\n\nnot a field\nP:real\nV:2-r0\n\n\n"
    assert [(c.name, c.version, c.arch) for c in _parse(data).components] == [("real", "2-r0", None)]


def test_wants_only_the_database() -> None:
    det = ApkDetector()
    assert det.wants("lib/apk/db/installed", 0o644, 10)
    assert not det.wants("lib/apk/db/installed.old", 0o644, 10)
    assert not det.wants("usr/lib/apk/db/installed", 0o644, 10)


def test_counts_are_bounded() -> None:
    many = b"".join(b"P:p%d\nV:1-r0\n\n" % i for i in range(30))
    with pytest.raises(UnsafeInput, match="more than 10 packages"):
        _parse(many, ApkDetector(max_packages=10))
    files = b"P:p\nV:1\nF:usr\n" + b"".join(b"R:f%d\n" % i for i in range(30))
    with pytest.raises(UnsafeInput, match="more than 10 files"):
        _parse(files, ApkDetector(max_owned=10))
