"""Real OCI image layouts for end-to-end tests, built with umoci from layer tars we write ourselves.

Layers are made by Python's tarfile or GNU tar and added with ``umoci raw add-layer``; never with
``umoci insert``, which writes tars without their end-of-archive blocks. A multi-platform image index is
written by hand (umoci has no command for it). ``ImageCache`` builds each image once per test session.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
WHITEOUT = ".wh."
# Fixed timestamps make the layers (not the umoci-written configs) reproducible.
EPOCH = 1_700_000_000


@dataclass(frozen=True)
class Layer:
    """One layer: files to add (path -> content) and paths to delete from lower layers (whiteouts)."""

    files: Mapping[str, bytes] = field(default_factory=dict)
    deletes: Sequence[str] = ()
    tool: str = "tarfile"  # "tarfile" (Python) or "gnutar"
    tar: Path | None = None  # a ready-made tar (e.g. from mmdebstrap) instead of files/deletes


@dataclass
class OciImage:
    """A single-platform image in an OCI layout."""

    layout: Path
    ref: str
    digest: str
    size: int
    config_digest: str
    layer_digests: list[str]
    architecture: str
    os: str = "linux"

    @property
    def oci(self) -> str:
        """The skopeo/podman transport reference ``oci:DIR:REF``."""
        return f"oci:{self.layout}:{self.ref}"

    @property
    def blob_digests(self) -> list[str]:
        return [self.config_digest, *self.layer_digests]

    def manifest(self) -> dict:
        return json.loads(read_blob(self.layout, self.digest))


@dataclass
class OciIndex:
    """A multi-platform image index in an OCI layout, with its platform images."""

    layout: Path
    ref: str
    digest: str
    size: int
    images: dict[str, OciImage]  # architecture -> image

    @property
    def oci(self) -> str:
        return f"oci:{self.layout}:{self.ref}"


def blob_path(layout: Path, digest: str) -> Path:
    algorithm, hexpart = digest.split(":", 1)
    return layout / "blobs" / algorithm / hexpart


def read_blob(layout: Path, digest: str) -> bytes:
    return blob_path(layout, digest).read_bytes()


def write_blob(layout: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = blob_path(layout, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def umoci(*args: str) -> None:
    subprocess.run(["umoci", *args], check=True, capture_output=True, text=True, timeout=120)


# -- layer tars ---------------------------------------------------------------------------------------
def _parents(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _entries(layer: Layer) -> dict[str, bytes | None]:
    """Archive member name -> content (None for a directory), parents first."""
    entries: dict[str, bytes | None] = {}
    for path, content in sorted(layer.files.items()):
        for parent in _parents(path):
            entries.setdefault(parent, None)
        entries[path.strip("/")] = content
    for path in layer.deletes:
        path = path.strip("/")
        for parent in _parents(path):
            entries.setdefault(parent, None)
        head, _, base = path.rpartition("/")
        entries[f"{head}/{WHITEOUT}{base}" if head else f"{WHITEOUT}{base}"] = b""
    return entries


def _tar_with_tarfile(entries: dict[str, bytes | None], out: Path) -> None:
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            info.mtime = EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o755 if name.startswith(("bin/", "usr/bin/")) else 0o644
                tar.addfile(info, io.BytesIO(content))


def _tar_with_gnutar(entries: dict[str, bytes | None], out: Path) -> None:
    root = out.with_suffix(".root")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for name, content in entries.items():
        target = root / name
        if content is None:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    members = sorted(entries)
    subprocess.run(
        [
            *("tar", "--format=gnu", "--numeric-owner", "--owner=0", "--group=0", f"--mtime=@{EPOCH}"),
            *("--no-recursion", "-C", str(root), "-cf", str(out), *members),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    shutil.rmtree(root)


def make_layer_tar(layer: Layer, out: Path) -> Path:
    """Write the uncompressed tar of ``layer`` to ``out``."""
    if layer.tar is not None:
        shutil.copyfile(layer.tar, out)
        return out
    entries = _entries(layer)
    if layer.tool == "gnutar":
        _tar_with_gnutar(entries, out)
    elif layer.tool == "tarfile":
        _tar_with_tarfile(entries, out)
    else:
        raise ValueError(f"unknown tar tool {layer.tool!r}")
    return out


def check_complete_tar(data: bytes) -> list[str]:
    """Member names of an uncompressed tar; AssertionError unless it is whole (with end-of-archive)."""
    assert len(data) % 512 == 0, f"tar size {len(data)} is not a multiple of 512"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        names = []
        for member in tar:  # reads every header and skips every body: fails on truncation
            names.append(member.name)
            if member.isfile():
                fh = tar.extractfile(member)
                assert fh is not None and len(fh.read()) == member.size, f"{member.name} is short"
        end = tar.offset
    assert len(data) >= end + 1024, "tar lacks its end-of-archive blocks"
    assert data[end : end + 1024] == bytes(1024), "tar lacks its end-of-archive blocks"
    return names


def check_layer_blob(layout: Path, digest: str) -> list[str]:
    """Check a stored (gzip) layer blob against its digest and as a complete tar; its member names."""
    data = read_blob(layout, digest)
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return check_complete_tar(gzip.decompress(data))


# -- images -----------------------------------------------------------------------------------------
def _layout_index(layout: Path) -> dict:
    return json.loads((layout / "index.json").read_text())


def descriptor_for(layout: Path, ref: str) -> dict:
    """The descriptor index.json of ``layout`` gives for ``ref``."""
    for desc in _layout_index(layout)["manifests"]:
        if (desc.get("annotations") or {}).get(REF_NAME) == ref:
            return desc
    raise KeyError(f"{ref!r} not in {layout}/index.json")


def build_image(
    layout: Path,
    ref: str,
    layers: Sequence[Layer],
    *,
    architecture: str = "amd64",
    os_name: str = "linux",
    labels: Mapping[str, str] | None = None,
    cmd: str = "/bin/sh",
) -> OciImage:
    """Build ``ref`` in the OCI layout ``layout`` (created when absent) from ``layers``."""
    if not (layout / "oci-layout").exists():
        umoci("init", "--layout", str(layout))
    image = f"{layout}:{ref}"
    umoci("new", "--image", image)
    work = layout.parent / f".{layout.name}-{ref}-tars"
    work.mkdir(parents=True, exist_ok=True)
    for i, layer in enumerate(layers):
        tar = make_layer_tar(layer, work / f"layer{i}.tar")
        check_complete_tar(tar.read_bytes())
        umoci("raw", "add-layer", "--image", image, "--history.created_by", f"layer {i}", str(tar))
    config = ["--architecture", architecture, "--os", os_name, "--config.cmd", cmd]
    for key, value in (labels or {}).items():
        config += ["--config.label", f"{key}={value}"]
    umoci("config", "--image", image, *config)
    umoci("gc", "--layout", str(layout))
    shutil.rmtree(work)
    desc = descriptor_for(layout, ref)
    manifest = json.loads(read_blob(layout, desc["digest"]))
    layer_digests = [d["digest"] for d in manifest["layers"]]
    assert len(layer_digests) == len(layers)
    for digest in layer_digests:
        check_layer_blob(layout, digest)
    return OciImage(
        layout=layout,
        ref=ref,
        digest=desc["digest"],
        size=desc["size"],
        config_digest=manifest["config"]["digest"],
        layer_digests=layer_digests,
        architecture=architecture,
        os=os_name,
    )


def build_index(layout: Path, ref: str, images: Sequence[OciImage]) -> OciIndex:
    """Write an image index over ``images`` (all in ``layout``) and name it ``ref`` in index.json."""
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": image.digest,
                "size": image.size,
                "platform": {"architecture": image.architecture, "os": image.os},
            }
            for image in images
        ],
    }
    payload = json.dumps(index, separators=(",", ":")).encode()
    digest = write_blob(layout, payload)
    top = _layout_index(layout)
    top["manifests"] = [d for d in top["manifests"] if (d.get("annotations") or {}).get(REF_NAME) != ref] + [
        {"mediaType": OCI_INDEX, "digest": digest, "size": len(payload), "annotations": {REF_NAME: ref}}
    ]
    tmp = layout / "index.json.tmp"
    tmp.write_text(json.dumps(top))
    os.replace(tmp, layout / "index.json")
    return OciIndex(layout, ref, digest, len(payload), {image.architecture: image for image in images})


# -- contents ---------------------------------------------------------------------------------------
def payload(label: str, size: int) -> bytes:
    """``size`` incompressible but reproducible bytes (so layers keep their size once gzipped)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def default_layers(label: str, *, big: int = 256 * 1024) -> list[Layer]:
    """Three layers: a base (GNU tar), an application with a large file, and one deleting a file."""
    return [
        Layer(
            files={
                "etc/os-release": f'NAME="dockyard-test"\nID=dockyard\nBUILD="{label}"\n'.encode(),
                "etc/obsolete.conf": b"remove me\n",
                "bin/hello": b"#!/bin/sh\necho hello\n",
            },
            tool="gnutar",
        ),
        Layer(
            files={
                "app/data.bin": payload(label, big),
                "app/config.json": json.dumps({"label": label}).encode(),
            }
        ),
        Layer(files={"app/VERSION": f"{label}\n".encode()}, deletes=["etc/obsolete.conf"]),
    ]


