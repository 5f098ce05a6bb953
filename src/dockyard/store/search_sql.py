"""The SQL of one search: the full-text match computed once, and every figure a results page needs from it.

A search answers a page of hits, the total, and facet counts beside each filter (each counted with the
other filters applied). Asked as separate statements, each repeats the full-text match over every matching
row; here the match is a materialised CTE ``m`` (the matching rows' id, relevance and the columns the
filters and facets read, once), and one UNION ALL statement returns tagged rows from it: the total, the
free/certified counts, the category, publisher and platform facets, and the page's ids in order. Both
databases run the same statement (``WITH m AS MATERIALIZED``: SQLite 3.35+, PostgreSQL 12+).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Integer,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    table,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import TSQUERY, TSVECTOR
from sqlalchemy.dialects.postgresql import array as pg_array
from sqlalchemy.sql import Select

from dockyard.store import query as q
from dockyard.store.models import Listing, ListingPlatform, ListingStatus

VISIBLE = (ListingStatus.LISTED.value, ListingStatus.ON_HOLD.value)
FTS_TABLE = "listing_fts"
TS_COLUMN = "search_document"
TS_NAME_COLUMN = "search_name"
TS_PAIRS_COLUMN = "search_pairs"
PUBLISHER_FACETS = 20  # the publishers with most results (and the chosen one, always)

_FTS = literal_column(FTS_TABLE)
_FTS_FROM = table(FTS_TABLE)
_FTS_ROWID = literal_column(f"{FTS_TABLE}.rowid", Integer)
_TS_DOCUMENT = literal_column(f"listing.{TS_COLUMN}", TSVECTOR)
_TS_NAME = literal_column(f"listing.{TS_NAME_COLUMN}", TSVECTOR)
_TS_PAIRS = literal_column(f"listing.{TS_PAIRS_COLUMN}", TSVECTOR)


VISIBLE_SQL = "status IN ('listed', 'on_hold')"


def visible() -> ColumnElement[bool]:
    """Listed and on-hold listings, with literal values: the condition of the partial indexes of migration
    0013, which a planner uses only when the query states it (not with bound parameters)."""
    return Listing.status.in_([literal_column(f"'{v}'") for v in VISIBLE])


def filter_conditions(filters: Any) -> dict[str, ColumnElement[bool]]:
    """The listing conditions of a search's filters, by filter name."""
    out: dict[str, ColumnElement[bool]] = {}
    if filters.certified:
        out["certified"] = Listing.certified.is_(True)
    if filters.free:
        out["free"] = Listing.free.is_(True)
    if filters.category is not None:
        out["category"] = Listing.category == filters.category
    if filters.publisher is not None:
        out["publisher"] = Listing.publisher_slug == filters.publisher
    if filters.arch is not None:
        # Correlated (a key lookup per listing): browsing in index order stops after a page, where an IN
        # list would first collect every listing on the platform.
        out["arch"] = exists().where(
            ListingPlatform.listing_id == Listing.id, ListingPlatform.platform == filters.arch
        )
    return out


