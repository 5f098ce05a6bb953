"""The layer walker: compression by magic bytes, tar dialects, normalised paths, bounded readers, whiteouts,
and the difference between a layer without its trailer (fine) and a cut one (an error)."""

from __future__ import annotations

import gzip
import io
import random
import tarfile
import zlib

import pytest
import zstandard
from tests.support.rootfs import TarLayer, gzipped, without_end_of_archive, zstded

from dockyard.scanning.layers import EntryType, LayerError, LayerWalker, Limits, normalize_path, parse_pax


def _sample() -> bytes:
    return (
        TarLayer()
        .dir("etc")
        .file("etc/os-release", 'ID=debian\nVERSION_ID="12"\n')
        .symlink("etc/alt", "/usr/lib/os-release")
        .file("usr/bin/tool", b"\x7fELF" + bytes(3000), mode=0o755)
        .hardlink("usr/bin/tool2", "usr/bin/tool")
        .bytes()
    )


def _walk(data: bytes, **kw) -> list[tuple[str, str, int, str]]:
    return [(e.path, e.type.value, e.size, e.linkname) for e in LayerWalker(io.BytesIO(data), **kw)]


EXPECTED = [
    ("etc", "dir", 0, ""),
    ("etc/os-release", "file", 26, ""),
    ("etc/alt", "symlink", 0, "/usr/lib/os-release"),
    ("usr/bin/tool", "file", 3004, ""),
    ("usr/bin/tool2", "hardlink", 0, "usr/bin/tool"),
]


@pytest.mark.parametrize("compress", [lambda b: b, gzipped, zstded], ids=["none", "gzip", "zstd"])
def test_compression_is_told_by_magic_bytes_not_media_type(compress) -> None:
    data = compress(_sample())
    walker = LayerWalker(io.BytesIO(data), media_type="application/vnd.oci.image.layer.v1.tar+gzip")
    assert [(e.path, e.type.value, e.size, e.linkname) for e in walker] == EXPECTED
    assert walker.compression in ("none", "gzip", "zstd")
    assert walker.decompressed_bytes == len(_sample())


def test_multi_member_gzip_as_estargz_writes_it() -> None:
    raw = _sample()
    members = b"".join(gzip.compress(raw[i : i + 700], mtime=0) for i in range(0, len(raw), 700))
    assert _walk(members) == EXPECTED


def test_multi_frame_zstd_and_skippable_frames() -> None:
    raw = _sample()
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"meta"
    data = skippable + b"".join(zstded(raw[i : i + 1000]) for i in range(0, len(raw), 1000))
    assert _walk(data) == EXPECTED


def test_readers_give_exactly_the_file_bytes_and_expire() -> None:
    body = bytes(range(256)) * 40
    data = TarLayer().file("a", body).file("b", b"second").bytes()
    walker = iter(LayerWalker(io.BytesIO(data)))
    first = next(walker)
    reader = first.open()
    assert reader.read(10) == body[:10]  # a partial read: the walker skips the rest itself
    second = next(walker)
    with pytest.raises(ValueError, match="moved past"):
        reader.read()
    assert second.open().read() == b"second"
    assert next(walker, None) is None


def test_symlinks_and_directories_cannot_be_opened() -> None:
    for entry in LayerWalker(io.BytesIO(_sample())):
        if entry.type is not EntryType.FILE:
            with pytest.raises(ValueError, match="not a regular file"):
                entry.open()


def test_hard_links_resolve_only_to_earlier_files_of_the_layer() -> None:
    data = (
        TarLayer()
        .hardlink("early", "later")  # names a file that comes after it: not resolved
        .file("later", b"x")
        .hardlink("link", "later")
        .hardlink("chain", "link")
        .hardlink("outside", "etc/shadow")
        .bytes()
    )
    targets = {e.path: e.link_target for e in LayerWalker(io.BytesIO(data)) if e.type is EntryType.HARDLINK}
    assert targets == {"early": None, "link": "later", "chain": "later", "outside": None}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("./etc/passwd", "etc/passwd"),
        ("/usr/lib/x", "usr/lib/x"),
        ("a//b/./c/", "a/b/c"),
        ("./", ""),
        ("etc/.hidden", "etc/.hidden"),
        ("..foo/x", "..foo/x"),
    ],
)
def test_paths_are_normalised(name: str, expected: str) -> None:
    assert normalize_path(name) == expected


@pytest.mark.parametrize("name", ["../etc/passwd", "a/../../b", "/../x", "a/.."])
def test_dotdot_components_are_refused(name: str) -> None:
    with pytest.raises(LayerError, match="traversal"):
        normalize_path(name)


def test_long_names_in_every_tar_dialect() -> None:
    long = "usr/share/" + "/".join(["d" * 60] * 5) + "/file.txt"
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        data = TarLayer(fmt=fmt).file(long, b"hi").symlink("s", "/" + long).bytes()
        assert _walk(data) == [(long, "file", 2, ""), ("s", "symlink", 0, "/" + long)]
    ustar = "p" * 120 + "/" + "n" * 90  # fits only with the ustar prefix field
    assert _walk(TarLayer(fmt=tarfile.USTAR_FORMAT).file(ustar, b"").bytes())[0][0] == ustar


