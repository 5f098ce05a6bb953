"""How the scan service finds an image: a tag or digest of a repository, via the registry's read facade."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session
from tests.support.factories import make_user
from tests.support.scanimages import ACTOR, Images, debian_layer

from dockyard.config import Settings
from dockyard.errors import Invalid, NotFound
from dockyard.events import EventBus
from dockyard.scanning.models import ImageScan, ScanFinding
from dockyard.scanning.scanner import add_scan_row
from dockyard.scanning.services import ScanService
from dockyard.storage.blobstore import BlobStore
from dockyard.storage.local import LocalDriver

NOWHERE = "sha256:" + "0" * 64


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(LocalDriver(tmp_path / "storage"), tmp_path / "uploads")


@pytest.fixture
def scans(db_session: Session, blobs: BlobStore) -> ScanService:
    return ScanService(db_session, blobs, EventBus(), Settings())


@pytest.fixture
def images(db_session: Session, blobs: BlobStore) -> Images:
    return Images(db_session, blobs)


def repository(db_session: Session, images: Images, name: str = "app") -> str:
    full = f"{make_user(db_session).username}/{name}"
    images.registry.ensure_repository(full, ACTOR)
    return full


def test_a_report_is_found_by_tag_or_digest(db_session: Session, images: Images, scans: ScanService) -> None:
    repo = repository(db_session, images)
    image = images.image(repo, "v1", [debian_layer([("zlib1g", "1:1.2.13.dfsg-1", "zlib")])])
    assert scans.image_report(repo, "v1").digest == image.digest
    assert scans.image_report(repo, image.digest).digest == image.digest


def test_what_a_report_lookup_says_when_nothing_is_found(
    db_session: Session, images: Images, scans: ScanService
) -> None:
    repo, other = repository(db_session, images), repository(db_session, images, "other")
    image = images.image(other, "v1", [debian_layer([("zlib1g", "1:1.2.13.dfsg-1", "zlib")])])
    cases = {
        (f"{repo}-none", "v1"): f"repository '{repo}-none' not known",
        (repo, "v1"): f"tag 'v1' not known in {repo}",
        (repo, image.digest): f"manifest {image.digest} not known in {repo}",  # another repository's
        (repo, NOWHERE): f"manifest {NOWHERE} not known in {repo}",
    }
    for (name, reference), message in cases.items():
        with pytest.raises(NotFound) as raised:
            scans.image_report(name, reference)
        assert (raised.value.message, raised.value.code) == (message, "NOT_FOUND")
    for name, reference, code in [(repo, "-bad", "TAG_INVALID"), (repo, "sha256:abc", "DIGEST_INVALID")]:
        with pytest.raises(Invalid) as invalid:
            scans.image_report(name, reference)
        assert invalid.value.code == code
    with pytest.raises(Invalid) as invalid:
        scans.image_report("Not/A/Name", "v1")
    assert invalid.value.code == "NAME_INVALID"


def test_a_scan_is_queued_only_for_a_manifest_of_the_repository(
    db_session: Session, images: Images, scans: ScanService
) -> None:
    repo, other = repository(db_session, images), repository(db_session, images, "other")
    image = images.image(repo, "v1", [debian_layer([("zlib1g", "1:1.2.13.dfsg-1", "zlib")])])
    with pytest.raises(NotFound, match=f"manifest {image.digest} not known in {other}"):
        scans.enqueue_scan(other, image.digest)
    scans.enqueue_scan(repo, image.digest, force=True)


def test_prune_forgets_scans_of_manifests_no_repository_stores(
    db_session: Session, images: Images, scans: ScanService
) -> None:
    repo = repository(db_session, images)
    image = images.image(repo, "v1", [debian_layer([("zlib1g", "1:1.2.13.dfsg-1", "zlib")])])
    add_scan_row(db_session, image.digest)
    add_scan_row(db_session, NOWHERE)
    gone = db_session.scalar(select(ImageScan.id).where(ImageScan.digest == NOWHERE))
    # Its findings go with it: they have no foreign key to cascade from (migration 0020).
    finding = {"vuln_id": "CVE-2024-1", "component_key": "deb:zlib1g", "severity": "Major"}
    db_session.execute(insert(ScanFinding).values(image_id=gone, **finding))
    scans.prune()
    assert set(db_session.scalars(select(ImageScan.digest))) >= {image.digest}
    assert NOWHERE not in set(db_session.scalars(select(ImageScan.digest)))
    assert db_session.scalars(select(ScanFinding.id).where(ScanFinding.image_id == gone)).all() == []
