"""Full-text search over the store's listings, with filters, facet counts, sorting and pages.

The index is the database's own: an FTS5 table ``listing_fts`` on SQLite, a ``search_document`` tsvector
column on ``listing`` with a GIN index on PostgreSQL (migration 0013; both kept out of the models' metadata,
see ``outside_metadata``). Both are fed the tokens of ``store.query`` (our own tokenisation: no stemming,
diacritics removed, case folded; see that module), and queried with expressions rendered from one parse, so
the same data gives the same results, in the same order, on both.

Relevance is the same number on both databases: the sum of the weight classes an included word or phrase
hits (name 8; tags or publisher 4; short description or category 2; long description 1). SQLite computes
each class's hit with FTS5's ``bm25`` restricted to that class's columns by its column weights (non-zero
only when a phrase occurs there); PostgreSQL with the same items restricted to the class's weight label in
the tsquery (``'redis':A``). The engines' own scores (bm25, ts_rank_cd) differ in their formulas, so they
are not used to order: equal relevance is broken by downloads, then by the listing's id.

Only listed and on-hold listings are found; revoked ones never.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Integer,
    case,
    cast,
    func,
    literal,
    literal_column,
    not_,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import TSQUERY, TSVECTOR
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from dockyard.store import query as q
from dockyard.store.models import Listing, ListingPlatform, ListingStatus

SORTS = ("relevance", "newest", "downloads")
PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_PAGE = 1000  # deeper than any customer pages; the API refuses more, the page clamps
MAX_FILTER_CHARS = 200
PUBLISHER_FACETS = 20  # the publishers with most results (and the chosen one, always)
VISIBLE = (ListingStatus.LISTED.value, ListingStatus.ON_HOLD.value)

FTS_TABLE = "listing_fts"
TS_COLUMN = "search_document"
TS_INDEX = "ix_listing_search_document"


def outside_metadata(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """False for the search index's database objects, which the models do not declare (Alembic's
    ``include_name``): the FTS5 table and its shadow tables, the tsvector column and its index."""
    if type_ == "table":
        return not (name or "").startswith(FTS_TABLE)
    if type_ == "column":
        return not (parent_names.get("table_name") == "listing" and name == TS_COLUMN)
    if type_ == "index":
        return name != TS_INDEX
    return True


@dataclass
class Filters:
    """What a search is narrowed to (None/False: not narrowed)."""

    certified: bool = False
    free: bool = False
    category: str | None = None
    publisher: str | None = None  # the publisher's slug (its organisation's name)
    arch: str | None = None  # a platform, "linux/arm64"

    def __post_init__(self) -> None:
        # Bound parameters all, but PostgreSQL refuses NUL in text and nothing longer can match.
        for name in ("category", "publisher", "arch"):
            value = getattr(self, name)
            if value is not None:
                value = value.replace("\x00", "").strip()[:MAX_FILTER_CHARS]
                setattr(self, name, value or None)


@dataclass
class Facet:
    value: str
    label: str
    count: int


@dataclass
class Facets:
    category: list[Facet] = field(default_factory=list)
    publisher: list[Facet] = field(default_factory=list)
    arch: list[Facet] = field(default_factory=list)
    free: int = 0
    certified: int = 0


@dataclass
class Hit:
    listing: Listing
    platforms: list[str]
    score: int | None  # relevance (None when sorted otherwise)


@dataclass
class Results:
    query: str
    filters: Filters
    sort: str
    page: int
    page_size: int
    total: int
    hits: list[Hit]
    facets: Facets

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))


class SearchService:
    """Searches the store's listings; keeps their full-text index."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def sqlite(self) -> bool:
        return self.session.get_bind().dialect.name == "sqlite"

    # -- the index --------------------------------------------------------------------------------------
    def index(self, listing: Listing) -> None:
        """Write a listing's row of the full-text index (after its own row was flushed)."""
        fields = {
            "name": listing.name,
            "tags": " ".join(listing.tags or []),
            "publisher": listing.publisher_name,
            "short": listing.short_description,
            "category": listing.category or "",
            "long": listing.long_description,
        }
        self.index_rows([(listing.id, fields)])

    def index_rows(self, rows: list[tuple[int, dict[str, str]]]) -> None:
        """Write the index rows of many listings at once (id, fields): the bulk path of imports."""
        if not rows:
            return
        if self.sqlite:
            ids = [{"id": listing_id} for listing_id, _ in rows]
            self.session.execute(text(f"DELETE FROM {FTS_TABLE} WHERE rowid = :id"), ids)
            docs = [{"id": listing_id, **q.fts_document(fields)} for listing_id, fields in rows]
            self.session.execute(
                text(
                    f"INSERT INTO {FTS_TABLE} (rowid, name, tags, publisher, short, category, long) "
                    "VALUES (:id, :name, :tags, :publisher, :short, :category, :long)"
                ),
                docs,
            )
        else:
            docs = [{"id": listing_id, "doc": q.ts_document(fields)} for listing_id, fields in rows]
            self.session.execute(
                text(f"UPDATE listing SET {TS_COLUMN} = CAST(:doc AS tsvector) WHERE id = :id"), docs
            )

    def unindex(self, listing_id: int) -> None:
        """Remove a listing from the index (PostgreSQL's goes with the row; SQLite's trigger does the same
        when a listing row is deleted, this covers a table rebuilt without its trigger)."""
        if self.sqlite:
            self.session.execute(text(f"DELETE FROM {FTS_TABLE} WHERE rowid = :id"), {"id": listing_id})

    # -- searching --------------------------------------------------------------------------------------
    def search(
        self,
        text_query: str | None = None,
        filters: Filters | None = None,
        *,
        sort: str | None = None,
        page: int = 1,
        page_size: int = PAGE_SIZE,
    ) -> Results:
        """One page of listings matching a query and filters, sorted, with the total and facet counts."""
        filters = filters or Filters()
        parsed = q.parse(text_query)
        if sort not in SORTS:
            sort = "relevance" if parsed.clauses else "downloads"
        if sort == "relevance" and not parsed.clauses:
            sort = "downloads"  # nothing to be relevant to
        page = min(max(page, 1), MAX_PAGE)
        page_size = min(max(page_size, 1), MAX_PAGE_SIZE)
        matcher = _Matcher(parsed, self.sqlite)

        conditions = self._conditions(matcher, filters)
        total = (
            self.session.scalar(select(func.count()).select_from(Listing).where(*conditions.values())) or 0
        )

        score = matcher.score() if sort == "relevance" else None
        stmt = select(Listing, score if score is not None else literal(None)).where(*conditions.values())
        if score is not None:
            stmt = matcher.join(stmt)
        stmt = stmt.order_by(*_order(sort, score)).limit(page_size).offset((page - 1) * page_size)
        rows = self.session.execute(stmt).all()
        platforms = self._platforms([row[0].id for row in rows])
        hits = [Hit(row[0], platforms.get(row[0].id, []), row[1]) for row in rows]
        facets = self._facets(matcher, filters)
        return Results(text_query or "", filters, sort, page, page_size, total, hits, facets)

    def _conditions(self, matcher: _Matcher, filters: Filters) -> dict[str, ColumnElement[bool]]:
        """The WHERE conditions, by the filter each comes from (a facet leaves out its own)."""
        conditions: dict[str, ColumnElement[bool]] = {"status": Listing.status.in_(VISIBLE)}
        conditions.update(matcher.conditions())
        if filters.certified:
            conditions["certified"] = Listing.certified.is_(True)
        if filters.free:
            conditions["free"] = Listing.free.is_(True)
        if filters.category is not None:
            conditions["category"] = Listing.category == filters.category
        if filters.publisher is not None:
            conditions["publisher"] = Listing.publisher_slug == filters.publisher
        if filters.arch is not None:
            on_platform = select(ListingPlatform.listing_id).where(ListingPlatform.platform == filters.arch)
            conditions["arch"] = Listing.id.in_(on_platform)
        return conditions

    def _facets(self, matcher: _Matcher, filters: Filters) -> Facets:
        conditions = self._conditions(matcher, filters)

        def without(name: str) -> list[ColumnElement[bool]]:
            return [c for key, c in conditions.items() if key != name]

        facets = Facets()
        # free and certified: one query when neither is a filter (the usual case), else one each.
        flags = select(
            func.coalesce(func.sum(case((Listing.free.is_(True), 1), else_=0)), 0),
            func.coalesce(func.sum(case((Listing.certified.is_(True), 1), else_=0)), 0),
        )
        if "free" not in conditions and "certified" not in conditions:
            facets.free, facets.certified = self.session.execute(flags.where(*conditions.values())).one()
        else:
            facets.free = self.session.execute(flags.where(*without("free"))).one()[0]
            facets.certified = self.session.execute(flags.where(*without("certified"))).one()[1]

        count = func.count().label("n")
        rows = self.session.execute(
            select(Listing.category, count)
            .where(*without("category"), Listing.category.is_not(None))
            .group_by(Listing.category)
        ).all()
        facets.category = _ordered([Facet(c, c, n) for c, n in rows])

        rows = self.session.execute(
            select(Listing.publisher_slug, func.min(Listing.publisher_name), count)
            .where(*without("publisher"))
            .group_by(Listing.publisher_slug)
            .order_by(count.desc(), Listing.publisher_slug)
            .limit(PUBLISHER_FACETS)
        ).all()
        facets.publisher = [Facet(slug, name, n) for slug, name, n in rows]
        if filters.publisher is not None and all(f.value != filters.publisher for f in facets.publisher):
            chosen = self.session.execute(
                select(func.min(Listing.publisher_name), count).where(
                    *without("publisher"), Listing.publisher_slug == filters.publisher
                )
            ).one()
            facets.publisher.append(Facet(filters.publisher, chosen[0] or filters.publisher, chosen[1]))

        rows = self.session.execute(
            select(ListingPlatform.platform, count)
            .join(Listing, Listing.id == ListingPlatform.listing_id)
            .where(*without("arch"))
            .group_by(ListingPlatform.platform)
        ).all()
        facets.arch = _ordered([Facet(p, p, n) for p, n in rows])
        return facets

    def _platforms(self, ids: list[int]) -> dict[int, list[str]]:
        if not ids:
            return {}
        out: dict[int, list[str]] = {}
        rows = self.session.execute(
            select(ListingPlatform.listing_id, ListingPlatform.platform)
            .where(ListingPlatform.listing_id.in_(ids))
            .order_by(ListingPlatform.listing_id, ListingPlatform.platform)
        )
        for listing_id, platform in rows:
            out.setdefault(listing_id, []).append(platform)
        return out


