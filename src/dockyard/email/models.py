"""The outbox: one row per mail, rendered when queued, kept with its delivery attempts."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db import Base, utcnow


class MailStatus(StrEnum):
    QUEUED = "queued"  # waiting for its job (first try or a retry)
    SENT = "sent"
    FAILED = "failed"  # given up: refused for good, or out of attempts; kept for inspection


class OutboundEmail(Base):
    """A mail as it will be sent: rendered at queue time, so a template error fails the action that caused
    the mail (not a job, later, out of sight) and the row shows exactly what went out."""

    __tablename__ = "email_outbox"
    __table_args__ = (Index("ix_email_outbox_status_created_at", "status", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Made at queue time and kept across retries, so a receiver can tell a resend from a new mail.
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    template: Mapped[str] = mapped_column(String(64))
    from_address: Mapped[str] = mapped_column(String(320))
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998))  # RFC 5322's longest line
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=MailStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)  # also the Date header
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
