"""The search API: GET /api/v1/search, open to anyone (signed in or not). Thin: parse, one service call."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from dockyard.services import Services
from dockyard.store import search_schemas as s
from dockyard.store.search import MAX_FILTER_CHARS, MAX_PAGE, MAX_PAGE_SIZE, PAGE_SIZE, Filters
from dockyard.web.api import Ctx, UnitOfWorkRoute, errors

router = APIRouter(route_class=UnitOfWorkRoute, tags=["store"])
FilterValue = Annotated[str | None, Query(max_length=MAX_FILTER_CHARS)]


@router.get("/search", response_model=s.SearchResults, responses=errors(400))
async def search(
    ctx: Ctx,
    q: Annotated[
        str,
        Query(
            max_length=20_000,
            description='words (all must match), "a phrase", -excluded, a OR b; only the first 256 '
            "characters count. Empty: every product, filters still applied",
        ),
    ] = "",
    certified: Annotated[bool, Query(description="certified products only")] = False,
    free: Annotated[bool, Query(description="products with a free tier only")] = False,
    category: FilterValue = None,
    publisher: Annotated[
        str | None, Query(max_length=MAX_FILTER_CHARS, description="a publisher's slug")
    ] = None,
    arch: Annotated[
        str | None, Query(max_length=MAX_FILTER_CHARS, description='a platform, "linux/arm64"')
    ] = None,
    sort: Annotated[
        Literal["relevance", "newest", "downloads"] | None,
        Query(description="relevance by default with a query, downloads without"),
    ] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
) -> dict[str, Any]:
    """Full-text search of the store's products, with filters, facet counts beside each filter, and pages."""
    filters = Filters(certified=certified, free=free, category=category, publisher=publisher, arch=arch)

    def work(sv: Services) -> dict[str, Any]:
        return s.results_out(sv.search.search(q, filters, sort=sort, page=page, page_size=page_size))

    return await ctx.call(work)
