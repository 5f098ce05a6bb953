"""Ingest vulnerability feeds into the advisory tables, incrementally and in batches.

``ingest(session, source)`` reads a directory (``*.json``, ``*.yaml``, ``*.yml`` recursively), a zip
(osv.dev's per-ecosystem ``all.zip``), one file, or an http(s) URL to either. Each record is validated
completely first (see ``vulnfeeds``); valid records are written a batch at a time inside a savepoint, and if a
batch fails in the database it is retried one record per savepoint, so a bad record is reported and never
half-written. The caller owns the transaction and commits.

Incremental: a record whose ``modified`` is older than the stored one is skipped; one with the same
``modified`` is rewritten only when its content digest differs (feeds without ``modified``, and go-vulndb's
repository copy that stamps every record 0001-01-01, still pick up changes). Withdrawn records become
tombstones: their affected packages are deleted and the row remembers when it was withdrawn.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dockyard.db import utcnow
from dockyard.scanning.models import Advisory, AffectedPackage, FeedState
from dockyard.scanning.nvd import NVD, nvd_score, parse_nvd
from dockyard.scanning.severity import Score, best_score, borrowed_label, label_tier
from dockyard.scanning.vulnfeeds import (
    ALPINE_SECDB,
    NODE_CORE,
    NPM_LEGACY,
    NVD_CVE,
    OSV,
    AlpineFix,
    FeedError,
    Record,
    alpine_fixes,
    detect,
    iter_documents,
    nswg_legacy_id,
    parse_node_core,
    parse_npm_legacy,
    parse_osv,
)

__all__ = ["IngestReport", "ingest", "ingest_documents", "propagate_scores"]

SUFFIXES = (".json", ".yaml", ".yml")
BATCH = 500
MAX_MEMBER = 64 * 1024 * 1024  # a single advisory document; anything bigger in a zip is refused
_CHUNK = 500  # ids per IN (...) query


@dataclass
class IngestReport:
    source: str
    files: int = 0
    records: int = 0  # records read (valid or not)
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    skipped: list[str] = field(default_factory=list)  # files in no format we read (e.g. an index)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, message)
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.source}: {self.files} files, {self.records} records: {self.added} added, "
            f"{self.updated} updated, {self.unchanged} unchanged, {self.withdrawn} withdrawn, "
            f"{len(self.errors)} errors, {len(self.skipped)} skipped files in {self.seconds:.1f}s"
        )


def ingest(
    session: Session, source: str | Path, *, feed: str | None = None, http_client: Any = None
) -> IngestReport:
    """Read a feed (directory, zip, file or URL) into the advisory tables; the caller commits.

    ``feed`` names the feed in ``Advisory.source`` and ``FeedState`` (default: ``osv:<ecosystem>``,
    ``alpine-secdb``, ``npm-legacy``, ``node-core`` per record); ``http_client`` is an ``httpx.Client`` for
    URLs."""
    started = time.monotonic()
    report = IngestReport(source=str(source))
    writer = _Writer(session, report)
    alpine = _AlpineRun()
    batch: list[Record] = []
    with _located(str(source), http_client) as path:
        for label, raw in _files(path, report):
            report.files += 1
            for record in _records(label, raw, report, alpine):
                if feed:
                    record.source = feed
                batch.append(record)
                if len(batch) >= BATCH:
                    writer.write(batch)
                    batch = []
    writer.write(batch)
    for chunk in _chunks(alpine.records(session, feed or ALPINE_SECDB), BATCH):
        writer.write(chunk)
    propagate_scores(session)
    _update_feed_state(session, writer.seen)
    report.seconds = time.monotonic() - started
    return report


# ---- reading ------------------------------------------------------------------------------------------


class _located:
    """The local path of ``source``: itself, or a temporary download of a URL."""

    def __init__(self, source: str, http_client: Any) -> None:
        self.source, self.client, self.tmp = source, http_client, None

    def __enter__(self) -> Path:
        if not self.source.startswith(("http://", "https://")):
            return Path(self.source)
        import httpx

        # Keep the URL's suffix: a downloaded .yaml must still be read as YAML (a zip is told by its magic).
        suffix = Path(urlsplit(self.source).path).suffix or ".json"
        self.tmp = tempfile.NamedTemporaryFile(prefix="dockyard-feed-", suffix=suffix)
        client = self.client or httpx.Client(timeout=httpx.Timeout(60.0), follow_redirects=True)
        try:
            with client.stream("GET", self.source) as response:
                response.raise_for_status()
                for chunk in response.iter_bytes(1 << 20):
                    self.tmp.write(chunk)
        finally:
            if self.client is None:
                client.close()
        self.tmp.flush()
        return Path(self.tmp.name)

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.close()


def _files(path: Path, report: IngestReport) -> Iterator[tuple[str, bytes]]:
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()):
            yield str(file.relative_to(path)), file.read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir() or not info.filename.endswith(SUFFIXES):
                    continue
                if info.file_size > MAX_MEMBER:
                    report.errors.append((info.filename, f"larger than {MAX_MEMBER} bytes"))
                    continue
                yield info.filename, archive.read(info)
    elif path.is_file():
        yield path.name, path.read_bytes()
    else:
        raise FileNotFoundError(f"no feed at {path}")


def _load(label: str, raw: bytes) -> Any:
    if label.endswith((".yaml", ".yml")):
        # BaseLoader keeps every scalar a string: "1.10" must not become the float 1.1.
        return yaml.load(raw, Loader=getattr(yaml, "CBaseLoader", yaml.BaseLoader))
    import json

    return json.loads(raw)


def ingest_documents(
    session: Session, documents: list[Any], label: str, *, feed: str | None = None
) -> IngestReport:
    """Like ``ingest``, for records already parsed (an API page: NVD's ``vulnerabilities``)."""
    started = time.monotonic()
    report = IngestReport(source=label)
    writer = _Writer(session, report)
    records = list(_parsed(label, documents, report, _AlpineRun()))
    for record in records:
        record.source = feed or record.source
    for chunk in _chunks(records, BATCH):
        writer.write(chunk)
    propagate_scores(session)
    _update_feed_state(session, writer.seen)
    report.seconds = time.monotonic() - started
    return report


def _records(label: str, raw: bytes, report: IngestReport, alpine: _AlpineRun) -> Iterator[Record]:
    try:
        doc = _load(label, raw)
    except Exception as exc:  # json / yaml / unicode errors: the file is reported, the ingest goes on
        report.errors.append((label, f"unreadable: {exc}"))
        return
    yield from _parsed(label, doc, report, alpine)


def _parsed(label: str, doc: Any, report: IngestReport, alpine: _AlpineRun) -> Iterator[Record]:
    documents = list(iter_documents(doc))
    if not any(detect(d) for d in documents):
        report.skipped.append(label)
        return
    for index, item in enumerate(documents):
        where = label if len(documents) == 1 else f"{label}[{index}]"
        kind = detect(item)
        report.records += 1
        try:
            if kind in (OSV, NPM_LEGACY, NVD_CVE):
                if kind == NVD_CVE:
                    record = parse_nvd(item["cve"] if isinstance(item.get("cve"), dict) else item)
                else:
                    record = parse_osv(item) if kind == OSV else parse_npm_legacy(item)
                record.origin = where
                yield record
            elif kind == NODE_CORE:
                # core/<n>.json is named by its file; core/index.json's records carry their key as id.
                number = item.get("id") or PurePosixPath(label).stem
                record = parse_node_core(item, str(number))
                record.origin = where
                yield record
            elif kind == ALPINE_SECDB:
                alpine.add(*alpine_fixes(item))
            else:
                raise FeedError("not a record of a known format")
        except (FeedError, TypeError, AttributeError) as exc:
            report.errors.append((where, str(exc)))


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# ---- Alpine secdb: one advisory per CVE, one affected row per release + origin package -------------------


class _AlpineRun:
    """Collects secdb fixes across every file of one ingest, then merges them with what is stored.

    A secdb file is authoritative for the packages it lists in its release: stored rows for those
    (release, package) pairs are replaced, rows of other releases and packages are kept (ingesting only
    ``v3.19/main.json`` must not drop v3.18's rows of the same CVE)."""

    def __init__(self) -> None:
        self.fixes: dict[str, list[AlpineFix]] = defaultdict(list)
        self.covered: set[tuple[str, str]] = set()

    def add(self, ecosystem: str, listed: list[str], fixes: list[AlpineFix]) -> None:
        self.covered.update((ecosystem, name) for name in listed)
        for fix in fixes:
            self.fixes[fix.advisory_id].append(fix)

    def records(self, session: Session, source: str) -> Iterator[Record]:
        if not self.covered:
            return
        # Which stored rows survive (other releases and packages), read without their JSON first.
        stored: dict[str, list[tuple[str, str]]] = defaultdict(list)
        kept_ids: list[int] = []
        rows = session.execute(
            select(
                AffectedPackage.id,
                AffectedPackage.advisory_id,
                AffectedPackage.ecosystem,
                AffectedPackage.name,
            )
            .join(Advisory)
            .where(Advisory.source == source)
        )
        for row_id, advisory_id, ecosystem, name in rows:
            stored[advisory_id].append((ecosystem, name))
            if (ecosystem, name) not in self.covered:
                kept_ids.append(row_id)
        kept: dict[str, dict[tuple[str, str], set[str]]] = defaultdict(lambda: defaultdict(set))
        for chunk in _chunks(kept_ids, _CHUNK):
            query = select(
                AffectedPackage.advisory_id,
                AffectedPackage.ecosystem,
                AffectedPackage.name,
                AffectedPackage.ranges,
            ).where(AffectedPackage.id.in_(chunk))
            for advisory_id, ecosystem, name, ranges in session.execute(query):
                kept[advisory_id][(ecosystem, name)].update(
                    e["fixed"] for r in ranges for e in r["events"] if "fixed" in e
                )
        touched = set(self.fixes) | {
            a for a, pairs in stored.items() if any(p in self.covered for p in pairs)
        }
        meta = {
            row.id: (row.aliases, row.related)
            for row in session.execute(
                select(Advisory.id, Advisory.aliases, Advisory.related).where(Advisory.source == source)
            )
            if row.id in touched
        }
        for advisory_id in sorted(touched):
            fixes = self.fixes.get(advisory_id, [])
            fixed = kept.get(advisory_id, defaultdict(set))
            for fix in fixes:
                fixed[(fix.ecosystem, fix.package)].add(fix.fixed)
            old_aliases, old_related = meta.get(advisory_id, ([], []))
            aliases = sorted({a for f in fixes for a in f.aliases} or set(old_aliases))
            related = sorted({r for f in fixes for r in f.related} or set(old_related))
            # A CVE listed twice for one package (a fix, then a better fix) gives OR-ed ranges: affected
            # below the last fix.
            affected = [
                {
                    "ecosystem": eco,
                    "name": name,
                    "versions": [],
                    "ranges": [
                        {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": v}]}
                        for v in sorted(vs)
                    ],
                }
                for (eco, name), vs in sorted(fixed.items())
            ]
            yield Record(
                id=advisory_id,
                source=source,
                aliases=aliases,
                related=related,
                affected=affected,
                summary=f"{aliases[0] if aliases else advisory_id} fixed in Alpine",
                remove=not affected,
            )


# ---- writing ------------------------------------------------------------------------------------------


class _Writer:
    def __init__(self, session: Session, report: IngestReport) -> None:
        self.session, self.report = session, report
        self.seen: dict[str, dt.datetime | None] = {}  # source -> newest modified met

    def write(self, batch: list[Record]) -> None:
        if not batch:
            return
        newest: dict[str, Record] = {}
        for record in batch:  # a record met twice in one batch: the newer copy wins
            held = newest.get(record.id)
            if held is None or (record.modified or dt.datetime.min) >= (held.modified or dt.datetime.min):
                newest[record.id] = record
        records = list(newest.values())
        for record in records:
            last = self.seen.get(record.source)
            stamp = max(filter(None, (record.modified, record.withdrawn)), default=None)
            self.seen[record.source] = max(filter(None, (last, stamp)), default=None)
        try:
            with self.session.begin_nested():
                counts = self._apply(records)
        except SQLAlchemyError:
            counts = {}
            for record in records:  # find the record the database refused; keep the others
                try:
                    with self.session.begin_nested():
                        for key, n in self._apply([record]).items():
                            counts[key] = counts.get(key, 0) + n
                except SQLAlchemyError as exc:
                    where = record.origin or record.id
                    self.report.errors.append(
                        (where, f"{record.id}: the database refused it ({exc.__class__.__name__})")
                    )
        for key, n in counts.items():
            setattr(self.report, key, getattr(self.report, key) + n)

    def _apply(self, records: list[Record]) -> dict[str, int]:
        session = self.session
        existing: dict[str, tuple[dt.datetime | None, str, dt.datetime | None]] = {}
        ids = [r.id for r in records]
        for chunk in _chunks(ids, _CHUNK):
            rows = session.execute(
                select(Advisory.id, Advisory.modified, Advisory.digest, Advisory.withdrawn).where(
                    Advisory.id.in_(chunk)
                )
            )
            existing.update({row.id: (row.modified, row.digest, row.withdrawn) for row in rows})
        counts = {"added": 0, "updated": 0, "unchanged": 0, "withdrawn": 0}
        inserts, updates, clear, removes, affected = [], [], [], [], []
        # A Node.js WG record stored before under its old name (NPM-<n>, NODE-<n>): that row goes.
        legacy = [name for r in records if (name := nswg_legacy_id(r.id))]
        for chunk in _chunks(legacy, _CHUNK):
            stored = list(session.scalars(select(Advisory.id).where(Advisory.id.in_(chunk))))
            removes += stored
            counts["withdrawn"] += len(stored)
        for record in records:
            old = existing.get(record.id)
            digest = record.digest
            if record.remove:
                if old is not None:
                    removes.append(record.id)
                    counts["withdrawn"] += 1
                continue
            if old is not None:
                old_modified, old_digest, old_withdrawn = old
                stale = record.modified and old_modified and record.modified < old_modified
                # A tombstone comes back only with a strictly newer record, never with a replayed copy.
                revived = old_withdrawn and not record.withdrawn
                if revived and not (record.modified and old_modified and record.modified > old_modified):
                    stale = True
                if stale or old_digest == digest:
                    counts["unchanged"] += 1
                    continue
                clear.append(record.id)
                counts["withdrawn" if record.withdrawn and not old_withdrawn else "updated"] += 1
                updates.append(_row(record, digest))
            else:
                counts["withdrawn" if record.withdrawn else "added"] += 1
                inserts.append(_row(record, digest))
            if not record.withdrawn:
                affected.extend({"advisory_id": record.id, **a} for a in record.affected)
        for chunk in _chunks(clear + removes, _CHUNK):
            session.execute(
                delete(AffectedPackage).where(AffectedPackage.advisory_id.in_(chunk)),
                execution_options={"synchronize_session": False},
            )
        for chunk in _chunks(removes, _CHUNK):
            session.execute(
                delete(Advisory).where(Advisory.id.in_(chunk)),
                execution_options={"synchronize_session": False},
            )
        # Core inserts (executemany): the ORM's bulk path costs more than the database does here.
        if inserts:
            session.execute(insert(Advisory.__table__), inserts)
        if updates:
            session.execute(update(Advisory), updates)
        if affected:
            session.execute(insert(AffectedPackage.__table__), affected)
        return counts


def _row(record: Record, digest: str) -> dict[str, Any]:
    if record.source == NVD:
        found = nvd_score(record.severity)
        score = found.score if found else None
    else:
        score = best_score(record.severity)
    return {
        "id": record.id,
        "source": record.source,
        "modified": record.modified,
        "published": record.published,
        "withdrawn": record.withdrawn,
        "summary": record.summary,
        "details": record.details,
        "aliases": record.aliases,
        "related": record.related,
        "severity": record.severity,
        "score": score.score if score else None,
        "cvss_vector": score.vector if score else None,
        "cvss_version": score.version if score else None,
        "score_from": None,
        "digest": digest,
        "ingested_at": utcnow(),
    }


def propagate_scores(session: Session) -> int:
    """Give every advisory without a vector of its own the preferred score of a record that shares one of
    its ids (an alias, or the same CVE in another feed or in NVD), in the order ``severity`` documents: NVD's
    Primary score, then any secondary source's (NVD's Secondary metrics, GitHub's advisories, other feeds),
    the preferred CVSS version and the higher score within each. ``score_from`` records the lender. Returns
    how many rows changed."""
    rows = session.execute(
        select(
            Advisory.id,
            Advisory.source,
            Advisory.aliases,
            Advisory.score,
            Advisory.cvss_vector,
            Advisory.cvss_version,
            Advisory.score_from,
        ).where(Advisory.withdrawn.is_(None))
    ).all()
    nvd_labels: dict[str, str] = {}
    for vid, severity in session.execute(
        select(Advisory.id, Advisory.severity).where(
            Advisory.source == NVD, Advisory.withdrawn.is_(None), Advisory.score.is_not(None)
        )
    ):
        found = nvd_score(severity or [])
        if found is not None:
            nvd_labels[vid] = borrowed_label(vid, found.primary, found.source)
    donors: dict[str, tuple[tuple[int, int, float, str], Score, str]] = {}
    for row in rows:
        if row.score is None or row.score_from is not None:
            continue
        own = Score(row.score, row.cvss_vector, row.cvss_version)
        label = nvd_labels.get(row.id, row.id)
        key = (label_tier(label), *own.rank(), label)
        for name in (row.id, *row.aliases):
            held = donors.get(name)
            if held is None or key < held[0]:
                donors[name] = (key, own, label)
    changes = []
    for row in rows:
        if (row.score is not None and row.score_from is None) or row.source == NVD:
            continue  # scored by its own vector; NVD's records lend scores, they borrow none
        offers = [donors[k] for k in (row.id, *row.aliases) if k in donors and donors[k][2] != row.id]
        best = min(offers, key=lambda o: o[0]) if offers else None
        none = (None, None, None, None)
        target = (best[1].score, best[1].vector, best[1].version, best[2][:128]) if best else none
        if target != (row.score, row.cvss_vector, row.cvss_version, row.score_from):
            changes.append(
                dict(
                    zip(
                        ("id", "score", "cvss_vector", "cvss_version", "score_from"),
                        (row.id, *target),
                        strict=True,
                    )
                )
            )
    if changes:
        session.execute(update(Advisory), changes)
    return len(changes)


def _update_feed_state(session: Session, seen: dict[str, dt.datetime | None]) -> None:
    for source, newest in seen.items():
        live = session.scalar(
            select(func.count())
            .select_from(Advisory)
            .where(Advisory.source == source, Advisory.withdrawn.is_(None))
        )
        state = session.get(FeedState, source) or FeedState(source=source)
        if newest and (state.last_modified is None or newest > state.last_modified):
            state.last_modified = newest
        state.records = int(live or 0)
        state.updated_at = utcnow()
        session.add(state)
    session.flush()
