"""Read models of scan results for the JSON API and the pages: an image's report and finding lists.

Callers check ``ScanService.visible_to`` first; nothing here knows who is asking.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select, true
from sqlalchemy.orm import Session

from dockyard.errors import Invalid
from dockyard.registry.reads import RegistryReads
from dockyard.scanning.models import (
    SEVERITY_CLASSES,
    ImageChild,
    ImageComponent,
    ImageScan,
    ScanFinding,
    ScanPackage,
    ScanPackageVuln,
)
from dockyard.scanning.severity import Severity, sla_hours

_RANK = {name: i for i, name in enumerate(SEVERITY_CLASSES)}
STATES = ("open", "resolved", "all")
MAX_FINDINGS = 1000  # the most findings one ``list_findings`` call returns


# How a finding reaches its component and its live verdict (fix, score, summary): the joins every reader of
# findings makes.
FINDING_COMPONENT = and_(
    ImageComponent.image_id == ScanFinding.image_id, ImageComponent.component_key == ScanFinding.component_key
)
FINDING_VERDICT = and_(
    ScanPackageVuln.package_id == ScanFinding.package_id, ScanPackageVuln.vuln_id == ScanFinding.vuln_id
)


@dataclass(frozen=True)
class Override:
    """Store staff's reclassification of a finding."""

    severity: str | None  # None: the override was cleared (the computed class applies again)
    reason: str
    by: str | None
    at: dt.datetime | None


@dataclass(frozen=True)
class FindingView:
    """One finding as the API and pages show it."""

    id: int
    image_digest: str
    platform: str | None
    vulnerability: str  # the CVE when there is one
    aliases: tuple[str, ...]
    summary: str
    score: float | None  # CVSS base score, computed from ``vector``
    vector: str | None
    score_source: str | None  # feed, NVD metric kind and CVSS version: "nvd (primary) v3.1"
    score_record: str | None  # the record whose vector scored it: "NVD-CVE-2024-1"
    severity: str  # the effective class: staff's override, else the computed one
    computed_severity: str
    override: Override | None
    component: str  # package name
    component_version: str
    ecosystem: str | None
    purl: str
    installed: str  # the version matched (the source package's for OS packages)
    fixed_version: str | None  # None: no fix released yet
    layer: str | None  # digest of the layer that introduced the component
    path: str | None  # the file the component was read from
    first_seen_at: dt.datetime
    resolved_at: dt.datetime | None
    reopened_at: dt.datetime | None
    due_at: dt.datetime | None  # the remediation SLA's deadline while open (Critical 72 h, Major 7 days)

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


@dataclass(frozen=True)
class ComponentView:
    """One installed package of an image."""

    name: str
    version: str
    ecosystem: str
    purl: str
    source_name: str | None
    source_version: str | None
    arch: str | None
    layer: str | None
    path: str | None


@dataclass(frozen=True)
class PlatformScan:
    """One platform of an index."""

    digest: str
    platform: str | None
    status: str
    error: str | None
    counts: dict[str, int]


@dataclass(frozen=True)
class ScanSummary:
    """The state and open-finding counts of one manifest's scan, as lists of images show it."""

    digest: str
    kind: str  # image | index
    status: str  # queued | indexing | done | error | skipped
    error: str | None
    counts: dict[str, int]  # open findings per effective class

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class ImageReport:
    """What the scanner knows about one manifest of a repository."""

    repository: str
    digest: str
    kind: str  # image | index | unknown (never scanned)
    media_type: str | None
    status: str  # queued | indexing | done | error | skipped | unscanned
    error: str | None
    platform: str | None
    os: dict[str, str | None] | None  # id, version, pretty_name, ecosystem
    layers: list[str]
    warnings: list[str]
    indexed_at: dt.datetime | None
    matched_at: dt.datetime | None
    counts: dict[str, int]  # open findings per effective class
    platforms: list[PlatformScan]  # an index's platforms; empty for an image
    findings: list[FindingView]  # worst first


def sort_key(f: FindingView) -> tuple[Any, ...]:
    """Worst class first, then highest score, vulnerability id, component and version."""
    return (_RANK.get(f.severity, len(_RANK)), -(f.score or 0.0), f.vulnerability, f.component, f.installed)


