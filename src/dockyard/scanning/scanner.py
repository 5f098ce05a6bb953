"""Scanning one manifest: its layers' facts (cached per layer digest), components, packages and findings.

``ImageScanner`` does the work inside the caller's transaction; ``index_blob`` is the part that reads a layer
and needs no database, so a job can run it before its write transaction begins.

The blob store is shared by every repository, so a scan never reads a blob because it knows its digest: a
config or layer of image manifest M is read (or its cached facts used) only when the registry says it is
linked to a repository storing M (the job's repository when it names one). Any other makes the scan an error
whose message is the same whether the digest exists elsewhere or nowhere.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from dockyard.db import upsert, utcnow
from dockyard.jobs import Job, enqueue, job_row
from dockyard.oci import mediatypes as mt
from dockyard.oci.manifest import Descriptor, ParsedManifest
from dockyard.registry.reads import RegistryReads
from dockyard.scanning import counts, results
from dockyard.scanning.indexer import FORMAT, LayerFacts, index_layer, merge
from dockyard.scanning.matcher import Matcher, lookup_key
from dockyard.scanning.models import ImageChild, ImageComponent, ImageScan, LayerIndex, ScanFinding
from dockyard.scanning.sources.model import format_platform
from dockyard.scanning.types import UnsafeInput
from dockyard.spec import parse_manifest
from dockyard.storage.blobstore import BlobStore

SCAN_JOB = "scan.manifest"
QUEUED, INDEXING, DONE, ERROR, SKIPPED = "queued", "indexing", "done", "error", "skipped"
FINAL = frozenset({DONE, ERROR, SKIPPED})
MAX_CONFIG = 1 << 20
MAX_DEPTH = 2  # an index of indexes; deeper nesting is not something tools write
MAX_WARNINGS = 100
NOT_LINKED = "not among the blobs of this image's repository"


@dataclass(frozen=True)
class IndexedLayer:
    """The outcome of reading one layer: its facts, or why it cannot be read safely."""

    digest: str
    facts: LayerFacts | None
    error: str | None = None


def index_blob(blobs: BlobStore, digest: str, media_type: str | None = None) -> IndexedLayer:
    """Stream one layer blob through the indexer (no database); a hostile layer gives an error outcome."""
    try:
        with blobs.open(digest) as stream:
            return IndexedLayer(digest, index_layer(stream, digest, media_type=media_type))
    except UnsafeInput as exc:
        return IndexedLayer(digest, None, str(exc) or exc.__class__.__name__)


def fresh(scan: ImageScan | None) -> bool:
    return scan is not None and scan.status in FINAL and scan.format == FORMAT


_scans = ImageScan.__table__
_SCAN_STATE = select(_scans.c.status, _scans.c.format).where(_scans.c.digest == bindparam("digest"))


def find_scan(session: Session, digest: str) -> ImageScan | None:
    """The scan row of manifest ``digest``, or None."""
    return session.scalar(select(ImageScan).where(ImageScan.digest == digest))


def add_scan_row(session: Session, digest: str) -> bool:
    """A queued scan row for ``digest`` unless one exists (two pushes of one digest may race here).

    True when this transaction inserted it.
    """
    row = {"digest": digest, "status": QUEUED, "layers": [], "warnings": [], "created_at": utcnow()}
    return upsert(session, _scans, row, ["digest"], returning=_scans.c.id).first() is not None


def queue_scan(session: Session, repository: str | None, digest: str, *, force: bool = False) -> bool:
    """Mark ``digest`` queued and enqueue its scan job in this transaction; False when scanned already.

    Core statements: this runs in every manifest push's transaction. On PostgreSQL one statement inserts
    the queued scan row of a digest never seen and its job, or reads the state of the known one.
    """
    connection = session.connection()
    payload = {"repository": repository, "digest": digest, "force": force}
    dedupe_key = f"{SCAN_JOB}:{digest}{':force' if force else ''}"
    if not force and connection.dialect.name == "postgresql":
        job = job_row(SCAN_JOB, payload, dedupe_key=dedupe_key)
        params = {f"job_{key}": value for key, value in job.items()}
        row = connection.execute(_queue_new_scan(), {"digest": digest, **params}).one()
        if row.job_id is not None or (row.status not in FINAL and row.queued_job is not None):
            return True  # queued now, or queued already and not yet running
        # Known (or inserted by a concurrent push since this statement's snapshot: read it again).
        scan = row if row.status is not None else connection.execute(_SCAN_STATE, {"digest": digest}).first()
    else:
        scan = connection.execute(_SCAN_STATE, {"digest": digest}).first()
    if scan is not None and scan.status in FINAL and scan.format == FORMAT and not force:
        return False
    created = False
    if scan is None:
        created = add_scan_row(session, digest)
    elif scan.status in FINAL:  # rare: an ORM update, so rows this session has loaded see it too
        session.execute(update(ImageScan).where(ImageScan.digest == digest).values(status=QUEUED))
    enqueue(
        session,
        SCAN_JOB,
        payload,
        dedupe_key=dedupe_key,
        # No job can be queued for a scan row this transaction has just created: one statement less
        # on every push of a new manifest.
        check_queued=not created,
    )
    return True


@functools.cache
def _queue_new_scan() -> Any:
    """PostgreSQL: insert the queued scan row of ``digest`` unless it exists, and its job when it was
    inserted; return the job's id (None when the row existed), the existing row's status and format, and
    the id of a queued job with the same dedupe key (as ``enqueue`` checks for one).

    The sub-statements share one snapshot, so the state read is the row as it was before this statement.
    """
    from sqlalchemy.dialects.postgresql import insert

    jobs = Job.__table__
    scan_row = insert(_scans).values(
        digest=bindparam("digest"),
        status=QUEUED,
        layers=[],
        warnings=[],
        created_at=bindparam("job_created_at"),
    )
    inserted = (
        scan_row.on_conflict_do_nothing(index_elements=["digest"]).returning(_scans.c.id).cte("new_scan")
    )
    columns = [
        "kind",
        "payload",
        "dedupe_key",
        "max_attempts",
        "status",
        "attempts",
        "run_after",
        "created_at",
    ]
    values = select(*(bindparam(f"job_{name}", type_=jobs.c[name].type) for name in columns)).select_from(
        inserted
    )
    job = jobs.insert().from_select(columns, values).returning(jobs.c.id).cte("new_job")
    known = _scans.c.digest == bindparam("digest")
    return select(
        select(job.c.id).scalar_subquery().label("job_id"),
        select(_scans.c.status).where(known).scalar_subquery().label("status"),
        select(_scans.c.format).where(known).scalar_subquery().label("format"),
        select(jobs.c.id)
        .where(jobs.c.dedupe_key == bindparam("job_dedupe_key"), jobs.c.status == QUEUED)
        .limit(1)
        .scalar_subquery()
        .label("queued_job"),
    )


def is_attestation(d: Descriptor) -> bool:
    """BuildKit's provenance/SBOM manifests sit in an index as platform unknown/unknown."""
    if (d.annotations or {}).get("vnd.docker.reference.type") == "attestation-manifest":
        return True
    return (d.platform or {}).get("os") == "unknown"


