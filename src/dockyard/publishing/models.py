"""Publishers (one per organisation), their images for the catalogue (logos, screenshots), products and
their revisions, and the review thread between a publisher and the store team."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dockyard.db import Base, utcnow


class Publisher(Base):
    """An organisation's publisher profile: who stands behind its products (the onboarding of the seed)."""

    __tablename__ = "publisher"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespace.id", ondelete="CASCADE"), unique=True)
    legal_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    website: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)  # E.164
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    # Set when a link mailed to ``email`` was opened; cleared when the address changes.
    email_verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    logo_id: Mapped[int | None] = mapped_column(
        ForeignKey("catalog_image.id", ondelete="SET NULL", use_alter=True), nullable=True
    )
    story: Mapped[str] = mapped_column(Text, default="", server_default="")  # Markdown
    agreement_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    agreement_accepted_by: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True
    )
    agreement_accepted_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    logo: Mapped[CatalogImage | None] = relationship(foreign_keys=[logo_id])


class PublisherEmailToken(Base):
    """A link mailed to a publisher's company address: only the SHA-256 of its secret is stored, with the
    address (a link proves access to that address, and no other)."""

    __tablename__ = "publisher_email_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publisher.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class CatalogImageKind(StrEnum):
    LOGO = "logo"
    SCREENSHOT = "screenshot"


class CatalogImage(Base):
    """A logo or screenshot uploaded by a publisher, checked and re-encoded: ``renditions`` maps a size name
    (``"512"``, ``"128"``, ``"64"``, ``"full"``) to the digest of its bytes in the blob store (under the
    driver's ``assets/`` keys, out of the registry's garbage collection)."""

    __tablename__ = "catalog_image"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publisher.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    renditions: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True
    )


class Product(Base):
    """A product of a publisher: a live (published) revision, at most one working revision."""

    __tablename__ = "product"
    __table_args__ = (UniqueConstraint("publisher_id", "slug"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("publisher.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(64))
    # use_alter: product and product_revision point at each other.
    live_revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("product_revision.id", ondelete="SET NULL", use_alter=True), nullable=True
    )
    working_revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("product_revision.id", ondelete="SET NULL", use_alter=True), nullable=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True
    )
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    publisher: Mapped[Publisher] = relationship()
    live_revision: Mapped[ProductRevision | None] = relationship(foreign_keys=[live_revision_id])
    working_revision: Mapped[ProductRevision | None] = relationship(foreign_keys=[working_revision_id])


class RevisionState(StrEnum):
    """The states of a revision; ``moderation.states`` says who may move it from one to another."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    IN_REVIEW = "in_review"
    CHANGES_REQUESTED = "changes_requested"
    RESUBMITTED = "resubmitted"
    APPROVED = "approved"
    PUBLISHED = "published"  # the live revision
    SUPERSEDED = "superseded"  # was live, replaced by a newer published revision
    UNPUBLISHED = "unpublished"  # taken off the store by a store-admin
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class ProductRevision(Base):
    """One version of a product's manifest. Frozen from submission on; ``pins`` (set when published) maps
    each image name to its tags' digests, which is what customers get until the next revision is live."""

    __tablename__ = "product_revision"
    __table_args__ = (
        UniqueConstraint("product_id", "number"),
        Index("ix_product_revision_state_submitted_at", "state", "submitted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(24), default=RevisionState.DRAFT.value)
    # The manifest as publishing.manifest.ProductManifest dumps it (images by catalog_image id).
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # {"server": {"repository": "acme/db-server", "tags": {"16.2": "sha256:...", ...}}, ...}
    pins: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True
    )
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime, nullable=True
    )  # the latest (re)submission
    claimed_by: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True
    )
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    decided_by: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True
    )
    # Approving with open Critical findings needs a reason, shown on the review page and audited.
    override_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    product: Mapped[Product] = relationship(foreign_keys=[product_id])


class RevisionTransition(Base):
    """Each move of a revision from one state to another: who, when and why (also an audit event)."""

    __tablename__ = "revision_transition"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision_id: Mapped[int] = mapped_column(
        ForeignKey("product_revision.id", ondelete="CASCADE"), index=True
    )
    from_state: Mapped[str] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True
    )
    actor_name: Mapped[str] = mapped_column(String(255))
    comment: Mapped[str] = mapped_column(Text, default="", server_default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CommentAnchor(StrEnum):
    NONE = "none"
    FIELD = "field"  # a manifest field by its path, e.g. "tiers[1].price"
    IMAGE = "image"  # an image of the manifest by its name
    FINDING = "finding"  # a scan finding, "<image>@<digest>/<vulnerability id>"


class ReviewComment(Base):
    """A message in a product's review thread. ``internal`` ones are between reviewers only: they never
    reach the publisher (page, API or email)."""

    __tablename__ = "review_comment"
    __table_args__ = (Index("ix_review_comment_product_id_created_at", "product_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    revision_id: Mapped[int] = mapped_column(
        ForeignKey("product_revision.id", ondelete="CASCADE"), index=True
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("review_comment.id", ondelete="CASCADE"), nullable=True
    )
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True
    )
    author_name: Mapped[str] = mapped_column(String(255))
    from_store: Mapped[bool] = mapped_column(Boolean)  # written by the store team (else by the publisher)
    internal: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    anchor_kind: Mapped[str] = mapped_column(String(16), default=CommentAnchor.NONE.value)
    anchor: Mapped[str] = mapped_column(String(512), default="", server_default="")
    body: Mapped[str] = mapped_column(Text)  # Markdown
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
