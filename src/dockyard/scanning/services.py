"""Scanning as a store service: scan pushed manifests, re-match after feed updates, reclassify, report.

Images are content-addressed, so a scan belongs to a manifest digest, whatever repositories hold it. A layer
is indexed once (``LayerIndex``) for every image that shares it; an image's components map to distinct
packages whose verdicts are computed once (see ``scanning.results``), so a feed update re-matches every image
without reading a layer. Slow layer reads can happen before the write transaction: ``layers_to_index`` says
what a scan will need, ``index_blob`` reads it, and ``scan_manifest(prepared=...)`` stores the results.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from dockyard.accounts.services import AccountService
from dockyard.authz import Permission, Principal, require
from dockyard.config import Settings
from dockyard.db import MAX_ID, utcnow
from dockyard.errors import Invalid, NotFound
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.jobs import enqueue
from dockyard.oci.reference import namespace_of
from dockyard.scanning import counts, results
from dockyard.scanning.indexer import FORMAT
from dockyard.scanning.matcher import Matcher
from dockyard.scanning.models import ImageComponent, ImageScan, LayerIndex, ScanFinding, ScanPackage
from dockyard.scanning.reads import FindingView, ImageReport, ScanReads
from dockyard.scanning.scanner import (
    DONE,
    ERROR,
    FINAL,
    INDEXING,
    SCAN_JOB,
    ImageScanner,
    IndexedLayer,
    index_blob,
    queue_scan,
)
from dockyard.scanning.severity import Severity
from dockyard.spec import split_reference, validate_name
from dockyard.storage.blobstore import BlobStore

__all__ = [
    "REMATCH_JOB",
    "SCAN_JOB",
    "FindingView",
    "ImageReport",
    "IndexedLayer",
    "ScanService",
    "index_blob",
    "queue_scan",
]

REMATCH_JOB = "scan.rematch_all"


class ScanService(ScanReads):
    def __init__(self, session: Session, blobs: BlobStore, bus: EventBus, settings: Settings) -> None:
        super().__init__(session)
        self.blobs = blobs
        self.bus = bus
        self.settings = settings
        self.scanner = ImageScanner(session, blobs)

    # -- queueing --------------------------------------------------------------------------------------------
    def enqueue_scan(self, repository: str, digest: str, *, force: bool = False) -> bool:
        """Queue a scan of manifest ``digest`` of ``repository``; False when a current scan exists already."""
        self._manifest_in(repository, digest)
        return queue_scan(self.session, repository, digest, force=force)

    def enqueue_stale(self) -> int:
        """Queue a scan of every image indexed by an older indexer format; returns how many."""
        stale = list(
            self.session.scalars(
                select(ImageScan.digest).where(ImageScan.status.in_(FINAL), ImageScan.format != FORMAT)
            )
        )
        return sum(queue_scan(self.session, None, digest) for digest in stale)

    def update_vulndb(
        self, sources: Sequence[str | Path], actor: Actor, *, feed: str | None = None, http_client: Any = None
    ) -> list[Any]:
        """Ingest feeds into the advisory tables, record the update and queue the re-match of every image."""
        from dockyard.scanning.vulndb import ingest

        reports = [ingest(self.session, source, feed=feed, http_client=http_client) for source in sources]
        self.vulndb_updated(reports, actor)
        return reports

    def vulndb_updated(self, reports: Sequence[Any], actor: Actor) -> bool:
        """Record a feed update (``IngestReport``s) and queue a re-match when anything changed."""
        changed = sum(r.added + r.updated + r.withdrawn for r in reports)
        self.bus.publish(
            self.session,
            Event(
                EventTag.VULNDB_UPDATE,
                actor,
                data={
                    "sources": [str(r.source) for r in reports],
                    **{k: sum(getattr(r, k) for r in reports) for k in ("added", "updated", "withdrawn")},
                    "errors": sum(len(r.errors) for r in reports),
                },
            ),
        )
        if changed:
            enqueue(self.session, REMATCH_JOB, {}, dedupe_key=REMATCH_JOB)
        return bool(changed)

    # -- scanning --------------------------------------------------------------------------------------------
    def layers_to_index(
        self, digest: str, *, force: bool = False, repository: str | None = None
    ) -> list[tuple[str, str]]:
        """(digest, media type) of the layers a scan of ``digest`` will read: linked, without fresh facts.

        Linked means to a repository storing the image (``repository`` when given); see ``scan_manifest``.
        """
        return self.scanner.layers_to_index(digest, force=force, repository=repository)

    def mark_indexing(self, digest: str) -> None:
        """Show that a scan of ``digest`` has started reading layers."""
        scan = self.scanner.scan_row(digest)
        if scan.status != DONE:
            scan.status = INDEXING

    def scan_manifest(
        self,
        digest: str,
        *,
        repository: str | None = None,
        prepared: Mapping[str, IndexedLayer] | None = None,
        force: bool = False,
    ) -> ImageScan:
        """Index (reusing cached layers) and match manifest ``digest``; an index scans every platform.

        Only blobs linked to a repository storing the image are read (to ``repository`` when given); any
        other blob the image names makes its scan an error.
        """
        results.match_lock(self.session, exclusive=False)
        prepared = prepared or {}
        loaded = self.scanner.load(digest)
        if loaded is None:
            scan = self.scanner.scan_row(digest)
            scan.status, scan.error, scan.format = ERROR, "the manifest is no longer stored", None
            return scan
        if loaded.is_index:
            scan = self.scanner.scan_index(digest, loaded, prepared, force, 0, repository)
        else:
            scan = self.scanner.scan_image(digest, loaded, None, prepared, force, repository)
        self.session.flush()
        self.bus.publish(
            self.session,
            Event(
                EventTag.SCAN_COMPLETE,
                Actor.system(),
                namespace=namespace_of(repository) if repository else None,
                repository=repository,
                digest=digest,
                data={"status": scan.status, "counts": scan.counts, "error": scan.error},
            ),
        )
        return scan

    def record_failure(self, digest: str, message: str) -> None:
        """Mark a scan failed for a reason other than the image (its job gave up)."""
        scan = self.scanner.scan_row(digest)
        scan.status, scan.error, scan.format = ERROR, message[:2000], None  # None: a new push retries

    def rematch_all(self, *, prune: bool = True) -> results.RematchReport:
        """Re-match every indexed image against the advisory tables, without reading layers."""
        started = time.monotonic()
        results.match_lock(self.session, exclusive=True)
        if prune:
            self.prune()
        now = utcnow()
        report = results.rematch(self.session, Matcher(self.session), now)
        self.session.execute(
            update(ImageScan)
            .where(ImageScan.kind == "image", ImageScan.status == DONE)
            .values(matched_at=now)
        )
        report.seconds = round(time.monotonic() - started, 3)
        data = {k: v for k, v in vars(report).items() if k != "touched"}
        self.bus.publish(self.session, Event(EventTag.SCAN_REMATCH, Actor.system(), data=data))
        self.session.expire_all()  # the bulk statements went around the ORM's identity map
        return report

    def prune(self) -> None:
        """Forget scans of manifests no repository holds, and packages and layer facts nothing uses."""
        gone = self.session.scalars(
            delete(ImageScan).where(~self.registry.manifest_stored(ImageScan.digest)).returning(ImageScan.id),
            execution_options={"synchronize_session": False},
        ).all()
        # Their findings by the ids deleted (no foreign key cascades to them: see ScanFinding), not by the
        # condition again: a manifest deleted meanwhile would take an image whose findings were not taken.
        for part in counts.chunks(gone):
            self.session.execute(
                delete(ScanFinding).where(ScanFinding.image_id.in_(part)),
                execution_options={"synchronize_session": False},
            )
        self.session.execute(
            delete(ScanPackage).where(~exists().where(ImageComponent.package_id == ScanPackage.id)),
            execution_options={"synchronize_session": False},
        )
        self.session.execute(
            delete(LayerIndex).where(~self.registry.blob_stored(LayerIndex.digest)),
            execution_options={"synchronize_session": False},
        )

    # -- staff -----------------------------------------------------------------------------------------------
    def reclassify(
        self,
        finding_id: int,
        severity: Severity | str | None,
        reason: str,
        principal: Principal,
        actor: Actor | None = None,
    ) -> ScanFinding:
        """Set (or with None clear) a finding's class on store staff's word; recorded as an audit event."""
        require(principal, Permission.FINDING_RECLASSIFY)
        reason = (reason or "").strip()
        if not reason:
            raise Invalid("a reason is required to reclassify a finding")
        if len(reason) > 2000:
            raise Invalid("the reason is longer than 2000 characters")
        if "\x00" in reason:  # PostgreSQL cannot store it
            raise Invalid("the reason cannot contain NUL characters")
        new = _severity(severity)
        finding = self.session.get(ScanFinding, finding_id) if 0 < finding_id <= MAX_ID else None
        if finding is None:
            raise NotFound(f"finding {finding_id} not found")
        before = finding.effective_severity
        finding.override_severity = new
        finding.override_reason = reason
        finding.override_by = principal.name
        finding.override_at = utcnow()
        self.session.flush()
        counts.refresh_counts(self.session, [finding.image_id])
        digest = self.session.scalar(select(ImageScan.digest).where(ImageScan.id == finding.image_id))
        self.bus.publish(
            self.session,
            Event(
                EventTag.FINDING_RECLASSIFY,
                actor or Actor(user_id=principal.user_id, name=principal.name, kind=principal.kind),
                digest=digest,
                data={
                    "finding": finding.id,
                    "vulnerability": finding.vuln_id,
                    "component": finding.component_key,
                    "from": before,
                    "to": finding.effective_severity,
                    "computed": finding.severity,
                    "reason": reason,
                },
            ),
        )
        return finding

    # -- access ----------------------------------------------------------------------------------------------
    def visible_to(self, principal: Principal, repository: str) -> bool:
        """Whether ``principal`` may see scan results of ``repository``: its namespace's members and staff."""
        try:
            validate_name(repository)
        except Invalid:
            return False
        accounts = AccountService(self.session, self.bus)
        return accounts.allowed(principal, Permission.SCAN_READ, namespace=namespace_of(repository))

    def image_report(self, repository: str, reference: str, *, include_resolved: bool = False) -> ImageReport:
        """Counts per class and findings of the manifest a tag or digest names in ``repository``."""
        kind, ref = split_reference(reference)
        digest = self.registry.resolve(validate_name(repository), ref)  # one query when it names something
        if digest is None:
            if not self.registry.has_repository(repository):
                raise NotFound(f"repository {repository!r} not known")
            if kind == "digest":
                raise NotFound(f"manifest {ref} not known in {repository}")
            raise NotFound(f"tag {ref!r} not known in {repository}")
        return self.report(repository, digest, include_resolved=include_resolved)

    # -- internals -------------------------------------------------------------------------------------------
    def _manifest_in(self, repository: str, digest: str) -> str:
        if not self.registry.holds_manifest(repository, digest):
            raise NotFound(f"manifest {digest} not known in {repository}")
        return digest


def _severity(value: Severity | str | None) -> str | None:
    if value is None:
        return None
    text = str(value.value if isinstance(value, Severity) else value).strip().lower()
    for s in Severity:
        if s.value.lower() == text:
            return s.value
    raise Invalid(f"unknown class {value!r}; one of {', '.join(s.value for s in Severity)}")
