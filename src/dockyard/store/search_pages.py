"""The search page, /search: a query box, filters with facet counts, sorting and pages. Open to anyone.

Every control is a plain link or a GET form, so the page works without JavaScript; with htmx, a filter
link, the sort select or the form swaps only the search area (``#search-area``) and pushes the URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.registry.pages import wants_fragment
from dockyard.store import search as search_rules
from dockyard.store.search import MAX_PAGE, SORTS, Filters, Results
from dockyard.web.context import RequestContext
from dockyard.web.identity import optional_session_principal
from dockyard.web.pages import page, render

SORT_LABELS = {"relevance": "Best match", "newest": "Newest", "downloads": "Most downloaded"}
PARAMS = ("q", "certified", "free", "category", "publisher", "arch", "sort")


def _page_number(value: str | None) -> int:
    """A page number from the query string: not a number is the first page, a huge one the last allowed."""
    value = (value or "").strip()
    if not value.isdigit():
        return 1
    return max(1, min(int(value[:7]), MAX_PAGE))


class Links:
    """URLs of this search with one thing changed (a filter set or cleared, the page), the rest kept."""

    def __init__(self, base: str, params: dict[str, str]) -> None:
        self.base = base
        self.params = {k: v for k, v in params.items() if v}

    def __call__(self, **changes: Any) -> str:
        params = dict(self.params)
        params.pop("page", None)
        for key, value in changes.items():
            if value in (None, "", False):
                params.pop(key, None)
            else:
                params[key] = "1" if value is True else str(value)
        return self.base + ("?" + urlencode(params) if params else "")


@page
async def search(request: Request, ctx: RequestContext) -> Response:
    """Search results with filters and facet counts; an htmx request gets only the search area."""
    await optional_session_principal(ctx)
    query = request.query_params
    text = query.get("q", "")[:20_000]
    filters = Filters(
        certified=query.get("certified") == "1",
        free=query.get("free") == "1",
        category=query.get("category") or None,
        publisher=query.get("publisher") or None,
        arch=query.get("arch") or None,
    )
    sort = query.get("sort") if query.get("sort") in SORTS else None
    number = _page_number(query.get("page"))

    def work(sv: Any) -> Results:
        results = sv.search.search(text, filters, sort=sort, page=number)
        if results.page > results.pages:  # past the last page: the last one (a bookmark gone stale)
            results = sv.search.search(text, filters, sort=sort, page=results.pages)
        return results

    results = await ctx.call(work)
    params = {key: query.get(key, "") for key in PARAMS}
    params["q"] = text[:256]
    base = str(request.app.url_path_for("search"))
    context = {
        "results": results,
        "links": Links(base, params),
        "sort_labels": SORT_LABELS,
        "count_limit": search_rules.COUNT_LIMIT,
        "base": base,
    }
    if wants_fragment(request, "search-area"):
        return render(request, "store/_search_area.html", context)
    return render(request, "store/search.html", context)


routes = [Route("/search", search, methods=["GET"], name="search")]
