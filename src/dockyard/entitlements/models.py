"""Who may pull what from the store: entitlements (a customer's right to a product's tier, free today and
paid once commerce lands, which then adds its own subscription rows pointing here) and download events
(every manifest GET on a store path: the raw facts of the publishers' monthly reports)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy import true as sa_true
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db import Base, utcnow


class EntitlementKind(StrEnum):
    FREE = "free"
    PAID = "paid"
    GRANT = "grant"  # given by the store team or the publisher (trials, partners), no payment


class EntitlementStatus(StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"  # by the customer; a paid one may run to ``ends_at``
    REVOKED = "revoked"  # by the store team or the publisher
    EXPIRED = "expired"


class Entitlement(Base):
    """A customer's right to one tier of one product. One row per (user, product, tier): getting a tier
    again re-activates it, so the history of a customer's use of a tier is one row plus the audit log."""

    __tablename__ = "entitlement"
    __table_args__ = (
        UniqueConstraint("user_id", "product_id", "tier"),
        Index("ix_entitlement_product_id_status", "product_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    tier: Mapped[str] = mapped_column(String(60))  # the tier's name in the manifest
    kind: Mapped[str] = mapped_column(String(16), default=EntitlementKind.FREE.value)
    status: Mapped[str] = mapped_column(String(16), default=EntitlementStatus.ACTIVE.value)
    # The licence the customer accepted: its link as the live revision gave it, and when.
    license_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    license_accepted_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("product_revision.id", ondelete="SET NULL"), nullable=True
    )  # the live revision when it was got
    # Security notices about the product (the compliance work sends them); on unless the customer says no.
    notify_security: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    ends_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class DownloadEvent(Base):
    """One manifest GET on a store path. Written in batches off the pull path; never updated."""

    __tablename__ = "download_event"
    __table_args__ = (Index("ix_download_event_product_id_at", "product_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publisher.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True
    )  # None: an anonymous pull of a tier that allows it
    entitlement_id: Mapped[int | None] = mapped_column(
        ForeignKey("entitlement.id", ondelete="SET NULL"), nullable=True
    )  # None: a member of the publisher or the store team
    tier: Mapped[str | None] = mapped_column(String(60), nullable=True)
    paid: Mapped[bool] = mapped_column(Boolean)
    image: Mapped[str] = mapped_column(String(64))
    tag: Mapped[str | None] = mapped_column(String(128), nullable=True)  # None when pulled by digest
    digest: Mapped[str] = mapped_column(String(100))
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
