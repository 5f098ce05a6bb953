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

What a request costs (issue 10: p95 under 50 ms at 100,000 listings; see search_sql and search_cache):
- words: one statement computes the match once (a materialised CTE) and returns the total, the facets and
  the page from it. A match of more than COUNT_LIMIT listings is counted over its first COUNT_LIMIT + 1 by
  id (``Results.exact`` false: the total is a lower bound, the facets a count of those); its pages stay
  exact: by relevance from the name hits (which outrank every other match, so only they are scored; FTS5's
  column filter, PostgreSQL's ``search_name`` tsvector), else every counted match scored; by downloads or
  newest from the listings in index order; PostgreSQL, several words: the name hits narrowed by the
  words' index for a match within COUNT_LIMIT, by their documents for a broader one (chosen in the
  statement by the match's count; see ``Matcher.broad_top_class_page``);
- phrases (PostgreSQL): the GIN index of the pairs of adjacent words (``search_pairs``, see store.query)
  finds a phrase's listings exactly, where positions would be re-checked on every listing with its words;
- PostgreSQL, per transaction: random_page_cost 1.1 (the listings are read from memory) and no JIT;
- no words: the page from partial indexes in the sort's order, the total and facets from a per-process
  cache keyed by a listings version that triggers move on every change a facet reads.

Only listed and on-hold listings are found; revoked ones never.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from dockyard.store import query as q
from dockyard.store import search_cache as cache
from dockyard.store import search_sql as sql
from dockyard.store.models import Listing, ListingPlatform

SORTS = ("relevance", "newest", "downloads")
PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_PAGE = 1000  # deeper than any customer pages; the API refuses more, the page clamps
MAX_FILTER_CHARS = 200
# Matches counted exactly (total and facets); a broader match is counted up to here (the page is exact
# always). Counting every one of 45,000 matches costs more than a request may (issue 10: p95 under 50 ms).
COUNT_LIMIT = 1000
VISIBLE = sql.VISIBLE

FTS_TABLE = sql.FTS_TABLE
TS_COLUMN = sql.TS_COLUMN
TS_INDEX = "ix_listing_search_document"
TS_NAME_COLUMN = sql.TS_NAME_COLUMN  # the name's own tsvector: the name hits of relevance pages
TS_NAME_INDEX = "ix_listing_search_name"
TS_PAIRS_COLUMN = sql.TS_PAIRS_COLUMN  # adjacent words' pairs: phrases (see store.query)
TS_PAIRS_INDEX = "ix_listing_search_pairs"
VISIBLE_SQL = sql.VISIBLE_SQL
# Partial indexes (visible listings only) in the orders of browsing; written with the literal condition
# of search_sql.visible(), which is what lets the planners use them.
BROWSE_INDEXES = {
    "ix_listing_visible_downloads": "downloads DESC, id DESC",
    "ix_listing_visible_published": "published_at DESC, id DESC",
}
# PostgreSQL only: certified listings (a tenth), which the planner ANDs with a name or word index for the
# certified filter instead of reading every hit's row (SQLite keeps its plans: it would not use it so).
CERTIFIED_INDEX = "ix_listing_visible_certified"
CERTIFIED_INDEX_SQL = (
    f"CREATE INDEX IF NOT EXISTS {CERTIFIED_INDEX} ON listing (id) WHERE certified IS TRUE AND {VISIBLE_SQL}"
)


def outside_metadata(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """False for the search index's database objects, which the models do not declare (Alembic's
    ``include_name``): the FTS5 table and its shadow tables, the tsvector column and its index."""
    if type_ == "table":
        return not (name or "").startswith(FTS_TABLE) and name != cache.VERSION_TABLE
    if type_ == "column":
        ours = (TS_COLUMN, TS_NAME_COLUMN, TS_PAIRS_COLUMN)
        return not (parent_names.get("table_name") == "listing" and name in ours)
    if type_ == "index":
        ours = (TS_INDEX, TS_NAME_INDEX, TS_PAIRS_INDEX, CERTIFIED_INDEX)
        return name not in ours and name not in BROWSE_INDEXES
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
    # False when more than COUNT_LIMIT listings match the words: the total is then the filtered matches
    # up to COUNT_LIMIT ("at least"), the facets are counted over the first COUNT_LIMIT matches.
    exact: bool = True

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
            docs = [
                {
                    "id": i,
                    "doc": q.ts_document(fields),
                    "pairs": q.ts_document(fields, words=False, pairs=True),
                    "name": q.ts_document({"name": fields["name"]}, pairs=True),
                }
                for i, fields in rows
            ]
            self.session.execute(
                text(
                    f"UPDATE listing SET {TS_COLUMN} = CAST(:doc AS tsvector), "
                    f"{TS_PAIRS_COLUMN} = CAST(:pairs AS tsvector), "
                    f"{TS_NAME_COLUMN} = CAST(:name AS tsvector) WHERE id = :id"
                ),
                docs,
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
        offset = (page - 1) * page_size
        exact = True
        if not self.sqlite:
            # A plan for these values: psycopg prepares a statement run often, and PostgreSQL then may
            # switch to one generic plan for every query of its shape (a broad word and a rare phrase alike).
            # The listings' pages are in memory when searched (they are, warm): a page read at random costs
            # about what one read in order does. With the default (4, for disks) the planner walks the
            # primary key re-checking tens of thousands of documents to find a word's first 1,001 matches by
            # id, where the GIN index's few thousand rows sorted cost a fifth (at 100,000 listings: 'cache',
            # 48 ms against 9). Set for this transaction only; JIT off likewise (no search statement runs
            # long enough to repay its compilation, which costs tens of milliseconds). One round trip:
            # set_config(..., true) is SET LOCAL.
            self.session.execute(
                text(
                    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
                    "set_config('random_page_cost', '1.1', true), set_config('jit', 'off', true)"
                )
            )
        if parsed.empty:
            total, facets, scored = self._browse(filters, sort, page_size, offset)
        else:
            total, facets, scored, exact = self._match(parsed, filters, sort, page_size, offset)
        listings = {
            listing.id: listing
            for listing in self.session.scalars(select(Listing).where(Listing.id.in_([i for i, _ in scored])))
        }
        platforms = self._platforms(list(listings))
        hits = [Hit(listings[i], platforms.get(i, []), score) for i, score in scored if i in listings]
        return Results(text_query or "", filters, sort, page, page_size, total, hits, facets, exact)

    def _match(
        self, parsed: q.Query, filters: Filters, sort: str, limit: int, offset: int
    ) -> tuple[int, Facets, list[tuple[int, int | None]], bool]:
        """Words: one statement over the match for the total, facets and page (see ``search_sql``); the
        match counted up to COUNT_LIMIT rows, the page always from every match."""
        matcher = sql.Matcher(parsed, self.sqlite)
        # By relevance the page is first taken from the name hits alone (they outrank every other match).
        ranked = broad = None
        if sort == "relevance":
            ranked = matcher.top_class_page(filters, limit, offset)
            broad = matcher.broad_top_class_page(filters, limit, offset)
        stmt = sql.results_statement(
            matcher.matched(scored=False, cap=COUNT_LIMIT),
            filters,
            sort,
            limit,
            offset,
            ranked=ranked,
            broad_ranked=broad,
            cap=COUNT_LIMIT,
            ids_when_short=not self.sqlite,
        )
        rows = self.session.execute(stmt).all()
        total, facets, hits, exact = _read(rows, filters)
        if not exact:
            total = min(total, COUNT_LIMIT)  # at least this many (see Results.exact)
        if sort == "relevance" and len(hits) < limit and (not exact or offset + len(hits) < total):
            # The name hits do not fill the page: the matches scored, those counted (when they are all of
            # them: no second full-text scan), else every match.
            if exact:
                ids = [n for kind, _key, _label, n, _n2 in rows if kind == "id"]
                hits = [tuple(r) for r in self.session.execute(matcher.scored_page(ids, limit, offset))]
            else:
                stmt = sql.results_statement(
                    matcher.matched(scored=True), filters, sort, limit, offset, facets=False
                )
                hits = _read(self.session.execute(stmt).all(), filters)[2]
        if sort == "relevance":
            return total, facets, hits, exact
        if not exact:
            # The page is over every match, in index order (a broad match fills it in a few rows).
            ordered = matcher.ordered_page(filters, sort, limit, offset)
            hits = [(i, None) for i in self.session.scalars(ordered)]
        return total, facets, [(i, None) for i, _ in hits], exact

    def _browse(
        self, filters: Filters, sort: str, limit: int, offset: int
    ) -> tuple[int, Facets, list[tuple[int, int | None]]]:
        """No words: the page straight from the listings in index order (no full-text work), the total and
        facets from the per-process cache of browsing figures (see ``search_cache``)."""
        conditions = sql.filter_conditions(filters)
        page = select(Listing.id).where(sql.visible(), *conditions.values()).order_by(*_order(sort))
        ids = self.session.scalars(page.limit(limit).offset(offset)).all()
        version = cache.version(self.session)
        key = (filters.certified, filters.free, filters.category, filters.publisher, filters.arch)
        figures = cache.get(self.session, version, key)
        if figures is None:
            matched = sql.Matcher(q.Query(), self.sqlite).matched(scored=False)
            stmt = sql.results_statement(matched, filters, sort, 0, 0)
            total, facets, _, _ = _read(self.session.execute(stmt).all(), filters)
            figures = (total, facets)
            cache.put(self.session, version, key, figures)
        total, facets = figures
        return total, copy.deepcopy(facets), [(i, None) for i in ids]

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


def _order(sort: str) -> list[Any]:
    if sort == "newest":
        return [Listing.published_at.desc(), Listing.id.desc()]
    return [Listing.downloads.desc(), Listing.id.desc()]


def _read(rows: list[Any], filters: Filters) -> tuple[int, Facets, list[tuple[int, int | None]], bool]:
    """The total, facets, page and exactness of the tagged rows of ``search_sql.results_statement``."""
    total, facets, hits, exact = 0, Facets(), [], True
    chosen = None
    for kind, key, label, n, n2 in rows:
        if kind == "total":
            total = n
        elif kind == "matched":
            exact = n <= COUNT_LIMIT
        elif kind == "hit":
            hits.append((n, n2))
        elif kind == "flags":
            facets.free, facets.certified = n, n2
        elif kind == "free":
            facets.free = n
        elif kind == "certified":
            facets.certified = n
        elif kind == "category":
            facets.category.append(Facet(key, key, n))
        elif kind == "publisher":
            facets.publisher.append(Facet(key, label, n))
        elif kind == "chosen":
            chosen = Facet(key, label or key, n)
        elif kind == "arch" and key is not None:
            facets.arch.append(Facet(key, key, n))
    facets.category = _ordered(facets.category)
    facets.arch = _ordered(facets.arch)
    facets.publisher.sort(key=lambda f: (-f.count, f.value))
    if chosen is not None and all(f.value != chosen.value for f in facets.publisher):
        facets.publisher.append(chosen)
    return total, facets, hits, exact