class Matcher:
    """The dialect's full-text conditions and relevance score for one parsed query."""

    def __init__(self, parsed: q.Query, sqlite: bool) -> None:
        self.parsed = parsed
        self.sqlite = sqlite

    def excluded(self) -> ColumnElement[bool] | None:
        """The condition leaving out listings any excluded item matches."""
        if not self.parsed.excluded:
            return None
        if self.sqlite:
            return Listing.id.not_in(_fts_rows(q.fts_excluded(self.parsed) or ""))
        # A listing not indexed yet (NULL) matches no excluded word: it stays.
        parts = q.ts_any(self.parsed.excluded)
        return not_(or_(*(func.coalesce(_ts_part(part), False) for part in parts)))

    def matched(self, scored: bool, cap: int | None = None) -> Select[Any]:
        """Visible listings matching the included items: (id, score, the facet and sort columns); with
        ``cap``, the first cap + 1 of them by id."""
        stmt = self._matched(scored)
        if cap is None:
            return stmt
        # The first matches by id: the same ones on both databases, whatever the plan. (SQLite: ordered by
        # the FTS5 rowid, an order the FTS5 scan gives as it is, not by a sort of every match.)
        by_id = literal_column("fts.listing_id") if self.sqlite and self.parsed.clauses else Listing.id
        return stmt.order_by(by_id).limit(cap + 1)

    def _conditions(self, filters: Any) -> list[ColumnElement[bool]]:
        """Every condition on a listing: visible, the words (included and excluded), the filters."""
        conditions = [visible(), *filter_conditions(filters).values()]
        excluded = self.excluded()
        if excluded is not None:
            conditions.append(excluded)
        if self.parsed.clauses:
            if self.sqlite:
                # "+id": not an index term, so SQLite scans in the page's index order and checks each
                # listing against the match's ids (collected once), stopping after a page, instead of
                # visiting every match and sorting. (Correlated FTS5 probes redo a prefix query each.)
                ids = _fts_rows(q.fts_positive(self.parsed) or "")
                conditions.append(literal_column("+listing.id", Integer).in_(ids))
            else:
                conditions.append(_ts_clauses(self.parsed))
        return conditions

    def ordered_page(self, filters: Any, sort: str, limit: int, offset: int) -> Select[Any]:
        """A page of ids by downloads or newest, from the listings in index order."""
        order = (
            [Listing.published_at.desc(), Listing.id.desc()]
            if sort == "newest"
            else [Listing.downloads.desc(), Listing.id.desc()]
        )
        stmt = select(Listing.id).where(*self._conditions(filters)).order_by(*order)
        return stmt.limit(limit).offset(offset)

    def scored_page(self, ids: list[int], limit: int, offset: int) -> Select[Any]:
        """A relevance page (id, score) among the given matches (already filtered)."""
        if self.sqlite:
            fts = self._fts_scored(q.fts_positive(self.parsed) or "", True)
            stmt = select(Listing.id, fts.c.score).join(fts, fts.c.listing_id == Listing.id)
            score: Any = fts.c.score
            return (
                stmt.where(Listing.id.in_(ids))
                .order_by(score.desc(), Listing.downloads.desc(), Listing.id)
                .limit(limit)
                .offset(offset)
            )
        rows = _detoasted(
            select(Listing.id, Listing.downloads).where(Listing.id.in_(ids)), "scored", self.parsed
        )
        score = self._ts_score(columns=(rows.c.words, rows.c.pairs)).label("score")
        return (
            select(rows.c.id, score)
            .order_by(score.desc(), rows.c.downloads.desc(), rows.c.id)
            .limit(limit)
            .offset(offset)
        )

    def _matched(self, scored: bool) -> Select[Any]:
        columns = [
            Listing.id,
            Listing.category,
            Listing.publisher_slug,
            Listing.publisher_name,
            Listing.free,
            Listing.certified,
            Listing.downloads,
            Listing.published_at,
        ]
        conditions = [visible()]
        excluded = self.excluded()
        if excluded is not None:
            conditions.append(excluded)
        if not self.parsed.clauses:
            return select(*columns, literal(0, Integer).label("score")).where(*conditions)
        if self.sqlite:
            # The FTS5 query once: its rowids (and, sorted by relevance, each one's score).
            fts = self._fts_scored(q.fts_positive(self.parsed) or "", scored)
            return (
                select(*columns, fts.c.score)
                .select_from(Listing)
                .join(fts, fts.c.listing_id == Listing.id)
                .where(*conditions)
            )
        conditions.append(_ts_clauses(self.parsed))
        score = self._ts_score() if scored else literal(0, Integer)
        return select(*columns, score.label("score")).where(*conditions)

    def top_class_page(self, filters: Any, limit: int, offset: int, *, broad: bool = False) -> Select[Any]:
        """A relevance page (id, score) from the matches an included item hits by name alone. Each of
        them outranks every other match (8 points against 4 + 2 + 1 at most), so when they fill the page it
        is the page, having scored a few per cent of a broad match's rows. PostgreSQL, several clauses:
        ``broad`` checks every clause on each name hit's document instead of through the words' index
        (see ``broad_top_class_page``)."""
        conditions = [visible(), *filter_conditions(filters).values()]
        if self.sqlite:
            ranked = self._fts_scored(q.fts_in_class(self.parsed, "A"), True, name_hit=True)
            stmt = select(Listing.id, ranked.c.score).join(ranked, ranked.c.listing_id == Listing.id)
            score = ranked.c.score
            excluded = self.excluded()
            if excluded is not None:
                conditions.append(excluded)
            return (
                stmt.where(*conditions)
                .order_by(score.desc(), Listing.downloads.desc(), Listing.id)
                .limit(limit)
                .offset(offset)
            )
        # The name's own tsvector and index: exact without re-reading every match's document (a
        # weight-labelled query on search_document is re-checked on each row its index finds).
        in_name = _TS_NAME.op("@@", return_type=Boolean)(
            cast(literal(q.ts_name_query(q.ts_any(self.parsed.positive))), TSQUERY)
        )
        several = len(self.parsed.clauses) > 1
        if several and not broad:
            # Every clause (one clause: a name hit is a match), written as an index condition: the planner
            # may AND the words' index into the name's (fewer rows read: 'secure gateway', 9,000 name hits
            # and 400 matches) or check the name hits' documents.
            conditions.append(_ts_clauses(self.parsed))
        rows = _detoasted(
            select(Listing.id, Listing.downloads).where(in_name, *conditions), "named", self.parsed
        )
        columns = (rows.c.words, rows.c.pairs)
        # A name hit scores 8 for the name (known, as on SQLite) and the other classes from the document.
        score = self._ts_score(name_hit=True, columns=columns).label("score")
        stmt = select(rows.c.id, score)
        if several and broad:
            stmt = stmt.where(_ts_clauses(self.parsed, columns))
        if self.parsed.excluded:
            stmt = stmt.where(not_(or_(*(_ts_part(p, columns) for p in q.ts_any(self.parsed.excluded)))))
        return stmt.order_by(score.desc(), rows.c.downloads.desc(), rows.c.id).limit(limit).offset(offset)

    def broad_top_class_page(self, filters: Any, limit: int, offset: int) -> Select[Any] | None:
        """PostgreSQL, several clauses: the name hits' page for a match broader than the count limit
        (None otherwise: ``top_class_page`` serves). ``results_statement`` runs one of the two, by the
        count of the match it computes anyway.

        The planner ANDs the words' index into the name hits' when it can (cheap for a rare match: 'secure
        gateway', 400 matches in 100,000 listings, 4 ms against 34 for checking its 8,600 name hits), also
        for two broad words, whose index lists (45,000 listings each for 'redis' and 'backup') cost more
        to intersect than the name hits' documents to check: 21 ms against 17. Its estimates do not tell
        the two apart; a match of more than the count limit does."""
        if self.sqlite or len(self.parsed.clauses) < 2:
            return None
        return self.top_class_page(filters, limit, offset, broad=True)

    def _fts_scored(self, expression: str, scored: bool, name_hit: bool = False) -> Any:
        columns: list[Any] = [_FTS_ROWID.label("listing_id")]
        if scored:
            # Each class's hit: bm25 with only that class's columns weighted is below zero when a phrase
            # occurs there.
            parts = []
            for weight, points in q.CLASS_SCORES.items():
                if name_hit and weight == "A":  # known: every row of this match hits by name
                    parts.append(literal(points, Integer))
                    continue
                weights = [literal_column("1" if w == weight else "0") for _name, w in q.FIELDS]
                parts.append(case((func.bm25(_FTS, *weights) < 0, points), else_=0))
            columns.append(sum(parts[1:], parts[0]).label("score"))
        else:
            columns.append(literal(0, Integer).label("score"))
        match = _FTS.op("MATCH")(literal(expression))
        return select(*columns).select_from(_FTS_FROM).where(match).subquery("fts")

    def _ts_score(self, name_hit: bool = False, columns: tuple[Any, Any] | None = None) -> Any:
        parts: list[Any] = []
        for weight, points in q.CLASS_SCORES.items():
            if name_hit and weight == "A":
                parts.append(literal(points, Integer))
                continue
            hit = or_(*(_ts_part(part, columns) for part in q.ts_any(self.parsed.positive, weight)))
            parts.append(case((hit, points), else_=0))
        return sum(parts[1:], parts[0])


