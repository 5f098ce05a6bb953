"""Search over the store's listings (SearchService on the real database: SQLite, and PostgreSQL with
DOCKYARD_TEST_DATABASE_URL). The expectations below are written once for the shared data set
(tests.support.search_data.SHARED): passing on both databases means both give the same ids, in the same
order. Filters and facet counts are checked against a plain-Python oracle over the same data."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy.orm import Session
from tests.support.search_data import HOSTILE, SHARED, Spec, insert_listings

from dockyard.store import query as q
from dockyard.store import search
from dockyard.store.search import MAX_PAGE, MAX_PAGE_SIZE, Filters, Results, SearchService

VISIBLE = [s for s in SHARED if s.status != "revoked"]


@pytest.fixture
def ids(db_session: Session) -> dict[str, int]:
    return insert_listings(db_session, SHARED)


@pytest.fixture
def service(db_session: Session) -> SearchService:
    return SearchService(db_session)


def keys(results: Results, ids: dict[str, int]) -> list[str]:
    by_id = {v: k for k, v in ids.items()}
    return [by_id[h.listing.id] for h in results.hits]


# The same on SQLite and PostgreSQL: (query, filters, sort) -> the keys, in order.
SAME_ON_BOTH: list[tuple[str, Filters | None, str | None, list[str]]] = [
    ("redis", None, None, ["redis-on-hold", "redis-cache", "log-shipper"]),
    ("cache", None, None, ["redis-cache", "redis-on-hold", "cache-proxy", "nginx-web", "metrics-db"]),
    ("web OR kafka", None, None, ["nginx-web", "kafka-bus", "cache-proxy", "log-shipper"]),
    ('"web server"', None, None, ["nginx-web"]),
    ('"server web"', None, None, []),
    ("proxy -nginx", None, None, ["cache-proxy"]),
    (
        "-redis",
        None,
        None,
        [
            "nginx-web",
            "kafka-bus",
            "metrics-db",
            "cache-proxy",
            "ml-notebook",
            "pg-backup",
            "café-analytics",
            "vault-secrets",
        ],
    ),
    ("cafe", None, None, ["café-analytics"]),
    ("CAFÉ", None, None, ["café-analytics"]),
    ("données", None, None, ["café-analytics"]),
    ("data", None, None, ["redis-cache", "pg-backup", "café-analytics", "metrics-db", "redis-on-hold"]),
    ("data ", None, None, ["redis-cache", "pg-backup", "café-analytics"]),  # a finished word: no prefix
    ("dat", None, None, ["redis-cache", "pg-backup", "café-analytics", "metrics-db", "redis-on-hold"]),
    ("proxy_cache", None, None, ["nginx-web"]),
    ("linux/arm64", None, None, []),  # platforms are a filter, not text
    ("cache", Filters(free=True, category="Database"), None, ["redis-cache", "redis-on-hold"]),
    ("", Filters(arch="linux/arm64"), "newest", ["log-shipper", "metrics-db", "redis-cache", "nginx-web"]),
    (
        "",
        None,
        None,
        [
            "nginx-web",
            "redis-cache",
            "kafka-bus",
            "metrics-db",
            "cache-proxy",
            "ml-notebook",
            "pg-backup",
            "log-shipper",
            "café-analytics",
            "vault-secrets",
            "redis-on-hold",
        ],
    ),
    ("acme", None, None, ["redis-cache", "pg-backup", "café-analytics"]),  # publisher's name
    ("messaging", None, "downloads", ["kafka-bus"]),  # category
    ("Globex", Filters(certified=True), None, []),
    ("reliable", Filters(publisher="initech"), "newest", ["metrics-db", "ml-notebook", "vault-secrets"]),
]


@pytest.mark.parametrize(("text", "filters", "sort", "expected"), SAME_ON_BOTH)
def test_the_same_results_on_both_databases(
    ids: dict[str, int],
    service: SearchService,
    text: str,
    filters: Filters | None,
    sort: str | None,
    expected: list[str],
) -> None:
    results = service.search(text, filters, sort=sort)
    assert keys(results, ids) == expected
    assert results.total == len(expected)


def test_a_name_match_ranks_above_a_long_description_match(
    ids: dict[str, int], service: SearchService
) -> None:
    # log-shipper has many more downloads than the ranking's tie-break would need, and only a description hit.
    order = keys(service.search("redis"), ids)
    assert order.index("redis-cache") < order.index("log-shipper")
    hits = {k: h.score for k, h in zip(order, service.search("redis").hits, strict=True)}
    assert hits["redis-cache"] == q.CLASS_SCORES["A"] + q.CLASS_SCORES["D"]
    assert hits["log-shipper"] == q.CLASS_SCORES["D"]
    # a tag hit (B) ranks above a short-description hit (C)
    order = keys(service.search("proxy"), ids)
    assert order == ["cache-proxy", "nginx-web"]


def test_revoked_listings_are_never_found(ids: dict[str, int], service: SearchService) -> None:
    for text in ("", "redis", "revoked", "Redis Revoked", "globex"):
        for filters in (None, Filters(publisher="globex"), Filters(free=True), Filters(category="Database")):
            results = service.search(text, filters, page_size=MAX_PAGE_SIZE)
            assert "redis-revoked" not in keys(results, ids)
    facets = service.search("").facets
    assert {f.value: f.count for f in facets.publisher}["globex"] == 3  # not 4: the revoked one
    assert service.search("revoked").total == 0


def _oracle(filters: Filters, without: str | None = None) -> list[Spec]:
    def keep(s: Spec) -> bool:
        checks = {
            "certified": not filters.certified or s.certified,
            "free": not filters.free or s.free,
            "category": filters.category is None or s.category == filters.category,
            "publisher": filters.publisher is None or s.publisher == filters.publisher,
            "arch": filters.arch is None or filters.arch in s.platforms,
        }
        return all(ok for name, ok in checks.items() if name != without)

    return [s for s in VISIBLE if keep(s)]


FILTER_CASES = [
    Filters(**dict(combo))
    for combo in itertools.product(
        [("certified", False), ("certified", True)],
        [("free", False), ("free", True)],
        [("category", None), ("category", "Database"), ("category", "Nope")],
        [("publisher", None), ("publisher", "globex")],
        [("arch", None), ("arch", "linux/arm64")],
    )
]


@pytest.mark.parametrize("filters", FILTER_CASES, ids=lambda f: repr(f)[8:-1])
def test_every_filter_and_facet_count(ids: dict[str, int], service: SearchService, filters: Filters) -> None:
    results = service.search("", filters, page_size=MAX_PAGE_SIZE)
    expected = _oracle(filters)
    assert sorted(keys(results, ids)) == sorted(s.key for s in expected)
    assert results.total == len(expected)
    facets = results.facets
    # A facet's counts: the other filters applied, not its own.
    assert facets.certified == sum(s.certified for s in _oracle(filters, "certified"))
    assert facets.free == sum(s.free for s in _oracle(filters, "free"))
    categories: dict[str, int] = {}
    for s in _oracle(filters, "category"):
        if s.category:
            categories[s.category] = categories.get(s.category, 0) + 1
    assert {f.value: f.count for f in facets.category} == categories
    publishers: dict[str, int] = {}
    for s in _oracle(filters, "publisher"):
        publishers[s.publisher] = publishers.get(s.publisher, 0) + 1
    if filters.publisher is not None:
        publishers.setdefault(filters.publisher, 0)  # the chosen one is always there, to be unselected
    assert {f.value: f.count for f in facets.publisher} == publishers
    arches: dict[str, int] = {}
    for s in _oracle(filters, "arch"):
        for p in set(s.platforms):
            arches[p] = arches.get(p, 0) + 1
    assert {f.value: f.count for f in facets.arch} == arches
    counts = [f.count for f in facets.category]
    assert counts == sorted(counts, reverse=True)


def test_facet_counts_follow_the_query(ids: dict[str, int], service: SearchService) -> None:
    facets = service.search("cache", Filters(category="Database")).facets
    assert {f.value: f.count for f in facets.category} == {
        "Database": 3,
        "Networking": 1,
        "Web Servers": 1,
    }
    assert facets.free == 2 and facets.certified == 2
    assert {f.value: f.count for f in facets.arch} == {"linux/amd64": 3, "linux/arm64": 2, "linux/s390x": 1}


def test_sort_orders(ids: dict[str, int], service: SearchService) -> None:
    newest = keys(service.search("", sort="newest", page_size=MAX_PAGE_SIZE), ids)
    assert newest == [s.key for s in sorted(VISIBLE, key=lambda s: (s.age, -ids[s.key]))]
    popular = keys(service.search("", sort="downloads", page_size=MAX_PAGE_SIZE), ids)
    assert popular == [s.key for s in sorted(VISIBLE, key=lambda s: (-s.downloads, -ids[s.key]))]
    assert service.search("").sort == "downloads"  # no words: nothing to be relevant to
    assert service.search("redis").sort == "relevance"
    assert service.search("redis", sort="bogus").sort == "relevance"
    by_downloads = keys(service.search("cache", sort="downloads"), ids)
    assert by_downloads == ["nginx-web", "redis-cache", "metrics-db", "cache-proxy", "redis-on-hold"]


def test_ties_are_broken_by_a_stable_key(db_session: Session, service: SearchService) -> None:
    same = [Spec(f"twin-{i}", f"Twin {i}", "acme", "identical twin", downloads=7) for i in range(5)]
    ids = insert_listings(db_session, same)
    first = keys(service.search("twin"), ids)
    assert first == sorted(first, key=lambda k: ids[k])  # equal relevance and downloads: by id
    assert keys(service.search("twin"), ids) == first


def test_pages(ids: dict[str, int], service: SearchService) -> None:
    everything = keys(service.search("", page_size=MAX_PAGE_SIZE), ids)
    pages = [keys(service.search("", page=n, page_size=3), ids) for n in range(1, 6)]
    assert [len(p) for p in pages] == [3, 3, 3, 2, 0]
    assert [k for p in pages for k in p] == everything
    last = service.search("", page=4, page_size=3)
    assert last.total == 11 and last.pages == 4
    beyond = service.search("", page=99, page_size=3)
    assert beyond.hits == [] and beyond.total == 11
    assert service.search("", page=0).page == 1  # clamped by the service (the API refuses it)
    assert service.search("", page=-5).page == 1
    assert service.search("", page=10**18).page == MAX_PAGE
    assert service.search("", page_size=10**6).page_size == MAX_PAGE_SIZE
    assert service.search("", page_size=0).page_size == 1


def test_no_results(ids: dict[str, int], service: SearchService) -> None:
    results = service.search("zzzyyyxxx")
    assert results.hits == [] and results.total == 0 and results.pages == 1
    assert results.facets.free == 0 and results.facets.category == [] and results.facets.arch == []


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_never_fail(ids: dict[str, int], service: SearchService, text: str) -> None:
    odd = text[:300] + "?"
    results = service.search(text, Filters(category=odd, publisher=odd, arch=odd))
    assert results.total == 0  # the filters match nothing
    results = service.search(text)
    assert results.total >= 0
    for sort in ("relevance", "newest", "downloads"):
        service.search(text, sort=sort, page=2, page_size=2)


def test_query_limits() -> None:
    parsed = q.parse(" ".join(f"w{i}" for i in range(100)))
    assert len(parsed.positive) == q.MAX_ITEMS
    assert q.parse("x" * 10_000).positive[0].tokens == ("x" * q.TOKEN_CHARS,)
    assert q.parse('"' + "a " * 50 + '"').positive[0].tokens == ("a",) * q.MAX_PHRASE_TOKENS
    assert q.parse("😀 !!! \x00").empty
    assert q.tokens("Ĉàché \uff32\uff25\uff24\uff29\uff33 linux/arm64 proxy_cache") == [
        "cache",
        "redis",
        "linux",
        "arm64",
        "proxy",
        "cache",
    ]


@pytest.mark.parametrize("text", ["redis", "cache", "web OR kafka", "data", "dat", "reliable", "-redis"])
def test_pages_of_any_size_make_up_the_whole_order(
    ids: dict[str, int], service: SearchService, text: str
) -> None:
    # A relevance page is first taken from the name hits alone; small pages exercise that path and its
    # fallback to every match scored (a page running past the name hits).
    whole = service.search(text, page_size=MAX_PAGE_SIZE)
    for size in (1, 2, 3):
        pages = [service.search(text, page=n, page_size=size) for n in range(1, whole.total // size + 2)]
        assert [(h.listing.id, h.score) for p in pages for h in p.hits] == [
            (h.listing.id, h.score) for h in whole.hits
        ]
        assert all(p.total == whole.total for p in pages)


@pytest.mark.parametrize("sort", ["relevance", "newest", "downloads"])
@pytest.mark.parametrize(
    "text", ["cache", "reliable", "dat", "web OR kafka", "reliable -redis", "data cache", "reliable dat"]
)
def test_a_match_broader_than_the_count_limit_is_counted_up_to_it_and_its_pages_stay_exact(
    ids: dict[str, int], service: SearchService, monkeypatch: pytest.MonkeyPatch, text: str, sort: str
) -> None:
    whole = service.search(text, sort=sort, page_size=MAX_PAGE_SIZE)
    assert whole.exact
    monkeypatch.setattr(search, "COUNT_LIMIT", 2)
    capped = service.search(text, sort=sort, page_size=MAX_PAGE_SIZE)
    assert capped.exact is (whole.total <= 2)
    assert capped.total == min(whole.total, 2)
    # The facets are counted over the first matches only (no more than the limit + 1 of them).
    assert sum(f.count for f in capped.facets.category) <= 3
    for size in (1, 2, 3):
        pages = [service.search(text, sort=sort, page=n, page_size=size) for n in range(1, whole.total + 2)]
        assert [(h.listing.id, h.score) for p in pages for h in p.hits] == [
            (h.listing.id, h.score) for h in whole.hits
        ]
    # Filters on a broad match: the page is still every filtered match, in order.
    narrowed = service.search(text, Filters(category="Database"), sort=sort, page_size=MAX_PAGE_SIZE)
    monkeypatch.setattr(search, "COUNT_LIMIT", 10_000)
    exact = service.search(text, Filters(category="Database"), sort=sort, page_size=MAX_PAGE_SIZE)
    assert [h.listing.id for h in narrowed.hits] == [h.listing.id for h in exact.hits]


def test_a_broad_match_of_several_words_pages_only_the_name_hits_that_match_every_word(
    db_session: Session, service: SearchService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More matches than the count limit (PostgreSQL then checks each name hit's document for every word,
    # not through the words' index): a name hit lacking one word is not a match, whichever way it is read.
    specs = [
        Spec("alpha-cache", "Alpha Cache", "acme", "a cache", downloads=1000),  # no 'zeta': not a match
        Spec("zeta-cache", "Zeta Cache", "acme", "a cache", "zeta", downloads=10),
        Spec("beta-cache", "Beta Cache", "acme", "a cache", "zeta inside", downloads=20),
        Spec("zeta-store", "Zeta Store", "acme", "a store", "no word of the other", downloads=500),
        Spec("gamma", "Gamma", "acme", "a cache for zeta", downloads=30),
    ]
    ids = insert_listings(db_session, specs)
    exact = service.search("cache zeta ")
    assert exact.exact and exact.total == 3
    monkeypatch.setattr(search, "COUNT_LIMIT", 2)
    for size in (1, 2, 3):
        pages = [service.search("cache zeta ", page=n, page_size=size) for n in (1, 2, 3)]
        assert not pages[0].exact
        got = [(h.listing.id, h.score) for p in pages for h in p.hits]
        assert got == [(h.listing.id, h.score) for h in exact.hits]
    assert keys(exact, ids) == ["beta-cache", "zeta-cache", "gamma"]


def test_a_capped_match_counts_its_first_matches_by_id_on_both_databases(
    ids: dict[str, int], service: SearchService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "COUNT_LIMIT", 2)
    results = service.search("reliable")  # in every listing's long description
    assert not results.exact and results.total == 2
    first = sorted((ids[s.key], s) for s in VISIBLE)[:3]  # the limit + 1 counted
    expected: dict[str, int] = {}
    for _id, s in first:
        expected[s.category] = expected.get(s.category, 0) + 1
    assert {f.value: f.count for f in results.facets.category} == expected
