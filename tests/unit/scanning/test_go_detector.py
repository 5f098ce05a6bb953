"""The Go binary detector on binaries the Go toolchain really linked, and on the pre-1.18 pointer format."""

from __future__ import annotations

import io
import shutil
import struct
from pathlib import Path

import pytest
from tests.support.langfixtures import GoBinaries, go_binaries, layer_of, walk_layer

from dockyard.scanning.detectors import golang
from dockyard.scanning.detectors.base import Detector
from dockyard.scanning.detectors.golang import (
    GoBinaryDetector,
    parse_mod_info,
    read_build_info,
    stdlib_version,
)

DIGEST = "sha256:" + "3" * 64
EXPECTED_DEPS = {("example.com/greet", "v1.2.3"), ("example.com/greet2", "v1.3.0")}
SENTINEL_START = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6"
SENTINEL_END = b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2"


@pytest.fixture(scope="session")
def go(tmp_path_factory: pytest.TempPathFactory) -> GoBinaries:
    return go_binaries(tmp_path_factory.mktemp("go"))


class Unseekable(io.RawIOBase):
    """A stream that hands out a few bytes per read and cannot seek (a member of a compressed layer)."""

    def __init__(self, data: bytes, step: int = 4093) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = min(len(buffer), self._step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def _components(data: bytes, detector: GoBinaryDetector | None = None, stream: io.RawIOBase | None = None):
    detector = detector or GoBinaryDetector()
    f = io.BufferedReader(stream) if stream is not None else io.BytesIO(data)
    return detector.parse("usr/bin/app", f, len(data), DIGEST)  # type: ignore[arg-type]


def test_detector_satisfies_the_interface() -> None:
    assert isinstance(GoBinaryDetector(), Detector)


def test_real_binaries_in_a_layer(go: GoBinaries, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for label, binary in go.binaries.items():
        (tree / label).mkdir(parents=True)
        shutil.copy2(binary, tree / label / "hello")
    (tree / "script.sh").write_text("#!/bin/sh\necho hi\n" * 100)
    (tree / "script.sh").chmod(0o755)
    walked = walk_layer(GoBinaryDetector(), layer_of(tree, tmp_path / "layer.tar", "usr/local/bin"), DIGEST)
    std = go.go_version.removeprefix("go")
    for label in go.binaries:
        path = f"usr/local/bin/{label}/hello"
        found = {(c.name, c.version) for c in walked.components if c.path == path}
        # The main module is "(devel)" (built from a work tree) and so is not listed; the replaced
        # dependency is listed under its replacement, as `go version -m` resolves it.
        assert found == {("stdlib", std), *EXPECTED_DEPS}, label
    stdlib = next(c for c in walked.components if c.name == "stdlib")
    assert stdlib.purl == f"pkg:golang/stdlib@{std}" and stdlib.ecosystem == "Go"
    greet = next(c for c in walked.components if c.name == "example.com/greet")
    assert greet.purl == "pkg:golang/example.com/greet@v1.2.3"
    assert "usr/local/bin/script.sh" in walked.wanted  # executable, so asked for, but not ELF: nothing found
    assert walked.warnings == []


def test_real_binary_through_a_trickling_unseekable_stream(go: GoBinaries) -> None:
    data = go.binaries["native"].read_bytes()
    # 4093-byte reads put chunk boundaries everywhere, including inside the magic.
    result = _components(data, stream=Unseekable(data))
    assert {(c.name, c.version) for c in result.components} == {
        ("stdlib", go.go_version.removeprefix("go")),
        *EXPECTED_DEPS,
    }


def test_magic_split_across_chunks(go: GoBinaries, monkeypatch: pytest.MonkeyPatch) -> None:
    data = go.binaries["native"].read_bytes()
    at = data.index(golang.MAGIC + b"\x08\x02")
    monkeypatch.setattr(golang, "HEAD_SIZE", 64)
    for chunk in (at - 64 + 5, at - 64 + 13):  # the first chunk ends 5 (13) bytes into the magic
        monkeypatch.setattr(golang, "CHUNK", chunk)
        info = read_build_info(io.BytesIO(data), len(data))
        assert info is not None and "example.com/greet" in info.mod_info


def test_search_stops_at_the_size_bound(go: GoBinaries) -> None:
    data = go.binaries["native"].read_bytes()
    at = data.index(golang.MAGIC + b"\x08\x02")
    assert read_build_info(io.BytesIO(data), at) is None  # the bound ends before the header
    assert read_build_info(io.BytesIO(data), len(data)) is not None


def test_non_elf_and_non_go_executables() -> None:
    assert _components(b"#!/bin/sh\n" * 200).components == []
    # An ELF whose data happens to contain the magic unaligned, and once aligned but with a bad header
    # (the magic as a string constant, as in any binary that links debug/buildinfo).
    fake = bytearray(_elf64([]) + b"\0" * 4000)
    fake[1001 : 1001 + 14] = golang.MAGIC
    fake[2048 : 2048 + 16] = golang.MAGIC + b"\x07\x09"
    assert _components(bytes(fake)).components == []


def test_wants_executables_only() -> None:
    detector = GoBinaryDetector()
    assert detector.wants("usr/bin/app", 0o100755, 10_000_000)
    assert detector.wants("opt/tool", 0o100700, 5_000)
    assert not detector.wants("usr/lib/libfoo.a", 0o100644, 10_000_000)
    assert not detector.wants("usr/bin/tiny", 0o100755, 100)


# -- the Go < 1.18 pointer format, which no toolchain on the test machines writes any more

BASE_VADDR = 0x400000


def _elf64(segments: list[tuple[int, int, int]]) -> bytes:
    """An ELF64 little-endian header with PT_LOAD program headers (vaddr, offset, filesz)."""
    phoff, phentsize = 64, 56
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4], header[5], header[6] = 2, 1, 1
    struct.pack_into(
        "<HHIQQQIHHHHHH", header, 16, 2, 62, 1, 0, phoff, 0, 0, 64, phentsize, len(segments), 0, 0, 0
    )
    for vaddr, offset, filesz in segments:
        header += struct.pack("<IIQQQQQQ", 1, 5, offset, vaddr, vaddr, filesz, filesz, 0x1000)
    return bytes(header)


def _pointer_format_binary(vers: bytes, mod: bytes) -> bytes:
    """Strings in a "rodata" page, their Go string headers and the build info header in a "data" page."""
    rodata_off, data_off = 0x1000, 0x2000
    vers_at, mod_at = rodata_off, rodata_off + 0x100
    body = bytearray(0x3000)
    body[vers_at : vers_at + len(vers)] = vers
    body[mod_at : mod_at + len(mod)] = mod
    headers_at = data_off + 0x40  # runtime.buildVersion and runtime.modinfo string headers
    struct.pack_into("<QQ", body, headers_at, BASE_VADDR + vers_at, len(vers))
    struct.pack_into("<QQ", body, headers_at + 16, BASE_VADDR + mod_at, len(mod))
    header = (
        golang.MAGIC
        + bytes([8, 0])
        + struct.pack("<QQ", BASE_VADDR + headers_at, BASE_VADDR + headers_at + 16)
    )
    body[data_off : data_off + len(header)] = header
    # A decoy first: the magic as a constant in .rodata, aligned and followed by bytes that read as a
    # pointer-format header pointing nowhere. The search must go on past it.
    decoy = golang.MAGIC + bytes([8, 0]) + struct.pack("<QQ", 0xDEAD0000, BASE_VADDR + 8)
    body[0x800 : 0x800 + len(decoy)] = decoy
    elf = _elf64([(BASE_VADDR, 0, len(body))])
    body[: len(elf)] = elf
    # The linker's build ID note in the first page, which is what tells us to keep bytes for later.
    body[0x200:0x210] = b"\x04\x00\x00\x00\x10\x00\x00\x00\x04\x00\x00\x00Go\x00\x00"
    return bytes(body)


MOD_INFO = (
    "path\tgithub.com/acme/tool\n"
    "mod\tgithub.com/acme/tool\tv1.4.2\th1:abc=\n"
    "dep\tgolang.org/x/net\tv0.0.0-20210405180319-a5a99cb37ef4\th1:def=\n"
    "dep\tgithub.com/old/lib\tv1.0.0\th1:ghi=\n"
    "=>\tgithub.com/new/lib\tv1.1.0\th1:jkl=\n"
    "dep\tgithub.com/local/lib\tv0.1.0\n"
    "=>\t../lib\t\n"
)


@pytest.mark.parametrize("seekable", [True, False])
def test_pointer_format(seekable: bool) -> None:
    data = _pointer_format_binary(b"go1.16.15", SENTINEL_START + MOD_INFO.encode() + SENTINEL_END)
    result = _components(data, stream=None if seekable else Unseekable(data, 1000))
    assert {(c.name, c.version) for c in result.components} == {
        ("stdlib", "1.16.15"),
        ("github.com/acme/tool", "v1.4.2"),  # a released main module is listed
        ("golang.org/x/net", "v0.0.0-20210405180319-a5a99cb37ef4"),
        ("github.com/new/lib", "v1.1.0"),
    }


def test_pointer_format_unseekable_without_go_note_warns() -> None:
    data = bytearray(_pointer_format_binary(b"go1.16.15", SENTINEL_START + MOD_INFO.encode() + SENTINEL_END))
    data[0x200:0x210] = b"\0" * 16  # no build ID note: the bytes before the header are not kept
    result = _components(bytes(data), stream=Unseekable(bytes(data)))
    assert result.components == []
    assert result.warnings and "random access" in result.warnings[0]


def test_unframed_module_info_is_ignored_but_stdlib_kept() -> None:
    data = _pointer_format_binary(b"go1.15.2", MOD_INFO.encode())
    assert {(c.name, c.version) for c in _components(data).components} == {("stdlib", "1.15.2")}


@pytest.mark.parametrize(
    ("embedded", "version"),
    [
        ("go1.21.5", "1.21.5"),
        ("go1.20", "1.20.0"),
        ("go1.21rc2", "1.21.0-rc.2"),
        ("go1.9beta1", "1.9.0-beta.1"),
        ("go1.21.5 X:boringcrypto", "1.21.5"),
        ("devel go1.22-abcdef Tue Jan 2 2024", None),
    ],
)
def test_stdlib_version(embedded: str, version: str | None) -> None:
    assert stdlib_version(embedded) == version


def test_parse_mod_info() -> None:
    info = parse_mod_info(MOD_INFO)
    assert info.main is not None and info.main.version == "v1.4.2"
    assert [(d.path, d.version) for d in info.deps] == [
        ("golang.org/x/net", "v0.0.0-20210405180319-a5a99cb37ef4"),
        ("github.com/new/lib", "v1.1.0"),
        ("../lib", ""),  # a directory replacement: no version, so the detector lists nothing for it
    ]
