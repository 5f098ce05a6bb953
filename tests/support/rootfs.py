"""Real root filesystems and OCI images for scanner tests.

``debian_minbase`` builds a Debian bookworm minbase root filesystem with mmdebstrap (about a minute) once and
keeps it in the pytest cache directory, so later runs, and other test sessions in the same checkout, reuse
it; a file lock makes concurrent sessions wait for one build. ``oci_image`` wraps layer tars into an OCI
layout with umoci, and ``umoci_insert`` appends a layer the way ``umoci insert`` does, which is a tar without
its end-of-archive blocks (and without the padding of its last file). ``TarLayer`` writes layer tars with
exactly the entries a test needs (whiteouts, links, hostile names).
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

MTIME = 1_700_000_000


def have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)


def run(*cmd: str | Path, cwd: Path | None = None) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def debian_minbase(cache: Path, suite: str = "bookworm") -> Path:
    """A ``mmdebstrap --variant=minbase`` root filesystem tar, built once into ``cache``; skips the test if
    mmdebstrap is missing or the Debian mirror cannot be reached."""
    out = cache / f"debian-{suite}-minbase.tar"
    with _locked(cache):
        if out.exists():
            return out
        if not have("mmdebstrap"):
            pytest.skip("mmdebstrap is not installed")
        tmp = out.with_suffix(".partial.tar")
        errors = []
        for mode in ("root", "unshare"):
            # --format=tar: mmdebstrap otherwise guesses the format from the file name.
            cmd = ["mmdebstrap", "--variant=minbase", f"--mode={mode}", "--format=tar", "-q", suite, str(tmp)]
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode == 0:
                tmp.rename(out)
                return out
            errors.append(f"--mode={mode}: {proc.stderr.strip()[-500:]}")
            tmp.unlink(missing_ok=True)
        pytest.skip("mmdebstrap could not build a Debian rootfs (mirror unreachable?): " + " | ".join(errors))


def extract(tar: Path, dest: Path, *members: str) -> Path:
    """``tar -x`` of the whole archive or of some members (e.g. ``./var/lib/dpkg``) into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    run("tar", "-x", "-f", tar, "-C", dest, "--no-same-owner", *members)
    return dest


def dpkg_query(root: Path, fmt: str = "${Package} ${Version}\\n") -> list[str]:
    """What the host's dpkg-query says about the dpkg database of an extracted root filesystem."""
    return run("dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "-W", f"-f={fmt}").splitlines()


@dataclass(frozen=True)
class OciLayer:
    digest: str
    media_type: str
    blob: Path

    def open(self) -> io.BufferedReader:
        return open(self.blob, "rb")


@dataclass(frozen=True)
class OciImage:
    layout: Path
    tag: str
    layers: tuple[OciLayer, ...]


def read_image(layout: Path, tag: str) -> OciImage:
    """The layers of a tagged single-platform image in an OCI layout."""
    index = json.loads((layout / "index.json").read_text())
    desc = next(
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    )
    manifest = json.loads(_blob(layout, desc["digest"]).read_text())
    layers = tuple(
        OciLayer(d["digest"], d["mediaType"], _blob(layout, d["digest"])) for d in manifest["layers"]
    )
    return OciImage(layout, tag, layers)


def _blob(layout: Path, digest: str) -> Path:
    algo, _, hexd = digest.partition(":")
    return layout / "blobs" / algo / hexd


def oci_image(layout: Path, tag: str, tars: list[Path]) -> OciImage:
    """A new image ``tag`` in the layout (created if needed) whose layers are the given uncompressed tars,
    added verbatim (umoci gzips them)."""
    if not (layout / "index.json").exists():
        run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:{tag}")
    for tar in tars:
        run("umoci", "raw", "add-layer", "--no-history", "--image", f"{layout}:{tag}", tar)
    return read_image(layout, tag)


def umoci_insert(image: OciImage, source: Path, target: str) -> OciImage:
    """Append a layer with ``umoci insert``: umoci 0.4.7 leaves out the end-of-archive blocks."""
    run("umoci", "insert", "--image", f"{image.layout}:{image.tag}", source, target)
    return read_image(image.layout, image.tag)


def cached_minbase_image(cache: Path) -> tuple[Path, OciImage]:
    """The minbase tar and a one-layer OCI image of it, both built once into ``cache``."""
    tar = debian_minbase(cache)
    layout = cache / "minbase-oci"
    with _locked(cache):
        if not (layout / "done").exists():
            shutil.rmtree(layout, ignore_errors=True)
            oci_image(layout, "bookworm", [tar])
            (layout / "done").write_text("")
    return tar, read_image(layout, "bookworm")


PYTHON_SITE = "usr/local/lib/python3.11/site-packages"


def cached_app_image(cache: Path, minbase_tar: Path) -> OciImage:
    """A realistic application image, built once into ``cache``: the minbase layer, a layer of pip-installed
    urllib3 1.26.4 and Django 3.2 and a layer of an npm project (``srv/app``: its node_modules and lockfile),
    the language fixtures of ``langfixtures``, as ``app`` in an OCI layout (``app-oci``)."""
    import tempfile

    from tests.support.langfixtures import layer_of, npm_project, pip_site_packages

    layout = cache / "app-oci"
    with _locked(cache):
        if not (layout / "done").exists():
            shutil.rmtree(layout, ignore_errors=True)
            with tempfile.TemporaryDirectory(prefix="dockyard-app-image-") as tmp:
                root = Path(tmp)
                pip_tar = layer_of(pip_site_packages(root), root / "pip.tar", PYTHON_SITE)
                npm_tar = layer_of(npm_project(root).root, root / "npm.tar", "srv/app")
                oci_image(layout, "app", [minbase_tar, pip_tar, npm_tar])
            (layout / "done").write_text("")
    return read_image(layout, "app")


class TarLayer:
    """A layer tar written with tarfile, entry by entry, in the order given."""

    def __init__(self, fmt: int = tarfile.PAX_FORMAT) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=fmt)  # noqa: SIM115 - closed by bytes()

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, MTIME
        return info

    def file(self, name: str, data: bytes | str = b"", mode: int = 0o644) -> TarLayer:
        raw = data.encode() if isinstance(data, str) else data
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(raw)
        self._tar.addfile(info, io.BytesIO(raw))
        return self

    def dir(self, name: str, mode: int = 0o755) -> TarLayer:
        self._tar.addfile(self._info(name, tarfile.DIRTYPE, mode))
        return self

    def symlink(self, name: str, target: str) -> TarLayer:
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def hardlink(self, name: str, target: str) -> TarLayer:
        info = self._info(name, tarfile.LNKTYPE, 0o644)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def whiteout(self, path: str) -> TarLayer:
        parent, _, base = path.rpartition("/")
        return self.file(f"{parent}/.wh.{base}" if parent else f".wh.{base}")

    def opaque(self, directory: str) -> TarLayer:
        return self.file(f"{directory}/.wh..wh..opq")

    def bytes(self) -> bytes:
        self._tar.close()
        return self._buf.getvalue()

    def write(self, path: Path) -> Path:
        path.write_bytes(self.bytes())
        return path


