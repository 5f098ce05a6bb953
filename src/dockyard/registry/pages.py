"""Registry pages: the start page and the registry browser (namespaces, repositories, tags, manifests)."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.web.context import RequestContext
from dockyard.web.identity import optional_session_principal, session_principal
from dockyard.web.pages import page, render


def registry_host(request: Request) -> str:
    """The host[:port] registry clients log in to and push to: the public URL's, else this request's."""
    public = request.app.state.dockyard.settings.public_url
    return urlsplit(public).netloc if public else request.url.netloc


@page
async def home(request: Request, ctx: RequestContext) -> Response:
    """The start page: what dockyard is and how to push a first image (the storefront replaces it later)."""
    await optional_session_principal(ctx)
    return render(request, "registry/home.html", {"host": registry_host(request)})


@page
async def dashboard(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    repositories = await ctx.call(lambda sv: sv.registry.list_repositories(principal.name))
    return render(
        request,
        "registry/dashboard.html",
        {"repositories": repositories, "host": registry_host(request)},
    )


routes = [
    Route("/", home, methods=["GET"], name="home"),
    Route("/ui/", dashboard, methods=["GET"], name="dashboard"),
]
