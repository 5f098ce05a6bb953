"""The compliance loop's webhooks end to end: a publisher's endpoint and an entitled customer's, on a real
HTTP receiver on loopback (signatures checked): publishing opens the Critical finding's clock
(``finding.created``, the publisher's only), the missed due time holds the product (``product.hold``, to
both), and an accepted VEX statement resolves and lifts (``finding.resolved``, ``product.hold_lifted``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.support.review_world import CVE, World
from tests.support.store_world import as_user, published_world, who
from tests.support.webhook_receiver import Receiver, settings_reaching_loopback

from dockyard.compliance.models import FindingClock
from dockyard.config import Settings
from dockyard.events import Actor
from dockyard.jobs import Worker
from dockyard.publishing.models import Publisher
from dockyard.web.context import AppState
from dockyard.webhooks.models import WebhookKind
from dockyard.webhooks.services import Owner

ACTOR = Actor(name="tester", kind="user")


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return settings_reaching_loopback(tmp_path, database_url)


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    found = {"/publisher": Receiver().start(), "/customer": Receiver().start()}
    yield found
    for r in found.values():
        r.stop()


def run_jobs(state: AppState) -> None:
    Worker(state.sessions, state.jobs, bus=state.bus, services=state.services).run_until_idle()


def test_compliance_events_reach_the_publishers_and_the_customers_endpoints(
    app_state: AppState, tmp_path: Path, receivers: dict[str, Receiver]
) -> None:
    world: World = published_world(app_state, tmp_path / "feed")  # (its clock opened before any endpoint)
    customer = world.users["customer"]
    as_user(
        app_state,
        customer,
        lambda sv, p, a: sv.entitlements.get_tier(
            world.org, world.slug, "Community", p, a, accept_license=True
        ),
    )
    kinds = [k.value for k in WebhookKind]
    with app_state.sessions.begin() as s:
        publisher_id = s.scalar(select(Publisher.id).order_by(Publisher.id).limit(1))
        hooks = app_state.services(s).webhooks
        _, publisher_secret = hooks.create(
            Owner("publisher", publisher_id, world.org),
            url=receivers["/publisher"].url(path="/publisher"),
            kinds=kinds,
            actor=ACTOR,
        )
        user = who(s, customer)
        _, customer_secret = hooks.create(
            Owner("user", user.user_id, customer),
            url=receivers["/customer"].url(path="/customer"),
            kinds=[k for k in kinds if k.startswith("product.")],  # finding events are the publisher's
            actor=ACTOR,
        )
    receivers["/publisher"].secret, receivers["/customer"].secret = publisher_secret, customer_secret

    def received() -> list:
        return [r for rc in receivers.values() for r in rc.received]

    with app_state.sessions.begin() as s:  # the clock told 80 hours ago: 8 hours overdue
        clock = s.scalar(select(FindingClock))
        told = clock.notified_at - dt.timedelta(hours=80)
        clock.notified_at, clock.due_at = told, told + dt.timedelta(hours=72)
        clock.resolved_at = clock.resolution = None
    with app_state.sessions.begin() as s:
        app_state.services(s).compliance.check()
    run_jobs(app_state)
    got = [(r.path, r.json["type"]) for r in received()]
    assert ("/publisher", "product.hold") in got and ("/customer", "product.hold") in got
    assert all(r.verified for r in received())
    hold = next(r.json for r in received() if r.path == "/customer")
    assert hold["data"]["product"] == world.slug and hold["data"]["overdue"][0]["vulnerability"] == CVE

    for rc in receivers.values():
        rc.received.clear()
    with app_state.sessions.begin() as s:
        owner = who(s, world.users["owner"])
        vex = app_state.services(s).vex.submit(
            world.org, world.slug, owner, ACTOR, vulnerability=CVE, status="fixed", impact_statement="patched"
        )
        vex_id = vex.id
    with app_state.sessions.begin() as s:
        reviewer = who(s, world.users["reviewer"])
        app_state.services(s).vex.decide(vex_id, True, "verified the patch", reviewer, ACTOR)
    run_jobs(app_state)
    got = sorted((r.path, r.json["type"]) for r in received())
    assert got == [
        ("/customer", "product.hold_lifted"),
        ("/publisher", "finding.resolved"),
        ("/publisher", "product.hold_lifted"),
    ]  # the finding is the publisher's to know; the customer hears that the hold lifted
    resolved = next(r.json for r in received() if r.json["type"] == "finding.resolved")
    assert (
        resolved["data"]["finding"]["vulnerability"] == CVE
        and resolved["data"]["finding"]["resolution"] == "vex"
    )
