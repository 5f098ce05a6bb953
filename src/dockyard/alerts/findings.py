"""What the watch loop reads of the registry and the scanner: the open findings of the images a repository's
tags point to (an index: its platforms), first seen or reopened in a window; and what a mail says of each."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard.registry.models import Manifest, Tag
from dockyard.scanning.models import ImageChild, ImageComponent, ImageScan, ScanFinding, ScanPackageVuln
from dockyard.scanning.reads import FINDING_COMPONENT, FINDING_VERDICT


@dataclass(frozen=True)
class Occurrence:
    finding_id: int
    seen_at: dt.datetime
    tags: list[str]
    digest: str
    image_digest: str
    severity: str


def occurrences(
    session: Session, repository_id: int, since: dt.datetime, now: dt.datetime
) -> list[Occurrence]:
    """Open findings of the images the repository's tags point to (an index: its platforms), first seen
    or reopened in (since, now]."""
    tags_of: dict[str, list[str]] = {}
    for tag, digest in session.execute(
        select(Tag.name, Manifest.digest)
        .join(Manifest, Manifest.id == Tag.manifest_id)
        .where(Tag.repository_id == repository_id)
    ):
        tags_of.setdefault(digest, []).append(tag)
    if not tags_of:
        return []
    scans = session.execute(
        select(ImageScan.id, ImageScan.digest, ImageScan.kind).where(ImageScan.digest.in_(sorted(tags_of)))
    ).all()
    leaves: dict[int, tuple[str, list[str]]] = {}  # leaf scan id -> (its digest, the top digests)
    indexes = {row.id: row.digest for row in scans if row.kind == "index"}
    for row in scans:
        if row.kind != "index":
            leaves.setdefault(row.id, (row.digest, []))[1].append(row.digest)
    if indexes:
        for index_id, child_id, child_digest in session.execute(
            select(ImageChild.index_id, ImageScan.id, ImageScan.digest)
            .join(ImageScan, ImageScan.id == ImageChild.child_id)
            .where(ImageChild.index_id.in_(sorted(indexes)))
        ):
            leaves.setdefault(child_id, (child_digest, []))[1].append(indexes[index_id])
    if not leaves:
        return []
    seen = func.coalesce(ScanFinding.reopened_at, ScanFinding.first_seen_at)
    found = []
    for row in session.execute(
        select(
            ScanFinding.id,
            ScanFinding.image_id,
            ScanFinding.reopened_at,
            ScanFinding.first_seen_at,
            ScanFinding.severity,
            ScanFinding.override_severity,
        )
        .where(
            ScanFinding.image_id.in_(sorted(leaves)),
            ScanFinding.resolved_at.is_(None),
            seen > since,
            seen <= now,
        )
        .order_by(ScanFinding.id)
    ):
        leaf, tops = leaves[row.image_id]
        tops = sorted(set(tops))
        tags = sorted({t for top in tops for t in tags_of.get(top, [])})
        found.append(
            Occurrence(
                row.id,
                row.reopened_at or row.first_seen_at,
                tags,
                tops[0],
                leaf,
                row.override_severity or row.severity,
            )
        )
    return found


def finding_details(session: Session, finding_ids: list[int]) -> dict[int, dict[str, Any]]:
    if not finding_ids:
        return {}
    rows = session.execute(
        select(
            ScanFinding.id,
            ScanFinding.vuln_id,
            ScanFinding.component_key,
            ScanFinding.severity,
            ScanFinding.override_severity,
            ScanFinding.resolved_at,
            ScanFinding.reopened_at,
            ImageComponent.name,
            ImageComponent.version,
            ScanPackageVuln.fixed_version,
            ScanPackageVuln.summary,
        )
        .outerjoin(ImageComponent, FINDING_COMPONENT)
        .outerjoin(ScanPackageVuln, FINDING_VERDICT)
        .where(ScanFinding.id.in_(sorted(set(finding_ids))))
    )
    return {
        row.id: {
            "vulnerability": row.vuln_id,
            "severity": row.override_severity or row.severity,
            "component": row.name or row.component_key.split("?", 1)[0],
            "version": row.version or "",
            "fixed_version": row.fixed_version,
            "summary": row.summary or "",
            "resolved": row.resolved_at is not None,
            "reopened_at": row.reopened_at,
        }
        for row in rows
    }
