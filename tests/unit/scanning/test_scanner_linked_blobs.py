"""The scanner reads only blobs linked to a repository storing the image, whatever rows exist.

Manifests stored before the registry checked every layer (rows inserted directly here) may name another
repository's private layer. Such a scan ends in error without opening the blob, using its cached facts or a
``prepared`` outcome, and says the same whether the digest exists in another repository or nowhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from tests.support.factories import make_user
from tests.support.scanimages import (
    ACTOR,
    CountingOpens,
    Images,
    config_blob,
    debian_layer,
    osv_record,
    sha256,
    write_feed,
)

from dockyard.config import Settings
from dockyard.events import EventBus
from dockyard.oci import mediatypes as mt
from dockyard.registry.models import Blob, Manifest, Repository, RepositoryBlob
from dockyard.registry.reads import RegistryReads
from dockyard.scanning.models import LayerIndex
from dockyard.scanning.scanner import NOT_LINKED
from dockyard.scanning.services import ScanService, index_blob
from dockyard.scanning.vulndb import ingest
from dockyard.storage.blobstore import BlobStore
from dockyard.storage.local import LocalDriver

SECRET = [("acme-secret-agent", "3.1.4-1", "acme-secret")]
PUBLIC = [("zlib1g", "1:1.2.13.dfsg-1", "zlib")]


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(LocalDriver(tmp_path / "storage"), tmp_path / "uploads")


@pytest.fixture
def db(db_session: Session) -> Iterator[Session]:
    yield db_session


@pytest.fixture
def scans(db: Session, blobs: BlobStore) -> ScanService:
    return ScanService(db, blobs, EventBus(), Settings())


@pytest.fixture
def images(db: Session, blobs: BlobStore) -> Images:
    return Images(db, blobs)


def repo(db: Session, images: Images, name: str) -> str:
    """A new repository in a new user's namespace."""
    full = f"{make_user(db).username}/{name}"
    images.registry.ensure_repository(full, ACTOR)
    return full


def store_manifest(db: Session, repository: str, doc: dict, media_type: str = mt.OCI_MANIFEST) -> str:
    """A manifest row as a registry without the link check could have written it."""
    payload = json.dumps(doc).encode()
    repository_id = db.scalar(select(Repository.id).where(Repository.name == repository))
    db.add(
        Manifest(
            repository_id=repository_id,
            digest=sha256(payload),
            media_type=media_type,
            size=len(payload),
            payload=payload,
        )
    )
    db.flush()
    return sha256(payload)


def manifest(config: tuple[str, int], layers: list[tuple[str, int]]) -> dict:
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": mt.OCI_LAYER_TAR_GZIP, "digest": d, "size": s} for d, s in layers],
    }


def forget_everywhere(db: Session, blobs: BlobStore, digest: str) -> None:
    """The blob as if it had never been pushed anywhere: no link, no row, no bytes, no cached facts."""
    db.execute(delete(RepositoryBlob).where(RepositoryBlob.digest == digest))
    db.execute(delete(LayerIndex).where(LayerIndex.digest == digest))
    db.execute(delete(Blob).where(Blob.digest == digest))
    blobs.delete(digest)
    db.flush()
    db.expire_all()


def test_a_layer_linked_only_to_another_repository_is_never_read(
    db: Session, scans: ScanService, images: Images, blobs: BlobStore
) -> None:
    a, b = repo(db, images, "secret"), repo(db, images, "x")
    secret = images.image(a, "v1", [debian_layer(SECRET)])
    assert scans.scan_manifest(secret.digest, repository=a).status == "done"
    layer = json.loads(secret.payload)["layers"][0]
    assert db.get(LayerIndex, layer["digest"]) is not None  # A's facts are cached
    config = images.blob(b, config_blob("arm64"))
    digest = store_manifest(db, b, manifest(config, [(layer["digest"], layer["size"])]))

    prepared = {layer["digest"]: index_blob(blobs, layer["digest"])}  # even if a caller read it anyway
    opens = CountingOpens(blobs)
    scan = scans.scan_manifest(digest, repository=b, prepared=prepared)
    assert scan.status == "error" and scan.error == f"layer {layer['digest']}: {NOT_LINKED}"
    assert scans.components(digest) == [] and scan.layers == [] and scan.os_id is None
    assert not opens.counts  # neither the layer nor the config was opened
    existing_error = scan.error
    for repository in (b, None):  # what a job reads before its write transaction: nothing
        assert scans.layers_to_index(digest, repository=repository, force=True) == []

    # The same manifest once the digest exists nowhere: the very same outcome (no existence oracle).
    forget_everywhere(db, blobs, layer["digest"])
    for repository in (b, None):
        rescan = scans.scan_manifest(digest, repository=repository, force=True)
        assert (rescan.status, rescan.error) == ("error", existing_error)
    assert not opens.counts


