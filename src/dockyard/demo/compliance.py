"""The demo's security story: the feeds read (when they are local, as `make run` gives them), every pushed
image scanned, the fix-time clocks of the live products opened by the compliance check; then two products
moved in time, as if their publishers had let a Critical finding's deadline pass: one is on hold (8 hours
overdue) and one was revoked (a month on hold; its customers' pulls still work, with a warning, for the
grace period). Time is moved by rewriting the stored notice and due times of their clocks, the only times
the check reads; everything else is the real loop (the check job, its mail, the audit events).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from dockyard.compliance.models import FindingClock
from dockyard.db import utcnow
from dockyard.jobs import Worker, enqueue
from dockyard.publishing.models import Product
from dockyard.runtime import Runtime
from dockyard.scanning.jobs import VULNDB_JOB
from dockyard.store.models import Listing

HELD_OVERDUE = dt.timedelta(hours=8)


@dataclass
class Story:
    scanned: bool = False
    held: list[str] = field(default_factory=list)  # "org/slug"
    revoked: list[str] = field(default_factory=list)


class ComplianceStory:
    def __init__(self, runtime: Runtime, log: Callable[[str], None]) -> None:
        self.runtime = runtime
        self.log = log

    def tell(self) -> Story:
        story = Story()
        sources = [s for s in self.runtime.settings.vulndb_sources if Path(s).exists()]
        if not sources:
            self.log("  no local vulnerability feeds: the server reads its feeds and scans when it starts")
            return story
        with self.runtime.unit_of_work() as sv:
            enqueue(sv.session, VULNDB_JOB, {"sources": sources})
        self.log("  reading the vulnerability feeds and scanning every image (about a minute)...")
        rt = self.runtime
        Worker(rt.sessions, rt.jobs, bus=rt.bus, services=rt.services).run_until_idle()
        story.scanned = True
        with rt.unit_of_work() as sv:
            sv.compliance.check()
        with rt.unit_of_work() as sv:
            critical = sv.session.execute(
                select(Listing.publisher_slug, Listing.product_slug, Product.id)
                .join(Product, Product.id == Listing.product_id)
                .where(
                    Product.id.in_(
                        select(FindingClock.product_id).where(
                            FindingClock.severity == "Critical", FindingClock.resolved_at.is_(None)
                        )
                    )
                )
                .order_by(Listing.downloads.desc(), Product.id)
            ).all()
        if len(critical) < 2:
            self.log("  fewer than two live products have a Critical finding: none is held or revoked")
            return story
        hold_days = rt.settings.hold_max_days
        for (org, slug, product_id), overdue, bucket in (
            (critical[0], HELD_OVERDUE, story.held),
            (critical[1], dt.timedelta(days=hold_days + 1), story.revoked),
        ):
            self._overdue_since(product_id, utcnow() - overdue)
            bucket.append(f"{org}/{slug}")
        with rt.unit_of_work() as sv:
            sv.compliance.check()
        Worker(rt.sessions, rt.jobs, bus=rt.bus, services=rt.services).run_until_idle()  # its mail
        return story

    def _overdue_since(self, product_id: int, due: dt.datetime) -> None:
        """The product's Critical clocks as if told 72 hours before ``due``."""
        with self.runtime.unit_of_work() as sv:
            for clock in sv.session.scalars(
                select(FindingClock).where(
                    FindingClock.product_id == product_id,
                    FindingClock.severity == "Critical",
                    FindingClock.resolved_at.is_(None),
                )
            ):
                clock.notified_at, clock.due_at = due - dt.timedelta(hours=72), due
