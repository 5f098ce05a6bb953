"""What the compliance pages and API show: a product's open findings with their due times (most urgent
first), its listing's state, its VEX statements; and for the store team every product near a breach, on
hold or revoked, and the statements waiting for a decision."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.authz import Permission, Principal, allowed
from dockyard.compliance.models import FindingClock, VexDecision, VexStatement
from dockyard.errors import Forbidden
from dockyard.store.models import Listing, ListingStatus

SEVERITY_RANK = {"Critical": 0, "Major": 1, "Minor": 2, "Unscored": 3}
NEAR = dt.timedelta(hours=24)  # "near breach": due within a day
RESOLVED_SHOWN = 50


@dataclass(frozen=True)
class ClockRow:
    clock: FindingClock
    now: dt.datetime

    @property
    def time_left(self) -> dt.timedelta | None:
        return None if self.clock.due_at is None else self.clock.due_at - self.now

    @property
    def overdue(self) -> bool:
        left = self.time_left
        return left is not None and left <= dt.timedelta(0) and self.clock.resolved_at is None

    @property
    def suggested_extension(self) -> str:
        """A week past the current due time, as a ``datetime-local`` value (the extension form's default)."""
        try:
            return ((self.clock.due_at or self.now) + dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
        except OverflowError:  # a due time at the calendar's end (kept from before extensions were bounded)
            return ""

    @property
    def time_left_label(self) -> str:
        left = self.time_left
        if self.clock.resolved_at is not None:
            return "resolved"
        if left is None:
            return "not told yet" if self.clock.notified_at is None else "best effort"
        hours = int(abs(left).total_seconds() // 3600)
        text = f"{hours // 24} d {hours % 24} h" if hours >= 24 else f"{hours} h"
        return f"overdue by {text}" if left <= dt.timedelta(0) else f"{text} left"


def urgency(row: ClockRow) -> tuple:
    due = row.clock.due_at or dt.datetime.max
    return (due, SEVERITY_RANK.get(row.clock.severity, 9), row.clock.vuln_id, row.clock.id)


@dataclass
class ProductCompliance:
    org: str
    slug: str
    name: str
    product_id: int
    status: str
    status_since: dt.datetime | None
    status_reason: str
    open: list[ClockRow]
    resolved: list[ClockRow]
    vex: list[VexStatement]
    can_file_vex: bool
    can_manage: bool


@dataclass
class StoreCompliance:
    near_breach: list[tuple[Listing | None, ClockRow]] = field(default_factory=list)
    on_hold: list[Listing] = field(default_factory=list)
    revoked: list[Listing] = field(default_factory=list)
    pending_vex: list[tuple[VexStatement, Listing | None]] = field(default_factory=list)


class ComplianceReads:
    def __init__(self, session: Session, services: object) -> None:
        self.session = session
        self.services = services

    def product(self, org: str, slug: str, principal: Principal, now: dt.datetime) -> ProductCompliance:
        """A product's compliance (its publisher's people and the store team; NotFound for others). The
        publisher seeing its open findings here is a notice: clocks not started yet start now."""
        ctx = self.services.reviews.product_context(org, slug, principal)  # type: ignore[attr-defined]
        product = ctx.product
        if Permission.PRODUCT_EDIT in ctx.granted:
            self.services.compliance.seen_on_dashboard(product, now)  # type: ignore[attr-defined]
        clocks = list(self.session.scalars(select(FindingClock).where(FindingClock.product_id == product.id)))
        rows = [ClockRow(c, now) for c in clocks]
        open_rows = sorted((r for r in rows if r.clock.resolved_at is None), key=urgency)
        resolved = sorted(
            (r for r in rows if r.clock.resolved_at is not None),
            key=lambda r: r.clock.resolved_at,
            reverse=True,
        )[:RESOLVED_SHOWN]
        listing = self.session.scalar(select(Listing).where(Listing.product_id == product.id))
        revision = product.live_revision or ctx.revision
        name = str((revision.manifest or {}).get("name") or product.slug)
        return ProductCompliance(
            org,
            product.slug,
            name,
            product.id,
            listing.status if listing else "unlisted",
            listing.status_since if listing else None,
            listing.status_reason if listing else "",
            open_rows,
            resolved,
            self.services.vex.statements(product.id),  # type: ignore[attr-defined]
            Permission.PRODUCT_EDIT in ctx.granted,
            allowed(principal, Permission.COMPLIANCE_MANAGE),
        )

    def store(self, principal: Principal, now: dt.datetime) -> StoreCompliance:
        """Every product near a breach, on hold or revoked, and the VEX statements to decide (store team)."""
        if not allowed(principal, Permission.COMPLIANCE_MANAGE):
            raise Forbidden("the store team's compliance overview")
        listings = {row.product_id: row for row in self.session.scalars(select(Listing))}
        result = StoreCompliance()
        for clock in self.session.scalars(
            select(FindingClock).where(
                FindingClock.resolved_at.is_(None),
                FindingClock.due_at.is_not(None),
                FindingClock.due_at <= now + NEAR,
            )
        ):
            result.near_breach.append((listings.get(clock.product_id), ClockRow(clock, now)))
        result.near_breach.sort(key=lambda pair: urgency(pair[1]))
        result.on_hold = sorted(
            (row for row in listings.values() if row.status == ListingStatus.ON_HOLD),
            key=lambda row: row.status_since or now,
        )
        result.revoked = sorted(
            (row for row in listings.values() if row.status == ListingStatus.REVOKED),
            key=lambda row: row.status_since or now,
        )
        for statement in self.session.scalars(
            select(VexStatement)
            .where(VexStatement.decision == VexDecision.PENDING.value)
            .order_by(VexStatement.submitted_at)
        ):
            result.pending_vex.append((statement, listings.get(statement.product_id)))
        return result
