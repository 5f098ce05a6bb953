"""The storefront's own tables: one listing per product on the store (what search, the home page and the
product page read, kept from the live revision when it is published), the platforms of its pinned images
(the ``arch=`` filter and its facet), and the badges the store team grants."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db import Base, utcnow


class ListingStatus(StrEnum):
    """Where a listing stands with the compliance rules (set by that work; the storefront shows a label)."""

    LISTED = "listed"
    ON_HOLD = "on_hold"  # a fix deadline was missed: still listed, with a warning label
    REVOKED = "revoked"  # a month on hold: off search and the home page, its page says why


class BadgeKind(StrEnum):
    CERTIFIED_CONTAINER = "certified_container"
    CERTIFIED_PLUGIN = "certified_plugin"
    CERTIFIED_INFRASTRUCTURE = "certified_infrastructure"
    OFFICIAL = "official"


# What each badge certifies: the tooltip on every page that shows one, and the API's description.
BADGE_MEANINGS: dict[BadgeKind, tuple[str, str]] = {
    BadgeKind.CERTIFIED_CONTAINER: (
        "Certified Container",
        "Built with best practices, tested, and supported by its publisher; scanned with no open Critical "
        "findings when certified.",
    ),
    BadgeKind.CERTIFIED_PLUGIN: (
        "Certified Plugin",
        "A container-engine plugin tested against the engine and supported by its publisher.",
    ),
    BadgeKind.CERTIFIED_INFRASTRUCTURE: (
        "Certified Infrastructure",
        "Infrastructure (an engine, a cloud or an OS) on which the store's products are tested to run.",
    ),
    BadgeKind.OFFICIAL: ("Official", "Published by the maker of the software it contains."),
}

CERTIFIED_KINDS = frozenset(
    {BadgeKind.CERTIFIED_CONTAINER, BadgeKind.CERTIFIED_PLUGIN, BadgeKind.CERTIFIED_INFRASTRUCTURE}
)


class Listing(Base):
    """A product as the store shows it: copied from its live revision when published (and from the
    publisher profile), so that search and the storefront never parse manifests. Removed when unpublished.
    The full-text index over these rows is the dialect's own (FTS5 on SQLite, a tsvector on PostgreSQL)."""

    __tablename__ = "listing"
    __table_args__ = (
        UniqueConstraint("publisher_slug", "product_slug"),
        Index("ix_listing_status_published_at", "status", "published_at"),
        Index("ix_listing_status_downloads", "status", "downloads"),
        Index("ix_listing_category", "category"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"), unique=True)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publisher.id", ondelete="CASCADE"), index=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("product_revision.id", ondelete="CASCADE"))
    publisher_slug: Mapped[str] = mapped_column(String(255))  # the organisation's name
    product_slug: Mapped[str] = mapped_column(String(64))
    publisher_name: Mapped[str] = mapped_column(String(200))  # the legal entity name
    name: Mapped[str] = mapped_column(String(100))
    short_description: Mapped[str] = mapped_column(String(1000), default="")
    long_description: Mapped[str] = mapped_column(Text, default="")  # Markdown source, for search
    category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    logo_id: Mapped[int | None] = mapped_column(
        ForeignKey("catalog_image.id", ondelete="SET NULL"), nullable=True
    )
    free: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())  # has a free tier
    certified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    downloads: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # {"server": {"16.2": {"platforms": ["linux/amd64"], "size": 123, "digest": "sha256:..."}}} for the
    # product page, without reading manifests on each view.
    images: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=ListingStatus.LISTED.value)
    status_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    status_since: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    published_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)  # first published
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)  # latest revision live


class ListingPlatform(Base):
    """One platform (``linux/amd64``) offered by a listing's pinned images."""

    __tablename__ = "listing_platform"

    listing_id: Mapped[int] = mapped_column(ForeignKey("listing.id", ondelete="CASCADE"), primary_key=True)
    platform: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class ProductBadge(Base):
    """A badge on a product, granted by a store-admin with a reason (audited). One of each kind at most."""

    __tablename__ = "product_badge"
    __table_args__ = (UniqueConstraint("product_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    granted_by: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True
    )
    granted_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
