"""The search page and API over HTTP: public, hostile input never a 5xx, pages and errors, the htmx
fragment, and products published through the real review path found (and gone once unpublished)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient
from tests.support.search_data import HOSTILE, SHARED, insert_listings
from tests.support.store_world import principal, published_world

from dockyard.web.context import AppState


@pytest.fixture
def shared(app_state: AppState) -> dict[str, int]:
    with app_state.sessions.begin() as s:
        return insert_listings(s, SHARED)


def test_the_api_answers_results_facets_total_and_page(client: TestClient, shared: dict[str, int]) -> None:
    r = client.get("/api/v1/search", params={"q": "cache", "category": "Database", "free": "1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [h["product"] for h in body["results"]] == ["redis-cache", "redis-on-hold"]
    assert body["total"] == 2 and body["page"] == 1 and body["pages"] == 1 and body["sort"] == "relevance"
    first = body["results"][0]
    assert first["url"] == "/products/acme/redis-cache" and first["certified"] is True
    assert first["platforms"] == ["linux/amd64", "linux/arm64"] and first["free"] is True
    assert body["facets"]["free"] == 2 and body["facets"]["certified"] == 1
    assert {f["value"]: f["count"] for f in body["facets"]["category"]} == {
        "Database": 2,
        "Networking": 1,
        "Web Servers": 1,
    }
    assert body["filters"] == {
        "certified": False,
        "free": True,
        "category": "Database",
        "publisher": None,
        "arch": None,
    }
    r = client.get("/api/v1/search", params={"sort": "newest", "page": 2, "page_size": 4})
    assert [h["product"] for h in r.json()["results"]] == [
        "redis-on-hold",
        "kafka-bus",
        "redis-cache",
        "ml-notebook",
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"page": "0"},
        {"page": "-1"},
        {"page": str(10**30)},
        {"page": "1001"},
        {"page": "x"},
        {"page_size": "0"},
        {"page_size": "101"},
        {"sort": "price"},
        {"free": "maybe"},
    ],
)
def test_the_api_refuses_out_of_bounds_input_in_its_envelope(
    client: TestClient, shared: dict[str, int], params: dict[str, str]
) -> None:
    r = client.get("/api/v1/search", params=params)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "INVALID" and error["detail"][0]["field"].startswith("query.")


def test_the_api_past_the_last_page_is_empty(client: TestClient, shared: dict[str, int]) -> None:
    body = client.get("/api/v1/search", params={"page": 1000}).json()
    assert body["results"] == [] and body["total"] == 11 and body["pages"] == 1


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_never_fail_on_the_page_or_the_api(
    client: TestClient, shared: dict[str, int], text: str
) -> None:
    params = {"q": text, "category": text[:200], "arch": text[:50]}
    r = client.get("/api/v1/search", params=params)
    # NUL in a URL is refused by the whole site (400, before any view); over 20,000 characters by the API.
    refused = "\x00" in text or len(text) > 20_000
    assert r.status_code == (400 if refused else 200), r.text
    assert r.json()["error"]["code"] if refused else r.json()["total"] >= 0
    r = client.get("/search", params={**params, "page": "99999999999999999999999"})
    assert r.status_code == (400 if "\x00" in text else 200)
    if r.status_code == 200:
        assert "Search the store" in r.text


def test_the_page_shows_results_facets_and_pages(client: TestClient, shared: dict[str, int]) -> None:
    r = client.get("/search", params={"q": "redis"})
    assert r.status_code == 200
    html = r.text
    assert html.index("Redis Hold") < html.index("Redis Cache") < html.index("Log Shipper")
    assert 'href="/products/acme/redis-cache"' in html
    assert "Redis Revoked" not in html
    assert "Certified" in html and "Free tier" in html and "linux/arm64" in html
    assert 'href="/search?q=redis&amp;category=Database"' in html  # a facet link keeps the words
    assert "3 products" in html
    paged = client.get("/search", params={"page": "2"}).text  # 11 products, 20 a page: clamped to page 1
    assert "Nginx Web Server" in paged and 'rel="next"' not in paged


def test_the_page_says_when_nothing_matches(client: TestClient, shared: dict[str, int]) -> None:
    html = client.get("/search", params={"q": "zzzqqq", "certified": "1"}).text
    assert "No products found" in html and "Nothing matches “zzzqqq” with these filters" in html
    assert 'href="/search"' in html  # the way back: every product


def test_htmx_gets_only_the_search_area(client: TestClient, shared: dict[str, int]) -> None:
    headers = {"HX-Request": "true", "HX-Target": "search-area"}
    r = client.get("/search", params={"q": "kafka"}, headers=headers)
    assert r.status_code == 200
    assert "<html" not in r.text and "Kafka Message Bus" in r.text and 'id="search-q"' in r.text
    full = client.get("/search", params={"q": "kafka"}).text
    assert "<html" in full and 'id="search-area"' in full


def test_the_layout_has_a_search_box(client: TestClient) -> None:
    html = client.get("/ui/login").text
    assert 'role="search"' in html and 'action="/search"' in html


def test_a_product_published_through_review_is_found_and_gone_when_unpublished(
    app_state: AppState, client: TestClient, tmp_path: Path
) -> None:
    world = published_world(app_state, tmp_path / "feed")
    body = client.get("/api/v1/search", params={"q": "acme database"}).json()
    assert [(h["publisher"], h["product"]) for h in body["results"]] == [(world.org, world.slug)]
    assert body["results"][0]["platforms"] == ["linux/amd64"]
    body = client.get("/api/v1/search", params={"q": "sql", "arch": "linux/amd64"}).json()  # a tag
    assert body["total"] == 1
    browse = client.get("/api/v1/search").json()  # browsing figures, kept by the cache from here
    assert browse["total"] == 1
    assert [f["count"] for f in browse["facets"]["publisher"]] == [1]
    with app_state.sessions.begin() as s:
        p, actor = principal(s, world.users["admin"])
        app_state.services(s).reviews.unpublish(world.revision, p, actor, "taken down")
    assert client.get("/api/v1/search", params={"q": "acme database"}).json()["total"] == 0
    browse = client.get("/api/v1/search").json()
    assert browse["total"] == 0 and browse["results"] == []
    assert browse["facets"]["publisher"] == [] and browse["facets"]["category"] == []


def test_the_page_says_when_counts_are_of_the_first_matches_only(
    client: TestClient, shared: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dockyard.store import search

    monkeypatch.setattr(search, "COUNT_LIMIT", 1)
    r = client.get("/search", params={"q": "cache"})
    assert r.status_code == 200
    assert "At least 1 product" in r.text and "are of the first 1 of them" in r.text
    assert client.get("/api/v1/search", params={"q": "cache"}).json()["exact"] is False
    monkeypatch.setattr(search, "COUNT_LIMIT", 1000)
    r = client.get("/search", params={"q": "cache"})
    assert "At least" not in r.text and "are of the first" not in r.text
