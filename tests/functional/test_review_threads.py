"""Resolving a thread (the API and the pages' Resolve button, a resolved thread shown folded), the product's
logo and screenshots as real images on the review pages, and the queue's ages."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.support.accounts import browser, post
from tests.support.factories import PASSWORD
from tests.support.review_world import World, build_world

from dockyard.audit.models import AuditEvent
from dockyard.db import utcnow
from dockyard.publishing.models import ProductRevision
from dockyard.web.context import AppState
from dockyard.web.formatting import age


@pytest.fixture
def world(app, app_state: AppState, tmp_path: Path) -> World:
    return build_world(app_state, tmp_path / "feed", scan=False)


def api(client: TestClient, world: World, role: str, method: str, path: str, json: dict | None = None):
    return client.request(method, f"/api/v1{path}", json=json, auth=(world.users[role], PASSWORD))


def thread_path(world: World) -> str:
    return f"/publishers/{world.org}/products/{world.slug}"


def comment(client: TestClient, world: World, role: str, body: str, **extra) -> int:
    r = api(client, world, role, "POST", f"{thread_path(world)}/comments", {"body": body, **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"]


# -- the API -----------------------------------------------------------------------------------------------
def test_resolving_over_the_api(client: TestClient, app_state: AppState, world: World) -> None:
    base = thread_path(world)
    mine = comment(client, world, "owner", "Is the tier right?")
    theirs = comment(client, world, "reviewer", "Shorter description, please.")
    reply = comment(client, world, "owner", "Done.", parent_id=theirs)

    # Readers read the thread but may not resolve; outsiders and other publishers learn nothing.
    assert api(client, world, "reader", "POST", f"{base}/comments/{mine}/resolve").status_code == 403
    for role in ("outsider", "other"):
        r = api(client, world, role, "POST", f"{base}/comments/{mine}/resolve")
        assert r.status_code == 404 and "Acme" not in r.text
    # A reply is resolved with its thread.
    assert api(client, world, "owner", "POST", f"{base}/comments/{reply}/resolve").status_code == 409
    # Another product's comment id through this product's address: not found.
    rival = f"/publishers/{world.other_org}/products/rival-db"
    r = api(client, world, "other", "POST", f"{rival}/comments/{mine}/resolve")
    assert r.status_code == 404

    r = api(client, world, "maintainer", "POST", f"{base}/comments/{theirs}/resolve")
    assert r.status_code == 200 and r.json()["resolved_at"] is not None and r.json()["id"] == theirs
    first = r.json()["resolved_at"]
    again = api(client, world, "owner", "POST", f"{base}/comments/{theirs}/resolve")
    assert again.status_code == 200 and again.json()["resolved_at"] == first  # resolving twice: no change
    assert api(client, world, "reviewer", "POST", f"{base}/comments/{mine}/resolve").status_code == 200

    thread = api(client, world, "owner", "GET", f"{base}/thread").json()["comments"]
    resolved = {c["id"]: c["resolved_at"] is not None for c in thread}
    assert resolved == {mine: True, theirs: True, reply: False}
    with app_state.sessions() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.tag == "review:comment_resolve")).all()
        assert sorted(e.data["comment"] for e in events) == sorted([theirs, mine])  # once each
        assert {e.actor_name for e in events} == {world.users["maintainer"], world.users["reviewer"]}


def test_internal_notes_stay_hidden_when_resolving(client: TestClient, world: World) -> None:
    base = thread_path(world)
    note = comment(client, world, "reviewer", "Internal: check zlib.", internal=True)
    r = api(client, world, "owner", "POST", f"{base}/comments/{note}/resolve")
    assert r.status_code == 404 and "zlib" not in r.text
    r = api(client, world, "reviewer", "POST", f"{base}/comments/{note}/resolve")
    assert r.status_code == 200 and r.json()["internal"] is True


# -- the pages ---------------------------------------------------------------------------------------------
def test_the_resolve_button_folds_the_thread(app, client: TestClient, world: World) -> None:
    thread = comment(client, world, "reviewer", "Shorter description, please.")
    comment(client, world, "owner", "Done in the next revision.", parent_id=thread)
    publisher_page = f"/ui/orgs/{world.org}/products/{world.slug}/review"
    action = f"/ui/orgs/{world.org}/products/{world.slug}/comments/{thread}/resolve"
    with (
        browser(app, world.users["owner"], PASSWORD) as owner,
        browser(app, world.users["reviewer"], PASSWORD) as rev,
        browser(app, world.users["reader"], PASSWORD) as reader,
    ):
        page = owner.get(publisher_page).text
        assert f'action="{action}"' in page and ">Resolve</button>" in page
        assert 'class="card comment resolved' not in page
        # A reader sees the thread but neither the button nor a way past it.
        assert f'action="{action}"' not in reader.get(publisher_page).text
        assert post(reader, action, {"next": publisher_page}).status_code == 403
        # The reviewer's page has the button too.
        assert f'action="{action}"' in rev.get(f"/ui/review/revisions/{world.revision}").text

        r = post(owner, action, {"next": publisher_page})
        assert r.status_code == 303 and r.headers["location"] == f"{publisher_page}#comment-{thread}"
        page = owner.get(publisher_page).text
        folded = re.search(
            rf'<details class="card comment resolved[^"]*" id="comment-{thread}">(.*?)</details>', page, re.S
        )
        assert folded, "the resolved thread is not folded"
        assert "resolved</span>" in folded.group(1) and "1 reply" in folded.group(1)
        assert "Done in the next revision." in folded.group(1)  # the replies fold with it
        assert f'action="{action}"' not in page
        # Off-site next: back to the product's page.
        r = post(rev, action, {"next": "https://evil.example/"})
        assert r.headers["location"] == f"{publisher_page}#comment-{thread}"
        review = rev.get(f"/ui/review/revisions/{world.revision}").text
        assert f'<details class="card comment resolved from-store" id="comment-{thread}">' in review
        # The dashboard counts open threads only.
        dash = owner.get(f"/ui/orgs/{world.org}/dashboard").text
        assert re.search(r"<td>0</td>", dash)


def test_the_listing_shows_the_logo_and_screenshots(app, app_state: AppState, world: World) -> None:
    with app_state.sessions() as s:
        manifest = s.get(ProductRevision, world.revision).manifest
    logo, shot = manifest["logo"], manifest["screenshots"][0]
    with (
        browser(app, world.users["owner"], PASSWORD) as owner,
        browser(app, world.users["reviewer"], PASSWORD) as rev,
    ):
        for page in (
            owner.get(f"/ui/orgs/{world.org}/products/{world.slug}/review").text,
            rev.get(f"/ui/review/revisions/{world.revision}").text,
        ):
            listing = page[page.index('id="listing"') : page.index('id="diff"')]
            assert f'<img src="/catalog-images/{logo}/128" alt="Logo of Acme Database"' in listing
            assert f'<a href="/catalog-images/{shot}/full"><img src="/catalog-images/{shot}/thumb"' in listing
            assert (
                'alt="Screenshot 1 of Acme Database (512\N{MULTIPLICATION SIGN}512; opens full size)"'
                in listing
            )
            assert "logo #" not in listing and "1 screenshot<" not in listing


def test_an_image_of_another_publisher_is_not_shown(app, app_state: AppState, world: World) -> None:
    """The listing shows only this publisher's catalogue images of the right kind, and says what it left
    out."""
    with app_state.sessions.begin() as s:
        rival = s.get(ProductRevision, world.other_revision).manifest
        revision = s.get(ProductRevision, world.revision)
        revision.manifest = {**revision.manifest, "logo": rival["logo"], "screenshots": rival["screenshots"]}
    with browser(app, world.users["owner"], PASSWORD) as owner:
        page = owner.get(f"/ui/orgs/{world.org}/products/{world.slug}/review").text
        listing = page[page.index('id="listing"') : page.index('id="diff"')]
        assert "/catalog-images/" not in listing
        assert f"logo #{rival['logo']} is not one of {world.org}" in listing
        assert f"1 screenshot named in the manifest is not among {world.org}" in listing


# -- the queue ---------------------------------------------------------------------------------------------
def test_age_reads_short() -> None:
    now = dt.datetime(2030, 1, 10, 12, 0, tzinfo=dt.UTC)
    cases = [
        (dt.timedelta(seconds=5), "< 1 min"),
        (dt.timedelta(minutes=12, seconds=59), "12 min"),
        (dt.timedelta(hours=3, minutes=59), "3 h"),
        (dt.timedelta(days=2, hours=23), "2 d"),
        (dt.timedelta(days=45), "45 d"),
        (-dt.timedelta(minutes=5), "< 1 min"),  # a clock a little ahead is not "in the future"
    ]
    for delta, expected in cases:
        assert age((now - delta).replace(tzinfo=None), now) == expected, delta
    assert age(None) == "\N{EN DASH}"


def test_the_queue_shows_ages_oldest_first(app, app_state: AppState, world: World) -> None:
    now = utcnow()
    with app_state.sessions.begin() as s:
        mine = s.get(ProductRevision, world.revision)
        mine.state, mine.submitted_at = "submitted", now - dt.timedelta(hours=3, minutes=10)
        rival = s.get(ProductRevision, world.other_revision)
        rival.submitted_at = now - dt.timedelta(days=2, hours=1)
    with browser(app, world.users["reviewer"], PASSWORD) as rev:
        page = rev.get("/ui/review").text
    rows = re.findall(
        r'<td class="age"><time datetime="([^"]+)" title="Submitted ([^"]+)">([^<]+)</time>', page
    )
    assert [r[2] for r in rows] == ["2 d", "3 h"]  # the oldest first
    assert rows[0][1] == (now - dt.timedelta(days=2, hours=1)).strftime("%Y-%m-%d %H:%M UTC")
    assert page.index("rival-db") < page.index(world.slug + "<")
