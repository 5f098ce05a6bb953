"""Vulnerability data: advisories from the feeds, the packages they affect, and how far each feed was read.

Reads are shaped for the matcher: it fetches every ``AffectedPackage`` for a batch of (ecosystem, name)
pairs through ``ix_vuln_affected_ecosystem_name`` and then the advisories' precomputed score columns, so
nothing is parsed or scored while an image is matched.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dockyard.db import Base, utcnow

SUMMARY_MAX = 500
DETAILS_MAX = 8000


class Advisory(Base):
    """One record of a feed (CVE-..., DSA-..., PYSEC-..., GO-..., ALPINE-CVE-..., NPM-...).

    A withdrawn record stays as a tombstone (``withdrawn`` set, no affected packages) so that an older copy
    of it met in a later ingest cannot bring it back.
    """

    __tablename__ = "vuln_advisory"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), index=True)  # osv:Debian | alpine-secdb | npm-legacy ...
    modified: Mapped[dt.datetime | None] = mapped_column(DateTime)
    published: Mapped[dt.datetime | None] = mapped_column(DateTime)
    withdrawn: Mapped[dt.datetime | None] = mapped_column(DateTime)
    summary: Mapped[str] = mapped_column(String(512), default="")
    details: Mapped[str] = mapped_column(Text, default="")
    # The same vulnerability under other names (OSV aliases, Debian's "upstream"); findings merge on these.
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Related but not the same (OSV "related", e.g. the CVEs a DSA fixes).
    related: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The record's own vectors: [{"type": "CVSS_V3", "vector": "CVSS:3.1/..."}, ...]
    severity: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    # Computed at ingest from a vector (ours, or an alias's when we have none); never a feed's number.
    score: Mapped[float | None] = mapped_column(Float)
    cvss_vector: Mapped[str | None] = mapped_column(String(256))
    cvss_version: Mapped[str | None] = mapped_column(String(4))  # v2 | v3 | v4
    score_from: Mapped[str | None] = mapped_column(String(128))  # the alias the score was borrowed from
    # sha256 of the normalised record: tells a changed record from a replayed one when ``modified`` cannot
    # (feeds without it, or go-vulndb's repository copy where every record says 0001-01-01).
    digest: Mapped[str] = mapped_column(String(64))
    ingested_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    affected: Mapped[list[AffectedPackage]] = relationship(
        back_populates="advisory", cascade="all, delete-orphan", passive_deletes=True
    )


class AffectedPackage(Base):
    """One package (in one ecosystem) an advisory affects, with OSV ranges and explicit versions.

    ``ranges`` are OSV ranges:
    ``[{"type": "ECOSYSTEM"|"SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.2-3"}]}]``
    (GIT ranges are dropped at ingest: no image carries commit hashes), plus the ``NPM_RANGE`` type
    ``{"type": "NPM_RANGE", "expression": "<4.17.5", "patched": ">=4.17.5"}`` for npm's legacy advisories.
    """

    __tablename__ = "vuln_affected"
    __table_args__ = (Index("ix_vuln_affected_ecosystem_name", "ecosystem", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    advisory_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("vuln_advisory.id", ondelete="CASCADE"), index=True
    )
    ecosystem: Mapped[str] = mapped_column(String(64))  # Debian:12 | Alpine:v3.19 | PyPI | npm | Go | Maven
    name: Mapped[str] = mapped_column(String(512))  # normalised: see vulndb.normalize_name
    ranges: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    versions: Mapped[list[str]] = mapped_column(JSON, default=list)

    advisory: Mapped[Advisory] = relationship(back_populates="affected")


class FeedState(Base):
    """How far one feed has been read."""

    __tablename__ = "vuln_feed_state"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_modified: Mapped[dt.datetime | None] = mapped_column(DateTime)  # the newest ``modified`` seen
    records: Mapped[int] = mapped_column(Integer, default=0)  # live (not withdrawn) advisories
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
