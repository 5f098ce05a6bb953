"""Writing scan results: package verdicts, an image's findings, the fan-out of a re-match, cached counts.

An image's open findings are always its components joined with the current verdicts of their packages
(``ScanPackageVuln``). A scan keeps that true for one image; ``rematch`` recomputes every package's verdicts
and applies only the differences, to every image holding a changed package, in set-based statements, and
moves the cached counts by the differences too. Nothing here reads a layer.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, literal, select, text, update
from sqlalchemy.orm import Session

from dockyard.db import upsert_statement
from dockyard.scanning import counts
from dockyard.scanning.indexer import OS_ECOSYSTEMS
from dockyard.scanning.matcher import Matcher, Vulnerability, lookup_key
from dockyard.scanning.models import (
    SEVERITY_CLASSES,
    ImageComponent,
    ImageScan,
    ScanFinding,
    ScanPackage,
    ScanPackageVuln,
)
from dockyard.scanning.types import Component

log = logging.getLogger("dockyard.scanning")

CHUNK = 500  # values per IN (...) list
MATCH_LOCK = 0x64795363  # PostgreSQL advisory lock: scans share it, a re-match takes it alone
# Above this many changed verdicts a re-match recounts every image in one pass instead of moving counts.
DELTA_LIMIT = 2000
# SQLite's page cache (KiB) while a re-match writes: the first match of a large fleet inserts millions of
# findings, and with the default 2 MB cache the inserts re-read the pages of the finding key.
REMATCH_CACHE_KIB = 256 << 10
# PostgreSQL's work memory for sorting a fleet's new findings (per statement, for the re-match only).
REMATCH_SORT_MEMORY = "256MB"
_RANK = {name: i for i, name in enumerate(SEVERITY_CLASSES)}
VERDICT_COLUMNS = (
    "aliases",
    "fixed_version",
    "score",
    "vector",
    "severity",
    "summary",
    "score_source",
    "score_record",
)
_COUNT_COLUMNS = dict(zip(SEVERITY_CLASSES, ("critical", "major", "minor", "unscored"), strict=True))

PackageKey = tuple[str, str, str]  # (ecosystem, name, version) as the matcher looks it up


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def clip(value: str | None, length: int) -> str | None:
    """A string cut to a column's length (PostgreSQL refuses longer ones; hostile images have them)."""
    return value if value is None or len(value) <= length else value[:length]


def match_lock(session: Session, *, exclusive: bool) -> None:
    """Serialise re-matches against scans (PostgreSQL; SQLite writers are serial already).

    A scan computes verdicts for packages it is the first to see; a re-match that started before the scan
    committed would not see those packages, so it waits for running scans, and scans wait for it."""
    if session.get_bind().dialect.name == "postgresql":
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        session.execute(text(f"SELECT {fn}(:key)"), {"key": MATCH_LOCK})