def results_statement(
    matched: Select[Any],
    filters: Any,
    order: str,
    limit: int,
    offset: int,
    *,
    ranked: Select[Any] | None = None,
    broad_ranked: Select[Any] | None = None,
    cap: int | None = None,
    facets: bool = True,
    ids_when_short: bool = False,
) -> Select[Any]:
    """One statement over the materialised match: rows (kind, key, label, n, n2) tagged by kind. With
    ``ranked`` (a page of (id, score) computed otherwise), the page is that; with ``broad_ranked`` too,
    that one instead when the match (capped at ``cap`` + 1 rows) has more than ``cap`` rows. By relevance,
    the counted matches' ids are returned for a page scored among them; with ``ids_when_short``
    (PostgreSQL), only when the page has fewer than ``limit`` rows, the one case they are read."""
    m = matched.add_columns(*_arch_column(filters)).cte("m").prefix_with("MATERIALIZED")
    conditions: dict[str, ColumnElement[bool]] = {}
    if filters.certified:
        conditions["certified"] = m.c.certified.is_(True)
    if filters.free:
        conditions["free"] = m.c.free.is_(True)
    if filters.category is not None:
        conditions["category"] = m.c.category == filters.category
    if filters.publisher is not None:
        conditions["publisher"] = m.c.publisher_slug == filters.publisher
    if filters.arch is not None:
        conditions["arch"] = m.c.on_arch.is_(True)

    def where(without: str | None = None) -> ColumnElement[bool]:
        kept = [c for name, c in conditions.items() if name != without]
        return and_(true(), *kept)

    def row(kind: str, key: Any, label: Any, n: Any, n2: Any) -> list[Any]:
        return [
            literal(kind, String).label("kind"),
            cast(key, String).label("key"),
            cast(label, String).label("label"),
            cast(n, Integer).label("n"),
            cast(n2, Integer).label("n2"),
        ]

    count = func.count()
    by = {
        "relevance": [m.c.score.desc(), m.c.downloads.desc(), m.c.id],
        "newest": [m.c.published_at.desc(), m.c.id.desc()],
        "downloads": [m.c.downloads.desc(), m.c.id.desc()],
    }[order]
    if ranked is not None and broad_ranked is not None and cap is not None:
        # A gate of one-time filters: PostgreSQL runs the count once, and only the page it selects.
        matches = select(func.count()).select_from(m).scalar_subquery()
        narrow, broad = ranked.subquery("narrow_page"), broad_ranked.subquery("broad_page")
        page = union_all(
            select(narrow.c.id, narrow.c.score).where(matches <= cap),
            select(broad.c.id, broad.c.score).where(matches > cap),
        ).subquery("page")
    elif ranked is not None:
        page = ranked.subquery("page")
    else:
        page = select(m.c.id, m.c.score).where(where()).order_by(*by).limit(limit).offset(offset)
        page = page.subquery("page")
    short_page: Any = true()
    if ids_when_short and order == "relevance":
        # Materialised (read twice): the ids of up to 1,001 matches are not sent for a full page.
        page = select(*page.c).cte("page_rows").prefix_with("MATERIALIZED")
        short_page = select(func.count()).select_from(page).scalar_subquery() < limit
    parts: list[Select[Any]] = [
        select(*row("total", null(), null(), count, null())).select_from(m).where(where()),
        select(*row("matched", null(), null(), count, null())).select_from(m),
        select(*row("hit", null(), null(), page.c.id, page.c.score)).select_from(page),
    ]
    if facets:
        ones = [
            func.coalesce(func.sum(case((m.c.free.is_(True), 1), else_=0)), 0),
            func.coalesce(func.sum(case((m.c.certified.is_(True), 1), else_=0)), 0),
        ]
        if "free" not in conditions and "certified" not in conditions:
            parts.append(select(*row("flags", null(), null(), *ones)).select_from(m).where(where()))
        else:
            parts.append(select(*row("free", null(), null(), ones[0], null())).where(where("free")))
            parts.append(select(*row("certified", null(), null(), ones[1], null())).where(where("certified")))
        parts.append(
            select(*row("category", m.c.category, null(), count, null()))
            .where(where("category"), m.c.category.is_not(None))
            .group_by(m.c.category)
        )
        top = (
            select(m.c.publisher_slug, func.min(m.c.publisher_name).label("label"), count.label("n"))
            .where(where("publisher"))
            .group_by(m.c.publisher_slug)
            .order_by(count.desc(), m.c.publisher_slug)
            .limit(PUBLISHER_FACETS)
            .subquery("top")
        )
        parts.append(select(*row("publisher", top.c.publisher_slug, top.c.label, top.c.n, null())))
        if filters.publisher is not None:
            parts.append(
                select(
                    *row("chosen", literal(filters.publisher), func.min(m.c.publisher_name), count, null())
                ).where(where("publisher"), m.c.publisher_slug == filters.publisher)
            )
        if order == "relevance":
            # The counted matches' ids: a page past the name hits is scored among them.
            parts.append(select(*row("id", null(), null(), m.c.id, null())).where(where(), short_page))
        parts.append(
            select(*row("arch", ListingPlatform.platform, null(), count, null()))
            .select_from(m)
            # LEFT: SQLite keeps the match as the outer loop (probing platforms by key) instead of
            # scanning every platform row; the NULL group (no platforms) is dropped when read.
            .outerjoin(ListingPlatform, ListingPlatform.listing_id == m.c.id)
            .where(where("arch"))
            .group_by(ListingPlatform.platform)
        )
    return union_all(*parts)  # type: ignore[return-value]


