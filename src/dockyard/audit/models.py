"""The append-only event log: every push, pull, delete and login, kept at least 180 days."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Insert, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db import Base, utcnow
from dockyard.events import Event


class AuditEvent(Base):
    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_repository_occurred", "repository", "occurred_at"),
        Index("ix_audit_event_tag_occurred", "tag", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    tag: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor_name: Mapped[str] = mapped_column(String(255))
    actor_kind: Mapped[str] = mapped_column(String(16))
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(512), nullable=True)
    namespace: Mapped[str | None] = mapped_column(String(255), nullable=True)
    repository: Mapped[str | None] = mapped_column(String(512), nullable=True)
    digest: Mapped[str | None] = mapped_column(String(160), nullable=True)
    reference: Mapped[str | None] = mapped_column(String(255), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    @classmethod
    def from_event(cls, event: Event) -> AuditEvent:
        return cls(**cls.row_from_event(event))

    @classmethod
    @functools.cache
    def insert_statement(cls) -> Insert:
        """The INSERT of one audit row, built once (it runs in every request that changes something)."""
        return cls.__table__.insert()

    @staticmethod
    def row_from_event(event: Event) -> dict[str, Any]:
        """The column values of the audit row for ``event``."""
        actor = event.actor
        return dict(
            occurred_at=utcnow(),
            tag=str(event.tag),
            actor_id=actor.user_id,
            actor_name=actor.name,
            actor_kind=actor.kind,
            ip=actor.ip,
            user_agent=(actor.user_agent or "")[:512] or None,
            namespace=event.namespace,
            repository=event.repository,
            digest=event.digest,
            reference=event.reference,
            data=event.data or {},
        )
