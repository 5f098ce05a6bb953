"""Node.js security WG advisories under their own names: NPM-<n> -> NSWG-ECO-<n>, NODE-<n> -> NSWG-COR-<n>

The feed reader now names the WG's records as the WG and Trivy do. Without this migration the next read of
the feed withdrew every NPM-<n>/NODE-<n> row and added it again under the new name, and everything keyed
by the old name was lost: findings resolved and opened again (first seen today), fix clocks closed and
opened with new deadlines, accepted VEX statements and staff's reclassifications no longer applying.

Renamed, wherever an advisory or vulnerability id is stored: the advisory rows (their affected packages
follow; the content digest is recomputed for the new name, so the next read of the feed finds them
unchanged) and the scores other records borrowed from them (``score_from``); verdicts (``vuln_id``,
``aliases``, ``score_record``); findings (``vuln_id``, and what a resolved one kept of its verdict in
``detail``); fix clocks; VEX statements; review comments anchored on a finding. Alert items are keyed by
finding and follow it. Left alone: the other feeds' own aliases (what those feeds say; the reader writes
them as it reads them), and the records of what was said at the time (audit events, mail, webhooks).

A database that read the feed under the new names before this migration (the reader of the version before
it) holds both names. Then one row is kept under the new name: a finding keeps the old row (its id, which
its clocks and alert items point at, when it was first seen, staff's class) and the current state of the
pair; a clock keeps the old deadline and notice, and is open again when the feed's rename was what closed
it; the advisory and verdict under the new name are the feed's current ones and the old copies go; a
statement filed again under the new name while one under the old name is waiting, or accepted for the same
component, goes. Image counts are then recounted where findings merged.

Done in Python over rows selected in batches (no regular expressions in SQL: SQLite has none); running it
again finds nothing to rename.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 08:00:00
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

BATCH = 500
_OLD_NAME = re.compile(r"^(NPM|NODE)-([0-9]+)$")
_NEW_PREFIX = {"NPM": "NSWG-ECO-", "NODE": "NSWG-COR-"}
_OLD_LIKE = ("NPM-%", "NODE-%")
FEED = "feed"  # compliance.models.Resolution.FEED: a clock closed because a re-match resolved its finding
PENDING, ACCEPTED = "pending", "accepted"  # compliance.models.VexDecision
CLASSES = {"Critical": "critical", "Major": "major", "Minor": "minor", "Unscored": "unscored"}  # by rank


def _table(table_name: str, /, **columns: Any) -> Any:
    """A table keyed by an integer ``id``, with ``columns`` (name=type)."""
    return sa.table(table_name, sa.column("id", sa.Integer), *(sa.column(c, t) for c, t in columns.items()))


# The columns this migration reads and writes, as they are at this revision.
advisory = sa.table(
    "vuln_advisory",
    *(sa.column(c, sa.String) for c in ("id", "source", "summary", "details", "score_from", "digest")),
    *(sa.column(c, sa.DateTime) for c in ("modified", "published", "withdrawn")),
    *(sa.column(c, sa.JSON) for c in ("aliases", "related", "severity")),
)
affected = _table(
    "vuln_affected",
    advisory_id=sa.String,
    ecosystem=sa.String,
    name=sa.String,
    ranges=sa.JSON,
    versions=sa.JSON,
)
verdict = _table(
    "scan_package_vuln", package_id=sa.Integer, vuln_id=sa.String, aliases=sa.JSON, score_record=sa.String
)
finding = _table(
    "scan_finding",
    image_id=sa.Integer,
    vuln_id=sa.String,
    component_key=sa.String,
    package_id=sa.Integer,
    severity=sa.String,
    override_severity=sa.String,
    override_reason=sa.String,
    override_by=sa.String,
    override_at=sa.DateTime,
    first_seen_at=sa.DateTime,
    resolved_at=sa.DateTime,
    reopened_at=sa.DateTime,
    detail=sa.JSON(none_as_null=True),
)
clock = _table(
    "compliance_clock",
    product_id=sa.Integer,
    revision_id=sa.Integer,
    finding_id=sa.Integer,
    vuln_id=sa.String,
    resolved_at=sa.DateTime,
    resolution=sa.String,
)
vex = _table(
    "compliance_vex", product_id=sa.Integer, vuln_id=sa.String, component=sa.String, decision=sa.String
)
alert_item = _table("alert_item", watch_id=sa.Integer, finding_id=sa.Integer, seen_at=sa.DateTime)
comment = _table("review_comment", anchor_kind=sa.String, anchor=sa.String)
image = _table("scan_image", **dict.fromkeys(CLASSES.values(), sa.Integer))
image_child = sa.table(
    "scan_image_child", sa.column("index_id", sa.Integer), sa.column("child_id", sa.Integer)
)
component = sa.table(
    "scan_component",
    *(sa.column(c, sa.String) for c in ("component_key", "name", "version")),
    sa.column("image_id", sa.Integer),
)


def new_name(vuln_id: Any) -> str | None:
    """``NPM-516`` -> ``NSWG-ECO-516``, ``NODE-12`` -> ``NSWG-COR-12``; None for any other id."""
    found = _OLD_NAME.match(vuln_id) if isinstance(vuln_id, str) else None
    return _NEW_PREFIX[found.group(1)] + found.group(2) if found else None


def renamed(vuln_id: Any) -> Any:
    return new_name(vuln_id) or vuln_id


def renamed_aliases(aliases: Any) -> Any:
    """A verdict's aliases under the new names, sorted as the matcher writes them (else unchanged)."""
    if not isinstance(aliases, list) or not any(new_name(a) for a in aliases):
        return aliases
    return sorted({renamed(a) for a in aliases})


