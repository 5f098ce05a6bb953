"""What the registry's hot paths send to the database, pinned per dialect, so the count cannot creep back up
unnoticed: counts, not timings (benchmarks/ measures those).

On PostgreSQL every item is a network round trip. A manifest push is BEGIN, one statement that locks, checks,
stores and tags (registry/statements.py PUSH_MANIFEST), the audit row, one statement that queues the scan,
COMMIT; a manifest pull or a blob HEAD is one SELECT in autocommit. SQLite runs the steps one by one (each is
a call into the library, not a round trip). If a change adds a statement on purpose, update the numbers here
and say why in the commit.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD, make_user
from tests.support.registry_client import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    RegistryClient,
    protocol_guard,
    sha256,
)
from tests.support.round_trips import RoundTrips

from dockyard import db
from dockyard.web.app import create_app

EXPECTED = {
    "postgresql": {
        "PUT new manifest by tag": 5,
        "PUT known manifest by new tag": 5,
        "PUT known manifest by digest": 5,
        "GET manifest by tag": 1,
        "HEAD manifest by digest": 1,
        "HEAD blob": 1,
    },
    "sqlite": {
        "PUT new manifest by tag": 11,
        # The first push's scan is still queued (no worker runs here): queueing checks for its job.
        "PUT known manifest by new tag": 10,
        "PUT known manifest by digest": 9,
        "GET manifest by tag": 3,
        "HEAD manifest by digest": 3,
        "HEAD blob": 3,
    },
}


@pytest.fixture
def served(settings, app_state, monkeypatch):
    """The app as the server runs it: pull events batched off the request path, no job worker in the
    process (its queries would be counted too)."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 3600.0)  # a slow test machine must not add pings
    batched = dataclasses.replace(settings, pull_event_interval=3600.0, job_workers=0)
    with TestClient(create_app(batched, state=app_state), base_url="http://127.0.0.1:5999") as client:
        yield client


@pytest.fixture(autouse=True)
def _guard(served, monkeypatch):
    yield from protocol_guard(served, monkeypatch)


def image(config: str, layer: str, n: int) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": 5}],
            "annotations": {"n": str(n)},
        }
    ).encode()


def test_round_trips_of_manifest_and_blob_requests(served, app_state, monkeypatch) -> None:
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    name = f"{user}/app"
    reg = RegistryClient(served, user, PASSWORD)
    config, layer = reg.push_blob(name, b"{}"), reg.push_blob(name, b"layer")
    reg.headers(name, "pull")  # tokens first: the token endpoint is not what is counted
    # Warm up: pooled connections made (their first-connect queries) and statements compiled.
    for n in range(3):
        assert reg.put_manifest(name, f"warm{n}", image(config, layer, n)).status_code == 201
        assert reg.get_manifest(name, f"warm{n}").status_code == 200

    trips = RoundTrips(app_state.engine)
    body = image(config, layer, 100)
    digest = sha256(body)
    requests = {
        "PUT new manifest by tag": lambda: reg.put_manifest(name, "v1", body),
        "PUT known manifest by new tag": lambda: reg.put_manifest(name, "v2", body),
        "PUT known manifest by digest": lambda: reg.put_manifest(name, digest, body),
        "GET manifest by tag": lambda: reg.get_manifest(name, "v1"),
        "HEAD manifest by digest": lambda: reg.get_manifest(name, digest, method="HEAD"),
        "HEAD blob": lambda: reg.request("HEAD", f"/v2/{name}/blobs/{layer}", name, "pull"),
    }
    counted = {}
    with trips.counting(monkeypatch):
        for label, send in requests.items():
            trips.clear()
            response = send()
            assert response.status_code in (200, 201), (label, response.status_code, response.text)
            counted[label] = (len(trips), str(trips))
    expected = EXPECTED[app_state.engine.dialect.name]
    report = "\n".join(
        f"{label}: {n} (expected {expected[label]})\n{sent}" for label, (n, sent) in counted.items()
    )
    assert {label: n for label, (n, _) in counted.items()} == expected, report


@pytest.mark.postgresql_only  # SQLite connections are files, not sockets: nothing to ping
def test_a_connection_that_rested_is_pinged_first(served, app_state, monkeypatch) -> None:
    """The pool checks a connection that has rested longer than PING_AFTER_IDLE (PostgreSQL only)."""
    assert app_state.engine.dialect.name == "postgresql"
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    name = f"{user}/app"
    reg = RegistryClient(served, user, PASSWORD)
    layer = reg.push_blob(name, b"layer")
    reg.headers(name, "pull")
    trips = RoundTrips(app_state.engine)
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0)
    with trips.counting(monkeypatch):
        assert reg.request("HEAD", f"/v2/{name}/blobs/{layer}", name, "pull").status_code == 200
    assert trips.sent[0] == "ping" and len(trips) == 2, str(trips)
