"""The review API over HTTP: the publisher submits, discusses and withdraws; reviewers work the queue;
admins publish. Refused moves and hidden resources answer in the API's envelope; internal notes never reach
the publisher; review mail goes out through the outbox to a real SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from tests.support.accounts import run_jobs
from tests.support.factories import PASSWORD
from tests.support.review_world import CVE, World, build_world
from tests.support.smtpd import SmtpServer, smtp_server

from dockyard.config import Settings
from dockyard.web.context import AppState


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def settings(settings: Settings, smtp: SmtpServer) -> Settings:
    return dataclasses.replace(settings, smtp_url=smtp.url(query="timeout=5"))


@pytest.fixture
def world(app, app_state: AppState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    return build_world(app_state, tmp_path / "feed")


def call(client: TestClient, world: World, role: str, method: str, path: str, json: dict | None = None):
    return client.request(method, f"/api/v1{path}", json=json, auth=(world.users[role], PASSWORD))


def product(world: World) -> str:
    return f"/publishers/{world.org}/products/{world.slug}"


def test_the_review_over_the_api_with_its_mail(
    client: TestClient, app, app_state: AppState, world: World, smtp: SmtpServer
) -> None:
    rid = world.revision
    r = call(client, world, "maintainer", "POST", product(world) + "/submit", {"comment": "v1"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "submitted"
    run_jobs(app, app_state)
    submitted = smtp.collector.wait(2)  # both reviewers
    assert sorted(m.recipients[0] for m in submitted) == sorted(
        [world.emails["reviewer"], world.emails["reviewer2"]]
    )
    assert all(m.message["Subject"] == f"Submitted for review: {world.org}/{world.slug}" for m in submitted)
    assert (
        f"http://127.0.0.1:5999/ui/review/revisions/{rid}"
        in submitted[0].message.get_body(("plain",)).get_content()
    )

    queue = call(client, world, "reviewer", "GET", "/review/queue").json()["items"]
    assert [i["revision"] for i in queue] == [world.other_revision, rid]
    assert call(client, world, "owner", "GET", "/review/queue").status_code == 403

    assert (
        call(client, world, "reviewer", "POST", f"/review/revisions/{rid}/claim").json()["claimed_by"]
        == world.users["reviewer"]
    )
    r = call(client, world, "reviewer", "POST", f"/review/revisions/{rid}/request-changes", {})
    assert r.status_code == 400 and r.json()["error"]["detail"][0]["field"] == "comment"
    note = {"body": "Internal: their zlib is old.", "internal": True}
    assert call(client, world, "reviewer", "POST", product(world) + "/comments", note).status_code == 201
    ask = {"body": "Shorter please.", "anchor_kind": "field", "anchor": "short_description"}
    assert call(client, world, "reviewer", "POST", product(world) + "/comments", ask).status_code == 201
    r = call(
        client,
        world,
        "reviewer",
        "POST",
        f"/review/revisions/{rid}/request-changes",
        {"comment": "Shorten it."},
    )
    assert r.json()["state"] == "changes_requested"
    run_jobs(app, app_state)
    mails = smtp.collector.wait(4)[2:]  # the owner and the maintainer, never the reader
    assert sorted(m.recipients[0] for m in mails) == sorted(
        [world.emails["owner"], world.emails["maintainer"]]
    )
    for m in mails:
        assert m.message["Subject"] == "Changes requested: Acme Database"
        text = m.message.get_body(("plain",)).get_content()
        assert f"http://127.0.0.1:5999/ui/orgs/{world.org}/products/{world.slug}/review" in text
        assert "Shorten it." in text and "Internal" not in text and "zlib is old" not in text

    # The publisher's thread: no internal note, whoever of its members asks.
    for role in ("owner", "reader"):
        thread = call(client, world, role, "GET", product(world) + "/thread").json()
        assert [c["body"] for c in thread["comments"]] == ["Shorter please."]
        assert "zlib is old" not in str(thread)
    assert len(call(client, world, "reviewer2", "GET", product(world) + "/thread").json()["comments"]) == 2
    r = call(client, world, "owner", "POST", product(world) + "/comments", {"body": "x", "internal": True})
    assert r.status_code == 403

    assert call(client, world, "owner", "POST", product(world) + "/submit").json()["state"] == "resubmitted"
    call(client, world, "reviewer", "POST", f"/review/revisions/{rid}/claim")
    r = call(client, world, "reviewer", "POST", f"/review/revisions/{rid}/approve", {})
    assert r.status_code == 400 and r.json()["error"]["detail"] == [
        {"field": "override_reason", "message": r.json()["error"]["message"]}
    ]
    finding = {"body": "Accepted.", "anchor_kind": "finding", "anchor": f"server@{world.server}/{CVE}"}
    assert call(client, world, "reviewer", "POST", product(world) + "/comments", finding).status_code == 201
    r = call(
        client,
        world,
        "reviewer",
        "POST",
        f"/review/revisions/{rid}/approve",
        {"override_reason": "not reachable"},
    )
    assert r.json()["override_reason"] == "not reachable"
    assert call(client, world, "reviewer", "POST", f"/review/revisions/{rid}/publish").status_code == 403
    r = call(client, world, "admin", "POST", f"/review/revisions/{rid}/publish")
    assert r.json()["state"] == "published" and r.json()["pins"]["server"]["tags"]["16"] == world.server
    run_jobs(app, app_state)
    everything = smtp.collector.wait(10)
    subjects = [m.message["Subject"] for m in everything]
    assert subjects.count("Approved: Acme Database") == 2 and subjects.count("Published: Acme Database") == 2
    assert subjects.count(f"Resubmitted for review: {world.org}/{world.slug}") == 2
    assert not any("zlib is old" in m.message.as_string() for m in everything)
    approved = next(m for m in everything if m.message["Subject"].startswith("Approved"))
    assert "not reachable" in approved.message.get_body(("plain",)).get_content()


@pytest.mark.parametrize("role", ["outsider", "other"])
def test_customers_and_other_publishers_see_nothing_unpublished(
    client: TestClient, world: World, role: str
) -> None:
    rid = world.revision
    for method, path in [
        ("GET", product(world) + "/thread"),
        ("POST", product(world) + "/submit"),
        ("POST", product(world) + "/withdraw"),
    ]:
        r = call(client, world, role, method, path, {} if method == "POST" else None)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"]["code"] == "NOT_FOUND"
    r = call(client, world, role, "POST", product(world) + "/comments", {"body": "hi"})
    assert r.status_code == 404
    assert call(client, world, role, "POST", f"/review/revisions/{rid}/claim").status_code == 404
    assert call(client, world, role, "GET", "/review/queue").status_code == 403


def test_refused_moves_answer_409_and_403(client: TestClient, world: World) -> None:
    rid = world.revision
    r = call(client, world, "reviewer", "POST", f"/review/revisions/{rid}/claim")
    assert r.status_code == 409 and "cannot claim a revision that is draft" in r.json()["error"]["message"]
    assert call(client, world, "reader", "POST", product(world) + "/submit").status_code == 403
    assert call(client, world, "maintainer", "POST", f"/review/revisions/{rid}/claim").status_code == 403
    assert call(client, world, "reviewer", "POST", f"/review/revisions/{rid}/dance").status_code == 400
    r = client.post(f"/api/v1/review/revisions/{rid}/claim")
    assert r.status_code == 401
    assert re.match(r"^\d+$", str(rid))
