"""The compliance API's bodies."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from dockyard.compliance.models import FindingClock, VexJustification, VexStatement, VexStatus
from dockyard.compliance.reads import ClockRow, ProductCompliance, StoreCompliance
from dockyard.store.models import Listing


class ClockOut(BaseModel):
    id: int
    vulnerability: str
    severity: str = Field(description="the class the clock runs for: Critical, Major, Minor or Unscored")
    image: str
    digest: str
    platform: str | None
    component: str = Field(description="the component's purl")
    opened_at: dt.datetime
    notified_at: dt.datetime | None = Field(description="the first notice (email, digest or dashboard)")
    notified_via: str | None
    due_at: dt.datetime | None = Field(description="None: best effort (Minor, Unscored) or not told yet")
    seconds_left: int | None = Field(description="negative: overdue")
    overdue: bool
    extended_from: dt.datetime | None
    extension_reason: str | None
    resolved_at: dt.datetime | None
    resolution: str | None = Field(description="fixed | feed | vex | unpublished")


class VexOut(BaseModel):
    id: int
    vulnerability: str
    component: str | None
    status: str
    justification: str | None
    impact_statement: str
    submitted_by: str
    submitted_at: dt.datetime
    decision: str = Field(description="pending | accepted | rejected")
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_reason: str | None


class ProductComplianceOut(BaseModel):
    status: str = Field(description="listed | on_hold | revoked | unlisted")
    status_since: dt.datetime | None
    status_reason: str
    open: list[ClockOut] = Field(description="open findings, most urgent first")
    resolved: list[ClockOut] = Field(description="the latest resolved ones")
    vex: list[VexOut]


class ListingRef(BaseModel):
    publisher: str
    product: str
    name: str
    status: str
    status_since: dt.datetime | None
    status_reason: str


class NearBreach(BaseModel):
    product: ListingRef | None
    clock: ClockOut


class PendingVex(BaseModel):
    product: ListingRef | None
    statement: VexOut


class StoreComplianceOut(BaseModel):
    near_breach: list[NearBreach] = Field(description="open findings due within 24 hours or overdue")
    on_hold: list[ListingRef]
    revoked: list[ListingRef]
    pending_vex: list[PendingVex]


class VexIn(BaseModel):
    vulnerability: str = Field(min_length=1, max_length=128)
    status: VexStatus
    justification: VexJustification | None = Field(None, description="required for not_affected")
    impact_statement: str = Field("", max_length=4000, description="why (required for not_affected)")
    component: str | None = Field(None, max_length=1024, description="a purl; none: every component")


class VexDecisionIn(BaseModel):
    accept: bool
    reason: str = Field(min_length=1, max_length=4000)


class ExtensionIn(BaseModel):
    until: dt.datetime = Field(description="the new due time (UTC), later than the current one")
    reason: str = Field(min_length=1, max_length=2000)


def clock_out(row: ClockRow | FindingClock, now: dt.datetime | None = None) -> dict[str, Any]:
    if isinstance(row, FindingClock):
        row = ClockRow(row, now or dt.datetime.now(dt.UTC).replace(tzinfo=None))
    c, left = row.clock, row.time_left
    return {
        "id": c.id,
        "vulnerability": c.vuln_id,
        "severity": c.severity,
        "image": c.image,
        "digest": c.digest,
        "platform": c.platform,
        "component": c.component,
        "opened_at": c.opened_at,
        "notified_at": c.notified_at,
        "notified_via": c.notified_via,
        "due_at": c.due_at,
        "seconds_left": None if left is None else int(left.total_seconds()),
        "overdue": row.overdue,
        "extended_from": c.extended_from,
        "extension_reason": c.extension_reason,
        "resolved_at": c.resolved_at,
        "resolution": c.resolution,
    }


def vex_out(v: VexStatement) -> dict[str, Any]:
    return {
        "id": v.id,
        "vulnerability": v.vuln_id,
        "component": v.component,
        "status": v.status,
        "justification": v.justification,
        "impact_statement": v.impact_statement,
        "submitted_by": v.submitted_by,
        "submitted_at": v.submitted_at,
        "decision": v.decision,
        "decided_by": v.decided_by,
        "decided_at": v.decided_at,
        "decision_reason": v.decision_reason,
    }


def listing_ref(row: Listing | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "publisher": row.publisher_slug,
        "product": row.product_slug,
        "name": row.name,
        "status": row.status,
        "status_since": row.status_since,
        "status_reason": row.status_reason,
    }


def product_out(p: ProductCompliance) -> dict[str, Any]:
    return {
        "status": p.status,
        "status_since": p.status_since,
        "status_reason": p.status_reason,
        "open": [clock_out(r) for r in p.open],
        "resolved": [clock_out(r) for r in p.resolved],
        "vex": [vex_out(v) for v in p.vex],
    }


def store_out(s: StoreCompliance) -> dict[str, Any]:
    return {
        "near_breach": [{"product": listing_ref(li), "clock": clock_out(r)} for li, r in s.near_breach],
        "on_hold": [listing_ref(li) for li in s.on_hold],
        "revoked": [listing_ref(li) for li in s.revoked],
        "pending_vex": [{"product": listing_ref(li), "statement": vex_out(v)} for v, li in s.pending_vex],
    }