def _arch_column(filters: Any) -> list[Any]:
    if filters.arch is None:
        return [literal(False, Boolean).label("on_arch")]
    # A scalar subquery, probed by key for each match (the first 1,001 at most): as EXISTS, PostgreSQL
    # hashes every listing on the platform first (33,000 rows of 100,000 for 'linux/arm64', 19 ms).
    on = (
        select(literal(True, Boolean))
        .where(ListingPlatform.listing_id == Listing.id, ListingPlatform.platform == filters.arch)
        .limit(1)
        .scalar_subquery()
    )
    return [func.coalesce(on, False).label("on_arch")]


def _fts_rows(expression: str) -> Select[Any]:
    return select(_FTS_ROWID).select_from(_FTS_FROM).where(_FTS.op("MATCH")(literal(expression)))


def _ts_part(part: q.TsPart, columns: tuple[Any, Any] | None = None) -> ColumnElement[bool]:
    """The listing's words or pairs tsvector @@ the part's tsquery; with ``columns`` (words, pairs), those
    (see _detoasted) instead of the listing's."""
    pairs, expression = part
    words_column, pairs_column = columns or (_TS_DOCUMENT, _TS_PAIRS)
    column: Any = pairs_column if pairs else words_column
    return column.op("@@", return_type=Boolean)(cast(literal(expression), TSQUERY))