def _ordered(facets: list[Facet]) -> list[Facet]:
    return sorted(facets, key=lambda f: (-f.count, f.value))


def _order(sort: str, score: Any) -> list[Any]:
    if sort == "relevance" and score is not None:
        return [score.desc(), Listing.downloads.desc(), Listing.id]
    if sort == "newest":
        return [Listing.published_at.desc(), Listing.id.desc()]
    return [Listing.downloads.desc(), Listing.id.desc()]


class _Matcher:
    """The dialect's full-text conditions and relevance score for one parsed query."""

    def __init__(self, parsed: q.Query, sqlite: bool) -> None:
        self.parsed = parsed
        self.sqlite = sqlite
        self._scores: Any = None

    def conditions(self) -> dict[str, ColumnElement[bool]]:
        out: dict[str, ColumnElement[bool]] = {}
        if self.sqlite:
            positive, excluded = q.fts_positive(self.parsed), q.fts_excluded(self.parsed)
            if positive is not None:
                out["text"] = Listing.id.in_(_fts_rows(positive))
            if excluded is not None:
                out["not_text"] = Listing.id.not_in(_fts_rows(excluded))
        else:
            positive, excluded = q.ts_positive(self.parsed), q.ts_excluded(self.parsed)
            if positive is not None:
                out["text"] = _ts_match(positive)
            if excluded is not None:
                # A listing not indexed yet (NULL) matches no excluded word: it stays.
                out["not_text"] = not_(func.coalesce(_ts_match(excluded), False))
        return out

    def score(self) -> Any:
        """The relevance column (see the module's docstring): the points of the classes hit."""
        if self.sqlite:
            return self._sqlite_scores().c.score
        parts = [
            case((_ts_match(q.ts_any_in_class(self.parsed, weight)), points), else_=0)
            for weight, points in q.CLASS_SCORES.items()
        ]
        return sum(parts[1:], parts[0]).label("score")

    def join(self, stmt: Select[Any]) -> Select[Any]:
        """The statement joined to what ``score`` needs (SQLite's bm25 lives in the FTS5 query)."""
        if self.sqlite:
            scores = self._sqlite_scores()
            return stmt.join(scores, scores.c.listing_id == Listing.id)
        return stmt

    def _sqlite_scores(self) -> Any:
        if self._scores is None:
            parts = []
            for weight, points in q.CLASS_SCORES.items():
                # bm25 with only this class's columns weighted: below zero when a phrase occurs there.
                weights = [literal_column("1" if w == weight else "0") for _name, w in q.FIELDS]
                parts.append(case((func.bm25(_FTS, *weights) < 0, points), else_=0))
            self._scores = (
                select(_FTS_ROWID.label("listing_id"), sum(parts[1:], parts[0]).label("score"))
                .select_from(_FTS_FROM)
                .where(_FTS.op("MATCH")(literal(q.fts_positive(self.parsed))))
                .subquery("scores")
            )
        return self._scores


_FTS = literal_column(FTS_TABLE)
_FTS_FROM = table(FTS_TABLE)
_FTS_ROWID = literal_column(f"{FTS_TABLE}.rowid", Integer)
_TS_DOCUMENT = literal_column(f"listing.{TS_COLUMN}", TSVECTOR)


def _fts_rows(expression: str) -> Select[Any]:
    return select(_FTS_ROWID).select_from(_FTS_FROM).where(_FTS.op("MATCH")(literal(expression)))


def _ts_match(expression: str) -> ColumnElement[bool]:
    return _TS_DOCUMENT.op("@@", return_type=Boolean)(cast(literal(expression), TSQUERY))