def insert_ignore(session: Session, table: Any, rows: list[dict[str, Any]], keys: list[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO NOTHING, for SQLite and PostgreSQL (concurrent scans race here)."""
    if rows:
        # session.execute, not db.upsert: callers may have ORM rows pending that these refer to (autoflush).
        statement = upsert_statement(session.get_bind().dialect.name, table, tuple(keys))
        session.execute(statement, rows)


def verdict_row(v: Vulnerability) -> dict[str, Any]:
    return {
        "vuln_id": v.id,
        "aliases": list(v.aliases),
        "fixed_version": clip(v.fixed_version, 255),
        "score": v.score,
        "vector": clip(v.vector, 256),
        "severity": v.severity.value,
        "summary": clip(v.summary or "", 512) or "",
        "score_source": clip(v.score_source, 128),
        "score_record": clip(v.score_record, 128),
    }


# ---- packages and their verdicts ---------------------------------------------------------------------------


def ensure_packages(session: Session, keys: dict[PackageKey, str]) -> dict[PackageKey, int]:
    """Ids of the packages ``keys`` (key -> component ecosystem), inserting the new ones in key order."""
    wanted = sorted(keys)
    rows = [
        {"ecosystem": e, "name": n, "version": v, "component_ecosystem": keys[(e, n, v)], "matched_at": None}
        for e, n, v in wanted
    ]
    insert_ignore(session, ScanPackage.__table__, rows, ["ecosystem", "name", "version"])
    ids: dict[PackageKey, int] = {}
    by_ecosystem: dict[str, set[str]] = defaultdict(set)
    for e, n, _v in wanted:
        by_ecosystem[e].add(n)
    for eco, names in by_ecosystem.items():
        for part in chunks(sorted(names)):
            query = select(
                ScanPackage.id, ScanPackage.ecosystem, ScanPackage.name, ScanPackage.version
            ).where(ScanPackage.ecosystem == eco, ScanPackage.name.in_(part))
            for pid, e, n, v in session.execute(query):
                if (e, n, v) in keys:
                    ids[(e, n, v)] = pid
    return ids


def compute_verdicts(
    matcher: Matcher, packages: Iterable[tuple[int, str, str, str, str]]
) -> dict[int, tuple[Vulnerability, ...]]:
    """What each package (id, ecosystem, name, version, component ecosystem) is affected by, now."""
    groups: dict[str | None, list[tuple[int, Component]]] = defaultdict(list)
    for pid, eco, name, version, comp_eco in packages:
        os_ecosystem = eco if comp_eco in OS_ECOSYSTEMS else None
        probe = Component(name, version, comp_eco, "", "", "", source_name=name, source_version=version)
        if lookup_key(probe, os_ecosystem) != (eco, name, version):
            log.warning("package %s/%s@%s cannot be looked up again; not matched", eco, name, version)
            continue
        groups[os_ecosystem].append((pid, probe))
    verdicts: dict[int, list[Vulnerability]] = {}
    for os_ecosystem, members in groups.items():
        owner = {id(probe): pid for pid, probe in members}
        for pid, _probe in members:
            verdicts[pid] = []
        for finding in matcher.match([probe for _, probe in members], os_ecosystem):
            verdicts[owner[id(finding.component)]].append(finding.vulnerability)
    return {pid: tuple(vs) for pid, vs in verdicts.items()}


def match_new_packages(session: Session, package_ids: Iterable[int], matcher: Matcher) -> None:
    """Compute and store the verdicts of the packages no scan or re-match has matched yet."""
    columns = (ScanPackage.ecosystem, ScanPackage.name, ScanPackage.version, ScanPackage.component_ecosystem)
    new: list[Any] = []
    for part in chunks(sorted(set(package_ids))):
        query = select(ScanPackage.id, *columns).where(
            ScanPackage.id.in_(part), ScanPackage.matched_at.is_(None)
        )
        new += session.execute(query).all()
    if not new:
        return
    verdicts = compute_verdicts(matcher, new)
    rows = [{"package_id": p, **verdict_row(v), "generation": 0} for p, vs in verdicts.items() for v in vs]
    insert_ignore(session, ScanPackageVuln.__table__, rows, ["package_id", "vuln_id"])
    for part in chunks([p[0] for p in new]):
        session.execute(update(ScanPackage).where(ScanPackage.id.in_(part)).values(matched_at=_now()))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _verdict_detail(row: Any) -> dict[str, Any]:
    """What a resolved finding keeps of the verdict that made it (the verdict may be gone tomorrow)."""
    return {c: getattr(row, c) for c in VERDICT_COLUMNS if c != "severity"}


# ---- one image ---------------------------------------------------------------------------------------------


def sync_image_findings(
    session: Session, image_id: int, now: dt.datetime, gone: dict[str, dict[str, Any]] | None = None
) -> tuple[int, int]:
    """Make the image's findings its components joined with their verdicts: new findings start now, gone
    ones are resolved now (keeping ``gone`` components' details), re-appearing ones reopen.
    Returns (new or reopened, resolved)."""
    expected: dict[tuple[str, str], tuple[int, str]] = {}
    rows = session.execute(
        select(
            ImageComponent.component_key,
            ScanPackageVuln.package_id,
            ScanPackageVuln.vuln_id,
            ScanPackageVuln.severity,
        )
        .join(ScanPackageVuln, ScanPackageVuln.package_id == ImageComponent.package_id)
        .where(ImageComponent.image_id == image_id)
    )
    for key, pid, vuln_id, severity in rows:
        expected[(vuln_id, key)] = (pid, severity)
    existing = {
        (f.vuln_id, f.component_key): f
        for f in session.scalars(select(ScanFinding).where(ScanFinding.image_id == image_id))
    }
    added = resolved = 0
    inserts = []
    for (vuln_id, key), (pid, severity) in expected.items():
        finding = existing.get((vuln_id, key))
        if finding is None:
            inserts.append(
                {
                    "image_id": image_id,
                    "vuln_id": vuln_id,
                    "component_key": key,
                    "package_id": pid,
                    "severity": severity,
                    "first_seen_at": now,
                }
            )
            added += 1
            continue
        if finding.resolved_at is not None:
            finding.resolved_at, finding.reopened_at, finding.detail = None, now, None
            added += 1
        finding.package_id, finding.severity = pid, severity
    leaving = [f for key, f in existing.items() if key not in expected and f.resolved_at is None]
    verdicts = _verdicts_of(session, {(f.package_id, f.vuln_id) for f in leaving if f.package_id is not None})
    for finding in leaving:
        verdict = verdicts.get((finding.package_id, finding.vuln_id))
        detail = _verdict_detail(verdict) if verdict is not None else {}
        if gone and finding.component_key in gone:
            detail["component"] = gone[finding.component_key]
        finding.resolved_at, finding.detail = now, detail
        resolved += 1
    session.flush()
    if inserts:
        session.execute(insert(ScanFinding.__table__), inserts)
    return added, resolved


def _verdicts_of(session: Session, pairs: set[tuple[int, str]]) -> dict[tuple[int, str], Any]:
    found: dict[tuple[int, str], Any] = {}
    package_ids = sorted({p for p, _ in pairs})
    for part in chunks(package_ids):
        query = select(ScanPackageVuln).where(ScanPackageVuln.package_id.in_(part))
        for row in session.scalars(query):
            if (row.package_id, row.vuln_id) in pairs:
                found[(row.package_id, row.vuln_id)] = row
    return found


# ---- every image -----------------------------------------------------------------------------------------


@dataclass
class RematchReport:
    packages: int = 0  # distinct packages matched
    verdicts_added: int = 0
    verdicts_removed: int = 0
    verdicts_changed: int = 0
    images: int = 0  # images whose open findings changed
    new: int = 0  # findings opened or reopened
    resolved: int = 0
    seconds: float = 0.0
    touched: set[int] = field(default_factory=set, repr=False)  # ids of those images


@contextmanager
def bulk_writes(session: Session) -> Iterator[None]:
    """A larger SQLite page cache for the statements inside (restored after); nothing on PostgreSQL."""
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    previous = session.execute(text("PRAGMA cache_size")).scalar()
    session.execute(text(f"PRAGMA cache_size = -{REMATCH_CACHE_KIB}"))
    try:
        yield
    finally:
        session.execute(text(f"PRAGMA cache_size = {int(previous or -2000)}"))


def rematch(session: Session, matcher: Matcher, now: dt.datetime) -> RematchReport:
    """Re-match every package against the advisory tables; apply the changes to every image's findings."""
    with bulk_writes(session):
        return _rematch(session, matcher, now)


def _rematch(session: Session, matcher: Matcher, now: dt.datetime) -> RematchReport:
    report = RematchReport()
    columns = (ScanPackage.ecosystem, ScanPackage.name, ScanPackage.version, ScanPackage.component_ecosystem)
    packages = session.execute(select(ScanPackage.id, *columns)).all()
    report.packages = len(packages)
    fresh = compute_verdicts(matcher, packages)
    stored: dict[tuple[int, str], Any] = {
        (row.package_id, row.vuln_id): row
        for row in session.execute(
            select(ScanPackageVuln.id, ScanPackageVuln.package_id, ScanPackageVuln.vuln_id, *_verdict_cols())
        )
    }
    generation = (session.scalar(select(func.max(ScanPackageVuln.generation))) or 0) + 1
    added: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    rescored: dict[tuple[int, str], tuple[str, str]] = {}
    for pid, vulns in fresh.items():
        for v in vulns:
            row = {"package_id": pid, **verdict_row(v), "generation": generation}
            old = stored.pop((pid, v.id), None)
            if old is None:
                added.append(row)
            elif any(getattr(old, c) != row[c] for c in VERDICT_COLUMNS):
                changed.append({"pv_id": old.id, **row})
                if old.severity != row["severity"]:
                    rescored[(pid, v.id)] = (old.severity, row["severity"])
    removed = list(stored.values())  # no longer true (or of packages that could not be matched again)
    report.verdicts_added, report.verdicts_changed = len(added), len(changed)
    report.verdicts_removed = len(removed)

    # Removed verdicts are marked (generation -generation) and deleted last: until then the statements below
    # reach their findings through them.
    for part in chunks([r.id for r in removed]):
        session.execute(
            update(ScanPackageVuln).where(ScanPackageVuln.id.in_(part)).values(generation=-generation)
        )
    if added:
        session.execute(insert(ScanPackageVuln.__table__), added)
    if changed:
        names = (*VERDICT_COLUMNS, "generation")
        session.execute(
            update(ScanPackageVuln.__table__)
            .where(ScanPackageVuln.id == bindparam("pv_id"))
            .values({c: bindparam(f"new_{c}") for c in names}),
            [{"pv_id": r["pv_id"], **{f"new_{c}": r[c] for c in names}} for r in changed],
        )
    session.execute(update(ScanPackage).values(matched_at=now))

    finding = ScanFinding.__table__
    if removed:
        session.execute(
            update(finding)
            .where(finding.c.id.in_(pair_findings(resolved=False)))
            .values(resolved_at=now, detail=bindparam("gone")),
            [{"pid": r.package_id, "vid": r.vuln_id, "gone": _verdict_detail(r)} for r in removed],
        )
    if rescored:
        session.execute(
            update(finding)
            .where(finding.c.id.in_(pair_findings(resolved=False)))
            .values(severity=bindparam("sev")),
            [{"pid": p, "vid": v, "sev": new} for (p, v), (_old, new) in rescored.items()],
        )
    if added or changed:
        # A fleet's first match (or a change to most packages' verdicts) reads every component anyway.
        most = 4 * len({r["package_id"] for r in added + changed}) > report.packages
        _open_added(session, added, generation, now, every_component=most)
    # Rows counts of executemany and INSERT ... SELECT are not reported alike by every driver: count.
    if len(added) + len(removed) + len(rescored) > DELTA_LIMIT:
        report.touched, report.new, report.resolved = counts.recount_all(session, now)
    else:
        report.touched, report.new, report.resolved = counts.move_counts(session, generation, rescored, now)
    session.execute(delete(ScanPackageVuln).where(ScanPackageVuln.generation == -generation))
    report.images = len(report.touched)
    return report


def pair_findings(*, resolved: bool) -> Any:
    """The ids of the findings (open, or resolved) of the verdict (``:pid``, ``:vid``), reached through the
    components holding the package and the finding key (the finding table has no index by package or by
    vulnerability). An open finding's component is always there with that package: a scan resolves the
    findings of components that went away, and a re-match opens findings only on components."""
    finding, component = ScanFinding.__table__, ImageComponent.__table__
    state = finding.c.resolved_at.is_not(None) if resolved else finding.c.resolved_at.is_(None)
    return (
        select(finding.c.id)
        .select_from(component)
        .join(
            finding,
            and_(
                finding.c.image_id == component.c.image_id,
                finding.c.component_key == component.c.component_key,
            ),
        )
        .where(
            component.c.package_id == bindparam("pid"),
            finding.c.vuln_id == bindparam("vid"),
            finding.c.package_id == bindparam("pid"),
            state,
        )
    )


def _verdict_cols() -> list[Any]:
    return [getattr(ScanPackageVuln, c) for c in VERDICT_COLUMNS]


def _open_added(
    session: Session, added: list[dict[str, Any]], generation: int, now: dt.datetime, *, every_component: bool
) -> None:
    """Open findings for the verdicts written now: reopen resolved ones whose component is still there,
    insert the rest (``every_component``: most packages have verdicts written now)."""
    finding = ScanFinding.__table__
    coming_back = added
    if every_component:  # one pass over the findings instead of one probe of every component per verdict
        resolved = select(finding.c.package_id, finding.c.vuln_id).where(finding.c.resolved_at.is_not(None))
        named = {(p, v) for p, v in session.execute(resolved.distinct())}
        coming_back = [r for r in added if (r["package_id"], r["vuln_id"]) in named]
    if coming_back:
        session.execute(
            update(finding)
            .where(finding.c.id.in_(pair_findings(resolved=True)))
            .values(resolved_at=None, reopened_at=now, detail=None, severity=bindparam("sev")),
            [{"pid": r["package_id"], "vid": r["vuln_id"], "sev": r["severity"]} for r in coming_back],
        )
    columns = ["image_id", "vuln_id", "component_key", "package_id", "severity", "first_seen_at"]
    dialect = session.get_bind().dialect.name
    source = _new_findings(generation, now, every_component=every_component, dialect=dialect)
    # The unique key skips the findings that exist already (the open ones of a changed verdict, the ones
    # reopened above, a resolved one of another package).
    upsert = upsert_statement(dialect, finding, ("image_id", "vuln_id", "component_key"))
    if not every_component or dialect != "postgresql":
        session.execute(upsert.from_select(columns, source))
        return
    # PostgreSQL's conflict check costs each row a second descent of the key and more WAL (by hand it
    # doubles the insert of a fleet's findings). The images holding no finding yet cannot conflict (the
    # source repeats no key, and scans, the only other writers, wait for the exclusive match lock): their
    # rows go in plainly, after the others' (which add no image to those holding findings). Those images
    # are probed once each, not once per component, and hashed by the planner. The rows come sorted in key
    # order, whose sort needs more than the default 4 MB of work memory for a fleet (it spills to disk).
    image, component = ImageScan.__table__, ImageComponent.__table__
    holding = select(image.c.id).where(select(finding.c.id).where(finding.c.image_id == image.c.id).exists())
    session.execute(text(f"SET LOCAL work_mem = '{REMATCH_SORT_MEMORY}'"))
    # The planner's figures for the verdicts predate the ones written now (this transaction's): without them
    # it takes the join for a few rows, through the package index, and sorts a fleet's findings on disk.
    session.execute(text(f"ANALYZE {ScanPackageVuln.__tablename__}"))
    session.execute(upsert.from_select(columns, source.where(component.c.image_id.in_(holding))))
    session.execute(insert(finding).from_select(columns, source.where(component.c.image_id.not_in(holding))))
    session.execute(text("RESET work_mem"))


def _new_findings(generation: int, now: dt.datetime, *, every_component: bool, dialect: str) -> Any:
    """Components joined with the verdicts written now, as finding rows."""
    component, pv = ImageComponent.__table__, ScanPackageVuln.__table__
    query = select(
        component.c.image_id,
        pv.c.vuln_id,
        component.c.component_key,
        component.c.package_id,
        pv.c.severity,
        literal(now, ScanFinding.first_seen_at.type),
    ).join_from(component, pv, component.c.package_id == pv.c.package_id)
    if not every_component:  # the few verdicts' components, through the package index
        return query.where(pv.c.generation == generation)
    # Every component, one image's rows together: the finding table and its key then grow at their ends,
    # where reaching each component through the package index reads the component table at random and the
    # key takes rows out of order. SQLite reads them in table order, without a sort; PostgreSQL sorts them
    # in the key's own order, so its B-tree appends at its rightmost leaf (a key of 194 MB instead of 517 MB
    # for a 10,000-image fleet). "+ 0" keeps either from driving the join by the verdicts' generation.
    order = (
        (component.c.image_id, pv.c.vuln_id, component.c.component_key)
        if dialect == "postgresql"
        else (component.c.id,)
    )
    return query.where(pv.c.generation + 0 == generation).order_by(*order)
