"""Scanning's background jobs and the subscriber that queues a scan for every pushed manifest.

``scan.manifest`` reads the layers it needs before it opens its write transaction (on SQLite one writer at a
time: a push must not wait while a large layer is decompressed), then stores facts, components and findings
in one short transaction. ``scan.rematch_all`` runs after a feed update and reads no layer. ``vulndb.update``
reads ``DOCKYARD_VULNDB_SOURCES`` every ``DOCKYARD_VULNDB_INTERVAL`` seconds (and at first start when the
database has no advisories): each source in a short write transaction of its own, downloads before it; the
``nvd`` feed a page per transaction for at most ``NVD_BUDGET`` seconds a job, ``ghsa`` as GitHub's archive.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard.config import GHSA_ARCHIVE, GHSA_FEED, NVD_FEED, Settings
from dockyard.db import utcnow
from dockyard.errors import DockyardError
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.jobs import JobContext, JobRegistry
from dockyard.oci import mediatypes as mt
from dockyard.scanning.scanner import SCAN_JOB, index_blob, queue_scan
from dockyard.scanning.services import REMATCH_JOB, ScanService
from dockyard.storage.blobstore import BlobStore

if TYPE_CHECKING:
    from dockyard.scanning.vulndb import IngestReport

log = logging.getLogger("dockyard.scanning")
VULNDB_JOB = "vulndb.update"
NVD_BUDGET = 120.0  # seconds of NVD API reading per job (see _read_nvd)
NVD_PAUSE = 6.0  # seconds before the next job goes on reading (NVD: 5 requests per 30 s without a key)


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
        repository = payload.get("repository")
        try:
            # Only layers linked to a repository storing the image (the job's, when it names one): a layer
            # named by digest alone is never opened, and scan_manifest records it as the scan's error.
            wanted = ctx.read(
                lambda s: service(s).layers_to_index(digest, force=force, repository=repository)
            )
            if wanted:
                ctx.write(lambda s: service(s).mark_indexing(digest))
            # Outside any transaction: decompressing and walking layers takes seconds for large images.
            prepared = {d: index_blob(blobs, d, media_type) for d, media_type in wanted}
            service(ctx.session).scan_manifest(digest, repository=repository, prepared=prepared, force=force)
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

    @registry.job(VULNDB_JOB)
    def update_vulndb(ctx: JobContext, payload: dict[str, Any]) -> None:
        from dockyard.scanning.vulndb import ingest

        sources = [str(s) for s in payload.get("sources") or settings.vulndb_sources]
        reports, failures = [], []
        for source in sources:
            try:
                if source == NVD_FEED:
                    report = _read_nvd(ctx, settings)
                else:
                    url = GHSA_ARCHIVE if source == GHSA_FEED else source
                    with _fetched(url) as path:  # a URL is downloaded before the write lock is taken
                        report = ctx.write(lambda s, path=path: ingest(s, path))
                report.source = source
                reports.append(report)
                log.info(
                    "vulndb %s: %s added, %s updated, %s withdrawn, %s errors",
                    source,
                    report.added,
                    report.updated,
                    report.withdrawn,
                    len(report.errors),
                )
            except Exception as exc:  # one unreadable feed must not stop the others
                log.warning("vulndb %s failed: %s: %s", source, exc.__class__.__name__, exc)
                failures.append(source)
        # Records the update (an event) and queues the re-match of every image when anything changed.
        service(ctx.session).vulndb_updated(reports, Actor.system())
        if failures and not reports:
            raise RuntimeError(f"every feed failed: {', '.join(failures)}")

    def feeds_due(session: Session) -> bool:
        """No advisories yet (first start), or the newest feed update is older than the interval."""
        from dockyard.scanning.models import Advisory, FeedState

        if session.scalar(select(Advisory.id).where(Advisory.withdrawn.is_(None)).limit(1)) is None:
            return True
        newest = session.scalar(select(func.max(FeedState.updated_at)))
        return newest is None or newest < utcnow() - dt.timedelta(seconds=settings.vulndb_interval)

    registry.every(VULNDB_JOB, settings.vulndb_interval, due=feeds_due)
    # Images indexed by an older indexer format are scanned again when a process's workers start.
    registry.on_start(lambda session: service(session).enqueue_stale())


def nvd_pause(seconds: float) -> None:
    """The pause between NVD requests (its rate limit); tests replace it rather than wait."""
    import time

    time.sleep(seconds)


def nvd_client() -> Any:
    """The HTTP client NVD's API is read with (tests replace it with one on an ``httpx.MockTransport``)."""
    import httpx

    return httpx.Client(timeout=httpx.Timeout(60.0), follow_redirects=True)


def _read_nvd(ctx: JobContext, settings: Settings) -> IngestReport:
    """NVD's API for at most ``NVD_BUDGET`` seconds, a page per transaction; when there is more (the first
    full read: about 15 minutes without a key), another ``vulndb.update`` of ``nvd`` alone is queued to go on
    where this one stopped, so scans queued meanwhile are not held up behind it."""
    from dockyard.jobs import enqueue
    from dockyard.scanning.nvd import sync

    with nvd_client() as client:
        report, complete = sync(
            ctx.write, client, api_key=settings.nvd_api_key, budget=NVD_BUDGET, sleep=nvd_pause
        )
    if not complete:
        ctx.write(
            lambda s: enqueue(
                s,
                VULNDB_JOB,
                {"sources": [NVD_FEED]},
                dedupe_key=f"{VULNDB_JOB}:{NVD_FEED}",
                delay=NVD_PAUSE,  # NVD's pause between requests holds across jobs too
            )
        )
    return report


@contextmanager
def _fetched(source: str) -> Iterator[str]:
    """A local path for ``source``: itself, or a temporary download of a URL."""
    if not source.startswith(("http://", "https://")):
        yield source
        return
    import httpx

    suffix = Path(urlsplit(source).path).suffix or ".json"
    with (
        tempfile.NamedTemporaryFile(prefix="dockyard-feed-", suffix=suffix) as tmp,
        httpx.stream("GET", source, timeout=60.0, follow_redirects=True) as response,
    ):
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 20):
            tmp.write(chunk)
        tmp.flush()
        yield tmp.name
