"""Vulnerability data (advisories from the feeds, the packages they affect, how far each feed was read) and
scan results (layer facts, image scans, components, findings).

Reads are shaped for the matcher: it fetches every ``AffectedPackage`` for a batch of (ecosystem, name)
pairs through ``ix_vuln_affected_ecosystem_name`` and then the advisories' precomputed score columns, so
nothing is parsed or scored while an image is matched.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dockyard.db import Base, utcnow


class Advisory(Base):
    """One record of a feed (CVE-..., DSA-..., PYSEC-..., GO-..., ALPINE-CVE-..., NSWG-ECO-..., NSWG-COR-...).

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


# ---- scan results ---------------------------------------------------------------------------------------
#
# Images are content-addressed, so scan results are global per manifest digest, whatever repositories hold it.
# Matching is done once per distinct package key (``ScanPackage``: ecosystem, name, version as the matcher
# looks them up) into ``ScanPackageVuln`` verdicts; an image's open findings are its components joined with
# those verdicts. A finding row is narrow (ids, class, times): what it says (fix, score, vector, summary) is
# read from the live verdict while it is open and copied into ``detail`` when it is resolved. After a feed
# update only the verdicts that changed are fanned out, in a few set-based statements, to the images holding
# their packages, so re-matching every image reads no layer and rewrites no unchanged finding.

SEVERITY_CLASSES = ("Critical", "Major", "Minor", "Unscored")


class LayerIndex(Base):
    """What one layer blob contributes (``LayerFacts`` JSON), indexed once for every image that shares it."""

    __tablename__ = "scan_layer"

    digest: Mapped[str] = mapped_column(String(160), primary_key=True)
    format: Mapped[int] = mapped_column(Integer)  # indexer.FORMAT when indexed; another one is stale
    status: Mapped[str] = mapped_column(String(8))  # ok | error
    error: Mapped[str | None] = mapped_column(Text)
    facts: Mapped[str | None] = mapped_column(Text)  # LayerFacts.to_json(), None on error
    indexed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ImageScan(Base):
    """The scan of one manifest: an image (one platform) or an index (its platforms are ``children``)."""

    __tablename__ = "scan_image"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(8), default="image")  # image | index
    media_type: Mapped[str | None] = mapped_column(String(255))
    # queued | indexing | done | error | skipped (an artifact that is not a container image)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    error: Mapped[str | None] = mapped_column(Text)
    format: Mapped[int | None] = mapped_column(Integer)  # indexer.FORMAT of the components
    platform: Mapped[str | None] = mapped_column(String(64))
    os_id: Mapped[str | None] = mapped_column(String(64))
    os_version: Mapped[str | None] = mapped_column(String(64))
    os_pretty_name: Mapped[str | None] = mapped_column(String(255))
    os_ecosystem: Mapped[str | None] = mapped_column(String(64))  # what OS packages match under: Debian:12
    layers: Mapped[list[str]] = mapped_column(JSON, default=list)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    indexed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    matched_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # Open findings per effective class (an index: distinct findings over its platforms).
    critical: Mapped[int] = mapped_column(Integer, default=0)
    major: Mapped[int] = mapped_column(Integer, default=0)
    minor: Mapped[int] = mapped_column(Integer, default=0)
    unscored: Mapped[int] = mapped_column(Integer, default=0)

    children: Mapped[list[ImageChild]] = relationship(
        foreign_keys="ImageChild.index_id", order_by="ImageChild.position", viewonly=True
    )

    @property
    def counts(self) -> dict[str, int]:
        values = (self.critical, self.major, self.minor, self.unscored)
        return dict(zip(SEVERITY_CLASSES, values, strict=True))


