"""Small real images for the demo store, built in memory and pushed through the registry service (every
rule of a push applies): an Alpine 3.19 base layer (os-release and an apk database, so the scanner finds
what the packages' versions carry) and a layer with the product's entrypoint; one image per architecture,
and an OCI index over them when there are several."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dockyard.events import Actor
from dockyard.oci import mediatypes as mt
from dockyard.registry.services import RegistryService
from dockyard.storage.blobstore import BlobStore, blob_key

ALPINE_OS_RELEASE = (
    'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n'
    'HOME_URL="https://alpinelinux.org/"\n'
)
CREATED = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)
MTIME = int(CREATED.timestamp())


@dataclass(frozen=True)
class Pushed:
    digest: str
    media_type: str
    size: int


def _tar(files: dict[str, str], executables: frozenset[str] = frozenset()) -> bytes:
    """A gzipped layer with ``files`` (parent directories added), reproducible (fixed times, no names)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted(
            {"/".join(path.split("/")[:i]) for path in files for i in range(1, path.count("/") + 1)}
        )
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        for path, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mtime = len(data), MTIME
            info.mode = 0o755 if path in executables else 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _apk_database(packages: tuple[tuple[str, str], ...], arch: str) -> str:
    apk_arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    entries = []
    for name, version in packages:
        origin = {"libcrypto3": "openssl", "libssl3": "openssl", "libcurl": "curl"}.get(name, name)
        entries.append(f"P:{name}\nV:{version}\nA:{apk_arch}\no:{origin}\nL:MIT\n")
    return "\n".join(entries) + "\n"


def base_layer(packages: tuple[tuple[str, str], ...], arch: str) -> bytes:
    return _tar({"etc/os-release": ALPINE_OS_RELEASE, "lib/apk/db/installed": _apk_database(packages, arch)})


def app_layer(product: str, image: str, version: str) -> bytes:
    script = f'#!/bin/sh\necho "{product} {image} {version}: this is a demo image of dockyard\'s store"\n'
    readme = (
        f"{product} ({image}) {version}\n\nA demo image: it shows what the store offers, it runs nothing.\n"
    )
    entry = f"usr/local/bin/{image}"
    return _tar({entry: script, f"usr/share/doc/{image}/README": readme}, frozenset({entry}))


class DemoImages:
    """Pushes the demo's images into staging repositories, in the caller's transaction."""

    def __init__(self, registry: RegistryService, blobs: BlobStore, actor: Actor) -> None:
        self.registry, self.blobs, self.actor = registry, blobs, actor

    def _blob(self, repository: str, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.blobs.size(digest) is None:
            with tempfile.TemporaryDirectory(prefix="demo-blob-") as tmp:
                path = Path(tmp) / "blob"
                path.write_bytes(data)
                self.blobs.driver.put_file(blob_key(digest), path)
        self.registry.record_blob(repository, digest, len(data), self.actor)
        return digest, len(data)

    def image(
        self,
        repository: str,
        tag: str,
        *,
        product: str,
        image: str,
        packages: tuple[tuple[str, str], ...],
        arch: str = "amd64",
        tagged: bool = True,
    ) -> Pushed:
        """One image; pushed by digest only (an index's child) unless ``tagged``."""
        layers = [base_layer(packages, arch), app_layer(product, image, tag)]
        diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest() for layer in layers]
        config = {
            "architecture": arch,
            "os": "linux",
            "created": CREATED.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config": {
                "Entrypoint": [f"/usr/local/bin/{image}"],
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Labels": {
                    "org.opencontainers.image.title": f"{product} {image}",
                    "org.opencontainers.image.version": tag,
                },
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": CREATED.strftime("%Y-%m-%dT%H:%M:%SZ"), "created_by": "dockyard demo"}],
        }
        config_digest, config_size = self._blob(repository, json.dumps(config, sort_keys=True).encode())
        descriptors = [self._blob(repository, layer) for layer in layers]
        payload = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": config_size},
                "layers": [
                    {"mediaType": mt.OCI_LAYER_TAR_GZIP, "digest": d, "size": s} for d, s in descriptors
                ],
                "annotations": {"org.opencontainers.image.created": CREATED.strftime("%Y-%m-%dT%H:%M:%SZ")},
            },
            sort_keys=True,
        ).encode()
        reference = tag if tagged else "sha256:" + hashlib.sha256(payload).hexdigest()
        stored = self.registry.put_manifest(repository, reference, payload, mt.OCI_MANIFEST, self.actor)
        return Pushed(stored.digest, mt.OCI_MANIFEST, len(payload))

    def multi_arch(
        self,
        repository: str,
        tag: str,
        *,
        product: str,
        image: str,
        packages: tuple[tuple[str, str], ...],
        arches: tuple[str, ...],
    ) -> Pushed:
        """One image per architecture, and ``tag`` on an OCI index over them when there are several."""
        if len(arches) == 1:
            return self.image(
                repository, tag, product=product, image=image, packages=packages, arch=arches[0]
            )
        children = []
        for arch in arches:
            child = self.image(
                repository, tag, product=product, image=image, packages=packages, arch=arch, tagged=False
            )
            children.append(
                {
                    "mediaType": child.media_type,
                    "digest": child.digest,
                    "size": child.size,
                    "platform": {"os": "linux", "architecture": arch},
                }
            )
        payload = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": children}).encode()
        stored = self.registry.put_manifest(repository, tag, payload, mt.OCI_INDEX, self.actor)
        return Pushed(stored.digest, mt.OCI_INDEX, len(payload))
