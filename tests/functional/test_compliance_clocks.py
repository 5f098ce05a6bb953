"""The compliance loop on a real database, registry, scanner and review: a published product's Critical
finding opens a clock that starts with the mail telling the publisher; the check, run at chosen times (the
loop reads only stored times, so a test moves "now" instead of waiting), holds the listing once the due
time passes, mails its downloading customers, suspends its badges, and revokes it a month later; staff
extensions and reclassifications, feed fixes and the fast path for fix revisions each move it back."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.support.accounts import outbox
from tests.support.factories import PASSWORD
from tests.support.registry_client import bearer, get_token
from tests.support.review_world import CRITICAL, CVE, World
from tests.support.scanimages import ACTOR, Images, debian_layer, osv_record, write_feed
from tests.support.store_world import MANIFEST_TYPES, as_user, publish, published_world, who
from tests.support.store_world import store_path as store

from dockyard.audit.models import AuditEvent
from dockyard.compliance.models import FindingClock
from dockyard.db import utcnow
from dockyard.entitlements.models import DownloadEvent
from dockyard.errors import Forbidden, Invalid, NotFound
from dockyard.events import Actor
from dockyard.publishing.models import Product, ProductRevision
from dockyard.scanning.services import ScanService
from dockyard.store.models import BadgeKind, Listing
from dockyard.web.context import AppState

HOUR = dt.timedelta(hours=1)


@pytest.fixture
def world(app_state: AppState, tmp_path: Path) -> World:
    return published_world(app_state, tmp_path / "feed")


def clocks(state: AppState) -> list[FindingClock]:
    with state.sessions() as s:
        rows = list(s.scalars(select(FindingClock).order_by(FindingClock.id)))
        s.expunge_all()
        return rows


def listing(state: AppState, world: World) -> Listing:
    with state.sessions() as s:
        row = s.scalar(select(Listing).where(Listing.product_slug == world.slug))
        assert row is not None
        s.expunge(row)
        return row


def check(state: AppState, now: dt.datetime) -> Any:
    with state.sessions.begin() as s:
        return state.services(s).compliance.check(now)


def tags(state: AppState, prefix: str) -> list[str]:
    with state.sessions() as s:
        return [
            t
            for t in s.scalars(
                select(AuditEvent.tag).where(AuditEvent.tag.like(prefix)).order_by(AuditEvent.id)
            )
        ]


def customer_who_pulled(state: AppState, world: World) -> str:
    """The world's customer with the free tier (security mail on) and one pull of the server image."""
    customer = world.users["customer"]
    as_user(
        state,
        customer,
        lambda sv, p, a: sv.entitlements.get_tier(
            world.org, world.slug, "Community", p, a, accept_license=True
        ),
    )
    with state.sessions.begin() as s:
        user = who(s, customer)
        product = s.scalar(select(Product).where(Product.slug == world.slug))
        s.add(
            DownloadEvent(
                product_id=product.id,
                publisher_id=product.publisher_id,
                user_id=user.user_id,
                tier="Community",
                paid=False,
                image="server",
                tag="16",
                digest=world.server,
                user_agent="skopeo/1.13",
            )
        )
    return customer


# -- clocks and notices --------------------------------------------------------------------------------
def test_publishing_opens_a_clock_for_the_critical_finding_and_mails_the_publisher_at_once(
    app_state: AppState, world: World
) -> None:
    [clock] = clocks(app_state)
    assert (clock.vuln_id, clock.image, clock.digest, clock.severity) == (
        CVE,
        "server",
        world.server,
        "Critical",
    )
    assert clock.notified_via == "email" and clock.notified_at is not None
    assert clock.due_at == clock.notified_at + dt.timedelta(hours=72)
    mails = [m for m in outbox(app_state, world.emails["owner"]) if "Critical security finding" in m.subject]
    assert len(mails) == 1
    assert CVE in mails[0].body_text and "72 hours" in mails[0].body_text
    assert f"/ui/orgs/{world.org}/products/{world.slug}/compliance" in mails[0].body_text
    assert tags(app_state, "compliance:%") == ["compliance:findings", "compliance:notice"]


def test_checking_again_changes_nothing(app_state: AppState, world: World) -> None:
    before = [(c.id, c.notified_at, c.due_at, c.resolved_at) for c in clocks(app_state)]
    mails = len(outbox(app_state))
    report = check(app_state, utcnow())
    assert (report.opened, report.resolved, report.notified, report.held) == (0, 0, 0, [])
    assert [(c.id, c.notified_at, c.due_at, c.resolved_at) for c in clocks(app_state)] == before
    assert len(outbox(app_state)) == mails


