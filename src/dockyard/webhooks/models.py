"""Webhook endpoints (a publisher's or a customer's), the deliveries queued for them, and every attempt.

An endpoint belongs to exactly one owner: a publisher (managed by the organisation's owners) or a user (a
customer). Its secret is sealed (``signing.SecretBox``): it must be kept to sign, so it cannot be hashed.
A delivery is one event for one endpoint; its ``event_id`` is the body's ``id`` and the
``Dockyard-Delivery`` header, the same on every attempt and redelivery, so receivers can drop duplicates.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy import true as sa_true
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db import Base, utcnow


class WebhookKind(StrEnum):
    """What an endpoint may subscribe to."""

    FINDING_CREATED = "finding.created"
    FINDING_RESOLVED = "finding.resolved"
    PRODUCT_HOLD = "product.hold"
    PRODUCT_HOLD_LIFTED = "product.hold_lifted"
    PRODUCT_REVOKED = "product.revoked"
    PRODUCT_PUBLISHED = "product.published"


# Scan results are private to the publisher and the store team: customers never get finding.* events.
PUBLISHER_ONLY = frozenset({WebhookKind.FINDING_CREATED, WebhookKind.FINDING_RESOLVED})
PING = "ping"  # the test event an owner sends by hand; no endpoint subscribes to it


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # queued, or waiting for its next retry
    DELIVERED = "delivered"  # a 2xx answer came back
    FAILED = "failed"  # every retry failed (or the endpoint was off); a redelivery may still succeed


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoint"
    __table_args__ = (CheckConstraint("(publisher_id IS NULL) <> (user_id IS NULL)", name="one_owner"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    publisher_id: Mapped[int | None] = mapped_column(
        ForeignKey("publisher.id", ondelete="CASCADE"), nullable=True, index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), nullable=True, index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    kinds: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret_sealed: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    description: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # Deliveries in a row that ended failed (after every retry); any 2xx answer resets it.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set when dockyard turned the endpoint off by itself (too many failures); cleared when turned on.
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_delivery_endpoint_id_created_at", "endpoint_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoint.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)  # the exact JSON sent, every attempt the same bytes
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempt"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_delivery.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    manual: Mapped[bool] = mapped_column(Boolean, default=False)  # a redelivery asked for by a person
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_excerpt: Mapped[str] = mapped_column(Text, default="")  # at most 2 KiB of the answer's body
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # no answer: why (timeout, refused...)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "manual": self.manual,
            "at": self.at,
            "duration_ms": self.duration_ms,
            "status_code": self.status_code,
            "response_excerpt": self.response_excerpt,
            "error": self.error,
            "ok": self.ok,
        }
