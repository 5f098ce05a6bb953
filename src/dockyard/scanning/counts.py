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

from dockyard.scanning.models import SEVERITY_CLASSES, ImageChild, ImageComponent, ImageScan, ScanFinding

CHUNK = 500
_RANK = {name: i for i, name in enumerate(SEVERITY_CLASSES)}
_COUNT_COLUMNS = dict(zip(SEVERITY_CLASSES, ("critical", "major", "minor", "unscored"), strict=True))


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _effective() -> Any:
    return func.coalesce(ScanFinding.override_severity, ScanFinding.severity)


def move_counts(
    session: Session,
    opened: Sequence[str],
    removed: Sequence[str],
    rescored: dict[tuple[int, str], tuple[str, str]],
    now: dt.datetime,
) -> tuple[set[int], int, int]:
    """Move the cached counts by what a re-match changed: findings of the ``opened`` vulnerabilities opened
    now, of the ``removed`` ones resolved now, and open findings (without staff's class) whose verdict
    changed class. Returns the ids of the images moved, and how many findings opened and resolved."""
    delta: dict[int, Counter[str]] = defaultdict(Counter)
    total_opened = total_resolved = 0
    for part in chunks(sorted(set(opened))):
        rows = session.execute(
            select(ScanFinding.image_id, _effective(), func.count())
            .where(
                ScanFinding.vuln_id.in_(part),
                ScanFinding.resolved_at.is_(None),
                or_(ScanFinding.first_seen_at == now, ScanFinding.reopened_at == now),
            )
            .group_by(ScanFinding.image_id, _effective())
        )
        for image_id, severity, n in rows:
            delta[image_id][severity] += n
            total_opened += n
    for part in chunks(sorted(set(removed))):
        rows = session.execute(
            select(ScanFinding.image_id, _effective(), func.count())
            .where(ScanFinding.vuln_id.in_(part), ScanFinding.resolved_at == now)
            .group_by(ScanFinding.image_id, _effective())
        )
        for image_id, severity, n in rows:
            delta[image_id][severity] -= n
            total_resolved += n
    for part in chunks(sorted({v for _p, v in rescored})):
        rows = session.execute(
            select(ScanFinding.image_id, ScanFinding.package_id, ScanFinding.vuln_id, func.count())
            .where(
                ScanFinding.vuln_id.in_(part),
                ScanFinding.resolved_at.is_(None),
                ScanFinding.override_severity.is_(None),
                ScanFinding.first_seen_at != now,
                or_(ScanFinding.reopened_at.is_(None), ScanFinding.reopened_at != now),
            )
            .group_by(ScanFinding.image_id, ScanFinding.package_id, ScanFinding.vuln_id)
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


def changed_at(session: Session, now: dt.datetime) -> tuple[int, int]:
    """How many findings opened (or reopened) and how many were resolved at ``now`` (one pass)."""
    opened = or_(ScanFinding.first_seen_at == now, ScanFinding.reopened_at == now)
    row = session.execute(
        select(
            func.count().filter(ScanFinding.resolved_at.is_(None) & opened),
            func.count().filter(ScanFinding.resolved_at == now),
        )
    ).one()
    return int(row[0] or 0), int(row[1] or 0)


def recount_all(session: Session) -> set[int]:
    """Recount every image in one pass over the open findings (after a large re-match)."""
    counts: dict[int, dict[str, int]] = {
        i: dict.fromkeys(SEVERITY_CLASSES, 0)
        for i in session.scalars(select(ImageScan.id).where(ImageScan.kind == "image"))
    }
    rows = session.execute(
        select(ScanFinding.image_id, _effective(), func.count())
        .where(ScanFinding.resolved_at.is_(None))
        .group_by(ScanFinding.image_id, _effective())
    )
    for image_id, severity, n in rows:
        if image_id in counts:
            counts[image_id][severity if severity in _RANK else "Unscored"] += n
    _write_counts(session, counts)
    _refresh_parents(session, counts)
    return set(counts)


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
