"""Every push, pull, delete and login leaves an audit row naming the actor, address and user agent."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tests.support.factories import PASSWORD, make_org, make_robot, make_user
from tests.support.registry_client import RegistryClient, protocol_guard, sha256

from dockyard.audit.models import AuditEvent

UA = "dockyard-tests/1.0 (+events)"


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


@pytest.fixture
def user(app_state) -> str:
    with app_state.sessions.begin() as s:
        return make_user(s).username


@pytest.fixture
def reg(client, user) -> RegistryClient:
    client.headers["User-Agent"] = UA
    return RegistryClient(client, user, PASSWORD)


def events(app_state, *tags: str) -> list[AuditEvent]:
    with app_state.sessions() as s:
        query = select(AuditEvent).order_by(AuditEvent.id)
        if tags:
            query = query.where(AuditEvent.tag.in_(tags))
        return list(s.scalars(query))


def assert_actor(event: AuditEvent, name: str, kind: str = "user") -> None:
    assert event.actor_name == name
    assert event.actor_kind == kind
    assert event.ip == "testclient"  # the TestClient's peer address
    assert event.user_agent == UA
    assert event.occurred_at is not None


def test_push_records_blob_and_manifest_events(reg, user, app_state):
    name = f"{user}/app"
    digest = reg.push_image(name, "v1", [b"layer"])
    rows = events(app_state, "blob:push", "manifest:push", "repository:create")
    assert [e.tag for e in rows] == ["repository:create", "blob:push", "blob:push", "manifest:push"]
    for e in rows:
        assert_actor(e, user)
        assert e.namespace == user
        assert e.repository == name
    with app_state.sessions() as s:
        user_id = s.scalar(select(AuditEvent.actor_id).where(AuditEvent.tag == "manifest:push"))
    assert user_id is not None
    manifest_push = rows[-1]
    assert manifest_push.digest == digest
    assert manifest_push.reference == "v1"
    assert manifest_push.data["media_type"] == "application/vnd.oci.image.manifest.v1+json"
    assert rows[2].digest == sha256(b"layer")
    assert rows[2].data == {"size": 5}


def test_pull_is_recorded_on_get_not_on_head(reg, user, app_state):
    name = f"{user}/app"
    digest = reg.push_image(name, "v1")
    assert reg.get_manifest(name, "v1", method="HEAD").status_code == 200
    assert events(app_state, "manifest:pull") == []
    assert reg.get_manifest(name, "v1").status_code == 200
    assert reg.get_manifest(name, digest).status_code == 200
    rows = events(app_state, "manifest:pull")
    assert len(rows) == 2
    for e in rows:
        assert_actor(e, user)
        assert e.repository == name
        assert e.digest == digest
    assert [e.reference for e in rows] == ["v1", None]
    # A failed pull records nothing.
    assert reg.get_manifest(name, "nope").status_code == 404
    assert len(events(app_state, "manifest:pull")) == 2


def test_anonymous_pull_of_a_public_repository_is_recorded(client, reg, user, app_state):
    name = f"{user}/app"
    reg.push_image(name, "v1")
    client.put(f"/api/v1/repositories/{name}/visibility", json={"public": True}, auth=(user, PASSWORD))
    assert RegistryClient(client).get_manifest(name, "v1").status_code == 200
    (row,) = events(app_state, "manifest:pull")
    assert_actor(row, "anonymous", "anonymous")
    assert row.actor_id is None
    (vis,) = events(app_state, "repository:visibility")
    assert_actor(vis, user)
    assert vis.data == {"public": True}


def test_robot_push_is_recorded_as_the_robot(client, app_state):
    with app_state.sessions.begin() as s:
        org = make_org(s)
        robot, secret = make_robot(s, org, "ci", role="maintainer")
    client.headers["User-Agent"] = UA
    RegistryClient(client, robot, secret).push_image(f"{org}/app", "v1")
    (row,) = events(app_state, "manifest:push")
    assert_actor(row, robot, "robot")


def test_deletes_are_recorded(reg, user, app_state):
    name = f"{user}/app"
    digest = reg.push_image(name, "v1", [b"layer"])
    reg.put_manifest(name, "v2", reg.get_manifest(name, "v1").content)
    assert reg.request("DELETE", f"/v2/{name}/manifests/v2", name).status_code == 202
    assert reg.request("DELETE", f"/v2/{name}/manifests/{digest}", name).status_code == 202
    assert reg.request("DELETE", f"/v2/{name}/blobs/{sha256(b'layer')}", name).status_code == 202
    rows = events(app_state, "tag:delete", "manifest:delete", "blob:delete")
    assert [(e.tag, e.reference, e.digest) for e in rows] == [
        ("tag:delete", "v2", None),
        ("manifest:delete", None, digest),
        ("blob:delete", None, sha256(b"layer")),
    ]
    for e in rows:
        assert_actor(e, user)
        assert e.repository == name


def test_rejected_requests_record_nothing(reg, user, app_state):
    name = f"{user}/app"
    reg.push_image(name, "v1")
    before = len(events(app_state))
    body = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}'
    assert reg.put_manifest(name, "bad", body).status_code == 400
    assert reg.request("DELETE", f"/v2/{name}/manifests/nope", name).status_code == 404
    location = reg.request("POST", f"/v2/{name}/blobs/uploads/", name).headers["location"]
    assert reg.request("PUT", f"{location}?digest={sha256(b'no')}", name, content=b"yes").status_code == 400
    assert len(events(app_state)) == before


def test_logins_are_recorded(client, user, app_state):
    client.headers["User-Agent"] = UA
    assert client.get("/token", params={"service": "dockyard"}, auth=(user, PASSWORD)).status_code == 200
    assert (
        client.get("/token", params={"service": "dockyard"}, auth=(user, "bad password")).status_code == 401
    )
    rows = events(app_state, "user:login", "user:login_failed")
    assert [e.tag for e in rows] == ["user:login", "user:login_failed"]
    assert_actor(rows[0], user)
    assert rows[0].actor_id is not None
    assert rows[0].data == {"via": "password"}
    assert_actor(rows[1], user, "anonymous")
    assert rows[1].actor_id is None
    # The API's Basic logins are recorded too.
    assert client.get("/api/v1/me", auth=(user, "bad password")).status_code == 401
    assert client.get("/api/v1/me", auth=(user, PASSWORD)).status_code == 200
    rows = events(app_state, "user:login", "user:login_failed")
    assert [e.tag for e in rows][2:] == ["user:login_failed", "user:login"]
