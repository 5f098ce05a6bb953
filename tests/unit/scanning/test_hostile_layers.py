"""Hostile layers: each is refused with UnsafeInput (or skipped with a warning where the image is still
readable), quickly, in bounded memory, without reading outside the layer or writing anywhere but a private
temporary directory."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from tests.support.rootfs import TarLayer, gzipped

from dockyard.scanning.detectors.apk import ApkDetector
from dockyard.scanning.detectors.dpkg import DpkgDetector
from dockyard.scanning.detectors.rpm import RpmDetector
from dockyard.scanning.indexer import LayerFacts, index_layer
from dockyard.scanning.layers import BLOCK, Limits
from dockyard.scanning.sources.model import SourceError, open_window
from dockyard.scanning.types import UnsafeInput

pytestmark = pytest.mark.timeout(60)  # "never hang": a hang fails the test instead of the run

MIB, GIB = 1 << 20, 1 << 30
DETECTORS = [DpkgDetector(), ApkDetector(), RpmDetector()]
STATUS = b"Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n"


PREFETCH = False  # set by the fixture below


@pytest.fixture(autouse=True, params=[False, True], ids=["inline", "prefetch"])
def prefetch(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every case twice: inflating in the walker's thread, and in a thread of its own (``dockyard scan``),
    which must be gone however the layer ended."""
    monkeypatch.setattr(sys.modules[__name__], "PREFETCH", request.param)
    yield
    assert [t for t in threading.enumerate() if t.name == "layer-inflate"] == []


