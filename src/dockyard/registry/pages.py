"""Registry pages: the start page and the registry browser (the caller's namespaces, a namespace's
repositories, a repository's tags, a manifest in full), and the changes made from it: deleting a tag or a
manifest, switching a repository's visibility, each behind a confirmation page.

Public repositories (and their namespace's page) are open to anyone; everything else answers a caller who may
not pull it exactly as a missing one does (``RegistryBrowser.access``). Scan summaries come from the
scanner's own presenters, which leave them out for callers who may pull but not see scan results.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.registry.browse import page_number
from dockyard.scanning.models import SEVERITY_CLASSES
from dockyard.scanning.presenters import visible_layer_components, visible_summaries
from dockyard.services import Services
from dockyard.web.context import RequestContext
from dockyard.web.identity import optional_session_principal, session_principal
from dockyard.web.pages import flash, form, page, redirect, render, text_field


def registry_host(request: Request) -> str:
    """The host[:port] registry clients log in to and push to: the public URL's, else this request's."""
    public = request.app.state.dockyard.settings.public_url
    return urlsplit(public).netloc if public else request.url.netloc


def wants_fragment(request: Request, target: str) -> bool:
    """An htmx request swapping just the element ``target`` (filtering, paging): render only that part.
    A history restore asks for the whole page."""
    headers = request.headers
    return (
        headers.get("hx-request") == "true"
        and headers.get("hx-target") == target
        and headers.get("hx-history-restore-request") != "true"
    )


def _path(request: Request, route: str, **params: str) -> str:
    return str(request.app.url_path_for(route, **params))


@page
async def home(request: Request, ctx: RequestContext) -> Response:
    """The registry's start page: what dockyard is and how to push a first image (``/`` is the store's)."""
    await optional_session_principal(ctx)
    return render(request, "registry/home.html", {"host": registry_host(request)})


@page
async def dashboard(request: Request, ctx: RequestContext) -> Response:
    """The signed-in user's namespaces with their totals, and the repositories pushed to last."""
    principal = await session_principal(ctx)
    board = await ctx.call(lambda sv: sv.browser.dashboard(principal))
    return render(request, "registry/dashboard.html", {"board": board, "host": registry_host(request)})


@page
async def namespace(request: Request, ctx: RequestContext) -> Response:
    """A namespace's repositories the caller may pull, sortable and paged, with the newest tag's scan."""
    principal = await optional_session_principal(ctx)
    name, query = request.path_params["name"], request.query_params
    sort, number = query.get("sort", "name"), page_number(query.get("page"))

    def work(sv: Services) -> tuple[Any, Any]:
        view = sv.browser.namespace(principal, name, sort=sort, page=number)
        newest = [r.newest_digest for r in view.repositories.items if r.newest_digest]
        return view, visible_summaries(sv.scans, principal, view.name, newest)

    view, scans = await ctx.call(work)
    context = {"ns": view, "scans": scans, "classes": SEVERITY_CLASSES}
    return render(request, "registry/namespace.html", context)


@page
async def repository(request: Request, ctx: RequestContext) -> Response:
    """A repository: how to pull it, its visibility, and its tags (filtered as one types, paged)."""
    principal = await optional_session_principal(ctx)
    name, query = request.path_params["name"], request.query_params
    text, sort, number = query.get("q", ""), query.get("sort", "pushed"), page_number(query.get("page"))

    def work(sv: Services) -> tuple[Any, Any, bool | None]:
        view = sv.browser.repository(principal, name, query=text, sort=sort, page=number)
        scans = visible_summaries(sv.scans, principal, name, [t.digest for t in view.tags.items])
        # None: no Watch button (anonymous, or no access to the scan results a watch would mail)
        return view, scans, sv.alerts.watch_state(principal, name)

    view, scans, watching = await ctx.call(work)
    context = {
        "repo": view,
        "scans": scans,
        "classes": SEVERITY_CLASSES,
        "host": registry_host(request),
        "watching": watching,
    }
    if wants_fragment(request, "tag-list"):
        return render(request, "registry/_tags.html", context)
    return render(request, "registry/repository.html", context)


@page
async def manifest(request: Request, ctx: RequestContext) -> Response:
    """One manifest in full: config, layers or platforms, tags, annotations, referrers, scan summary."""
    principal = await optional_session_principal(ctx)
    name, digest = request.path_params["name"], request.path_params["digest"]

    def work(sv: Services) -> tuple[Any, Any, Any]:
        view = sv.browser.manifests.view(principal, name, digest)
        digests = [view.digest, *(c.descriptor.digest for c in view.children)]
        scans = visible_summaries(sv.scans, principal, name, digests)
        components = None
        if view.layers and scans is not None:
            components = visible_layer_components(sv.scans, principal, name, view.digest)
        return view, scans, components

    view, scans, components = await ctx.call(work)
    context = {
        "m": view,
        "scans": scans,
        "components": components,
        "classes": SEVERITY_CLASSES,
        "host": registry_host(request),
    }
    return render(request, "registry/manifest.html", context)


