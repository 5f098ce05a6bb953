"""Images and feed records for scan tests: small Debian layers with chosen packages, a hostile layer, OSV
records written on the spot, and a way to store an image through the registry service without HTTP."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from dockyard.config import Settings
from dockyard.events import Actor, EventBus
from dockyard.oci import mediatypes as mt
from dockyard.registry.services import RegistryService
from dockyard.storage.blobstore import BlobStore, blob_key
from tests.support.rootfs import TarLayer, gzipped
from tests.support.vulndata import find_vulndata

VULNDATA_DEBIAN = find_vulndata() / "debian-osv"
DEBIAN12_OS_RELEASE = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
    'VERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
)
ACTOR = Actor(name="tester", kind="user")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dpkg_status(packages: list[tuple[str, str, str | None]], arch: str = "amd64") -> str:
    """A dpkg status file listing (name, version, source) as installed."""
    stanzas = []
    for name, version, source in packages:
        lines = [f"Package: {name}", "Status: install ok installed", f"Architecture: {arch}"]
        if source:
            lines.append(f"Source: {source}")
        lines += [f"Version: {version}", f"Description: {name}", ""]
        stanzas.append("\n".join(lines))
    return "\n".join(stanzas)


def debian_layer(packages: list[tuple[str, str, str | None]], arch: str = "amd64") -> bytes:
    """A gzipped Debian 12 base layer: os-release and a dpkg status database."""
    return gzipped(
        TarLayer()
        .dir("usr/lib")
        .file("usr/lib/os-release", DEBIAN12_OS_RELEASE)
        .dir("var/lib/dpkg")
        .file("var/lib/dpkg/status", dpkg_status(packages, arch))
        .bytes()
    )


def file_layer(path: str, content: str) -> bytes:
    """A gzipped layer adding one plain file (no packages)."""
    return gzipped(TarLayer().file(path, content).bytes())


def traversal_layer() -> bytes:
    """A layer whose entry climbs out of the root: the indexer must refuse it."""
    return gzipped(
        TarLayer().file("var/lib/dpkg/status", "Package: a\n").file("../../etc/passwd", "x").bytes()
    )


def config_blob(architecture: str = "amd64", layers: int = 1) -> bytes:
    return json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{i:064x}" for i in range(layers)]},
        },
        sort_keys=True,
    ).encode()


def store_blob(blobs: BlobStore, data: bytes | Path) -> tuple[str, int]:
    """Put a blob straight into the store (no upload session); returns (digest, size)."""
    tmp = Path(tempfile.mkdtemp(prefix="blob-"))
    try:
        target = tmp / "blob"
        if isinstance(data, Path):
            shutil.copyfile(data, target)
            digest = "sha256:" + hashlib.file_digest(target.open("rb"), "sha256").hexdigest()
        else:
            target.write_bytes(data)
            digest = sha256(data)
        size = target.stat().st_size
        if blobs.size(digest) is None:
            blobs.driver.put_file(blob_key(digest), target)
        return digest, size
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Stored:
    digest: str
    size: int
    payload: bytes
    media_type: str


def image_manifest(config: tuple[str, int], layers: list[tuple[str, int]], **extra: Any) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": extra.pop("config_media_type", mt.OCI_CONFIG),
                "digest": config[0],
                "size": config[1],
            },
            "layers": [{"mediaType": mt.OCI_LAYER_TAR_GZIP, "digest": d, "size": s} for d, s in layers],
            **extra,
        }
    ).encode()


class Images:
    """Stores images through RegistryService on one session (every rule of a push applies)."""

    def __init__(self, session: Session, blobs: BlobStore, bus: EventBus | None = None) -> None:
        self.registry = RegistryService(session, blobs, bus or EventBus(), Settings())
        self.blobs = blobs

    def blob(self, repository: str, data: bytes | Path) -> tuple[str, int]:
        digest, size = store_blob(self.blobs, data)
        self.registry.record_blob(repository, digest, size, ACTOR)
        return digest, size

    def image(
        self, repository: str, tag: str, layers: list[bytes | Path], *, arch: str = "amd64", **extra: Any
    ) -> Stored:
        config = self.blob(repository, extra.pop("config", None) or config_blob(arch, len(layers)))
        payload = image_manifest(config, [self.blob(repository, layer) for layer in layers], **extra)
        stored = self.registry.put_manifest(repository, tag, payload, mt.OCI_MANIFEST, ACTOR)
        return Stored(stored.digest, len(payload), payload, mt.OCI_MANIFEST)

    def index(
        self, repository: str, tag: str, children: list[tuple[Stored, dict[str, Any] | None]]
    ) -> Stored:
        manifests = []
        for child, platform in children:
            desc: dict[str, Any] = {"mediaType": child.media_type, "digest": child.digest, "size": child.size}
            if platform is not None:
                desc["platform"] = platform
            manifests.append(desc)
        payload = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}).encode()
        stored = self.registry.put_manifest(repository, tag, payload, mt.OCI_INDEX, ACTOR)
        return Stored(stored.digest, len(payload), payload, mt.OCI_INDEX)


def osv_record(
    vuln_id: str,
    package: str,
    *,
    fixed: str | None = None,
    modified: dt.datetime | None = None,
    withdrawn: dt.datetime | None = None,
    vector: str | None = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
) -> dict[str, Any]:
    """An OSV record saying a Debian 12 source package is affected (below ``fixed``, or unfixed)."""
    events: list[dict[str, str]] = [{"introduced": "0"}]
    if fixed:
        events.append({"fixed": fixed})
    record: dict[str, Any] = {
        "schema_version": "1.6.0",
        "id": vuln_id,
        "modified": (modified or dt.datetime(2025, 1, 1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "summary": f"test advisory for {package}",
        "affected": [
            {
                "package": {"ecosystem": "Debian:12", "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
            }
        ],
    }
    if vector:
        record["severity"] = [{"type": "CVSS_V3", "score": vector}]
    if withdrawn:
        record["withdrawn"] = withdrawn.strftime("%Y-%m-%dT%H:%M:%SZ")
    return record


def write_feed(directory: Path, *records: dict[str, Any]) -> Path:
    """A feed directory holding one JSON file per record (what `dockyard vulndb update` reads)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.json"):
        old.unlink()
    for record in records:
        (directory / f"{record['id']}.json").write_text(json.dumps(record))
    return directory


class CountingOpens:
    """Wraps BlobStore.open to count reads per digest (a layer served from the facts cache is not opened)."""

    def __init__(self, blobs: BlobStore) -> None:
        self.counts: Counter[str] = Counter()
        self._open = blobs.open

        def counting(digest: str) -> Any:
            self.counts[digest] += 1
            return self._open(digest)

        blobs.open = counting  # type: ignore[method-assign]
