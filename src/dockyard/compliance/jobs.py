"""The compliance loop's jobs and the subscribers that queue them.

The check runs every DOCKYARD_COMPLIANCE_INTERVAL seconds and as soon as anything it reads changed (a scan
finished, a feed re-match, a reclassification): those events queue one check (deduplicated) in their own
transaction. Publishing and unpublishing sync the product's clocks and its listing's state in the
transaction of the move itself, so a fix lifts its hold when it goes live.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.compliance.models import FindingClock
from dockyard.config import Settings
from dockyard.db import utcnow
from dockyard.events import Event, EventBus, EventTag
from dockyard.jobs import JobContext, JobRegistry, enqueue
from dockyard.publishing.models import Product, ProductRevision

log = logging.getLogger("dockyard.compliance")

CHECK_JOB = "compliance.check"
FAST_PATH_JOB = "compliance.fast_path"
FAST_PATH_WAIT, FAST_PATH_TRIES = 30.0, 120  # while the new digests are scanned: every 30 s, for an hour

# What the check reads: when one of these commits, the check runs soon rather than at its next interval.
CHANGES = (EventTag.SCAN_COMPLETE, EventTag.SCAN_REMATCH, EventTag.FINDING_RECLASSIFY, EventTag.VEX_ACCEPT)


def register(registry: JobRegistry, settings: Settings) -> None:
    @registry.job(CHECK_JOB)
    def check(ctx: JobContext, payload: dict[str, Any]) -> None:
        report = ctx.services.compliance.check()
        if report.held or report.lifted or report.revoked or report.opened or report.resolved:
            log.info(
                "compliance: %d clocks opened, %d resolved, %d notices; held %s, lifted %s, revoked %s",
                report.opened,
                report.resolved,
                report.notified,
                report.held,
                report.lifted,
                report.revoked,
            )

    @registry.job(FAST_PATH_JOB)
    def fast_path(ctx: JobContext, payload: dict[str, Any]) -> None:
        revision, tries = int(payload["revision"]), int(payload.get("tries", 0))
        verdict = ctx.services.fast_path.try_revision(revision)
        if verdict.waiting and tries < FAST_PATH_TRIES:
            enqueue(
                ctx.session, FAST_PATH_JOB, {"revision": revision, "tries": tries + 1}, delay=FAST_PATH_WAIT
            )
        log.info("fast path for revision %s: %s", revision, verdict.reason)

    registry.every(CHECK_JOB, settings.compliance_interval)


def subscribe(bus: EventBus) -> None:
    def queue_check(session: Session, event: Event) -> None:
        # Only when a product is live (or still has open clocks): a registry without a store queues nothing.
        live = select(Product.id).where(Product.live_revision_id.is_not(None)).limit(1)
        still_open = select(FindingClock.id).where(FindingClock.resolved_at.is_(None)).limit(1)
        if session.scalar(live) is not None or session.scalar(still_open) is not None:
            enqueue(session, CHECK_JOB, dedupe_key=CHECK_JOB)

    def queue_fast_path(session: Session, event: Event) -> None:
        revision = event.data.get("revision")
        if revision is not None:
            enqueue(
                session, FAST_PATH_JOB, {"revision": int(revision)}, dedupe_key=f"{FAST_PATH_JOB}:{revision}"
            )

    for tag in CHANGES:
        bus.subscribe(tag, queue_check)
    for tag in (EventTag.REVISION_SUBMIT, EventTag.REVISION_RESUBMIT):
        bus.subscribe(tag, queue_fast_path)


def subscribe_publishing(bus: EventBus, services_for: Any) -> None:
    """Sync a product's clocks and listing state in the transaction that publishes or unpublishes it."""

    def on_move(session: Session, event: Event) -> None:
        revision = session.get(ProductRevision, event.data.get("revision"))
        product = session.get(Product, revision.product_id) if revision is not None else None
        if product is None:
            return
        services_for(session).compliance.after_publishing(product, event.tag, utcnow())

    bus.subscribe(EventTag.PRODUCT_PUBLISH, on_move)
    bus.subscribe(EventTag.PRODUCT_UNPUBLISH, on_move)