class ScanReads:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.registry = RegistryReads(session)  # what repositories hold and what their tags name

    def get_scan(self, digest: str) -> ImageScan | None:
        """The scan row of manifest ``digest``, or None when it was never queued."""
        return self.session.scalar(select(ImageScan).where(ImageScan.digest == digest))

    def summaries(self, digests: Iterable[str]) -> dict[str, ScanSummary]:
        """The scan summary of each of ``digests`` that was ever queued, in one statement (lists of tags)."""
        wanted = sorted(set(digests))
        if not wanted:
            return {}
        rows = self.session.execute(
            select(
                ImageScan.digest,
                ImageScan.kind,
                ImageScan.status,
                ImageScan.error,
                ImageScan.critical,
                ImageScan.major,
                ImageScan.minor,
                ImageScan.unscored,
            ).where(ImageScan.digest.in_(wanted))
        )
        return {
            r.digest: ScanSummary(
                r.digest,
                r.kind,
                r.status,
                r.error,
                dict(zip(SEVERITY_CLASSES, (r.critical, r.major, r.minor, r.unscored), strict=True)),
            )
            for r in rows
        }

    def layer_components(self, digest: str) -> dict[str, int]:
        """How many components each layer of image ``digest`` introduced (layer digest -> count)."""
        rows = self.session.execute(
            select(ImageComponent.layer_digest, func.count())
            .join(ImageScan, ImageScan.id == ImageComponent.image_id)
            .where(ImageScan.digest == digest, ImageComponent.layer_digest.is_not(None))
            .group_by(ImageComponent.layer_digest)
        )
        return {layer: count for layer, count in rows}

    def components(self, digest: str) -> list[ComponentView]:
        """The packages found in image ``digest`` (one platform), by ecosystem and name."""
        rows = self.session.scalars(
            select(ImageComponent)
            .join(ImageScan, ImageScan.id == ImageComponent.image_id)
            .where(ImageScan.digest == digest)
            .order_by(ImageComponent.ecosystem, ImageComponent.name, ImageComponent.version)
        )
        return [
            ComponentView(
                c.name,
                c.version,
                c.ecosystem,
                c.purl,
                c.source_name,
                c.source_version,
                c.arch,
                c.layer_digest,
                c.path,
            )
            for c in rows
        ]

    def report(self, repository: str, digest: str, *, include_resolved: bool = False) -> ImageReport:
        """The report of a manifest digest (the caller checked the repository holds it)."""
        scan = self.get_scan(digest)
        if scan is None:
            zero = dict.fromkeys(SEVERITY_CLASSES, 0)
            return ImageReport(
                repository,
                digest,
                "unknown",
                None,
                "unscanned",
                None,
                None,
                None,
                [],
                [],
                None,
                None,
                zero,
                [],
                [],
            )
        platforms: list[PlatformScan] = []
        images = [scan.id]
        if scan.kind == "index":
            for child, child_scan in self.session.execute(
                select(ImageChild, ImageScan)
                .join(ImageScan, ImageScan.id == ImageChild.child_id)
                .where(ImageChild.index_id == scan.id)
                .order_by(ImageChild.position)
            ):
                platform = child.platform or child_scan.platform
                platforms.append(
                    PlatformScan(
                        child_scan.digest, platform, child_scan.status, child_scan.error, child_scan.counts
                    )
                )
                images.append(child_scan.id)
        state = None if include_resolved else "open"
        findings = self._findings(ScanFinding.image_id.in_(images), state, limit=None)
        os_info = None
        if scan.os_id:
            os_info = {
                "id": scan.os_id,
                "version": scan.os_version,
                "pretty_name": scan.os_pretty_name,
                "ecosystem": scan.os_ecosystem,
            }
        return ImageReport(
            repository=repository,
            digest=digest,
            kind=scan.kind,
            media_type=scan.media_type,
            status=scan.status,
            error=scan.error,
            platform=scan.platform,
            os=os_info,
            layers=list(scan.layers or []),
            warnings=list(scan.warnings or []),
            indexed_at=scan.indexed_at,
            matched_at=scan.matched_at,
            counts=scan.counts,
            platforms=platforms,
            findings=sorted(findings, key=sort_key),
        )

    def list_findings(
        self,
        *,
        repository: str | None = None,
        digest: str | None = None,
        severity: str | None = None,
        vulnerability: str | None = None,
        state: str = "open",
        limit: int = 100,
        after: int | None = None,
    ) -> list[FindingView]:
        """Findings by id after ``after``, filtered by repository, image, class, vulnerability and state."""
        # digest: an index means its platforms; repository=None spans every image (staff's views).
        if state not in STATES:
            raise Invalid(f"state must be one of {', '.join(STATES)}")
        if not 1 <= limit <= MAX_FINDINGS:
            raise Invalid(f"limit must be between 1 and {MAX_FINDINGS}")
        conditions: list[Any] = []
        if repository is not None:
            held = self.registry.manifest_digests_in(repository)
            conditions.append(
                ScanFinding.image_id.in_(select(ImageScan.id).where(ImageScan.digest.in_(held)))
            )
        if digest is not None:
            image = select(ImageScan.id).where(ImageScan.digest == digest).scalar_subquery()
            children = select(ImageChild.child_id).where(ImageChild.index_id == image)
            conditions.append(ScanFinding.image_id.in_(children) | (ScanFinding.image_id == image))
        if severity is not None:
            wanted = next((s.value for s in Severity if s.value.lower() == severity.strip().lower()), None)
            if wanted is None:
                raise Invalid(f"unknown class {severity!r}")
            conditions.append(func.coalesce(ScanFinding.override_severity, ScanFinding.severity) == wanted)
        if vulnerability is not None:
            conditions.append(ScanFinding.vuln_id == vulnerability)
        if after is not None:
            conditions.append(ScanFinding.id > after)
        return self._findings(and_(true(), *conditions), None if state == "all" else state, limit=limit)

    def _findings(self, condition: Any, state: str | None, *, limit: int | None) -> list[FindingView]:
        query = (
            select(
                ScanFinding,
                ImageComponent,
                ScanPackageVuln,
                ScanPackage.version,
                ImageScan.digest,
                ImageScan.platform,
            )
            .join(ImageScan, ImageScan.id == ScanFinding.image_id)
            .outerjoin(ImageComponent, FINDING_COMPONENT)
            .outerjoin(ScanPackageVuln, FINDING_VERDICT)
            .outerjoin(ScanPackage, ScanPackage.id == ScanFinding.package_id)
            .where(condition)
            .order_by(ScanFinding.id)
        )
        if state == "open":
            query = query.where(ScanFinding.resolved_at.is_(None))
        elif state == "resolved":
            query = query.where(ScanFinding.resolved_at.is_not(None))
        if limit is not None:
            query = query.limit(limit)
        return [_view(*row) for row in self.session.execute(query)]


