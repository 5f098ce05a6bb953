"""The enforcement loop's rows: one fix-time clock per open finding of a live product, and the VEX
statements publishers file against findings.

A clock is the state of one finding (one vulnerability in one component of one pinned image) of a product's
live revision: when the publisher was told (``notified_at``), when the fix is due (``due_at``, from the
class at notice: Critical 72 hours, Major 7 days, none for Minor and Unscored), any extension, and how it
ended. Everything the periodic check decides is computed from these stored times, so a restart loses
nothing and a check that runs late decides as if it had run on time.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db import Base, utcnow


class Resolution(StrEnum):
    """How a clock ended."""

    FIXED = "fixed"  # the live revision no longer has the finding (a published fix)
    FEED = "feed"  # the feed withdrew or fixed the advisory: the finding itself was resolved by a re-match
    VEX = "vex"  # the store team accepted the publisher's VEX statement
    UNPUBLISHED = "unpublished"  # the product left the store


class FindingClock(Base):
    """The fix-time clock of one open finding on one live product."""

    __tablename__ = "compliance_clock"
    __table_args__ = (
        UniqueConstraint("product_id", "finding_id"),
        # The periodic check reads the open clocks that are due or not yet told, by product.
        Index("ix_compliance_clock_open_due", "resolved_at", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"), index=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("product_revision.id", ondelete="CASCADE"))
    finding_id: Mapped[int] = mapped_column(ForeignKey("scan_finding.id", ondelete="CASCADE"), index=True)
    image: Mapped[str] = mapped_column(String(64))  # the image's name in the product (the pin's key)
    digest: Mapped[str] = mapped_column(String(160))  # the platform manifest the finding is in
    platform: Mapped[str | None] = mapped_column(String(64))
    vuln_id: Mapped[str] = mapped_column(String(128))
    component: Mapped[str] = mapped_column(String(1024))  # the component's purl
    severity: Mapped[str] = mapped_column(String(16))  # the effective class the clock runs for
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    notified_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # first email or dashboard notice
    notified_via: Mapped[str | None] = mapped_column(String(16))  # email | digest | dashboard
    due_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # None: no deadline (or not told yet)
    # An extension by the store team: the due time it replaced, why, who, when.
    extended_from: Mapped[dt.datetime | None] = mapped_column(DateTime)
    extension_reason: Mapped[str | None] = mapped_column(Text)
    extended_by: Mapped[str | None] = mapped_column(String(255))
    extended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    resolution: Mapped[str | None] = mapped_column(String(16))  # Resolution


class VexStatus(StrEnum):
    """OpenVEX statuses a publisher may claim (``affected`` and ``under_investigation`` close nothing)."""

    NOT_AFFECTED = "not_affected"
    FIXED = "fixed"


class VexJustification(StrEnum):
    """OpenVEX's justifications for ``not_affected``."""

    COMPONENT_NOT_PRESENT = "component_not_present"
    VULNERABLE_CODE_NOT_PRESENT = "vulnerable_code_not_present"
    VULNERABLE_CODE_NOT_IN_EXECUTE_PATH = "vulnerable_code_not_in_execute_path"
    VULNERABLE_CODE_CANNOT_BE_CONTROLLED_BY_ADVERSARY = "vulnerable_code_cannot_be_controlled_by_adversary"
    INLINE_MITIGATIONS_ALREADY_EXIST = "inline_mitigations_already_exist"


class VexDecision(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class VexStatement(Base):
    """A publisher's statement that a vulnerability does not affect (or is fixed in) a product's images,
    for one component or all; it resolves the matching clocks once the store team accepts it."""

    __tablename__ = "compliance_vex"
    __table_args__ = (Index("ix_compliance_vex_product_vuln", "product_id", "vuln_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    vuln_id: Mapped[str] = mapped_column(String(128))
    component: Mapped[str | None] = mapped_column(String(1024))  # a purl; None: every component
    status: Mapped[str] = mapped_column(String(16))  # VexStatus
    justification: Mapped[str | None] = mapped_column(String(64))  # VexJustification (not_affected)
    impact_statement: Mapped[str] = mapped_column(Text, default="")
    submitted_by: Mapped[str] = mapped_column(String(255))
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    decision: Mapped[str] = mapped_column(String(16), default=VexDecision.PENDING.value)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)
