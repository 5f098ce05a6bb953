"""The store's customer pages: the home page (``/``), a product's page, a publisher's page; and on a product's
page, for store-admins, the forms that grant and withdraw its badges.

Anyone may read them; they read listings only (``StoreReads``), never a staging repository. The "Get" and
"Subscribe" buttons lead to ``/products/<publisher>/<product>/get?tier=...`` (the entitlements pages).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.authz import Permission, Principal, allowed
from dockyard.errors import Invalid
from dockyard.publishing.markdown import render_markdown
from dockyard.registry.pages import registry_host
from dockyard.store.models import BADGE_MEANINGS, BadgeKind
from dockyard.store.reads import ProductPage
from dockyard.web.context import RequestContext
from dockyard.web.identity import optional_session_principal, session_principal
from dockyard.web.pages import flash, form, page, redirect, render, text_field

# Every badge kind with its title and meaning, for the store-admin's form.
BADGE_CHOICES = [(kind.value, *BADGE_MEANINGS[kind]) for kind in BadgeKind]


@page
async def home(request: Request, ctx: RequestContext) -> Response:
    """The store's front page: search, categories with counts, newest, most downloaded and certified."""
    await optional_session_principal(ctx)
    view = await ctx.call(lambda sv: sv.store_reads.home())
    return render(request, "store/home.html", {"home": view, "section": "store"})


def _product_context(
    request: Request, principal: Principal, view: ProductPage, **extra: Any
) -> dict[str, Any]:
    m = view.manifest
    return {
        "p": view,
        "m": m,
        "long_description": render_markdown(m.long_description, headings_from=3),
        "install": render_markdown(m.install, headings_from=3),
        "story_link": f"/publishers/{view.publisher.org}#story",
        "get_base": f"/products/{view.card.publisher}/{view.card.product}/get",
        "manage_badges": allowed(principal, Permission.BADGE_MANAGE),
        "badge_choices": BADGE_CHOICES,
        "held": {b.kind for b in view.badges},
        "badge_errors": {},
        "badge_form": {},
        "section": "store",
        **extra,
    }


@page
async def product(request: Request, ctx: RequestContext) -> Response:
    """A product's page: every item of its live manifest, its badges, images, tiers and warning label."""
    principal = await optional_session_principal(ctx)
    publisher, slug = request.path_params["publisher"], request.path_params["product"]
    host = registry_host(request)
    view = await ctx.call(lambda sv: sv.store_reads.product(publisher, slug, host))
    return render(request, "store/product.html", _product_context(request, principal, view))


@page
async def change_badge(request: Request, ctx: RequestContext) -> Response:
    """Grant or withdraw one of a product's badges, with a reason (store-admins; audited)."""
    principal = await session_principal(ctx)
    data = await form(request)
    publisher, slug = request.path_params["publisher"], request.path_params["product"]
    kind, action = text_field(data, "kind", limit=40), text_field(data, "action", limit=20)
    reason = text_field(data, "reason", limit=4000)

    def work(sv: Any) -> None:
        if action == "withdraw":
            sv.badges.withdraw(publisher, slug, kind, reason, principal, ctx.actor)
        else:
            sv.badges.grant(publisher, slug, kind, reason, principal, ctx.actor)

    try:
        await ctx.call(work)
    except Invalid as exc:  # beside the field, on the page again
        await ctx.finish(commit=False)
        host = registry_host(request)
        view = await ctx.call(lambda sv: sv.store_reads.product(publisher, slug, host))
        errors = {d["field"]: d["message"] for d in (exc.detail or []) if isinstance(d, dict)}
        context = _product_context(
            request,
            principal,
            view,
            badge_errors=errors or {"reason": exc.message},
            badge_form={"kind": kind, "action": action, "reason": reason},
        )
        return render(request, "store/product.html", context, 400)
    title = BADGE_MEANINGS[BadgeKind(kind)][0]
    verb = "withdrawn from" if action == "withdraw" else "granted to"
    flash(request, f"{title} {verb} this product.")
    return redirect(f"/products/{publisher}/{slug}#badges")


@page
async def publisher(request: Request, ctx: RequestContext) -> Response:
    """A publisher's page: its public profile (name, logo, website, story) and its listed products."""
    await optional_session_principal(ctx)
    org = request.path_params["publisher"]
    view = await ctx.call(lambda sv: sv.store_reads.publisher(org))
    context = {
        "pub": view,
        "story": render_markdown(view.publisher.story, headings_from=3),
        "section": "store",
    }
    return render(request, "store/publisher.html", context)


routes = [
    Route("/", home, methods=["GET"], name="home"),
    Route("/products/{publisher}/{product}", product, methods=["GET"], name="store_product"),
    Route("/products/{publisher}/{product}/badges", change_badge, methods=["POST"], name="store_badges"),
    Route("/publishers/{publisher}", publisher, methods=["GET"], name="store_publisher"),
]