# -- hold and revocation -------------------------------------------------------------------------------
def test_a_missed_due_time_holds_the_listing_warns_customers_and_suspends_badges(
    app_state: AppState, world: World
) -> None:
    customer = customer_who_pulled(app_state, world)
    as_user(
        app_state,
        world.users["admin"],
        lambda sv, p, a: sv.badges.grant(
            world.org, world.slug, BadgeKind.CERTIFIED_CONTAINER, "tested", p, a
        ),
    )
    assert listing(app_state, world).certified is True
    [clock] = clocks(app_state)
    assert check(app_state, clock.due_at - HOUR).held == []
    assert listing(app_state, world).status == "listed"

    report = check(app_state, clock.due_at + HOUR)
    row = listing(app_state, world)
    assert report.held == [row.product_id]
    assert row.status == "on_hold" and row.status_since == clock.due_at  # from the stored due time
    assert CVE in row.status_reason and "1 Critical" in row.status_reason
    assert row.certified is False  # suspended while held
    assert "product:hold" in tags(app_state, "product:%")
    [mail] = [m for m in outbox(app_state, f"{customer}@example.org") if "on hold" in m.subject]
    assert f"server:16@{world.server}" in mail.body_text  # what they pulled
    assert CVE in mail.body_text and "What to do" in mail.body_text
    assert any("on hold" in m.subject for m in outbox(app_state, world.emails["owner"]))


def test_a_month_on_hold_revokes_and_a_late_check_decides_as_one_on_time(
    app_state: AppState, world: World
) -> None:
    [clock] = clocks(app_state)
    # No check ran while the server was down: the first one, 31 days late, holds and revokes at once,
    # dating both from the stored due time.
    report = check(app_state, clock.due_at + dt.timedelta(days=31))
    row = listing(app_state, world)
    assert report.held == [row.product_id] and report.revoked == [row.product_id]
    assert row.status == "revoked"
    assert row.status_since == clock.due_at + dt.timedelta(days=30)
    assert tags(app_state, "product:%")[-2:] == ["product:hold", "product:revoke"]
    with pytest.raises(NotFound):  # no new entitlements: it is off the store
        as_user(
            app_state,
            world.users["customer"],
            lambda sv, p, a: sv.entitlements.get_tier(
                world.org, world.slug, "Community", p, a, accept_license=True
            ),
        )


def test_an_extension_by_the_store_team_lifts_the_hold(app_state: AppState, world: World) -> None:
    [clock] = clocks(app_state)
    check(app_state, clock.due_at + HOUR)
    assert listing(app_state, world).status == "on_hold"
    with pytest.raises(Forbidden):
        as_user(
            app_state,
            world.users["owner"],
            lambda sv, p, a: sv.compliance.extend(clock.id, clock.due_at + 48 * HOUR, "please", p, a),
        )
    with pytest.raises(Invalid):
        as_user(
            app_state,
            world.users["reviewer"],
            lambda sv, p, a: sv.compliance.extend(clock.id, clock.due_at + 48 * HOUR, " ", p, a),
        )
    as_user(
        app_state,
        world.users["reviewer"],
        lambda sv, p, a: sv.compliance.extend(
            clock.id, clock.due_at + 48 * HOUR, "the upstream fix ships on Monday", p, a
        ),
    )
    [extended] = clocks(app_state)
    assert (
        extended.extended_from == clock.due_at
        and extended.extension_reason == "the upstream fix ships on Monday"
    )
    assert listing(app_state, world).status == "listed"
    assert tags(app_state, "product:hold%") == ["product:hold", "product:hold_lift"]
    assert "compliance:extend" in tags(app_state, "compliance:%")


def test_a_reclassification_restarts_the_clock_from_a_new_notice(app_state: AppState, world: World) -> None:
    [clock] = clocks(app_state)
    with app_state.sessions.begin() as s:
        p = who(s, world.users["reviewer"])
        scans = ScanService(s, app_state.blobs, app_state.bus, app_state.settings)
        scans.reclassify(
            clock.finding_id, "Major", "needs local access here", p, Actor(name=p.name, kind="user")
        )
    later = utcnow() + HOUR
    check(app_state, later)
    [restarted] = clocks(app_state)
    assert restarted.severity == "Major" and restarted.notified_via == "digest"
    assert restarted.notified_at == later and restarted.due_at == later + dt.timedelta(days=7)
    assert any("digest" in m.subject for m in outbox(app_state, world.emails["owner"]))
    # The old due time passed long ago: no hold, the new one runs.
    assert check(app_state, later + dt.timedelta(days=6)).held == []


