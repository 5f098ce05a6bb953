"""What the pinned images of a revision have open: findings of every platform manifest under each pinned
digest, read from the scan tables (never by scanning), and whether each digest's scan is done."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.scanning.models import ImageChild, ImageScan, ScanFinding

DONE, SKIPPED, ERROR = "done", "skipped", "error"


@dataclass(frozen=True)
class PinnedFinding:
    finding_id: int
    image: str  # the image's name in the product
    digest: str  # the platform manifest the finding is in
    platform: str | None
    vuln_id: str
    component: str
    severity: str  # the effective class (staff's override, else the score's)

    @property
    def key(self) -> tuple[str, str, str]:
        """What a fix is compared on: the same vulnerability in the same component of the same image."""
        return (self.image, self.vuln_id, self.component)


@dataclass
class PinnedScans:
    findings: list[PinnedFinding] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # digests not scanned yet (or still scanning)
    failed: list[str] = field(default_factory=list)  # digests whose scan ended in an error
    scanned: set[str] = field(default_factory=set)  # every platform manifest digest whose scan is done

    @property
    def complete(self) -> bool:
        return not self.pending and not self.failed

    def keys(self, classes: frozenset[str]) -> set[tuple[str, str, str]]:
        return {f.key for f in self.findings if f.severity in classes}


def pinned_digests(pins: Mapping[str, Any] | None) -> dict[str, set[str]]:
    """image name -> the digests its tags pin."""
    return {image: set((pin.get("tags") or {}).values()) for image, pin in (pins or {}).items()}


def pinned_findings(session: Session, pins: Mapping[str, Any] | None) -> PinnedScans:
    """The open findings of every platform manifest under the pinned digests, and which scans are not done."""
    result = PinnedScans()
    by_image = pinned_digests(pins)
    wanted = {d for digests in by_image.values() for d in digests}
    if not wanted:
        return result
    scans = {
        row.digest: row
        for row in session.execute(
            select(
                ImageScan.id, ImageScan.digest, ImageScan.kind, ImageScan.status, ImageScan.platform
            ).where(ImageScan.digest.in_(sorted(wanted)))
        )
    }
    # leaf scan id -> (top digest, leaf digest, platform)
    leaves: dict[int, list[tuple[str, str, str | None]]] = {}
    index_ids = {row.id: row.digest for row in scans.values() if row.kind == "index"}
    children: dict[str, list[Any]] = {}
    if index_ids:
        for row in session.execute(
            select(ImageChild.index_id, ImageScan.id, ImageScan.digest, ImageScan.status, ImageChild.platform)
            .join(ImageScan, ImageScan.id == ImageChild.child_id)
            .where(ImageChild.index_id.in_(sorted(index_ids)))
        ):
            children.setdefault(index_ids[row.index_id], []).append(row)
    for digest in sorted(wanted):
        scan = scans.get(digest)
        if scan is None or scan.status not in (DONE, SKIPPED, ERROR):
            result.pending.append(digest)
            continue
        if scan.status == ERROR:
            result.failed.append(digest)
            continue
        if scan.kind != "index":
            leaves.setdefault(scan.id, []).append((digest, scan.digest, scan.platform))
            continue
        for child in children.get(digest, []):
            if child.status == ERROR:
                result.failed.append(child.digest)
            elif child.status not in (DONE, SKIPPED):
                result.pending.append(child.digest)
            else:
                leaves.setdefault(child.id, []).append((digest, child.digest, child.platform))
    result.scanned = {leaf for entries in leaves.values() for _top, leaf, _p in entries}
    if not leaves:
        return result
    images_of = {d: sorted(name for name, ds in by_image.items() if d in ds) for d in wanted}
    rows = session.execute(
        select(
            ScanFinding.id,
            ScanFinding.image_id,
            ScanFinding.vuln_id,
            ScanFinding.component_key,
            ScanFinding.severity,
            ScanFinding.override_severity,
        ).where(ScanFinding.image_id.in_(sorted(leaves)), ScanFinding.resolved_at.is_(None))
    )
    for row in rows:
        for top, leaf, platform in leaves[row.image_id]:
            for image in images_of[top]:
                result.findings.append(
                    PinnedFinding(
                        row.id,
                        image,
                        leaf,
                        platform,
                        row.vuln_id,
                        row.component_key,
                        row.override_severity or row.severity,
                    )
                )
    return result