class ImageChild(Base):
    """A platform manifest of an index."""

    __tablename__ = "scan_image_child"

    index_id: Mapped[int] = mapped_column(ForeignKey("scan_image.id", ondelete="CASCADE"), primary_key=True)
    child_id: Mapped[int] = mapped_column(
        ForeignKey("scan_image.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    platform: Mapped[str | None] = mapped_column(String(64))


class ScanPackage(Base):
    """A distinct (ecosystem, name, version) the matcher looks up, shared by every image containing it."""

    __tablename__ = "scan_package"
    __table_args__ = (UniqueConstraint("ecosystem", "name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ecosystem: Mapped[str] = mapped_column(String(64))  # the matched ecosystem: Debian:12, PyPI, ...
    name: Mapped[str] = mapped_column(String(512))  # the matched name (the source package for OS packages)
    version: Mapped[str] = mapped_column(String(255))
    component_ecosystem: Mapped[str] = mapped_column(String(16))  # Debian | Alpine | RPM | PyPI | ...
    matched_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # None: verdicts not computed yet


class ScanPackageVuln(Base):
    """The current verdict: package ``package_id`` is affected by ``vuln_id``."""

    __tablename__ = "scan_package_vuln"
    __table_args__ = (UniqueConstraint("package_id", "vuln_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("scan_package.id", ondelete="CASCADE"))
    vuln_id: Mapped[str] = mapped_column(String(128))
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    fixed_version: Mapped[str | None] = mapped_column(String(255))
    score: Mapped[float | None] = mapped_column(Float)
    vector: Mapped[str | None] = mapped_column(String(256))
    severity: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(String(512), default="")
    # Where the score came from (``severity.source_label``: "nvd (primary) v3.1") and the record whose vector
    # it is ("NVD-CVE-2024-1"); None when unscored.
    score_source: Mapped[str | None] = mapped_column(String(128))
    score_record: Mapped[str | None] = mapped_column(String(128))
    generation: Mapped[int] = mapped_column(Integer, default=0, index=True)  # the re-match that last wrote it


class ImageComponent(Base):
    """A package installed in an image (one platform)."""

    __tablename__ = "scan_component"
    __table_args__ = (UniqueConstraint("image_id", "component_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("scan_image.id", ondelete="CASCADE"))
    component_key: Mapped[str] = mapped_column(String(1024))  # the purl (unique in the image)
    name: Mapped[str] = mapped_column(String(512))
    version: Mapped[str] = mapped_column(String(255))
    ecosystem: Mapped[str] = mapped_column(String(16))
    purl: Mapped[str] = mapped_column(String(1024))
    source_name: Mapped[str | None] = mapped_column(String(512))
    source_version: Mapped[str | None] = mapped_column(String(255))
    arch: Mapped[str | None] = mapped_column(String(32))
    layer_digest: Mapped[str | None] = mapped_column(String(160))
    path: Mapped[str | None] = mapped_column(String(1024))
    # None when the component cannot be matched (an OS package of a release without a feed).
    package_id: Mapped[int | None] = mapped_column(ForeignKey("scan_package.id"), index=True)


class ScanFinding(Base):
    """One vulnerability in one component of one image; resolved (not deleted) when it goes away.

    The table has one index besides its key: the unique (image, vulnerability, component), which serves
    every read (they ask by image, or by image and vulnerability). A re-match reaches the findings of a
    verdict (package, vulnerability) through the components holding the package (``scan_component`` is
    indexed by package) and this key: an open finding's component is always there with that package, since
    a scan resolves the findings of components that went away. Indexes by (package, vulnerability) and by
    vulnerability (dropped in migration 0018) cost a fleet's first match more than half its time: a million
    findings are written in image order, and those indexes take them in random order.

    ``image_id`` has no foreign key (dropped in migration 0020): checking it cost every inserted finding a
    lookup of its image (on PostgreSQL a trigger and a row lock each, a third of a fleet's first match).
    Findings are only written for the components of an image, which do reference it, and the one place that
    deletes images (``ScanService.prune``) deletes their findings first.
    """

    __tablename__ = "scan_finding"
    __table_args__ = (UniqueConstraint("image_id", "vuln_id", "component_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(Integer)  # a scan_image id; no foreign key: see above
    vuln_id: Mapped[str] = mapped_column(String(128))  # the CVE when there is one
    component_key: Mapped[str] = mapped_column(String(1024))
    package_id: Mapped[int | None] = mapped_column(Integer)  # the ScanPackage it was matched through
    severity: Mapped[str] = mapped_column(String(16))  # computed from the verdict's score
    override_severity: Mapped[str | None] = mapped_column(String(16))  # set by store staff
    override_reason: Mapped[str | None] = mapped_column(Text)
    override_by: Mapped[str | None] = mapped_column(String(255))
    override_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    first_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # None while open
    reopened_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # What the finding said when it was resolved (the verdict, and the component if it went away).
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    @property
    def effective_severity(self) -> str:
        return self.override_severity or self.severity
