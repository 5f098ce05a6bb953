"""Garbage collection: unreferenced blobs and expired upload sessions, safe while pushes go on.

A blob link is kept while a manifest of its repository references it, or while it is younger than the
grace period (a push in progress uploads blobs before the manifest that references them). A blob's bytes go
only once no link is left, and only when the file itself is older than the grace period: an upload that
re-stored the same digest a moment ago renamed a fresh file into place.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, select
from sqlalchemy.orm import Session, sessionmaker

from dockyard.db import utcnow
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.registry.models import Blob, Manifest, ManifestReference, RepositoryBlob
from dockyard.registry.services import blob_lock, blob_locks
from dockyard.storage.blobstore import BlobStore


@dataclass
class GcReport:
    links_removed: int = 0
    blobs_removed: int = 0
    bytes_freed: int = 0
    orphan_files_removed: int = 0
    uploads_removed: int = 0


def collect(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    bus: EventBus,
    *,
    grace: int,
    upload_ttl: int,
    dry_run: bool = False,
) -> GcReport:
    """Remove what nothing references any more; each step in its own short transaction."""
    report = GcReport()
    cutoff = utcnow() - dt.timedelta(seconds=grace)
    wall_cutoff = time.time() - grace

    referenced = exists().where(
        and_(
            ManifestReference.digest == RepositoryBlob.digest,
            Manifest.id == ManifestReference.manifest_id,
            Manifest.repository_id == RepositoryBlob.repository_id,
        )
    )
    with sessions() as session:
        stale = list(
            session.execute(
                select(RepositoryBlob.id, RepositoryBlob.digest).where(
                    RepositoryBlob.created_at < cutoff, ~referenced
                )
            )
        )
    for start in range(0, len(stale), 500):
        batch = stale[start : start + 500]
        if dry_run:
            report.links_removed += len(batch)
            continue
        with sessions() as session, session.begin():
            session.connection(execution_options={"sqlite_write": True})
            # A manifest PUT holds these locks from its reference check to its commit. Without them the
            # DELETE's snapshot could predate a manifest that committed while the DELETE waited for its
            # row locks, and unlink (then free) blobs that manifest references.
            blob_locks(session, [digest for _id, digest in batch])
            removed = session.execute(
                delete(RepositoryBlob).where(
                    RepositoryBlob.id.in_([link_id for link_id, _digest in batch]),
                    RepositoryBlob.created_at < cutoff,  # a push may have refreshed the link meanwhile
                    ~referenced,
                )
            )
            report.links_removed += removed.rowcount

    with sessions() as session:
        candidates = list(
            session.execute(
                select(Blob.digest, Blob.size).where(
                    Blob.created_at < cutoff, ~exists().where(RepositoryBlob.digest == Blob.digest)
                )
            )  # rows unpack as tuples (Result.tuples() is deprecated in SQLAlchemy 2.1)
        )
    for digest, size in candidates:
        with sessions() as session, session.begin():
            session.connection(execution_options={"sqlite_write": True})
            blob_lock(session, digest)
            still_unused = session.scalar(
                select(Blob.digest).where(
                    Blob.digest == digest, ~exists().where(RepositoryBlob.digest == digest)
                )
            )
            if still_unused is None:
                continue
            path = blobs.local_path(digest)
            if path is not None and path.exists() and path.stat().st_mtime > wall_cutoff:
                continue
            if not dry_run:
                session.execute(delete(Blob).where(Blob.digest == digest))
                blobs.delete(digest)
            report.blobs_removed += 1
            report.bytes_freed += size

    with sessions() as session:
        known = set(session.scalars(select(Blob.digest)))
    for digest, mtime in blobs.list_blobs():
        if digest not in known and mtime < wall_cutoff:
            # Bytes renamed into place by an upload whose database row never committed (a crash).
            with sessions() as session, session.begin():
                session.connection(execution_options={"sqlite_write": True})
                blob_lock(session, digest)
                if session.get(Blob, digest) is None and not dry_run:
                    blobs.delete(digest)
                    report.orphan_files_removed += 1

    upload_cutoff = time.time() - upload_ttl
    for upload_id, mtime in list(blobs.list_uploads()):
        if mtime < upload_cutoff:
            if not dry_run:
                blobs.discard_upload(upload_id)
            report.uploads_removed += 1

    if not dry_run:
        with sessions() as session, session.begin():
            session.connection(execution_options={"sqlite_write": True})
            bus.publish(session, Event(EventTag.GC_RUN, Actor.system(), data=report.__dict__))
    return report