def renamed_detail(detail: Any) -> Any:
    """What a resolved finding kept of its verdict (``aliases``, ``score_record``), under the new names."""
    if not isinstance(detail, dict):
        return detail
    out = dict(detail)
    if "aliases" in out:
        out["aliases"] = renamed_aliases(out["aliases"])
    if "score_record" in out:
        out["score_record"] = renamed(out["score_record"])
    return out


def _mentions_old(column: Any, *, inside: bool = False) -> Any:
    """A pre-filter (LIKE reads alike on both databases; a JSON list is read as its text); ``new_name`` is
    the exact test."""
    text = sa.cast(column, sa.Text) if inside else column
    return sa.or_(*(text.like(("%" if inside else "") + pattern) for pattern in _OLD_LIKE))


def _pages(conn: Any, query: Any, key: Any) -> Iterator[list[Any]]:
    """The rows of ``query`` a batch at a time, by ascending ``key`` (each batch read after the writes of
    the one before: a renamed row no longer matches)."""
    last = None
    while True:
        page = query if last is None else query.where(key > last)
        rows = conn.execute(page.order_by(key).limit(BATCH)).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), BATCH):
        yield items[i : i + BATCH]


def _update(conn: Any, table: Any, rows: list[dict[str, Any]], key: str = "id") -> None:
    """UPDATE ``table`` SET the other columns of each row WHERE ``key`` is its ``key`` (one executemany)."""
    if not rows:
        return
    columns = [c for c in rows[0] if c != key]
    statement = (
        table.update()
        .where(table.c[key] == sa.bindparam("b_key"))
        .values({c: sa.bindparam(f"b_{c}", type_=table.c[c].type) for c in columns})
    )
    conn.execute(statement, [{"b_key": row[key], **{f"b_{c}": row[c] for c in columns}} for row in rows])


def _delete(conn: Any, table: Any, ids: Iterable[Any]) -> None:
    for part in _chunks(sorted(set(ids))):
        conn.execute(table.delete().where(table.c.id.in_(part)))


# ---- advisories --------------------------------------------------------------------------------------------