def test_a_feed_fix_resolves_the_clock_and_lifts_the_hold(
    app_state: AppState, world: World, tmp_path: Path
) -> None:
    [clock] = clocks(app_state)
    check(app_state, clock.due_at + HOUR)
    feed = write_feed(
        tmp_path / "fixed",
        osv_record(CVE, "zlib", fixed="1:1.2.13.dfsg-1", modified=utcnow(), vector=CRITICAL),
    )
    with app_state.sessions.begin() as s:
        ScanService(s, app_state.blobs, app_state.bus, app_state.settings).update_vulndb([feed], ACTOR)
    run_jobs_direct(app_state)
    check(app_state, clock.due_at + 2 * HOUR)
    [resolved] = clocks(app_state)
    assert resolved.resolution == "feed" and resolved.resolved_at is not None
    assert listing(app_state, world).status == "listed"


def run_jobs_direct(state: AppState) -> None:
    from dockyard.jobs import Worker

    Worker(state.sessions, state.jobs, bus=state.bus, services=state.services).run_until_idle()


# -- the fast path -------------------------------------------------------------------------------------
def push_fix(state: AppState, world: World) -> str:
    """A fixed server image (without zlib) pushed to the pinned tag, and scanned."""
    with state.sessions.begin() as s:
        images = Images(s, state.blobs, state.bus)
        fixed = images.image(f"{world.org}/db-server", "16", [debian_layer([("libc6", "2.36-9", "glibc")])])
        ScanService(s, state.blobs, state.bus, state.settings).scan_manifest(
            fixed.digest, repository=f"{world.org}/db-server"
        )
        return fixed.digest


def new_revision(state: AppState, world: World) -> int:
    """The live manifest saved again as a new working revision and submitted (the publisher's resubmit)."""
    with state.sessions() as s:
        live = s.scalar(select(ProductRevision).join(Product, Product.live_revision_id == ProductRevision.id))
        data = dict(live.manifest, slug=world.slug)
    owner = world.users["owner"]
    revision = as_user(
        state, owner, lambda sv, p, a: sv.products.update_draft(world.org, world.slug, data, p, a).id
    )
    as_user(state, owner, lambda sv, p, a: sv.reviews.submit(world.org, world.slug, p, a))
    return revision


def test_a_fix_revision_is_published_by_the_fast_path_and_lifts_the_hold(
    app_state: AppState, world: World
) -> None:
    [clock] = clocks(app_state)
    check(app_state, clock.due_at + HOUR)
    assert listing(app_state, world).status == "on_hold"
    fixed = push_fix(app_state, world)
    revision = new_revision(app_state, world)
    run_jobs_direct(app_state)
    with app_state.sessions() as s:
        assert s.get(ProductRevision, revision).state == "published"
        assert s.get(ProductRevision, revision).pins["server"]["tags"]["16"] == fixed
    [resolved] = clocks(app_state)
    assert resolved.resolution == "fixed"
    assert listing(app_state, world).status == "listed"
    assert "revision:auto_approve" in tags(app_state, "revision:%")
    assert any("no longer on hold" in m.subject for m in outbox(app_state, world.emails["owner"]))


def test_a_revoked_product_comes_back_only_through_a_full_review(app_state: AppState, world: World) -> None:
    [clock] = clocks(app_state)
    check(app_state, clock.due_at + dt.timedelta(days=31))
    assert listing(app_state, world).status == "revoked"
    push_fix(app_state, world)
    revision = new_revision(app_state, world)
    run_jobs_direct(app_state)
    with app_state.sessions() as s:
        assert s.get(ProductRevision, revision).state == "submitted"  # the fast path left it to reviewers
    publish(app_state, world, revision)  # claimed, approved and published by the store team
    assert listing(app_state, world).status == "listed"
    assert clocks(app_state)[0].resolution == "fixed"


def test_the_fast_path_leaves_a_changed_manifest_or_a_revoked_product_to_reviewers(
    app_state: AppState, world: World
) -> None:
    push_fix(app_state, world)
    with app_state.sessions() as s:
        live = s.scalar(select(ProductRevision).join(Product, Product.live_revision_id == ProductRevision.id))
        data = dict(live.manifest, slug=world.slug, short_description="Now even faster")
    owner = world.users["owner"]
    revision = as_user(
        app_state, owner, lambda sv, p, a: sv.products.update_draft(world.org, world.slug, data, p, a).id
    )
    as_user(app_state, owner, lambda sv, p, a: sv.reviews.submit(world.org, world.slug, p, a))
    with app_state.sessions.begin() as s:
        verdict = app_state.services(s).fast_path.try_revision(revision)
    assert verdict.approved is False and "manifest changed" in verdict.reason
    with app_state.sessions() as s:
        assert s.get(ProductRevision, revision).state == "submitted"
    assert "revision:auto_approve" not in tags(app_state, "revision:%")


# -- pulls -----------------------------------------------------------------------------------------------
def pull(client: TestClient, world: World, username: str) -> Any:
    name = store(world)
    token = get_token(client, f"repository:{name}:pull", username, PASSWORD)
    return client.get(f"/v2/{name}/manifests/16", headers=bearer(token, {"Accept": MANIFEST_TYPES}))


