"""The watch loop's job: every DOCKYARD_COMPLIANCE_INTERVAL seconds (the compliance check's cadence), and
as soon as a scan or a feed re-match commits (queued in its transaction, deduplicated)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.alerts.models import RepositoryWatch
from dockyard.config import Settings
from dockyard.events import Event, EventBus, EventTag
from dockyard.jobs import JobContext, JobRegistry, enqueue

log = logging.getLogger("dockyard.alerts")

RUN_JOB = "alerts.run"
CHANGES = (EventTag.SCAN_COMPLETE, EventTag.SCAN_REMATCH)


def register(registry: JobRegistry, settings: Settings) -> None:
    @registry.job(RUN_JOB)
    def run(ctx: JobContext, payload: dict[str, Any]) -> None:
        report = ctx.services.alerts.run()
        if report.found or report.mails or report.digests:
            log.info(
                "alerts: %d watches, %d new findings, %d immediate mails, %d digests",
                report.watches,
                report.found,
                report.mails,
                report.digests,
            )

    registry.every(RUN_JOB, settings.compliance_interval)


def subscribe(bus: EventBus) -> None:
    def queue_run(session: Session, event: Event) -> None:
        # Only when someone watches a repository: scans of a store nobody watches queue nothing.
        if session.scalar(select(RepositoryWatch.id).limit(1)) is not None:
            enqueue(session, RUN_JOB, dedupe_key=RUN_JOB)

    for tag in CHANGES:
        bus.subscribe(tag, queue_run)
