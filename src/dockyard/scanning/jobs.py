"""Scanning's background jobs and the subscriber that queues a scan for every pushed manifest.

``scan.manifest`` reads the layers it needs before it opens its write transaction (on SQLite one writer at a
time: a push must not wait while a large layer is decompressed), then stores facts, components and findings
in one short transaction. ``scan.rematch_all`` runs after a feed update and reads no layer.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from dockyard.config import Settings
from dockyard.errors import DockyardError
from dockyard.events import Event, EventBus, EventTag
from dockyard.jobs import JobContext, JobRegistry
from dockyard.oci import mediatypes as mt
from dockyard.scanning.scanner import SCAN_JOB, index_blob, queue_scan
from dockyard.scanning.services import REMATCH_JOB, ScanService
from dockyard.storage.blobstore import BlobStore

log = logging.getLogger("dockyard.scanning")


def on_manifest_push(session: Session, event: Event) -> None:
    """In the push's transaction: queue a scan of the manifest (once per digest, whatever the repository)."""
    if not event.digest or not event.repository:
        return
    if (event.data or {}).get("media_type", mt.OCI_MANIFEST) not in mt.MANIFEST_TYPES:
        return
    queue_scan(session, event.repository, event.digest)


def subscribe(bus: EventBus) -> None:
    """Queue scans on manifest pushes published on ``bus``."""
    bus.subscribe(EventTag.MANIFEST_PUSH, on_manifest_push)


def register(registry: JobRegistry, blobs: BlobStore, bus: EventBus, settings: Settings) -> None:
    """Add the scanning job kinds to ``registry``."""

    def service(session: Session) -> ScanService:
        return ScanService(session, blobs, bus, settings)

    @registry.job(SCAN_JOB)
    def scan_manifest(ctx: JobContext, payload: dict[str, Any]) -> None:
        digest, force = str(payload["digest"]), bool(payload.get("force"))
        try:
            wanted = ctx.read(lambda s: service(s).layers_to_index(digest, force=force))
            if wanted:
                ctx.write(lambda s: service(s).mark_indexing(digest))
            # Outside any transaction: decompressing and walking layers takes seconds for large images.
            prepared = {d: index_blob(blobs, d, media_type) for d, media_type in wanted}
            service(ctx.session).scan_manifest(
                digest, repository=payload.get("repository"), prepared=prepared, force=force
            )
        except Exception as exc:
            # No retry will come (the last attempt, or a domain error): say so on the scan, then fail the job.
            if ctx.final_attempt or isinstance(exc, DockyardError):
                message = f"scan failed: {exc.__class__.__name__}: {exc}"
                ctx.rollback()
                ctx.write(lambda s: service(s).record_failure(digest, message))
            raise

    @registry.job(REMATCH_JOB)
    def rematch_all(ctx: JobContext, payload: dict[str, Any]) -> None:
        report = service(ctx.session).rematch_all()
        log.info(
            "re-matched %s packages: %s new, %s resolved findings",
            report.packages,
            report.new,
            report.resolved,
        )