def debian_base_tar(out: Path) -> Path:
    """A small real Debian bookworm root (busybox-static, extracted by mmdebstrap), as a tar."""
    if not out.exists():
        tmp = out.with_name(out.stem + ".partial.tar")  # mmdebstrap picks the format by suffix
        subprocess.run(
            [
                "mmdebstrap",
                "--variant=extract",
                "--include=busybox-static",
                "--skip=output/dev",
                "--skip=output/mknod",
                "--quiet",
                "bookworm",
                str(tmp),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        os.replace(tmp, out)
    return out


class ImageCache:
    """Builds each named image once (per session) under ``root``; safe to share between tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._images: dict[str, OciImage | OciIndex] = {}
        self._lock = threading.Lock()
        self._debian_tar: Future[Path] | None = None

    def prefetch_debian(self) -> None:
        """Start building the Debian base layer (the one slow step: a download) in the background."""
        if self._debian_tar is None:
            pool = ThreadPoolExecutor(1, thread_name_prefix="mmdebstrap")
            self._debian_tar = pool.submit(debian_base_tar, self.root / "debian-base.tar")
            pool.shutdown(wait=False)

    def image(
        self, name: str, *, architecture: str = "amd64", layers: Sequence[Layer] | None = None
    ) -> OciImage:
        """A three-layer image (``default_layers``) unique to ``name``, in its own layout."""
        with self._lock:
            key = f"image:{name}:{architecture}"
            if key not in self._images:
                self._images[key] = build_image(
                    self.root / name,
                    architecture,
                    layers if layers is not None else default_layers(name),
                    architecture=architecture,
                    labels={"org.opencontainers.image.title": name},
                )
            found = self._images[key]
            assert isinstance(found, OciImage)
            return found

    def index(self, name: str, architectures: Sequence[str] = ("amd64", "arm64")) -> OciIndex:
        """An image index over one image per architecture (layers differ per platform)."""
        with self._lock:
            key = f"index:{name}"
            if key not in self._images:
                layout = self.root / name
                images = [
                    build_image(
                        layout,
                        arch,
                        default_layers(f"{name}-{arch}", big=64 * 1024),
                        architecture=arch,
                    )
                    for arch in architectures
                ]
                self._images[key] = build_index(layout, "multi", images)
            found = self._images[key]
            assert isinstance(found, OciIndex)
            return found

    def debian(self, name: str = "debian") -> OciImage:
        """A real Debian base layer plus an application layer (about 1 MiB compressed)."""
        with self._lock:
            key = f"debian:{name}"
            if key not in self._images:
                self.prefetch_debian()
                assert self._debian_tar is not None
                base = self._debian_tar.result()
                layers = [
                    Layer(tar=base),
                    Layer(
                        files={"app/hello.txt": f"hello from {name}\n".encode()},
                        deletes=["usr/share/doc/busybox-static/copyright"],
                    ),
                ]
                self._images[key] = build_image(
                    self.root / name, "latest", layers, labels={"org.opencontainers.image.title": name}
                )
            found = self._images[key]
            assert isinstance(found, OciImage)
            return found
