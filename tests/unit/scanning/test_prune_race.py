"""ScanService.prune against a manifest deleted while it runs (found by review).

Since migration 0020 scan_finding.image_id has no foreign key: prune deletes the images, then the findings of
exactly the images it deleted. Selecting "images whose manifest no repository stores" again for the findings
would, on PostgreSQL (READ COMMITTED: a snapshot per statement), let a manifest deleted and committed between
the two statements take its image without its findings."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session
from tests.support.factories import make_user
from tests.support.scanimages import ACTOR, Images, debian_layer

from dockyard.config import Settings
from dockyard.db import make_engine, migrate
from dockyard.events import EventBus
from dockyard.registry.services import RegistryService
from dockyard.scanning.models import ImageScan, ScanFinding
from dockyard.scanning.scanner import add_scan_row
from dockyard.scanning.services import ScanService
from dockyard.storage.blobstore import BlobStore
from dockyard.storage.local import LocalDriver


@pytest.mark.postgresql_only  # SQLite serialises writers: prune's statements see one snapshot
def test_prune_leaves_no_finding_of_an_image_whose_manifest_goes_meanwhile(
    fresh_database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(fresh_database_url)  # a database of its own: the test commits
    migrate(engine)
    blobs = BlobStore(LocalDriver(tmp_path / "storage"), tmp_path / "uploads")
    with Session(engine, expire_on_commit=False) as setup:
        full = f"{make_user(setup).username}/app"
        images = Images(setup, blobs)
        images.registry.ensure_repository(full, ACTOR)
        image = images.image(full, "v1", [debian_layer([("zlib1g", "1:1.2.13.dfsg-1", "zlib")])])
        add_scan_row(setup, image.digest)
        image_id = setup.scalar(select(ImageScan.id).where(ImageScan.digest == image.digest))
        setup.add(
            ScanFinding(image_id=image_id, vuln_id="CVE-2024-1", component_key="deb:zlib1g", severity="Major")
        )
        setup.commit()

    done: list[bool] = []

    def manifest_deleted_meanwhile(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("DELETE FROM scan_") and not done:  # prune's first statement
            done.append(True)
            with Session(engine) as other:  # another request: DELETE /v2/<name>/manifests/<digest>
                RegistryService(other, blobs, EventBus(), Settings()).delete_manifest(
                    full, image.digest, ACTOR
                )
                other.commit()

    event.listen(engine, "after_cursor_execute", manifest_deleted_meanwhile)
    try:
        with Session(engine) as session:
            ScanService(session, blobs, EventBus(), Settings()).prune()
            session.commit()
    finally:
        event.remove(engine, "after_cursor_execute", manifest_deleted_meanwhile)
    assert done
    with Session(engine) as check:
        image_left = check.scalar(select(ImageScan.id).where(ImageScan.id == image_id))
        findings_left = check.scalars(select(ScanFinding.id).where(ScanFinding.image_id == image_id)).all()
    engine.dispose()
    # The image may stay (pruned next time) or go, but never without its findings.
    assert image_left is not None or findings_left == [], (
        f"findings of pruned image {image_id} left: {findings_left}"
    )
