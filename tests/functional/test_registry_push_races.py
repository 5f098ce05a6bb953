"""Concurrent pushes of one manifest on PostgreSQL, where a push is one statement (statements.PUSH_MANIFEST)
and scan queueing another: the second push waits for the first, then finds what it committed after the
second's snapshot was taken, and falls back to the step-by-step path. SQLite writers are serial."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import func, select, text
from tests.support.factories import PASSWORD, make_user
from tests.support.registry_client import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, RegistryClient

from dockyard.events import Actor
from dockyard.jobs import Job
from dockyard.registry.models import Manifest, Tag
from dockyard.registry.services import RegistryService
from dockyard.scanning.models import ImageScan

# SQLite runs one writer at a time: the interleavings these tests force cannot happen there.
pytestmark = pytest.mark.postgresql_only


@pytest.fixture
def pg(app_state):
    assert app_state.engine.dialect.name == "postgresql"
    return app_state


def push_in_thread(app_state, name: str, reference: str, body: bytes, media_type: str) -> dict:
    """Push and commit in a thread of its own; the outcome lands in the returned dict."""
    outcome: dict = {}

    def work() -> None:
        try:
            with app_state.sessions() as session, session.begin():
                registry = RegistryService(session, app_state.blobs, app_state.bus, app_state.settings)
                outcome["stored"] = registry.put_manifest(name, reference, body, media_type, Actor())
        except Exception as exc:  # reported by the test
            outcome["error"] = exc

    outcome["thread"] = threading.Thread(target=work)
    outcome["thread"].start()
    return outcome


def wait_until_blocked(app_state, timeout: float = 10.0) -> None:
    """Until another backend of this database waits for a lock (the second push)."""
    deadline = time.monotonic() + timeout
    with app_state.engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            conn.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the second push never waited")


def race(app_state, first: tuple[str, str], second: tuple[str, str], body: bytes, media_type: str) -> None:
    """Push ``body`` as ``first`` (name, reference) in an open transaction, start pushing it as ``second``,
    let that wait for the first, then commit the first."""
    with app_state.sessions() as session, session.begin():
        registry = RegistryService(session, app_state.blobs, app_state.bus, app_state.settings)
        registry.put_manifest(*first, body, media_type, Actor())
        outcome = push_in_thread(app_state, *second, body, media_type)
        wait_until_blocked(app_state)
    outcome["thread"].join(30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["stored"].media_type == media_type


def test_the_same_image_pushed_twice_at_once_is_stored_once_with_both_tags(client, pg) -> None:
    with pg.sessions.begin() as s:
        user = make_user(s).username
    name = f"{user}/app"
    reg = RegistryClient(client, user, PASSWORD)
    config, layer = reg.push_blob(name, b"{}"), reg.push_blob(name, b"layer")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": 5}],
        }
    ).encode()
    # The second push waits for the first's blob locks; its snapshot predates the first's commit.
    race(pg, (name, "a"), (name, "b"), body, OCI_MANIFEST)
    with pg.sessions() as s:
        manifests = list(s.scalars(select(Manifest.id).where(Manifest.digest.is_not(None))))
        assert len(manifests) == 1
        tags = {t.name: t.manifest_id for t in s.scalars(select(Tag))}
        assert tags == {"a": manifests[0], "b": manifests[0]}
        assert s.scalar(select(func.count()).select_from(ImageScan)) == 1
        assert s.scalar(select(func.count()).select_from(Job).where(Job.kind == "scan.manifest")) == 1
    assert reg.get_manifest(name, "b").content == body


def test_one_index_pushed_to_two_repositories_at_once_queues_one_scan(client, pg) -> None:
    with pg.sessions.begin() as s:
        user = make_user(s).username
    reg = RegistryClient(client, user, PASSWORD)
    # An index with no children locks no blob: both pushes run until the scan queueing, where the second
    # waits for the first's scan row and then finds it missing from its snapshot.
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    for name in (f"{user}/one", f"{user}/two"):
        reg.push_blob(name, b"creates the repository")
    race(pg, (f"{user}/one", "v1"), (f"{user}/two", "v1"), body, OCI_INDEX)
    with pg.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Manifest)) == 2
        assert s.scalar(select(func.count()).select_from(ImageScan)) == 1
        assert s.scalar(select(func.count()).select_from(Job).where(Job.kind == "scan.manifest")) == 1