def test_pax_records_are_parsed_by_length() -> None:
    assert parse_pax(b"18 path=a b=c\xc3\xa9/x\n11 size=42\n") == {"path": "a b=cé/x", "size": "42"}
    for bad in (b"99 path=x\n", b"5 path=abc\n", b"x path=a\n", b"10 pathx\n\n"):
        with pytest.raises(LayerError, match="pax"):
            parse_pax(bad)


def test_whiteouts_and_opaque_directories() -> None:
    data = (
        TarLayer()
        .whiteout("var/lib/dpkg/status")
        .opaque("usr/lib/python3")
        .file("usr/lib/.wh..wh.plnk", b"")  # aufs bookkeeping: not content, not a whiteout
        .file(".wh.top", b"")
        .bytes()
    )
    assert _walk(data) == [
        ("var/lib/dpkg/status", "whiteout", 0, ""),
        ("usr/lib/python3", "opaque", 0, ""),
        ("top", "whiteout", 0, ""),
    ]


def test_a_layer_without_its_end_of_archive_indexes_fully() -> None:
    data = TarLayer().file("a", b"A" * 700).file("b/c", b"tail bytes").bytes()
    cut = without_end_of_archive(data)
    assert len(cut) % 512 == 10  # no padding after the last file, as umoci insert writes it
    entries = [(e.path, e.open().read()) for e in LayerWalker(io.BytesIO(cut))]
    assert entries == [("a", b"A" * 700), ("b/c", b"tail bytes")]
    assert [e.path for e in LayerWalker(io.BytesIO(gzipped(cut)))] == ["a", "b/c"]


@pytest.mark.parametrize("where", ["data", "header"])
def test_a_layer_cut_inside_an_entry_is_an_error(where: str) -> None:
    data = TarLayer().file("a", b"A" * 700).file("b", b"B" * 3000).bytes()
    cut = data[: 2048 + 100] if where == "data" else data[: 1536 + 200]
    with pytest.raises(LayerError, match="truncated"):
        list(LayerWalker(io.BytesIO(cut)))


def test_a_cut_is_noticed_by_the_reader_that_hits_it() -> None:
    data = TarLayer().file("big", bytes(5000)).bytes()[:3000]
    walker = iter(LayerWalker(io.BytesIO(data)))
    reader = next(walker).open()
    with pytest.raises(LayerError, match="truncated"):
        reader.read()


def _unfinished(raw: bytes, kind: str) -> bytes:
    """Compressed bytes of all of ``raw`` that stop before the compressed stream says it is complete."""
    if kind == "gzip":
        c = zlib.compressobj(1, zlib.DEFLATED, 31)
        return c.compress(raw) + c.flush(zlib.Z_SYNC_FLUSH)
    c = zstandard.ZstdCompressor().compressobj()
    return c.compress(raw) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_a_cut_compressed_stream_is_an_error_even_at_an_entry_boundary(kind: str) -> None:
    raw = TarLayer().file("a", random.Random(1).randbytes(20000)).file("b", b"x" * 9000).bytes()
    complete = gzipped(raw) if kind == "gzip" else zstded(raw)
    with pytest.raises(LayerError, match="truncated"):
        list(LayerWalker(io.BytesIO(complete[: len(complete) // 2])))  # inside the first file
    # The tar stops cleanly after "b" (as umoci insert writes it) but the compressed stream is unfinished.
    boundary = without_end_of_archive(TarLayer().file("a", b"x" * 1024).file("b", b"y" * 512).bytes())
    with pytest.raises(LayerError, match="truncated"):
        list(LayerWalker(io.BytesIO(_unfinished(boundary, kind))))
    assert [e.path for e in LayerWalker(io.BytesIO(gzipped(boundary)))] == ["a", "b"]


def test_garbage_and_corrupt_headers_are_errors() -> None:
    with pytest.raises(LayerError, match="corrupt tar"):
        list(LayerWalker(io.BytesIO(b"this is not a tar archive" * 100)))
    data = bytearray(_sample())
    data[512 + 2] ^= 0x40  # a byte of the second header's name
    with pytest.raises(LayerError, match="checksum"):
        list(LayerWalker(io.BytesIO(bytes(data))))
    with pytest.raises(LayerError, match="corrupt gzip"):
        list(LayerWalker(io.BytesIO(b"\x1f\x8b" + b"\xff" * 100)))
    with pytest.raises(LayerError, match="unsupported"):
        LayerWalker(io.BytesIO(b"BZh91AY&SY"))


def test_anything_after_the_end_of_archive_is_ignored() -> None:
    data = _sample() + b"\xde\xad" * 5000
    assert _walk(data) == EXPECTED


def test_an_empty_layer_has_no_entries() -> None:
    assert _walk(b"") == []
    assert _walk(gzipped(b"")) == []
    assert _walk(bytes(1024)) == []


def test_limits_are_a_frozen_dataclass_with_real_image_defaults() -> None:
    limits = Limits()
    assert limits.max_layer_bytes == 4 << 30 and limits.max_entries == 1_000_000
    with pytest.raises(AttributeError):
        limits.max_entries = 5  # type: ignore[misc]