def test_pulls_of_a_held_product_carry_a_warning_and_a_revoked_one_is_denied_after_its_grace(
    app_state: AppState, world: World, client: TestClient
) -> None:
    customer = customer_who_pulled(app_state, world)
    assert "Warning" not in pull(client, world, customer).headers
    [clock] = clocks(app_state)
    check(app_state, clock.due_at + HOUR)
    held = pull(client, world, customer)
    assert held.status_code == 200
    assert held.headers["Warning"].startswith('299 - "') and "on hold" in held.headers["Warning"]
    check(app_state, clock.due_at + dt.timedelta(days=31))
    revoked = pull(client, world, customer)
    assert revoked.status_code == 200 and "revoked" in revoked.headers["Warning"]
    with app_state.sessions.begin() as s:  # the grace period over
        row = s.scalar(select(Listing).where(Listing.product_slug == world.slug))
        row.status_since = utcnow() - dt.timedelta(days=31)
    denied = pull(client, world, customer)
    assert denied.status_code == 403
    [error] = denied.json()["errors"]
    assert error["code"] == "DENIED" and "revoked" in error["message"]
    with app_state.sessions() as s:
        assert s.scalar(select(DownloadEvent.id).order_by(DownloadEvent.id.desc()).limit(1)) is not None


# -- VEX and the API -----------------------------------------------------------------------------------------
def test_an_accepted_vex_statement_resolves_the_finding_and_lifts_the_hold_over_the_api(
    app_state: AppState, world: World, client: TestClient
) -> None:
    [clock] = clocks(app_state)
    check(app_state, clock.due_at + HOUR)
    owner, reviewer = world.users["owner"], world.users["reviewer"]
    base = f"/api/v1/products/{world.org}/{world.slug}"
    seen = client.get(base + "/compliance", auth=(owner, PASSWORD))
    assert seen.status_code == 200
    body = seen.json()
    assert body["status"] == "on_hold" and [c["vulnerability"] for c in body["open"]] == [CVE]
    # (held at a "now" three days on; at the real now its 72 hours are still running)
    assert body["open"][0]["overdue"] is False and 0 < body["open"][0]["seconds_left"] <= 72 * 3600
    refused = client.post(
        base + "/vex", json={"vulnerability": CVE, "status": "not_affected"}, auth=(owner, PASSWORD)
    )
    assert refused.status_code == 400 and refused.json()["error"]["detail"][0]["field"] == "justification"
    unknown = client.post(
        base + "/vex", json={"vulnerability": "CVE-1999-0001", "status": "fixed"}, auth=(owner, PASSWORD)
    )
    assert unknown.status_code == 400
    filed = client.post(
        base + "/vex",
        json={
            "vulnerability": CVE,
            "status": "not_affected",
            "justification": "vulnerable_code_not_in_execute_path",
            "impact_statement": "The server never inflates untrusted data with zlib.",
        },
        auth=(owner, PASSWORD),
    )
    assert filed.status_code == 201, filed.text
    vex_id = filed.json()["id"]
    assert (
        client.post(
            f"/api/v1/compliance/vex/{vex_id}/decision",
            json={"accept": True, "reason": "ok"},
            auth=(owner, PASSWORD),
        ).status_code
        == 403
    )
    overview = client.get("/api/v1/compliance", auth=(reviewer, PASSWORD)).json()
    assert [p["statement"]["id"] for p in overview["pending_vex"]] == [vex_id]
    assert [p["product"] for p in overview["on_hold"]] == [world.slug]
    decided = client.post(
        f"/api/v1/compliance/vex/{vex_id}/decision",
        json={"accept": True, "reason": "the call graph shows no inflate of input"},
        auth=(reviewer, PASSWORD),
    )
    assert decided.status_code == 200 and decided.json()["decision"] == "accepted"
    [resolved] = clocks(app_state)
    assert resolved.resolution == "vex"
    assert listing(app_state, world).status == "listed"
    document = client.get(base + "/vex", auth=(owner, PASSWORD)).json()
    assert document["@context"] == "https://openvex.dev/ns/v0.2.0"
    [statement] = document["statements"]
    assert statement["vulnerability"]["name"] == CVE and statement["status"] == "not_affected"
    assert statement["justification"] == "vulnerable_code_not_in_execute_path"
    assert tags(app_state, "vex:%") == ["vex:submit", "vex:accept"]
    # Checking again keeps it resolved: the statement still covers the finding.
    check(app_state, clock.due_at + 3 * HOUR)
    assert clocks(app_state)[0].resolved_at is not None and listing(app_state, world).status == "listed"