@pytest.fixture(autouse=True)
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run from an empty directory with a private temp dir, and check both are empty afterwards."""
    import tempfile

    work, temp = tmp_path / "cwd", tmp_path / "temp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    yield tmp_path
    assert list(work.iterdir()) == [] and list(temp.iterdir()) == []


def _index(data: bytes | io.BufferedIOBase, limits: Limits | None = None, detectors=None) -> LayerFacts:
    f = io.BytesIO(data) if isinstance(data, bytes) else data
    return index_layer(f, "sha256:" + "0" * 64, detectors or DETECTORS, limits or Limits(), prefetch=PREFETCH)


def _header(name: bytes, size: int, kind: bytes = b"0") -> bytes:
    """A raw ustar header, for shapes tarfile refuses to write."""
    block = bytearray(BLOCK)
    block[: len(name)] = name
    block[100:108] = b"0000644\0"
    block[124:136] = b"%011o\0" % size
    block[156:157] = kind
    block[257:265] = b"ustar\x0000"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


# --- names ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../etc/passwd", "var/../../etc/passwd", "./../x", "/../../etc/shadow"])
def test_path_traversal_is_refused(name: str) -> None:
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        with pytest.raises(UnsafeInput, match="traversal"):
            _index(TarLayer(fmt=fmt).file(name, b"root:x:0:0").bytes())


def test_absolute_paths_stay_inside_the_image() -> None:
    facts = _index(
        TarLayer().file("/var/lib/dpkg/status", STATUS).file("/etc/os-release", "ID=debian\n").bytes()
    )
    assert list(facts.files) == ["var/lib/dpkg/status"] and list(facts.os_files) == ["etc/os-release"]


def test_deep_and_long_paths_are_refused() -> None:
    with pytest.raises(UnsafeInput, match="deeper than 256"):
        _index(TarLayer().file("/".join(["d"] * 300), b"").bytes())
    with pytest.raises(UnsafeInput, match="longer than 4096"):
        _index(TarLayer().file("x" * 5000, b"").bytes())
    with pytest.raises(UnsafeInput, match="link target longer"):
        _index(TarLayer().symlink("s", "y" * 5000).bytes())


def test_oversized_extension_headers_are_refused_without_reading_them() -> None:
    pax = _header(b"././@PaxHeader", 100 * MIB, b"x")
    with pytest.raises(UnsafeInput, match="pax header of 104857600 bytes"):
        _index(pax)  # the 100 MiB it announces are not even there
    longname = _header(b"././@LongLink", 5 * MIB, b"L")
    with pytest.raises(UnsafeInput, match="GNU long name header"):
        _index(longname)
    chain = b"".join(_header(b"././@LongLink", 4, b"L") + b"abc\0".ljust(BLOCK, b"\0") for _ in range(20))
    with pytest.raises(UnsafeInput, match="extension headers"):
        _index(chain)


# --- links ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/etc/shadow", "../../../etc/shadow", "../../..", "/proc/self/environ"])
def test_symlinks_are_never_followed(target: str) -> None:
    facts = _index(TarLayer().symlink("var/lib/dpkg/status", target).symlink("lib/apk/db", target).bytes())
    assert facts.files == {} and facts.owned == {}
    assert facts.hidden == {"var/lib/dpkg/status", "lib/apk/db"}


def test_hard_link_escapes() -> None:
    with pytest.raises(UnsafeInput, match="traversal"):
        _index(TarLayer().hardlink("var/lib/dpkg/status", "../../../etc/shadow").bytes())
    # A target that is not an earlier file of the layer (here: the host's, by absolute name) is not read.
    facts = _index(TarLayer().hardlink("var/lib/dpkg/status", "/etc/shadow").bytes())
    assert facts.files == {} and any("hard link" in w for w in facts.warnings)


def test_a_file_written_through_a_symlinked_directory_is_just_a_name() -> None:
    # Extracting this would write to /tmp/pwned on the host; the walker only ever sees names.
    layer = TarLayer().symlink("var/lib/dpkg", "/tmp/pwned").file("var/lib/dpkg/status", STATUS).bytes()
    facts = _index(layer)
    assert [c.name for c in facts.files["var/lib/dpkg/status"]] == ["a"]
    assert not Path("/tmp/pwned").exists()


# --- bombs and sizes --------------------------------------------------------------------------------------


def _zeros_gzip(path: Path, size: int, name: bytes = b"bomb") -> Path:
    """A gzip'd tar of one file of ``size`` zero bytes, written in bounded memory: after a full flush deflate
    encodes each further MiB of zeros identically (~1 KiB), so that block is written over and over."""
    zeros = bytes(MIB)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = c.compress(_header(name, size) + zeros) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    assert block == c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    with open(path, "wb") as out:
        out.write(head)
        for _ in range(size // MIB):
            out.write(block)
    return path


def test_gzip_bomb_is_refused_quickly_in_bounded_memory(sandbox: Path) -> None:
    bomb = _zeros_gzip(sandbox / "bomb.tar.gz", 2 * GIB)
    assert bomb.stat().st_size < 3 * MIB
    tracemalloc.start()
    started = time.monotonic()
    try:
        with open(bomb, "rb") as f, pytest.raises(UnsafeInput, match="compression bomb"):
            _index(f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bomb.unlink()
    assert time.monotonic() - started < 20
    assert peak < 16 * MIB, f"peak {peak} bytes"


def test_zstd_bomb_and_memory_hungry_frames_are_refused(sandbox: Path) -> None:
    path = sandbox / "bomb.tar.zst"
    with open(path, "wb") as out:
        writer = zstandard.ZstdCompressor(level=1).stream_writer(out, closefd=False)
        writer.write(_header(b"bomb", 2 * GIB))
        zeros = bytes(MIB)
        for _ in range(2048):
            writer.write(zeros)
        writer.close()
    with open(path, "rb") as f, pytest.raises(UnsafeInput, match="compression bomb"):
        _index(f)
    path.unlink()
    # A frame declaring a 2 GiB window: the decoder would allocate it, so zstandard's limit refuses it.
    params = zstandard.ZstdCompressionParameters.from_level(1, window_log=31)
    co = zstandard.ZstdCompressor(compression_params=params).compressobj()
    frame = co.compress(TarLayer().file("a", b"x").bytes()) + co.flush()
    with pytest.raises(UnsafeInput, match="zstd"):
        _index(frame)


def test_the_decompressed_size_is_bounded(sandbox: Path) -> None:
    data = gzipped(TarLayer().file("random", os.urandom(3 * MIB)).bytes())
    with pytest.raises(UnsafeInput, match="more than 2097152 bytes"):
        _index(data, Limits(max_layer_bytes=2 * MIB))


def test_absurd_entry_counts_are_refused() -> None:
    layer = TarLayer()
    for i in range(1001):
        layer.file(f"f{i}")
    with pytest.raises(UnsafeInput, match="more than 1000 entries"):
        _index(layer.bytes(), Limits(max_entries=1000))


# --- package databases -----------------------------------------------------------------------------------


def test_an_absurd_dpkg_status_is_refused_quickly() -> None:
    stanzas = b"".join(
        b"Package: p%d\nStatus: install ok installed\nVersion: 1\n\n" % i for i in range(200_000)
    )
    started = time.monotonic()
    with pytest.raises(UnsafeInput, match="more than 1000 package stanzas"):
        _index(
            gzipped(TarLayer().file("var/lib/dpkg/status", stanzas).bytes()), detectors=[DpkgDetector(1000)]
        )
    assert time.monotonic() - started < 10


def test_a_database_larger_than_a_detector_reads_is_skipped_unread(sandbox: Path) -> None:
    # A 64 MiB + 1 "status" with the file read limit lowered to 1 MiB: a warning, and the bytes never
    # reach memory (the ratio guard is relaxed so the zeros count as data, not as a bomb).
    path = _zeros_gzip(sandbox / "status.tar.gz", 64 * MIB, b"var/lib/dpkg/status")
    limits = Limits(max_file_read=MIB, max_ratio=10**6)
    tracemalloc.start()
    try:
        with open(path, "rb") as f:
            facts = _index(f, limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    path.unlink()
    assert facts.files == {"var/lib/dpkg/status": []}  # it still replaces a lower layer's status
    assert any("more than the dpkg detector reads" in w for w in facts.warnings)
    assert peak < 16 * MIB


def test_an_os_release_too_large_to_be_one_is_skipped() -> None:
    facts = _index(TarLayer().file("etc/os-release", b"ID=x\n" * 20000).bytes())
    assert facts.os_files == {} and any("os-release" in w for w in facts.warnings)


# --- truncation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0.3, 0.5, 0.9])
def test_a_layer_cut_mid_entry_is_refused(cut: float) -> None:
    layer = (
        TarLayer().file("var/lib/dpkg/status", STATUS * 200).file("usr/bin/x", os.urandom(64 * 1024)).bytes()
    )
    for data in (layer, gzipped(layer)):
        with pytest.raises(UnsafeInput, match="truncated"):
            _index(data[: int(len(data) * cut)])


def test_a_database_cut_while_its_detector_reads_it_is_refused() -> None:
    layer = TarLayer().file("lib/apk/db/installed", b"P:a\nV:1\n\n" * 20_000).bytes()
    with pytest.raises(UnsafeInput, match="truncated"):
        _index(layer[: len(layer) // 2])


class _SlowDpkg(DpkgDetector):
    """Gives a prefetching thread time to read ahead to the blob's end while the walker is busy."""

    def parse(self, path, data, size, layer_digest):  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        return super().parse(path, data, size, layer_digest)


def test_a_digest_mismatch_found_past_the_tars_end_is_never_lost(sandbox: Path) -> None:
    """A blob whose bytes fail its digest only at its last byte, which lies past the tar's end (1.1 MiB of
    data after the archive inside the gzip stream): the walker never needs those bytes, a thread inflating
    ahead does. The mismatch must reach the caller, from ``index_layer`` or from reading the blob to its end
    as ``dockyard scan`` then does, and never read as a clean end."""
    tar = TarLayer().file("var/lib/dpkg/status", STATUS).bytes()
    blob = gzipped(tar + os.urandom(MIB + MIB // 10))
    path = sandbox / "blob"
    path.write_bytes(blob)
    with open_window(str(path), 0, len(blob), "sha256:" + "1" * 64, "layer") as f:
        with pytest.raises(SourceError, match="does not match its digest"):
            index_layer(f, "sha256:" + "1" * 64, [_SlowDpkg()], Limits(), prefetch=PREFETCH)
            assert not PREFETCH, "the inflating thread met the mismatch: index_layer reports it"
            while f.read(MIB):
                pass
        with pytest.raises(SourceError, match="does not match its digest"):  # and every read after it
            f.read(MIB)