def record_digest(row: Any, packages: list[Any], advisory_id: str) -> str:
    """The reader's content digest (``vulnfeeds.Record.digest``) of a stored record, under ``advisory_id``."""
    fields = (
        "source",
        "modified",
        "published",
        "withdrawn",
        "summary",
        "details",
        "aliases",
        "related",
        "severity",
    )
    body = {
        "id": advisory_id,
        **{f: getattr(row, f) for f in fields},
        "affected": [
            {"ecosystem": p.ecosystem, "name": p.name, "ranges": p.ranges, "versions": p.versions}
            for p in packages
        ],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _rename_advisories(conn: Any) -> None:
    quote = conn.dialect.identifier_preparer.quote
    columns = sa.inspect(conn).get_columns("vuln_advisory")
    names = ", ".join(quote(c["name"]) for c in columns if c["name"] != "id")
    # A copy under the new name, its packages moved to it, then the old row deleted: the packages' foreign
    # key does not follow an update of the advisory's id.
    copy = sa.text(
        f"INSERT INTO vuln_advisory (id, {names}) SELECT :new, {names} FROM vuln_advisory WHERE id = :old"
    )
    move = (
        affected.update()
        .where(affected.c.advisory_id == sa.bindparam("old"))
        .values(advisory_id=sa.bindparam("new"))
    )
    for rows in _pages(conn, sa.select(advisory).where(_mentions_old(advisory.c.id)), advisory.c.id):
        old = {r.id: r for r in rows if new_name(r.id)}
        if not old:
            continue
        query = sa.select(advisory.c.id).where(advisory.c.id.in_([new_name(i) for i in old]))
        present = set(conn.scalars(query))
        packages: dict[str, list[Any]] = defaultdict(list)
        query = sa.select(affected).where(affected.c.advisory_id.in_(list(old))).order_by(affected.c.id)
        for p in conn.execute(query):
            packages[p.advisory_id].append(p)
        moves, digests = [], []
        for old_id, row in old.items():
            new = new_name(old_id)
            if new in present:
                continue  # the feed's current copy is there already: the old one goes with its packages
            moves.append({"old": old_id, "new": new})
            # Only a digest the reader would have written is recomputed; any other waits for its next read.
            if record_digest(row, packages[old_id], old_id) == row.digest:
                digests.append({"id": new, "digest": record_digest(row, packages[old_id], new)})
        if moves:
            conn.execute(copy, moves)
            conn.execute(move, moves)
        _update(conn, advisory, digests)
        conn.execute(affected.delete().where(affected.c.advisory_id.in_(list(old))))
        conn.execute(advisory.delete().where(advisory.c.id.in_(list(old))))
    # A score borrowed from a WG record names it (``score_from``), as the reader's next propagation would.
    query = sa.select(advisory.c.id, advisory.c.score_from).where(_mentions_old(advisory.c.score_from))
    lent = [
        {"id": r.id, "score_from": new_name(r.score_from)}
        for r in conn.execute(query)
        if new_name(r.score_from)
    ]
    _update(conn, advisory, lent)


# ---- verdicts ----------------------------------------------------------------------------------------------


def _rename_verdicts(conn: Any) -> None:
    wanted = sa.or_(
        _mentions_old(verdict.c.vuln_id),
        _mentions_old(verdict.c.score_record),
        _mentions_old(verdict.c.aliases, inside=True),
    )
    for rows in _pages(conn, sa.select(verdict).where(wanted), verdict.c.id):
        renames = {r.id: new_name(r.vuln_id) for r in rows if new_name(r.vuln_id)}
        query = sa.select(verdict.c.package_id, verdict.c.vuln_id).where(
            verdict.c.package_id.in_({r.package_id for r in rows}),
            verdict.c.vuln_id.in_(set(renames.values())),
        )
        present = {(p, v) for p, v in conn.execute(query)} if renames else set()
        # Both names on one package: the verdict under the new name is the matcher's current one.
        stale = {r.id for r in rows if (r.package_id, renames.get(r.id)) in present}
        _delete(conn, verdict, stale)
        _update(
            conn,
            verdict,
            [
                {
                    "id": r.id,
                    "vuln_id": renames.get(r.id, r.vuln_id),
                    "aliases": renamed_aliases(r.aliases),
                    "score_record": renamed(r.score_record),
                }
                for r in rows
                if r.id not in stale
            ],
        )


# ---- findings, and the clocks and alert items that point at them -------------------------------------------


def _continuous(old: Any, new: Any) -> bool:
    """Whether the old name was still open when the new one appeared: one finding, renamed (a re-match
    resolves the one and opens the other at the same instant)."""
    return old.resolved_at is None or old.resolved_at >= new.first_seen_at


def merged_finding(old: Any, new: Any) -> dict[str, Any]:
    """One finding for a pair under the old and the new name in one component of one image: the old one's
    identity (first seen, staff's class) and the state of the current one (an open one over a resolved one,
    else the new one); reopened only when the old one had gone before the new one appeared."""
    current = old if old.resolved_at is None and new.resolved_at is not None else new
    if current is old:
        reopened = old.reopened_at
    else:
        reopened = new.reopened_at or (old.reopened_at if _continuous(old, new) else new.first_seen_at)
    staff = old if old.override_at is not None or old.override_severity is not None else new
    return {
        "id": old.id,
        "vuln_id": new.vuln_id,
        "package_id": current.package_id,
        "severity": current.severity,
        "first_seen_at": min(old.first_seen_at, new.first_seen_at),
        "resolved_at": current.resolved_at,
        "reopened_at": reopened,
        "detail": renamed_detail(current.detail),
        **{
            c: getattr(staff, c)
            for c in ("override_severity", "override_reason", "override_by", "override_at")
        },
    }


def merged_clocks(
    old: Any | None, new: Any | None, *, continuous: bool, still_open: bool
) -> tuple[Any, dict[str, Any], Any | None]:
    """(the clock kept, what changes in it, the clock dropped) of one product's clocks on a merged pair."""
    if old is None:
        assert new is not None
        return new, {}, None
    if new is None:
        if continuous and still_open and old.resolution == FEED:
            return old, {"resolved_at": None, "resolution": None}, None  # closed by the rename alone
        return old, {}, None
    if not continuous:
        return new, {}, old  # the finding had gone and came back: the new clock is the live one
    changes: dict[str, Any] = {"revision_id": new.revision_id}
    if old.resolution == FEED:  # closed by the rename: the new clock's state is the finding's
        changes |= {"resolved_at": new.resolved_at, "resolution": new.resolution}
    return old, changes, new


def _merge_findings(conn: Any, pairs: list[tuple[Any, Any]]) -> None:
    """Keep the old row of each pair under the new name; its partner's clocks and alert items move to it."""
    partner_of = {new.id: old.id for old, new in pairs}
    clocks: dict[tuple[int, int], Any] = {}
    items: list[Any] = []
    for part in _chunks(sorted({old.id for old, _new in pairs} | set(partner_of))):
        query = sa.select(clock).where(clock.c.finding_id.in_(part))
        clocks |= {(c.finding_id, c.product_id): c for c in conn.execute(query)}
        items += conn.execute(sa.select(alert_item).where(alert_item.c.finding_id.in_(part))).all()
    findings, clock_rows, dropped_clocks = [], [], []
    for old, new in pairs:
        findings.append(merged_finding(old, new))
        for product in sorted({p for f, p in clocks if f in (old.id, new.id)}):
            kept, changes, dropped = merged_clocks(
                clocks.get((old.id, product)),
                clocks.get((new.id, product)),
                continuous=_continuous(old, new),
                still_open=findings[-1]["resolved_at"] is None,
            )
            if dropped is not None:
                dropped_clocks.append(dropped.id)
            same = {c: getattr(kept, c) for c in ("revision_id", "resolved_at", "resolution")}
            clock_rows.append(
                {"id": kept.id, "finding_id": old.id, "vuln_id": new.vuln_id, **same, **changes}
            )
    # The alert items of the new name now tell the kept finding (one told twice at one time: once).
    told = {(i.watch_id, i.finding_id, i.seen_at) for i in items if i.finding_id not in partner_of}
    moving = [i for i in items if i.finding_id in partner_of]
    twice = [i.id for i in moving if (i.watch_id, partner_of[i.finding_id], i.seen_at) in told]
    _delete(conn, alert_item, twice)
    moved = [{"id": i.id, "finding_id": partner_of[i.finding_id]} for i in moving if i.id not in twice]
    _update(conn, alert_item, moved)
    _delete(conn, clock, dropped_clocks)
    _update(conn, clock, clock_rows)
    _delete(conn, finding, partner_of)  # before the kept row takes its name: the finding key is unique
    _update(conn, finding, findings)


def _rename_findings(conn: Any) -> tuple[set[int], set[int]]:
    """Rename findings; returns the images where two became one, and the images with a renamed finding."""
    merged, touched = set(), set()
    wanted = sa.or_(_mentions_old(finding.c.vuln_id), _mentions_old(finding.c.detail, inside=True))
    for rows in _pages(conn, sa.select(finding).where(wanted), finding.c.id):
        renames = {r.id: new_name(r.vuln_id) for r in rows if new_name(r.vuln_id)}
        query = sa.select(finding).where(
            finding.c.image_id.in_({r.image_id for r in rows}), finding.c.vuln_id.in_(set(renames.values()))
        )
        partners = (
            {(p.image_id, p.vuln_id, p.component_key): p for p in conn.execute(query)} if renames else {}
        )
        pairs = [
            (r, p) for r in rows if (p := partners.get((r.image_id, renames.get(r.id), r.component_key)))
        ]
        paired = {old.id for old, _new in pairs} | {new.id for _old, new in pairs}
        if pairs:
            _merge_findings(conn, pairs)
        _update(
            conn,
            finding,
            [
                {"id": r.id, "vuln_id": renames.get(r.id, r.vuln_id), "detail": renamed_detail(r.detail)}
                for r in rows
                if r.id not in paired
            ],
        )
        merged |= {old.image_id for old, _new in pairs}
        touched |= {r.image_id for r in rows if r.id in renames}
    return merged, touched


def _recount(conn: Any, images: set[int], indexes_of: set[int]) -> None:
    """``scanning.counts.refresh_counts`` as of this revision: the open findings of ``images`` per effective
    class, and of the indexes holding ``indexes_of`` (each finding once over the platforms, at its worst)."""
    effective = sa.func.coalesce(finding.c.override_severity, finding.c.severity)
    counts: dict[int, dict[str, int]] = {}
    for part in _chunks(sorted(images)):
        counts |= {i: dict.fromkeys(CLASSES, 0) for i in part}
        query = (
            sa.select(finding.c.image_id, effective, sa.func.count())
            .where(finding.c.image_id.in_(part), finding.c.resolved_at.is_(None))
            .group_by(finding.c.image_id, effective)
        )
        for image_id, severity, n in conn.execute(query):
            counts[image_id][severity if severity in CLASSES else "Unscored"] += n
    indexes: set[int] = set()
    for part in _chunks(sorted(indexes_of)):
        query = sa.select(image_child.c.index_id).where(image_child.c.child_id.in_(part))
        indexes |= set(conn.scalars(query))
    ranks = list(CLASSES)
    for index_id in sorted(indexes):
        query = (
            sa.select(finding.c.vuln_id, component.c.name, component.c.version, effective)
            .join(image_child, image_child.c.child_id == finding.c.image_id)
            .join(
                component,
                (component.c.image_id == finding.c.image_id)
                & (component.c.component_key == finding.c.component_key),
            )
            .where(image_child.c.index_id == index_id, finding.c.resolved_at.is_(None))
        )
        worst: dict[tuple[str, str, str], int] = {}
        for vuln_id, name, version, severity in conn.execute(query):
            rank = ranks.index(severity if severity in CLASSES else "Unscored")
            worst[(vuln_id, name, version)] = min(rank, worst.get((vuln_id, name, version), rank))
        counts[index_id] = dict.fromkeys(CLASSES, 0)
        for rank in worst.values():
            counts[index_id][ranks[rank]] += 1
    _update(conn, image, [{"id": i, **{CLASSES[k]: n for k, n in c.items()}} for i, c in counts.items()])


# ---- compliance and review ---------------------------------------------------------------------------------


def _rename_clocks(conn: Any) -> None:
    query = sa.select(clock.c.id, clock.c.vuln_id).where(_mentions_old(clock.c.vuln_id))
    for rows in _pages(conn, query, clock.c.id):
        _update(
            conn, clock, [{"id": r.id, "vuln_id": new_name(r.vuln_id)} for r in rows if new_name(r.vuln_id)]
        )


def _rename_vex(conn: Any) -> None:
    for rows in _pages(conn, sa.select(vex).where(_mentions_old(vex.c.vuln_id)), vex.c.id):
        old = [r for r in rows if new_name(r.vuln_id)]
        query = sa.select(vex).where(
            vex.c.product_id.in_({r.product_id for r in old}),
            vex.c.vuln_id.in_({new_name(r.vuln_id) for r in old}),
            vex.c.decision == PENDING,
        )
        refiled = conn.execute(query).all() if old else []
        # One statement waits per product and vulnerability (the service's rule): one filed again under the
        # new name while the old one waits, or after the old one was accepted for its component, goes.
        duplicates = [
            n.id
            for n in refiled
            for o in old
            if (o.product_id, new_name(o.vuln_id)) == (n.product_id, n.vuln_id)
            and (o.decision == PENDING or (o.decision == ACCEPTED and o.component in (None, n.component)))
        ]
        _delete(conn, vex, duplicates)
        _update(conn, vex, [{"id": r.id, "vuln_id": new_name(r.vuln_id)} for r in old])


def _rename_anchors(conn: Any) -> None:
    """A review comment on a finding names it ``<image>@<digest>/<vulnerability id>``."""
    query = sa.select(comment.c.id, comment.c.anchor).where(
        comment.c.anchor_kind == "finding", sa.or_(*(comment.c.anchor.like("%/" + p) for p in _OLD_LIKE))
    )
    for rows in _pages(conn, query, comment.c.id):
        anchors = [(r.id, *r.anchor.rpartition("/")) for r in rows]
        _update(
            conn,
            comment,
            [{"id": i, "anchor": f"{at}/{new_name(v)}"} for i, at, _, v in anchors if new_name(v)],
        )


def upgrade() -> None:
    conn = op.get_bind()
    # Records under the new names already: the reader of the version before this one read the feed, and
    # findings may be under both names.
    mixed = conn.scalar(sa.select(advisory.c.id).where(advisory.c.id.like("NSWG-%")).limit(1)) is not None
    _rename_advisories(conn)
    _rename_verdicts(conn)
    merged, touched = _rename_findings(conn)
    _rename_clocks(conn)
    _rename_vex(conn)
    _rename_anchors(conn)
    if mixed:
        # Two findings became one (its class may be the old one's staff class), and an index may have held
        # one vulnerability under both names on different platforms. Otherwise the rename changed no count.
        _recount(conn, merged, touched | merged)


def downgrade() -> None:
    # Left as it is: a database taken back to 0018 is read by code that names these records NSWG-ECO-<n> and
    # NSWG-COR-<n> too (the reader changed before this revision was written); renaming back would make its
    # next read of the feed withdraw and re-add every record, the loss this revision prevents.
    pass
