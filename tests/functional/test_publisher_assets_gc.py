"""`dockyard gc` removes blob files no database row knows, and must leave catalogue assets alone: they live
under the driver's assets/ keys, which the registry's garbage collection never lists."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from tests.support.cli import Cli
from tests.support.factories import make_org, make_user
from tests.support.pictures import picture

from dockyard.authz import Principal
from dockyard.config import Settings
from dockyard.events import Actor
from dockyard.publishing.assets import asset_key
from dockyard.runtime import build_runtime
from dockyard.storage.blobstore import blob_key


def test_dockyard_gc_leaves_catalogue_assets_alone(tmp_path: Path, fresh_database_url: str) -> None:
    data = tmp_path / "data"
    runtime = build_runtime(Settings(data_dir=data, database_url=fresh_database_url))
    try:
        with runtime.unit_of_work() as sv:
            owner = make_user(sv.session)
            org = make_org(sv.session, owner=owner.username)
            who = Principal(kind="user", name=owner.username, user_id=owner.id)
            actor = Actor(user_id=owner.id, name=owner.username, kind="user")
            logo = sv.publishers.upload_image(org, "logo", picture(512, 512), who, actor)
            shot = sv.publishers.upload_image(org, "screenshot", picture(1280, 720), who, actor)
            digests = [*logo.renditions.values(), *shot.renditions.values()]
        # A blob file no row knows, as a crashed upload leaves: gc must remove this one.
        orphan = b"an orphan layer"
        orphan_digest = "sha256:" + hashlib.sha256(orphan).hexdigest()
        orphan_path = data / "storage" / blob_key(orphan_digest)
        orphan_path.parent.mkdir(parents=True)
        orphan_path.write_bytes(orphan)
    finally:
        runtime.engine.dispose()
    old = time.time() - 7200  # older than any grace period
    for path in [orphan_path, *(data / "storage" / asset_key(d) for d in digests)]:
        os.utime(path, (old, old))

    result = Cli(data, fresh_database_url)("gc", "--grace", "0")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["orphan_files_removed"] == 1 and not orphan_path.exists()
    assert len(digests) == 5
    for digest in digests:
        stored = data / "storage" / asset_key(digest)
        assert stored.exists(), f"gc removed {stored}"
        assert "sha256:" + hashlib.sha256(stored.read_bytes()).hexdigest() == digest
