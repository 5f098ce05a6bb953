"""Fix-time clocks kept in step with what the live revisions have open.

``ClockBook.sync`` compares a product's open findings with its clocks: a new finding opens a clock (not
started: the deadline runs from the notice), a finding gone from the live revision closes it as fixed, one
the feed resolved closes as ``feed``, one an accepted VEX statement covers closes as ``vex``, and a class
that changed (staff's reclassification, or a new score) restarts the clock from a new notice. A finding
that comes back reopens its clock. A clock follows a finding across revisions: republishing the same
digest does not restart a deadline.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.compliance.findings import PinnedFinding, pinned_findings
from dockyard.compliance.models import FindingClock, Resolution, VexDecision, VexStatement
from dockyard.publishing.models import Product, ProductRevision

CRITICAL, MAJOR = "Critical", "Major"
# How long a publisher has, from the notice, to fix a finding of each class; others are best effort.
FIX_WINDOWS: dict[str, dt.timedelta] = {CRITICAL: dt.timedelta(hours=72), MAJOR: dt.timedelta(days=7)}


def due_after(severity: str, notified_at: dt.datetime) -> dt.datetime | None:
    window = FIX_WINDOWS.get(severity)
    return notified_at + window if window is not None else None


@dataclass
class SyncResult:
    opened: list[FindingClock] = field(default_factory=list)
    resolved: list[FindingClock] = field(default_factory=list)
    restarted: list[FindingClock] = field(default_factory=list)  # reclassified: told again, deadline anew

    def __bool__(self) -> bool:
        return bool(self.opened or self.resolved or self.restarted)


class ClockBook:
    def __init__(self, session: Session) -> None:
        self.session = session

    def sync(self, product: Product, now: dt.datetime) -> SyncResult:
        """Bring a product's clocks in line with its live revision's open findings."""
        result = SyncResult()
        clocks = {
            c.finding_id: c
            for c in self.session.scalars(select(FindingClock).where(FindingClock.product_id == product.id))
        }
        live = (
            self.session.get(ProductRevision, product.live_revision_id)
            if product.live_revision_id is not None
            else None
        )
        open_now: dict[int, PinnedFinding] = {}
        scanned: set[str] = set()
        if live is not None:
            scans = pinned_findings(self.session, live.pins)
            scanned = scans.scanned
            for finding in scans.findings:
                open_now.setdefault(finding.finding_id, finding)
        vex = self._accepted_vex(product.id)
        for finding_id, finding in open_now.items():
            clock = clocks.get(finding_id)
            covered = _covered(vex, finding.vuln_id, finding.component)
            if clock is None:
                clock = FindingClock(
                    product_id=product.id,
                    revision_id=live.id if live is not None else 0,
                    finding_id=finding_id,
                    image=finding.image,
                    digest=finding.digest,
                    platform=finding.platform,
                    vuln_id=finding.vuln_id,
                    component=finding.component,
                    severity=finding.severity,
                    opened_at=now,
                )
                if covered:
                    clock.resolved_at, clock.resolution = now, Resolution.VEX.value
                self.session.add(clock)
                clocks[finding_id] = clock
                (result.resolved if covered else result.opened).append(clock)
                continue
            if live is not None:
                clock.revision_id = live.id
            if clock.resolved_at is not None:
                if covered or clock.resolution == Resolution.VEX.value:
                    continue  # still covered by the statement that closed it
                _restart(clock, finding.severity)
                clock.resolved_at = clock.resolution = None
                clock.opened_at = now
                result.opened.append(clock)
            elif covered:
                clock.resolved_at, clock.resolution = now, Resolution.VEX.value
                result.resolved.append(clock)
            elif clock.severity != finding.severity:
                _restart(clock, finding.severity)
                result.restarted.append(clock)
        gone = [c for fid, c in clocks.items() if c.resolved_at is None and fid not in open_now]
        for clock in gone:
            # Its image still live: the feed withdrew or fixed the advisory; else a new revision fixed it.
            clock.resolved_at = now
            if live is None:
                clock.resolution = Resolution.UNPUBLISHED.value
            elif clock.digest in scanned:
                clock.resolution = Resolution.FEED.value
            else:
                clock.resolution = Resolution.FIXED.value
            result.resolved.append(clock)
        self.session.flush()
        return result

    def _accepted_vex(self, product_id: int) -> list[tuple[str, str | None]]:
        rows = self.session.execute(
            select(VexStatement.vuln_id, VexStatement.component).where(
                VexStatement.product_id == product_id, VexStatement.decision == VexDecision.ACCEPTED.value
            )
        )
        return [(r.vuln_id, r.component) for r in rows]


def _covered(vex: list[tuple[str, str | None]], vuln_id: str, component: str) -> bool:
    return any(v == vuln_id and (c is None or c == component) for v, c in vex)


def _restart(clock: FindingClock, severity: str) -> None:
    """A new class needs a new notice: the deadline runs from it (and an extension of the old one lapses)."""
    clock.severity = severity
    clock.notified_at = clock.notified_via = clock.due_at = None
    clock.extended_from = clock.extension_reason = clock.extended_by = clock.extended_at = None
