"""Cached counts of open findings per effective class on ``ImageScan`` rows.

A scan or a reclassification recounts its image; a re-match moves the counts of the images it changed by
the difference it made (or, after a large change, recounts every image in one pass); an index counts each
finding once over its platforms.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from dockyard.scanning.models import (
    SEVERITY_CLASSES,
    ImageChild,
    ImageComponent,
    ImageScan,
    ScanFinding,
    ScanPackageVuln,
)

CHUNK = 500
_RANK = {name: i for i, name in enumerate(SEVERITY_CLASSES)}
_COUNT_COLUMNS = dict(zip(SEVERITY_CLASSES, ("critical", "major", "minor", "unscored"), strict=True))


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _effective() -> Any:
    return func.coalesce(ScanFinding.override_severity, ScanFinding.severity)


def move_counts(
    session: Session, generation: int, rescored: dict[tuple[int, str], tuple[str, str]], now: dt.datetime
) -> tuple[set[int], int, int]:
    """Move the cached counts by what a re-match changed: findings of the verdicts it wrote (``generation``)
    opened now, of the verdicts it removed (marked ``-generation``) resolved now, and open findings (without
    staff's class) whose verdict changed class. Returns the ids of the images moved, and how many findings
    opened and resolved."""
    delta: dict[int, Counter[str]] = defaultdict(Counter)
    total_opened = total_resolved = 0
    verdict, finding = ScanPackageVuln, ScanFinding
    opened_now = or_(finding.first_seen_at == now, finding.reopened_at == now)
    rows = session.execute(
        _through_verdicts(finding.image_id, _effective(), func.count())
        .where(verdict.generation == generation, finding.resolved_at.is_(None), opened_now)
        .group_by(finding.image_id, _effective())
    )
    for image_id, severity, n in rows:
        delta[image_id][severity] += n
        total_opened += n
    rows = session.execute(
        _through_verdicts(finding.image_id, _effective(), func.count())
        .where(verdict.generation == -generation, finding.resolved_at == now)
        .group_by(finding.image_id, _effective())
    )
    for image_id, severity, n in rows:
        delta[image_id][severity] -= n
        total_resolved += n
    for part in chunks(sorted({p for p, _v in rescored})):
        rows = session.execute(
            _through_verdicts(finding.image_id, verdict.package_id, verdict.vuln_id, func.count())
            .where(
                verdict.generation == generation,
                verdict.package_id.in_(part),
                finding.resolved_at.is_(None),
                finding.override_severity.is_(None),
                finding.first_seen_at != now,
                or_(finding.reopened_at.is_(None), finding.reopened_at != now),
            )
            .group_by(finding.image_id, verdict.package_id, verdict.vuln_id)
        )
        for image_id, pid, vuln_id, n in rows:
            if (pid, vuln_id) in rescored:
                old, new = rescored[(pid, vuln_id)]
                delta[image_id][old] -= n
                delta[image_id][new] += n
    moved = {i: d for i, d in delta.items() if any(d.values())}
    if moved:
        table = ImageScan.__table__
        values = {column: table.c[column] + bindparam(f"d_{column}") for column in _COUNT_COLUMNS.values()}
        session.execute(
            update(table).where(table.c.id == bindparam("image")).values(values),
            [
                {"image": i, **{f"d_{col}": d[cls] for cls, col in _COUNT_COLUMNS.items()}}
                for i, d in moved.items()
            ],
        )
        _refresh_parents(session, moved)
    return set(moved), total_opened, total_resolved


def _through_verdicts(*columns: Any) -> Any:
    """A select of ``columns`` over the verdicts, the components holding their packages and the findings
    they made (the finding table is reached by its key: it has no index by package or vulnerability)."""
    verdict, component, finding = ScanPackageVuln, ImageComponent, ScanFinding
    return (
        select(*columns)
        .select_from(verdict)
        .join(component, component.package_id == verdict.package_id)
        .join(
            finding,
            (finding.image_id == component.image_id)
            & (finding.vuln_id == verdict.vuln_id)
            & (finding.component_key == component.component_key)
            & (finding.package_id == verdict.package_id),
        )
    )


def recount_all(session: Session, now: dt.datetime) -> tuple[set[int], int, int]:
    """Recount every image in one pass over the findings (after a large re-match); also how many findings
    opened (or reopened) and how many were resolved at ``now``. Returns (ids of the images, opened,
    resolved)."""
    counts: dict[int, dict[str, int]] = {
        i: dict.fromkeys(SEVERITY_CLASSES, 0)
        for i in session.scalars(select(ImageScan.id).where(ImageScan.kind == "image"))
    }
    is_open, effective = ScanFinding.resolved_at.is_(None), _effective()
    opened_now = is_open & or_(ScanFinding.first_seen_at == now, ScanFinding.reopened_at == now)
    ranked = SEVERITY_CLASSES[:-1]  # any other class counts as Unscored
    # Grouped by image alone (a group per class would sort more). By ``image_id + 0``, not the column: SQLite
    # would otherwise walk the unique key in image order and look every finding up in the table, a random
    # read each (2.1 s for 1.8 million findings); reading the table through and sorting by image is 1.4 s.
    image = (ScanFinding.image_id + 0).label("image")
    rows = session.execute(
        select(
            image,
            func.count().filter(is_open),
            *(func.count().filter(is_open & (effective == name)) for name in ranked),
            func.count().filter(opened_now),
            func.count().filter(ScanFinding.resolved_at == now),
        ).group_by(image)
    )
    opened = resolved = 0
    for image_id, total, *by_class, image_opened, image_resolved in rows:
        opened, resolved = opened + image_opened, resolved + image_resolved
        if image_id in counts:
            counts[image_id].update(zip(ranked, by_class, strict=True))
            counts[image_id]["Unscored"] = total - sum(by_class)
    _write_counts(session, counts)
    _refresh_parents(session, counts)
    return set(counts), opened, resolved


def refresh_counts(session: Session, image_ids: Iterable[int]) -> None:
    """Recount the open findings per effective class of these images, and of the indexes holding them."""
    ids = sorted(set(image_ids))
    counts: dict[int, dict[str, int]] = {i: dict.fromkeys(SEVERITY_CLASSES, 0) for i in ids}
    for part in chunks(ids):
        rows = session.execute(
            select(ScanFinding.image_id, _effective(), func.count())
            .where(ScanFinding.image_id.in_(part), ScanFinding.resolved_at.is_(None))
            .group_by(ScanFinding.image_id, _effective())
        )
        for image_id, severity, n in rows:
            counts[image_id][severity if severity in _RANK else "Unscored"] += n
    _write_counts(session, counts)
    _refresh_parents(session, counts)


def _refresh_parents(session: Session, image_ids: Iterable[int]) -> None:
    parents: set[int] = set()
    for part in chunks(sorted(image_ids)):
        parents.update(
            session.scalars(select(ImageChild.index_id).where(ImageChild.child_id.in_(part)).distinct())
        )
    for index_id in sorted(parents):
        refresh_index_counts(session, index_id)


def refresh_index_counts(session: Session, index_id: int) -> None:
    """An index counts each open finding once over its platforms (the worst class when they differ)."""
    worst: dict[tuple[str, str, str], int] = {}
    rows = session.execute(
        select(ScanFinding.vuln_id, ImageComponent.name, ImageComponent.version, _effective())
        .join(ImageChild, ImageChild.child_id == ScanFinding.image_id)
        .join(
            ImageComponent,
            (ImageComponent.image_id == ScanFinding.image_id)
            & (ImageComponent.component_key == ScanFinding.component_key),
        )
        .where(ImageChild.index_id == index_id, ScanFinding.resolved_at.is_(None))
    )
    for vuln_id, name, version, severity in rows:
        rank = _RANK.get(severity, _RANK["Unscored"])
        key = (vuln_id, name, version)
        worst[key] = min(rank, worst.get(key, rank))
    counts = dict.fromkeys(SEVERITY_CLASSES, 0)
    for rank in worst.values():
        counts[SEVERITY_CLASSES[rank]] += 1
    _write_counts(session, {index_id: counts})


def _write_counts(session: Session, counts: dict[int, dict[str, int]]) -> None:
    if not counts:
        return
    table = ImageScan.__table__
    session.execute(
        update(table)
        .where(table.c.id == bindparam("image"))
        .values({col: bindparam(f"n_{col}") for col in _COUNT_COLUMNS.values()}),
        [
            {"image": i, **{f"n_{col}": c[cls] for cls, col in _COUNT_COLUMNS.items()}}
            for i, c in counts.items()
        ],
    )
    for image_id in counts:  # loaded rows would otherwise keep their old numbers
        loaded = session.identity_map.get(session.identity_key(ImageScan, image_id))
        if loaded is not None:
            session.expire(loaded, list(_COUNT_COLUMNS.values()))
