"""The issue's timeline with a controllable clock (the check reads stored times only, so the tests choose its
"now"): who is mailed on a hold (exactly the customers who downloaded the product and kept security mail on),
a revoked product gone from search, Major findings due in 7 days and Minor ones never, a feed that withdraws
the only overdue finding, and a reclassification from Major to Critical that restarts the clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.support.accounts import outbox
from tests.support.factories import make_user
from tests.support.review_world import CRITICAL, CVE, World
from tests.support.scanimages import ACTOR, osv_record, write_feed
from tests.support.store_world import as_user, published_world, who

from dockyard.compliance.models import FindingClock
from dockyard.db import utcnow
from dockyard.entitlements.models import DownloadEvent
from dockyard.events import Actor
from dockyard.jobs import Worker
from dockyard.publishing.models import Product
from dockyard.scanning.services import ScanService
from dockyard.store.models import Listing
from dockyard.web.context import AppState

HOUR = dt.timedelta(hours=1)


@pytest.fixture
def world(app_state: AppState, tmp_path: Path) -> World:
    return published_world(app_state, tmp_path / "feed")


def the_clock(state: AppState) -> FindingClock:
    with state.sessions() as s:
        clock = s.scalar(select(FindingClock))
        s.expunge(clock)
        return clock


def check(state: AppState, now: dt.datetime) -> Any:
    with state.sessions.begin() as s:
        return state.services(s).compliance.check(now)


def status(state: AppState) -> str:
    with state.sessions() as s:
        return s.scalar(select(Listing.status))


def reclassify(state: AppState, world: World, severity: str) -> None:
    with state.sessions.begin() as s:
        p = who(s, world.users["reviewer"])
        scans = ScanService(s, state.blobs, state.bus, state.settings)
        scans.reclassify(
            the_clock(state).finding_id, severity, "re-assessed", p, Actor(name=p.name, kind="user")
        )


def customer(state: AppState, world: World, name: str, *, pulled: bool, notify: bool) -> str:
    """A customer with the free tier (security mail ``notify``), who pulled the server image or not."""
    with state.sessions.begin() as s:
        user = make_user(s, name)
        user.email = f"{name}@example.org"
    as_user(
        state,
        name,
        lambda sv, p, a: sv.entitlements.get_tier(
            world.org, world.slug, "Community", p, a, accept_license=True, notify_security=notify
        ),
    )
    if pulled:
        with state.sessions.begin() as s:
            product = s.scalar(select(Product).where(Product.slug == world.slug))
            s.add(
                DownloadEvent(
                    product_id=product.id,
                    publisher_id=product.publisher_id,
                    user_id=who(s, name).user_id,
                    tier="Community",
                    paid=False,
                    image="server",
                    tag="16",
                    digest=world.server,
                )
            )
    return f"{name}@example.org"


def test_a_hold_mails_exactly_the_customers_who_pulled_and_kept_security_mail_on(
    app_state: AppState, world: World
) -> None:
    told = customer(app_state, world, "pulled_on", pulled=True, notify=True)
    silent = [
        customer(app_state, world, "pulled_off", pulled=True, notify=False),
        customer(app_state, world, "never_pulled", pulled=False, notify=True),
    ]
    clock = the_clock(app_state)
    check(app_state, clock.due_at - HOUR)  # T+71 h: nothing yet
    assert status(app_state) == "listed" and not any("on hold" in m.subject for m in outbox(app_state))
    check(app_state, clock.due_at + HOUR)  # T+73 h
    held = {m.to_address for m in outbox(app_state) if "is on hold" in m.subject}
    assert told in held
    assert not held & set(silent)
    assert held - {told} <= {world.emails["owner"], world.emails["maintainer"]} | {
        m.to_address for m in outbox(app_state) if m.to_address.startswith("hello@")
    }


def test_a_revoked_product_leaves_search(app_state: AppState, world: World) -> None:
    def found() -> list[str]:
        with app_state.sessions() as s:
            return [h.listing.product_slug for h in app_state.services(s).search.search("Acme").hits]

    assert found() == [world.slug]
    clock = the_clock(app_state)
    check(app_state, clock.due_at + HOUR)
    assert found() == [world.slug]  # held: still found, with its label
    check(app_state, clock.due_at + dt.timedelta(days=30, hours=2))
    assert status(app_state) == "revoked" and found() == []


def test_major_is_due_in_seven_days_and_minor_never(app_state: AppState, world: World) -> None:
    reclassify(app_state, world, "Major")
    told = utcnow()
    check(app_state, told)
    major = the_clock(app_state)
    assert major.severity == "Major" and major.due_at == told + dt.timedelta(days=7)
    assert check(app_state, told + dt.timedelta(days=6, hours=23)).held == []
    assert check(app_state, told + dt.timedelta(days=7, hours=1)).held != []

    reclassify(app_state, world, "Minor")
    check(app_state, told + dt.timedelta(days=8))
    minor = the_clock(app_state)
    assert minor.severity == "Minor" and minor.due_at is None
    assert status(app_state) == "listed"  # the Major deadline went with the class
    assert check(app_state, told + dt.timedelta(days=400)).held == []


def test_a_reclassification_from_major_to_critical_restarts_the_clock_with_an_email(
    app_state: AppState, world: World
) -> None:
    reclassify(app_state, world, "Major")
    first = utcnow()
    check(app_state, first)
    reclassify(app_state, world, "Critical")
    again = first + dt.timedelta(days=2)
    check(app_state, again)
    clock = the_clock(app_state)
    assert (clock.severity, clock.notified_via) == ("Critical", "email")
    assert clock.due_at == again + dt.timedelta(hours=72)  # from the new notice, not the first
    assert len([m for m in outbox(app_state, world.emails["owner"]) if "Critical" in m.subject]) == 2


def test_a_feed_that_withdraws_the_only_overdue_finding_lifts_the_hold(
    app_state: AppState, world: World, tmp_path: Path
) -> None:
    clock = the_clock(app_state)
    check(app_state, clock.due_at + HOUR)
    assert status(app_state) == "on_hold"
    feed = write_feed(
        tmp_path / "withdrawn",
        osv_record(CVE, "zlib", vector=CRITICAL, modified=utcnow(), withdrawn=utcnow()),
    )
    with app_state.sessions.begin() as s:
        ScanService(s, app_state.blobs, app_state.bus, app_state.settings).update_vulndb([feed], ACTOR)
    Worker(
        app_state.sessions, app_state.jobs, bus=app_state.bus, services=app_state.services
    ).run_until_idle()
    check(app_state, clock.due_at + 2 * HOUR)
    resolved = the_clock(app_state)
    assert (resolved.resolution, status(app_state)) == ("feed", "listed")