def test_a_config_linked_only_to_another_repository_is_not_opened(
    db: Session, scans: ScanService, images: Images, blobs: BlobStore
) -> None:
    a, b = repo(db, images, "secret"), repo(db, images, "x")
    secret = images.image(a, "v1", [debian_layer(SECRET)])
    config = json.loads(secret.payload)["config"]
    layer = images.blob(b, debian_layer(PUBLIC))
    digest = store_manifest(db, b, manifest((config["digest"], config["size"]), [layer]))
    opens = CountingOpens(blobs)
    scan = scans.scan_manifest(digest, repository=b)
    assert (scan.status, scan.error) == ("error", f"config {config['digest']}: {NOT_LINKED}")
    assert scan.platform is None and not opens.counts


def test_an_index_whose_platform_names_an_unlinked_layer_fails_that_platform(
    db: Session, scans: ScanService, images: Images
) -> None:
    a, b = repo(db, images, "secret"), repo(db, images, "x")
    secret = images.image(a, "v1", [debian_layer(SECRET)])
    layer = json.loads(secret.payload)["layers"][0]
    good = images.image(b, "good", [debian_layer(PUBLIC)])
    bad = store_manifest(
        db, b, manifest(images.blob(b, config_blob("arm64")), [(layer["digest"], layer["size"])])
    )
    index = store_manifest(
        db,
        b,
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {"mediaType": mt.OCI_MANIFEST, "digest": d, "size": 1, "platform": p}
                for d, p in (
                    (good.digest, {"os": "linux", "architecture": "amd64"}),
                    (bad, {"os": "linux", "architecture": "arm64"}),
                )
            ],
        },
        mt.OCI_INDEX,
    )
    assert [d for d, _ in scans.layers_to_index(index, repository=b)] == [
        json.loads(good.payload)["layers"][0]["digest"]
    ]
    scan = scans.scan_manifest(index, repository=b)
    assert scan.status == "error" and scan.error == f"linux/arm64: layer {layer['digest']}: {NOT_LINKED}"
    assert scans.components(bad) == []
    assert [c.name for c in scans.components(good.digest)] == ["zlib1g"]


def test_a_job_naming_a_repository_reads_only_that_repositorys_links(
    db: Session, scans: ScanService, images: Images
) -> None:
    a, b = repo(db, images, "secret"), repo(db, images, "x")
    secret = images.image(a, "v1", [debian_layer(SECRET)])
    layer = json.loads(secret.payload)["layers"][0]["digest"]
    # The same manifest bytes stored in B too, without B having been given the blobs.
    copied = store_manifest(db, b, json.loads(secret.payload))
    assert copied == secret.digest
    reads = RegistryReads(db)
    assert reads.linked_blobs(secret.digest, [layer], b) == set()
    assert reads.linked_blobs(secret.digest, [layer], a) == {layer}
    assert reads.linked_blobs(secret.digest, [layer]) == {layer}  # A stores the manifest and holds the layer
    assert reads.linked_blobs(sha256(b"another manifest"), [layer]) == set()
    scan = scans.scan_manifest(secret.digest, repository=b)
    config = json.loads(secret.payload)["config"]["digest"]  # the first blob B was not given
    assert (scan.status, scan.error) == ("error", f"config {config}: {NOT_LINKED}")
    assert scans.components(secret.digest) == []
    assert scans.scan_manifest(secret.digest, repository=a, force=True).status == "done"


def test_a_rescan_forgets_what_a_scan_from_before_the_fix_learnt_from_an_unlinked_layer(
    db: Session, scans: ScanService, images: Images, tmp_path: Path
) -> None:
    assert ingest(db, write_feed(tmp_path / "feed", osv_record("CVE-2031-0001", "acme-secret"))).errors == []
    a, b = repo(db, images, "secret"), repo(db, images, "x")
    secret = images.image(a, "v1", [debian_layer(SECRET)])
    layer = json.loads(secret.payload)["layers"][0]
    digest = store_manifest(
        db, b, manifest(images.blob(b, config_blob("arm64")), [(layer["digest"], layer["size"])])
    )
    # A scan stored by the old scanner, which read the layer by digest: as if it were linked to B then.
    b_id = db.scalar(select(Repository.id).where(Repository.name == b))
    db.add(RepositoryBlob(repository_id=b_id, digest=layer["digest"]))
    db.flush()
    assert [c.name for c in scans.components(scans.scan_manifest(digest).digest)] == ["acme-secret-agent"]
    assert [f.vulnerability for f in scans.list_findings(digest=digest)] == ["CVE-2031-0001"]
    db.execute(
        delete(RepositoryBlob).where(
            RepositoryBlob.repository_id == b_id, RepositoryBlob.digest == layer["digest"]
        )
    )
    scan = scans.scan_manifest(digest, force=True)
    assert (scan.status, scan.error) == ("error", f"layer {layer['digest']}: {NOT_LINKED}")
    assert scans.components(digest) == [] and scan.os_id is None and scan.layers == []
    assert sum(scan.counts.values()) == 0 and scans.list_findings(digest=digest, state="all") == []