# -- changes, each confirmed on a page of its own (every one works without JavaScript) --------------------
@page
async def confirm_delete_tag(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    name, tag = request.path_params["name"], request.path_params["tag"]
    preview = await ctx.call(lambda sv: sv.browser.manifests.tag_deletion(principal, name, tag))
    return render(request, "registry/delete_tag.html", {"d": preview})


@page
async def delete_tag(request: Request, ctx: RequestContext) -> Response:
    """Delete a tag through the service /v2's DELETE uses, after the same permission check (audited)."""
    principal = await session_principal(ctx)
    await form(request)
    name, tag = request.path_params["name"], request.path_params["tag"]

    def work(sv: Services) -> None:
        sv.browser.manifests.tag_deletion(principal, name, tag)  # the check, and a 404 for a missing tag
        sv.registry.delete_manifest(name, tag, ctx.actor)

    await ctx.call(work)
    flash(request, f"Tag {tag} was deleted from {name}.")
    return redirect(_path(request, "repository", name=name))


@page
async def confirm_delete_manifest(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    name, digest = request.path_params["name"], request.path_params["digest"]
    preview = await ctx.call(lambda sv: sv.browser.manifests.manifest_deletion(principal, name, digest))
    return render(request, "registry/delete_manifest.html", {"d": preview})


@page
async def delete_manifest(request: Request, ctx: RequestContext) -> Response:
    """Delete a manifest and its tags through the service /v2's DELETE uses (audited)."""
    principal = await session_principal(ctx)
    await form(request)
    name, digest = request.path_params["name"], request.path_params["digest"]

    def work(sv: Services) -> list[str]:
        preview = sv.browser.manifests.manifest_deletion(principal, name, digest)
        sv.registry.delete_manifest(name, preview.digest, ctx.actor)
        return preview.tags

    tags = await ctx.call(work)
    gone = f" with its tag{'s' if len(tags) != 1 else ''} {', '.join(tags)}" if tags else ""
    flash(request, f"Manifest {digest.split(':')[-1][:12]} was deleted from {name}{gone}.")
    return redirect(_path(request, "repository", name=name))


@page
async def confirm_visibility(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    name = request.path_params["name"]
    public = request.query_params.get("public") == "true"
    repo = await ctx.call(lambda sv: sv.browser.require(principal, name, "manage"))
    return render(request, "registry/visibility.html", {"name": repo.name, "public": public})


@page
async def set_visibility(request: Request, ctx: RequestContext) -> Response:
    """Make a repository public or private: the namespace's owners and store admins, as in the API."""
    principal = await session_principal(ctx)
    data = await form(request)
    name, public = request.path_params["name"], text_field(data, "public") == "true"

    def work(sv: Services) -> None:
        sv.browser.require(principal, name, "manage")
        sv.registry.set_visibility(name, public, ctx.actor)

    await ctx.call(work)
    flash(request, f"{name} is now {'public: anyone may pull it' if public else 'private'}.")
    return redirect(_path(request, "repository", name=name))


# Starlette matches in order: the "/-/" routes first, as ``{name:path}`` would swallow them ("-" cannot be a
# component of a repository name, so no repository is ever hidden behind them). The scan page
# (scanning/pages.py, ".../-/scans/...") is mounted before these.
REPOSITORY = "/ui/repositories/{name:path}"
routes = [
    Route("/ui/start", home, methods=["GET"], name="start"),
    Route("/ui/", dashboard, methods=["GET"], name="dashboard"),
    Route("/ui/namespaces/{name}", namespace, methods=["GET"], name="namespace"),
    Route(REPOSITORY + "/-/manifests/{digest}", manifest, methods=["GET"], name="manifest"),
    Route(
        REPOSITORY + "/-/manifests/{digest}/delete",
        confirm_delete_manifest,
        methods=["GET"],
        name="delete_manifest",
    ),
    Route(
        REPOSITORY + "/-/manifests/{digest}/delete",
        delete_manifest,
        methods=["POST"],
        name="delete_manifest_post",
    ),
    Route(REPOSITORY + "/-/tags/{tag}/delete", confirm_delete_tag, methods=["GET"], name="delete_tag"),
    Route(REPOSITORY + "/-/tags/{tag}/delete", delete_tag, methods=["POST"], name="delete_tag_post"),
    Route(REPOSITORY + "/-/visibility", confirm_visibility, methods=["GET"], name="repository_visibility"),
    Route(REPOSITORY + "/-/visibility", set_visibility, methods=["POST"], name="repository_visibility_post"),
    Route(REPOSITORY, repository, methods=["GET"], name="repository"),
]