def _ts_clauses(parsed: q.Query, columns: tuple[Any, Any] | None = None) -> ColumnElement[bool]:
    """The included items' condition: in every clause, one of its parts matches."""
    return and_(*(or_(*(_ts_part(p, columns) for p in clause)) for clause in q.ts_clauses(parsed)))


def _detoasted(rows: Select[Any], name: str, parsed: q.Query) -> Any:
    """The rows as a subquery with the listing's two tsvectors read once each (``words``, ``pairs``; the
    pairs only when the query has a phrase, the words only when it has a word: else NULL, not read).

    A large tsvector is stored compressed or out of line (the pairs of half the benchmark's listings; the
    words' of a long description), and PostgreSQL decompresses or fetches it again for every operator that
    reads it: three weight classes read it three times a row (a phrase's page: 18 ms against 9 for 565
    rows). A copy (the element of a one-element array, made in memory once) is read as it is. OFFSET 0
    keeps the planner from merging the subquery into its reader (which would put the raw column back).
    NULL (not indexed yet): empty, no match.
    """
    empty = cast(literal(""), TSVECTOR)

    def copy(column: Any) -> Any:
        # An array's elements are stored detoasted: ARRAY[x] decompresses or fetches x once (a copy of
        # its bytes), [1] reads it in place. (``x || ''`` did the same by rebuilding the tsvector lexeme
        # by lexeme: for 4,000 name hits of 'cache', 10 ms of the 31 their scoring took; this, 0.)
        return pg_array([func.coalesce(column, empty)], type_=TSVECTOR)[literal_column("1")]

    items = [*parsed.positive, *parsed.excluded]
    words = any(len(i.tokens) == 1 for i in items)
    pairs = any(len(i.tokens) > 1 for i in items)
    copies = [
        (copy(_TS_DOCUMENT) if words else null()).label("words"),
        (copy(_TS_PAIRS) if pairs else null()).label("pairs"),
    ]
    return rows.add_columns(*copies).offset(literal_column("0")).subquery(name)
