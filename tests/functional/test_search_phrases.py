"""Phrases (SearchService on the real database: SQLite, and PostgreSQL with DOCKYARD_TEST_DATABASE_URL).

PostgreSQL matches a phrase through the pairs of adjacent words (bigram lexemes of ``search_pairs``; a
longer phrase as a chain of its pairs), SQLite through FTS5's positions. The expectations are written once:
passing on both databases means both give the same ids, in the same order, with the same scores."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session
from tests.support.search_data import Spec, insert_listings

from dockyard.store import query as q
from dockyard.store.search import Results, SearchService

LONG_A = "a" * 40  # two long tokens: their pair is longer than query.BIGRAM_BYTES, named by a digest
LONG_B = "b" * 40

PHRASES: list[Spec] = [
    Spec("chain", "Fast Cache Proxy", downloads=10),
    # Both pairs of "fast cache proxy" occur (in the name, the short and the long description), never
    # chained: "fast cache" is not followed by "proxy" anywhere.
    Spec("split", "Fast Cache", short="a cache proxy and a fast cache", long="fast cache, then cache proxy"),
    # "web" ends the name and "server" starts the tags: adjacent positions, two fields.
    Spec("across", "Edge Web", tags=["server", "edge"], downloads=5),
    # "web server" adjacent in the long description only (the name has both words apart).
    Spec("apart", "Web Proxy Server", long="Runs as a web server, or a proxy.", downloads=3),
    Spec("named", "Web Server Pro", downloads=1),
    Spec("long", f"{LONG_A} {LONG_B}", short=f"{LONG_B} {LONG_A}"),
    Spec("unicode", "Café Crème Brûlée"),
    Spec("twice", "Twice", long="data data pipeline"),
    Spec("once", "Once", long="data pipeline data"),
]

A, B, C, D = (q.CLASS_SCORES[w] for w in "ABCD")

# query -> [(key, score)], in order.
EXPECTED: list[tuple[str, list[tuple[str, int]]]] = [
    ('"fast cache proxy"', [("chain", A)]),
    ('"fast cache"', [("split", A + C + D), ("chain", A)]),
    ('"cache proxy"', [("chain", A), ("split", C + D)]),
    ('"web server"', [("named", A), ("apart", D)]),
    ('"server web"', []),
    ('"web server pro"', [("named", A)]),
    ('"web proxy server"', [("apart", A)]),
    ('"edge web server"', []),
    # A word of several tokens is a phrase: excluded here (with no listing's "web server" excluded by error).
    ("edge -web/server", [("across", A + B)]),
    ("web -web/server", [("across", A)]),
    ('edge -"web server"', [("across", A + B)]),  # the quoted form of the same exclusion
    ('web -"web server"', [("across", A)]),
    ('"web server" OR "fast cache proxy"', [("chain", A), ("named", A), ("apart", D)]),
    ('"web server" proxy', [("apart", A + D)]),
    (f'"{LONG_A} {LONG_B}"', [("long", A)]),
    (f'"{LONG_B} {LONG_A}"', [("long", C)]),
    (f'"{LONG_A} {LONG_A}"', []),
    ('"cafe creme"', [("unicode", A)]),
    ('"CAFÉ CRÈME brulee"', [("unicode", A)]),
    ('"creme cafe"', []),
    ('"data data"', [("twice", D)]),
    ('"data data pipeline"', [("twice", D)]),
    ('"pipeline data"', [("once", D)]),
    ("pipeline -data/data", [("once", D)]),
    # A word's prefix never matches a pair's lexeme (they start with query.BIGRAM_MARK).
    ("fast cac", [("split", A + C + D), ("chain", A)]),
]


@pytest.fixture
def ids(db_session: Session) -> dict[str, int]:
    return insert_listings(db_session, PHRASES)


def scored(results: Results, ids: dict[str, int]) -> list[tuple[str, int | None]]:
    by_id = {v: k for k, v in ids.items()}
    return [(by_id[h.listing.id], h.score) for h in results.hits]


@pytest.mark.parametrize(("text", "expected"), EXPECTED)
def test_phrases_match_and_score_the_same_on_both_databases(
    ids: dict[str, int], db_session: Session, text: str, expected: list[tuple[str, int]]
) -> None:
    results = SearchService(db_session).search(text)
    assert scored(results, ids) == expected
    assert results.total == len(expected)


def test_a_pair_lexeme_is_never_a_token() -> None:
    pair = q.bigram("web", "server")
    assert pair == "_web_server"
    assert q.tokens(pair) == ["web", "server"]  # a token never holds the mark: no word finds a pair
    long_pair = q.bigram(LONG_A, LONG_B)
    assert len(long_pair.encode()) <= q.BIGRAM_BYTES and long_pair.startswith("__")
    assert long_pair != q.bigram(LONG_B, LONG_A)


def test_pairs_stay_within_a_field() -> None:
    pairs = q.ts_document({"name": "Edge Web", "tags": "server"}, words=False, pairs=True)
    assert pairs == "'_edge_web':1A"
    words = q.ts_document({"name": "Edge Web", "tags": "server"})
    assert words == "'edge':1A 'web':2A 'server':5B"  # FIELD_GAP positions between fields
    both = q.ts_document({"name": "web web"}, pairs=True)
    assert both == "'web':1A,2A '_web_web':1A"
