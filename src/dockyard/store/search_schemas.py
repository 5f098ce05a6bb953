"""Response bodies of the search API (GET /api/v1/search)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from dockyard.accounts.schemas import UtcDateTime
from dockyard.store.search import Facet, Hit, Results


class SearchHit(BaseModel):
    id: int = Field(description="the listing's id")
    publisher: str = Field(description="the publisher's slug (its organisation's name)")
    product: str = Field(description="the product's slug")
    url: str = Field(description="the product's page, /products/<publisher>/<product>")
    name: str
    publisher_name: str
    short_description: str
    category: str | None
    tags: list[str]
    logo_url: str | None = Field(description="the logo's 128-pixel rendition, when the product has a logo")
    certified: bool
    free: bool = Field(description="whether the product has a free tier")
    platforms: list[str] = Field(description='platforms of its pinned images, e.g. "linux/arm64"')
    downloads: int
    status: str = Field(description="listed, or on_hold (a compliance warning); revoked ones are never found")
    published_at: UtcDateTime
    score: int | None = Field(description="relevance (when sorted by relevance): the fields the query hits")


class FacetCount(BaseModel):
    value: str = Field(description="the filter's value")
    label: str
    count: int = Field(description="results with this value, the other filters applied")


class SearchFacets(BaseModel):
    category: list[FacetCount]
    publisher: list[FacetCount] = Field(description="the publishers with most results (and the chosen one)")
    arch: list[FacetCount]
    free: int = Field(description="results with a free tier, the other filters applied")
    certified: int = Field(description="certified results, the other filters applied")


class SearchFilters(BaseModel):
    certified: bool
    free: bool
    category: str | None
    publisher: str | None
    arch: str | None


class SearchResults(BaseModel):
    query: str
    filters: SearchFilters
    sort: str = Field(description="relevance, newest or downloads (the default without a query)")
    page: int
    page_size: int
    pages: int
    total: int = Field(description="results in all pages (when exact is false: at least this many)")
    exact: bool = Field(
        description="false when the words match more products than are counted (1,000): total is then a "
        "lower bound and the facet counts are over the first 1,000 matches; the pages stay exact"
    )
    results: list[SearchHit]
    facets: SearchFacets


def hit_out(hit: Hit) -> dict[str, Any]:
    item = hit.listing
    return {
        "id": item.id,
        "publisher": item.publisher_slug,
        "product": item.product_slug,
        "url": f"/products/{item.publisher_slug}/{item.product_slug}",
        "name": item.name,
        "publisher_name": item.publisher_name,
        "short_description": item.short_description,
        "category": item.category,
        "tags": list(item.tags or []),
        "logo_url": f"/catalog-images/{item.logo_id}/128" if item.logo_id else None,
        "certified": item.certified,
        "free": item.free,
        "platforms": hit.platforms,
        "downloads": item.downloads,
        "status": item.status,
        "published_at": item.published_at,
        "score": hit.score,
    }


def _facets(facets: list[Facet]) -> list[dict[str, Any]]:
    return [{"value": f.value, "label": f.label, "count": f.count} for f in facets]


def results_out(results: Results) -> dict[str, Any]:
    f = results.filters
    return {
        "query": results.query,
        "filters": {
            "certified": f.certified,
            "free": f.free,
            "category": f.category,
            "publisher": f.publisher,
            "arch": f.arch,
        },
        "sort": results.sort,
        "page": results.page,
        "page_size": results.page_size,
        "pages": results.pages,
        "total": results.total,
        "exact": results.exact,
        "results": [hit_out(h) for h in results.hits],
        "facets": {
            "category": _facets(results.facets.category),
            "publisher": _facets(results.facets.publisher),
            "arch": _facets(results.facets.arch),
            "free": results.facets.free,
            "certified": results.facets.certified,
        },
    }