# What a finding says from its verdict (a resolved one keeps these in ``detail``: results.VERDICT_COLUMNS).
_SAID = ("aliases", "fixed_version", "score", "vector", "summary", "score_source", "score_record")


def _view(
    f: ScanFinding,
    component: ImageComponent | None,
    verdict: ScanPackageVuln | None,
    installed: str | None,
    digest: str,
    platform: str | None,
) -> FindingView:
    # Open: the live verdict and component. Resolved: what was kept when it went away (the live rows may be
    # gone or say something else by now).
    kept = f.detail if f.resolved_at is not None and f.detail is not None else None
    said: dict[str, Any] = dict(kept) if kept is not None else {}
    if kept is None and verdict is not None:
        said = {c: getattr(verdict, c) for c in _SAID}
    was = (kept or {}).get("component") or {}
    effective = f.override_severity or f.severity
    override = (
        Override(f.override_severity, f.override_reason or "", f.override_by, f.override_at)
        if f.override_reason
        else None
    )
    hours = sla_hours(Severity(effective)) if effective in _RANK else None
    started = f.reopened_at or f.first_seen_at
    return FindingView(
        id=f.id,
        image_digest=digest,
        platform=platform,
        vulnerability=f.vuln_id,
        aliases=tuple(said.get("aliases") or ()),
        summary=said.get("summary") or "",
        score=said.get("score"),
        vector=said.get("vector"),
        score_source=said.get("score_source"),
        score_record=said.get("score_record"),
        severity=effective,
        computed_severity=f.severity,
        override=override,
        component=component.name if component else was.get("name", f.component_key),
        component_version=component.version if component else was.get("version", ""),
        ecosystem=component.ecosystem if component else None,
        purl=component.purl if component else was.get("purl", f.component_key),
        installed=installed or "",
        fixed_version=said.get("fixed_version"),
        layer=component.layer_digest if component else was.get("layer"),
        path=component.path if component else None,
        first_seen_at=f.first_seen_at,
        resolved_at=f.resolved_at,
        reopened_at=f.reopened_at,
        due_at=started + dt.timedelta(hours=hours) if hours and f.resolved_at is None else None,
    )
