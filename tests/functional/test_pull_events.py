"""Pull events batched off the request path: written within the interval, and on shutdown."""

from __future__ import annotations

import dataclasses
import time

from sqlalchemy import select
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD, make_user
from tests.support.registry_client import RegistryClient

from dockyard.audit.models import AuditEvent
from dockyard.events import Actor, Event, EventTag
from dockyard.registry.pulls import PullRecorder
from dockyard.web.app import create_app


def pull_rows(app_state, repository: str) -> list[AuditEvent]:
    with app_state.sessions() as s:
        return list(
            s.scalars(
                select(AuditEvent)
                .where(AuditEvent.tag == "manifest:pull", AuditEvent.repository == repository)
                .order_by(AuditEvent.id)
            )
        )


def test_batched_pull_events_are_written_within_the_interval_and_at_shutdown(settings, app_state) -> None:
    batched = dataclasses.replace(settings, pull_event_interval=0.05)
    app = create_app(batched, state=app_state)
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    name = f"{user}/app"
    with TestClient(app, base_url="http://127.0.0.1:5999") as client:
        assert isinstance(app_state.pull_recorder, PullRecorder)
        reg = RegistryClient(client, user, PASSWORD)
        digest = reg.push_image(name, "v1")
        assert reg.get_manifest(name, "v1").status_code == 200
        assert reg.get_manifest(name, "v1", method="HEAD").status_code == 200  # HEAD is no download
        deadline = time.monotonic() + 5
        while not pull_rows(app_state, name) and time.monotonic() < deadline:
            time.sleep(0.02)
        rows = pull_rows(app_state, name)
        assert [(r.digest, r.reference, r.actor_name) for r in rows] == [(digest, "v1", user)]
        # Queued but not yet flushed when the server stops: the lifespan's shutdown writes it.
        app_state.pull_recorder.interval = 3600
        app_state.pull_recorder.record(
            Event(EventTag.MANIFEST_PULL, Actor(name=user), user, name, digest=digest)
        )
    assert len(pull_rows(app_state, name)) == 2
    assert app_state.pull_recorder is None


def test_without_batching_the_pull_is_written_in_its_request(client, app_state) -> None:
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    reg = RegistryClient(client, user, PASSWORD)
    reg.push_image(f"{user}/app", "v1")
    assert app_state.pull_recorder is None
    assert reg.get_manifest(f"{user}/app", "v1").status_code == 200
    assert len(pull_rows(app_state, f"{user}/app")) == 1
