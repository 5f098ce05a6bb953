"""Per-user notification preferences, repository watches ("subscribe to new-vulnerability notifications")
and the findings told to each watch.

A watch's cursor (``noticed_until``) is a stored time: every finding of the repository's tagged images
first seen or reopened after it is new to the watch. Each finding told (or waiting for the digest) is an
``AlertItem`` keyed by the occurrence it tells (first seen, or the reopening), so a check that runs twice,
late or over an overlap mails nothing twice, and a reopened finding is told again.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy import true as sa_true
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db import Base, utcnow


class AlertPreference(Base):
    """One user's mail preferences (no row: the defaults, everything on)."""

    __tablename__ = "alert_preference"

    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True)
    # A new Critical finding mailed at once (off: it waits for the digest, if that is on).
    critical_now: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    # A daily digest of the other new findings (off: they are not mailed; the pages still show them).
    daily_digest: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    # When the last digest of watched repositories went out: at most one a day.
    digest_sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RepositoryWatch(Base):
    """A user's subscription to new-vulnerability notices of one repository."""

    __tablename__ = "alert_watch"
    __table_args__ = (UniqueConstraint("user_id", "repository_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # The cursor: findings first seen or reopened up to this time have been looked at for this watch.
    noticed_until: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Via(StrEnum):
    """How an item is told."""

    EMAIL = "email"  # at once (a Critical, immediate mail on)
    DIGEST = "digest"  # in the user's next daily digest
    OFF = "off"  # not mailed: the user turned that mail off
    DROPPED = "dropped"  # not mailed: resolved, or the user lost access, before the digest went out


class AlertItem(Base):
    """One occurrence of a finding (first seen, or a reopening) told, or to be told, to one watch."""

    __tablename__ = "alert_item"
    __table_args__ = (
        UniqueConstraint("watch_id", "finding_id", "seen_at"),
        # The mail step reads the items not mailed yet.
        Index("ix_alert_item_pending", "mailed_at", "via"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    watch_id: Mapped[int] = mapped_column(ForeignKey("alert_watch.id", ondelete="CASCADE"), index=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("scan_finding.id", ondelete="CASCADE"), index=True)
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime)  # the finding's reopened_at, else first_seen_at
    tags: Mapped[str] = mapped_column(String(512))  # the repository's tags pointing at the image, joined
    digest: Mapped[str] = mapped_column(String(160))  # the manifest the tags name
    image_digest: Mapped[str] = mapped_column(String(160))  # the platform manifest holding the finding
    severity: Mapped[str] = mapped_column(String(16))  # the effective class when told
    via: Mapped[str] = mapped_column(String(16))  # Via
    queued_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    mailed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # None: still to be mailed (digest)