# lib/apk/db/installed of alpine:3.19.1, four of its packages with their real origins, trimmed to a few files.
ALPINE_INSTALLED = """\
C:Q1wr5Dh2FqyRg3gRb3fm2mF8d0Z5M=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407337
I:667648
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1705402022
c:50cab88e2d2fc7d62f4f3d8c0bc49b7a7ae2b96c
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1b/d24AdKmjYDkd0qabTXoGNhsKo=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q17yJ3JFNypA4mxhJJr0ou6CzsJVI=

C:Q1cd/YmcDZxkaTLm8ZuyNw1ZAQq24=
P:busybox
V:1.36.1-r15
A:x86_64
S:507831
I:958464
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1705402022
c:ba8b5e5de1b5e1fae37f9a2e6f4aa8d0c7f5e6d4
D:so:libc.musl-x86_64.so.1
p:/bin/sh cmd:busybox=1.36.1-r15 cmd:sh=1.36.1-r15
r:busybox-initscripts
F:bin
R:busybox
a:0:0:755
Z:Q1Mm/9I0ZRQeICzlrkRTPn0lDq/7w=
R:sh
a:0:0:777
Z:Q1pcfTfDNEbNKQc2s1tia7da05M8Q=
F:etc
R:securetty
Z:Q1mB95Hq2NUTZ599RDiSsj9w5FrOU=

C:Q1Zq5Z5kV1kRzVnkvkeWRh1vKExfE=
P:ssl_client
V:1.36.1-r15
A:x86_64
o:busybox
F:usr
F:usr/bin
R:ssl_client
a:0:0:755

C:Q1c8EmUvZsvtqkFBbE7h5KkcP3B4A=
P:libcrypto3
V:3.1.4-r5
A:x86_64
o:openssl
F:lib
R:libcrypto.so.3
F:usr/lib/engines-3
R:afalg.so
"""

ALPINE_OS_RELEASE = """\
NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.19.1
PRETTY_NAME="Alpine Linux v3.19"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"
"""


def alpine_layer() -> bytes:
    """An Alpine 3.19.1 base layer: the apk database, os-release, alpine-release and busybox's links."""
    return (
        TarLayer()
        .dir("etc")
        .file("etc/alpine-release", "3.19.1\n")
        .symlink("etc/os-release", "../usr/lib/os-release")
        .file("usr/lib/os-release", ALPINE_OS_RELEASE)
        .file("bin/busybox", b"\x7fELF" + bytes(2000), mode=0o755)
        .symlink("bin/sh", "/bin/busybox")
        .dir("lib/apk/db")
        .file("lib/apk/db/installed", ALPINE_INSTALLED)
        .bytes()
    )


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def zstded(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=1).compress(data)


def without_end_of_archive(tar: bytes) -> bytes:
    """The tar cut right after its last entry's data, as umoci insert writes it (no padding or end blocks)."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        last = tf.getmembers()[-1]
    return tar[: last.offset_data + (last.size if last.isreg() else 0)]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
