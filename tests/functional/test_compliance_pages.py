"""The compliance pages over HTTP with real sessions and forms: the publisher's page of a product's findings
(time left, the notice it gives, VEX statements filed with errors beside their fields), the store team's
extension and decision forms, and its overview; each refused to those it is not for."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.support.accounts import browser, post
from tests.support.factories import PASSWORD
from tests.support.review_world import CVE, World
from tests.support.store_world import published_world

from dockyard.compliance.models import FindingClock, VexStatement
from dockyard.store.models import Listing
from dockyard.web.context import AppState


@pytest.fixture
def world(app_state: AppState, tmp_path: Path) -> World:
    return published_world(app_state, tmp_path / "feed")


def page_of(world: World) -> str:
    return f"/ui/orgs/{world.org}/products/{world.slug}/compliance"


def test_the_publisher_sees_each_open_finding_with_its_due_time_and_files_a_statement(
    app: object, app_state: AppState, world: World
) -> None:
    with browser(app, world.users["maintainer"], PASSWORD) as c:
        for linked_from in (
            f"/ui/orgs/{world.org}/products/{world.slug}/review",
            f"/ui/orgs/{world.org}/dashboard",
        ):
            assert f'href="{page_of(world)}"' in c.get(linked_from).text, linked_from
        r = c.get(page_of(world))
        assert r.status_code == 200
        assert CVE in r.text and "Critical" in r.text
        assert re.search(r"(71|72) h left|2 d 2[34] h left", r.text), "the time left of a 72-hour clock"
        assert "File a statement" in r.text
        refused = post(
            c,
            page_of(world) + "/vex",
            {"vulnerability": CVE, "status": "not_affected", "justification": "", "impact_statement": ""},
        )
        assert refused.status_code == 400
        assert 'id="vex-justification-error"' in refused.text and 'aria-invalid="true"' in refused.text
        filed = post(
            c,
            page_of(world) + "/vex",
            {
                "vulnerability": CVE,
                "status": "not_affected",
                "justification": "vulnerable_code_not_present",
                "impact_statement": "Built without the inflate code.",
            },
        )
        assert filed.status_code == 303 and filed.headers["location"].endswith("#vex")
        assert "Built without the inflate code." in c.get(page_of(world)).text
    with browser(app, world.users["outsider"], PASSWORD) as c:
        assert c.get(page_of(world)).status_code == 404  # as for a product that does not exist


def test_the_store_team_decides_and_extends_from_its_pages(
    app: object, app_state: AppState, world: World
) -> None:
    with app_state.sessions.begin() as s:
        clock = s.scalar(select(FindingClock))
        clock_id, due = clock.id, clock.due_at
        product_id = clock.product_id
        s.add(
            VexStatement(
                product_id=product_id,
                vuln_id=CVE,
                status="fixed",
                impact_statement="patched in our build",
                submitted_by="someone",
            )
        )
    with browser(app, world.users["owner"], PASSWORD) as c:
        assert c.get("/ui/compliance").status_code == 403
    with browser(app, world.users["reviewer"], PASSWORD) as c:
        overview = c.get("/ui/compliance")
        assert overview.status_code == 200
        assert "patched in our build" in overview.text and "VEX statements to decide" in overview.text
        later = (due + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
        extended = post(
            c,
            f"/ui/compliance/clocks/{clock_id}/extension",
            {"until": later, "reason": "vendor patch pending", "next": page_of(world)},
        )
        assert extended.status_code == 303 and extended.headers["location"] == page_of(world)
        vex_id = int(re.search(r'id="vex-(\d+)"', overview.text).group(1))
        decided = post(
            c, f"/ui/compliance/vex/{vex_id}/decision", {"decision": "accept", "reason": "verified"}
        )
        assert decided.status_code == 303
        assert "VEX accepted" in c.get(page_of(world)).text
    with app_state.sessions() as s:
        clock = s.get(FindingClock, clock_id)
        assert clock.extension_reason == "vendor patch pending"
        assert clock.resolution == "vex"
        assert s.scalar(select(Listing.status).where(Listing.product_id == product_id)) == "listed"


def test_the_publisher_seeing_the_page_is_the_notice_that_starts_a_clock(
    app: object, app_state: AppState, world: World
) -> None:
    with app_state.sessions.begin() as s:  # a clock not told yet (as a Major waits for the daily digest)
        clock = s.scalar(select(FindingClock))
        clock.severity, clock.notified_at, clock.notified_via, clock.due_at = "Major", None, None, None
        clock_id = clock.id
    with browser(app, world.users["reviewer"], PASSWORD) as c:  # the store team looking is no notice
        assert c.get(page_of(world)).status_code == 200
    with app_state.sessions() as s:
        assert s.get(FindingClock, clock_id).notified_at is None
    with browser(app, world.users["maintainer"], PASSWORD) as c:
        assert "7 d 0 h left" in c.get(page_of(world)).text or "6 d 23 h left" in c.get(page_of(world)).text
    with app_state.sessions() as s:
        told = s.get(FindingClock, clock_id)
        assert told.notified_via == "dashboard" and told.due_at == told.notified_at + dt.timedelta(days=7)


def test_reading_the_findings_over_the_api_is_a_notice_too(app_state: AppState, world: World, client) -> None:  # type: ignore[no-untyped-def]
    with app_state.sessions.begin() as s:
        clock = s.scalar(select(FindingClock))
        clock.notified_at = clock.notified_via = clock.due_at = None
        clock_id = clock.id
    r = client.get(
        f"/api/v1/products/{world.org}/{world.slug}/compliance", auth=(world.users["owner"], PASSWORD)
    )
    assert r.status_code == 200 and r.json()["open"][0]["notified_via"] == "dashboard"
    with app_state.sessions() as s:
        assert s.get(FindingClock, clock_id).notified_via == "dashboard"  # committed, not just shown


def test_bad_extensions_and_duplicate_statements_are_refused_not_500s(  # found by an attack on these routes
    app: object, app_state: AppState, world: World, client
) -> None:  # type: ignore[no-untyped-def]
    with app_state.sessions() as s:
        clock = s.scalar(select(FindingClock))
        clock_id, due = clock.id, clock.due_at
    reviewer = (world.users["reviewer"], PASSWORD)
    url = f"/api/v1/compliance/clocks/{clock_id}/extension"
    for until in ("9999-12-31T23:59:59", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"):
        r = client.post(url, json={"until": until, "reason": "x"}, auth=reviewer)
        assert r.status_code == 400, (until, r.status_code, r.text)
    with browser(app, world.users["reviewer"], PASSWORD) as c:
        local = (due + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
        r = post(
            c, f"/ui/compliance/clocks/{clock_id}/extension", {"until": local + "+05:00", "reason": "tz"}
        )
        assert r.status_code == 303
        assert c.get(page_of(world)).status_code == 200
    with app_state.sessions() as s:  # the offset honoured: five hours earlier in UTC
        assert s.get(FindingClock, clock_id).due_at == due.replace(second=0, microsecond=0) + dt.timedelta(
            days=1, hours=-5
        )
    owner = (world.users["owner"], PASSWORD)
    statement = {"vulnerability": CVE, "status": "fixed", "impact_statement": "patched"}
    vex = f"/api/v1/products/{world.org}/{world.slug}/vex"
    assert client.post(vex, json=statement, auth=owner).status_code == 201
    again = client.post(vex, json=statement, auth=owner)
    assert again.status_code == 409 and "waiting for the store team" in again.json()["error"]["message"]