class ImageScanner:
    """Indexes and matches manifests in the caller's transaction (``ScanService`` drives it)."""

    def __init__(self, session: Session, blobs: BlobStore) -> None:
        self.session = session
        self.blobs = blobs
        self.registry = RegistryReads(session)
        self._matcher: Matcher | None = None

    def layers_to_index(
        self, digest: str, *, force: bool = False, repository: str | None = None
    ) -> list[tuple[str, str]]:
        """(digest, media type) of the layers a scan of ``digest`` will read: linked, without fresh facts."""
        wanted: dict[str, str] = {}
        for image_digest, parsed in self.images(digest):
            if not force and fresh(self.find(image_digest)):
                continue
            layers = [d for d in parsed.layers if not mt.is_nondistributable(d.media_type)]
            linked = self.registry.linked_blobs(image_digest, [d.digest for d in layers], repository)
            for layer in layers:
                # An unlinked layer is not read: scan_image turns it into the scan's error.
                if layer.digest not in linked or layer.digest in wanted:
                    continue
                cached = self.session.get(LayerIndex, layer.digest)
                if force or cached is None or cached.format != FORMAT:
                    wanted[layer.digest] = layer.media_type
        return list(wanted.items())

    def load(self, digest: str) -> ParsedManifest | None:
        """The stored manifest ``digest`` (from any repository), parsed; None when none holds it."""
        stored = self.registry.manifest(digest)
        if stored is None:
            return None
        return parse_manifest(stored.payload, stored.media_type)

    def images(self, digest: str, depth: int = 0) -> list[tuple[str, ParsedManifest]]:
        """The image manifests ``digest`` stands for: itself, or an index's platforms."""
        parsed = self.load(digest)
        if parsed is None:
            return []
        if not parsed.is_index:
            return [(digest, parsed)]
        if depth >= MAX_DEPTH:
            return []
        found = []
        for child in self.children(parsed):
            found += self.images(child.digest, depth + 1)
        return found

    @staticmethod
    def children(parsed: ParsedManifest) -> list[Descriptor]:
        """An index's platform entries, without attestations and repeats."""
        seen: set[str] = set()
        children = []
        for d in parsed.manifests:
            if is_attestation(d) or d.media_type not in mt.MANIFEST_TYPES or d.digest in seen:
                continue
            seen.add(d.digest)
            children.append(d)
        return children

    def find(self, digest: str) -> ImageScan | None:
        """The scan row of ``digest``, or None."""
        return find_scan(self.session, digest)

    def scan_row(self, digest: str) -> ImageScan:
        """The scan row of ``digest``, added (queued) when there is none."""
        scan = self.find(digest)
        if scan is None:
            add_scan_row(self.session, digest)
            scan = self.find(digest)
            assert scan is not None
        return scan

    def scan_index(
        self,
        digest: str,
        parsed: ParsedManifest,
        prepared: Mapping[str, IndexedLayer],
        force: bool,
        depth: int,
        repository: str | None = None,
    ) -> ImageScan:
        """Scan every platform of an index not scanned yet, link them, and count the index."""
        scan = self.scan_row(digest)
        scan.kind, scan.media_type, scan.format = "index", parsed.media_type, FORMAT
        scan.os_id = scan.os_version = scan.os_pretty_name = scan.os_ecosystem = scan.platform = None
        self.session.execute(delete(ImageChild).where(ImageChild.index_id == scan.id))
        children: list[ImageScan] = []
        for position, child in enumerate(self.children(parsed)):
            platform = results.clip(format_platform(child.platform), 64)
            child_scan = self.find(child.digest)
            if force or not fresh(child_scan):
                loaded = self.load(child.digest)
                if loaded is None:
                    continue
                if loaded.is_index:
                    if depth + 1 >= MAX_DEPTH:
                        continue
                    child_scan = self.scan_index(child.digest, loaded, prepared, force, depth + 1, repository)
                else:
                    child_scan = self.scan_image(child.digest, loaded, platform, prepared, force, repository)
            assert child_scan is not None
            self.session.add(
                ImageChild(index_id=scan.id, child_id=child_scan.id, position=position, platform=platform)
            )
            children.append(child_scan)
        failed = [c for c in children if c.status == ERROR]
        scanned = [c for c in children if c.status == DONE]
        if failed:
            scan.status = ERROR
            scan.error = "; ".join(f"{c.platform or c.digest}: {c.error}" for c in failed)[:2000]
        else:
            scan.status, scan.error = (DONE, None) if scanned else (SKIPPED, None)
        now = utcnow()
        scan.indexed_at = scan.matched_at = now
        self.session.flush()
        counts.refresh_index_counts(self.session, scan.id)
        return scan

    def scan_image(
        self,
        digest: str,
        parsed: ParsedManifest,
        platform: str | None,
        prepared: Mapping[str, IndexedLayer],
        force: bool,
        repository: str | None = None,
    ) -> ImageScan:
        """Index one image's linked layers (from the cache where it can), store its components, match them."""
        scan = self.scan_row(digest)
        if fresh(scan) and not force:
            return scan
        scan.kind, scan.media_type, scan.format = "image", parsed.media_type, FORMAT
        scan.indexed_at, scan.error = utcnow(), None
        assert parsed.config is not None
        if parsed.config.media_type not in mt.CONFIG_TYPES:
            scan.status, scan.warnings = SKIPPED, [f"not a container image ({parsed.artifact_type})"]
            return scan
        unlinked = self.unlinked_blob(digest, parsed, repository)
        if unlinked is not None:
            # Neither the store nor the facts cache is consulted: the outcome (and its message) cannot
            # depend on whether the digest exists in another repository.
            self.forget(scan)
            scan.status, scan.platform = ERROR, results.clip(platform, 64)
            scan.error = f"{unlinked}: {NOT_LINKED}"[:2000]
            return scan
        scan.platform = results.clip(platform or self.config_platform(parsed.config.digest), 64)
        warnings: list[str] = []
        facts: list[LayerFacts] = []
        for layer in parsed.layers:
            if mt.is_nondistributable(layer.media_type):
                warnings.append(f"layer {layer.digest}: non-distributable, not scanned")
                continue
            outcome = self.layer(layer, prepared, force)
            if outcome.facts is None:
                scan.status = ERROR
                scan.error = f"layer {layer.digest}: {outcome.error}"[:2000]
                return scan
            facts.append(outcome.facts)
        index = merge(facts, scan.platform)
        os_info = index.os
        scan.os_id = results.clip(os_info.id, 64) if os_info else None
        scan.os_version = results.clip(os_info.version_id, 64) if os_info else None
        scan.os_pretty_name = results.clip(os_info.pretty_name, 255) if os_info else None
        scan.os_ecosystem = os_info.osv_ecosystem if os_info else None
        scan.layers = [d.digest for d in parsed.layers]
        scan.warnings = (warnings + index.warnings)[:MAX_WARNINGS]
        gone = self.store_components(scan.id, index.components, scan.os_ecosystem)
        now = utcnow()
        results.sync_image_findings(self.session, scan.id, now, gone)
        scan.status, scan.matched_at = DONE, now
        self.session.flush()
        counts.refresh_counts(self.session, [scan.id])
        return scan

    def unlinked_blob(self, digest: str, parsed: ParsedManifest, repository: str | None) -> str | None:
        """ "config <digest>" or "layer <digest>" for the first blob of image ``digest`` the scan may not
        read (not linked to a repository storing the image; with ``repository``, to that one), else None."""
        blobs = [("config", parsed.config.digest)] if parsed.config is not None else []
        blobs += [("layer", d.digest) for d in parsed.layers if not mt.is_nondistributable(d.media_type)]
        linked = self.registry.linked_blobs(digest, [d for _, d in blobs], repository)
        return next((f"{kind} {d}" for kind, d in blobs if d not in linked), None)

    def forget(self, scan: ImageScan) -> None:
        """Drop what an earlier scan of this image stored (it may have read blobs it must not have)."""
        self.session.execute(delete(ScanFinding).where(ScanFinding.image_id == scan.id))
        self.session.execute(delete(ImageComponent).where(ImageComponent.image_id == scan.id))
        scan.os_id = scan.os_version = scan.os_pretty_name = scan.os_ecosystem = None
        scan.layers, scan.warnings = [], []
        self.session.flush()
        counts.refresh_counts(self.session, [scan.id])

    def config_platform(self, config_digest: str) -> str | None:
        """os/architecture[/variant] from an image config blob (one ``unlinked_blob`` allowed), or None."""
        try:
            with self.blobs.open(config_digest) as stream:
                config = json.loads(stream.read(MAX_CONFIG + 1)[:MAX_CONFIG])
        except (OSError, ValueError):
            return None
        return format_platform(config) if isinstance(config, dict) else None

    def layer(self, layer: Descriptor, prepared: Mapping[str, IndexedLayer], force: bool) -> IndexedLayer:
        """A layer's facts: cached, prepared by the caller, or read now; a new outcome is cached."""
        cached = self.session.get(LayerIndex, layer.digest)
        if cached is not None and cached.format == FORMAT and not force:
            if cached.status != "ok":
                return IndexedLayer(layer.digest, None, cached.error)
            try:
                return IndexedLayer(layer.digest, LayerFacts.from_json(cached.facts or ""))
            except ValueError:
                pass  # facts of another format: index again
        outcome = prepared.get(layer.digest) or index_blob(self.blobs, layer.digest, layer.media_type)
        values = {
            "format": FORMAT,
            "status": "ok" if outcome.facts is not None else "error",
            "error": (outcome.error or "")[:2000] or None,
            "facts": outcome.facts.to_json() if outcome.facts is not None else None,
            "indexed_at": utcnow(),
        }
        if cached is None:
            results.insert_ignore(
                self.session, LayerIndex.__table__, [{"digest": layer.digest, **values}], ["digest"]
            )
        else:
            for key, value in values.items():
                setattr(cached, key, value)
        return outcome

    def store_components(
        self, image_id: int, components: Sequence[Any], os_ecosystem: str | None
    ) -> dict[str, dict[str, Any]]:
        """Replace the image's components; returns what the ones that went away were (by component key)."""
        rows: list[dict[str, Any]] = []
        keys: dict[tuple[str, str, str], str] = {}
        seen: set[str] = set()
        for c in components:
            key = c.purl or f"{c.ecosystem}/{c.name}@{c.version}"
            if key in seen:
                key = f"{key}#{c.path}"
            key = results.clip(key, 1024) or ""
            if key in seen:
                continue
            seen.add(key)
            lookup = lookup_key(c, os_ecosystem)
            if lookup is not None:
                lookup = (lookup[0][:64], lookup[1][:512], lookup[2][:255])
                keys[lookup] = c.ecosystem[:16]
            rows.append({"c": c, "key": key, "lookup": lookup})
        package_ids = results.ensure_packages(self.session, keys)
        gone = {
            c.component_key: {"name": c.name, "version": c.version, "purl": c.purl, "layer": c.layer_digest}
            for c in self.session.scalars(select(ImageComponent).where(ImageComponent.image_id == image_id))
            if c.component_key not in seen
        }
        self.session.execute(delete(ImageComponent).where(ImageComponent.image_id == image_id))
        clip = results.clip
        inserts = [
            {
                "image_id": image_id,
                "component_key": r["key"],
                "name": clip(r["c"].name, 512),
                "version": clip(r["c"].version, 255),
                "ecosystem": clip(r["c"].ecosystem, 16),
                "purl": clip(r["c"].purl, 1024) or "",
                "source_name": clip(r["c"].source_name, 512),
                "source_version": clip(r["c"].source_version, 255),
                "arch": clip(r["c"].arch, 32),
                "layer_digest": clip(r["c"].layer_digest, 160),
                "path": clip(r["c"].path, 1024),
                "package_id": package_ids.get(r["lookup"]) if r["lookup"] else None,
            }
            for r in rows
        ]
        if inserts:
            self.session.execute(ImageComponent.__table__.insert(), inserts)
        if self._matcher is None:
            self._matcher = Matcher(self.session)
        results.match_new_packages(self.session, package_ids.values(), self._matcher)
        return gone
