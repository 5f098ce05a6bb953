"""Product pages of a publisher: the list (each product's working and live revision), and the manifest
editor (new and edit), with each problem beside its field, the list of what submitting would still refuse,
and a Markdown preview. Members see them (readers read-only); anyone else gets the 404 page.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.accounts.pages.forms import attempt, path, sentence
from dockyard.authz import Principal
from dockyard.errors import DockyardError
from dockyard.publishing.forms import form_rows, manifest_from_form
from dockyard.publishing.manifest import SHORT_DESCRIPTION_MAX, Category, ManifestInvalid, Problem
from dockyard.publishing.markdown import render_markdown
from dockyard.publishing.services import ProductInfo
from dockyard.services import Services
from dockyard.web.context import RequestContext
from dockyard.web.identity import session_principal
from dockyard.web.pages import flash, form, page, redirect, render

STATE_LABELS = {
    "draft": "draft",
    "submitted": "submitted",
    "in_review": "in review",
    "changes_requested": "changes requested",
    "resubmitted": "resubmitted",
    "approved": "approved",
    "published": "published",
    "superseded": "superseded",
    "unpublished": "unpublished",
    "rejected": "rejected",
    "withdrawn": "withdrawn",
}


@page
async def products(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    org = request.path_params["org"]

    def read(sv: Services) -> tuple[list[ProductInfo], bool]:
        found = sv.products.list_for(org, principal)
        return [sv.products.info(org, p) for p in found], sv.products.can_edit(org, principal)

    items, can_edit = await ctx.call(read)
    context = {"org": org, "products": items, "can_edit": can_edit, "states": STATE_LABELS}
    return render(request, "publishing/products.html", {**context, "section": "publishing"})


async def _editor(
    request: Request,
    ctx: RequestContext,
    principal: Principal,
    org: str,
    manifest: dict[str, Any],
    *,
    info: ProductInfo | None = None,
    errors: list[Problem] | None = None,
    message: str | None = None,
    preview: bool = False,
    status: int = 200,
) -> Response:
    def read(sv: Services) -> tuple[Any, bool]:
        return sv.products.editor_choices(org, principal), sv.products.can_edit(org, principal)

    choices, can_edit = await ctx.call(read)
    errors = errors or []
    warnings = info.problems if info is not None and not errors else []
    values = form_rows(manifest)
    context = {
        "org": org,
        "info": info,
        "v": values,
        "errors": {p.path: p.message for p in errors},
        "error_list": errors,
        "warnings": {p.path: p.message for p in warnings},
        "warning_list": warnings,
        "message": message,
        "can_edit": can_edit and (info is None or info.editable),
        "choices": choices,
        "categories": [c.value for c in Category],
        "short_max": SHORT_DESCRIPTION_MAX,
        "states": STATE_LABELS,
        "preview": {
            "long_description": render_markdown(values["long_description"]),
            "install": render_markdown(values["install"]),
        }
        if preview
        else None,
        "section": "publishing",
    }
    return render(request, "publishing/product_edit.html", context, status)


def _refused(exc: DockyardError) -> tuple[list[Problem], str | None]:
    """A refusal as problems beside fields (the manifest's), or one message above the form."""
    if isinstance(exc, ManifestInvalid):
        return exc.problems, None
    if isinstance(exc.detail, list) and all(isinstance(d, dict) and "field" in d for d in exc.detail):
        return [Problem(d["field"], d["message"]) for d in exc.detail], None
    return [], sentence(exc.message)


@page
async def new_product(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    org = request.path_params["org"]
    if request.method in ("GET", "HEAD"):
        return await _editor(request, ctx, principal, org, {"publisher": org})
    data = await form(request)
    manifest = manifest_from_form(data)
    if data.get("action") == "preview":
        return await _editor(request, ctx, principal, org, manifest, preview=True)

    def create(sv: Services) -> tuple[str, int]:
        product = sv.products.create(org, manifest, principal, ctx.actor)
        return product.slug, len(sv.products.info(org, product).problems)

    created, refusal = await attempt(ctx, create, field="")
    if refusal is not None or created is None:
        assert refusal is not None
        errors, message = _refused(refusal.exc)
        return await _editor(
            request, ctx, principal, org, manifest, errors=errors, message=message, status=refusal.status
        )
    slug, open_problems = created
    flash(request, _saved(1, open_problems))
    return redirect(path(request, "product_edit", org=org, slug=slug))


def _saved(number: int, open_problems: int) -> str:
    if not open_problems:
        return f"Saved revision {number}: it is complete and ready to submit."
    things = "thing" if open_problems == 1 else "things"
    return (
        f"Saved revision {number} as a draft. {open_problems} {things} to fix before submitting: see below."
    )


@page
async def edit_product(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    org, slug = request.path_params["org"], request.path_params["slug"]

    def read(sv: Services) -> ProductInfo:
        return sv.products.info(org, sv.products.get(org, slug, principal))

    info = await ctx.call(read)
    if request.method in ("GET", "HEAD"):
        return await _editor(request, ctx, principal, org, info.manifest, info=info)
    data = await form(request)
    manifest = manifest_from_form(data, slug=slug)
    if data.get("action") == "preview":
        return await _editor(request, ctx, principal, org, manifest, info=info, preview=True)

    def save(sv: Services) -> tuple[int, int]:
        revision = sv.products.update_draft(org, slug, manifest, principal, ctx.actor)
        return revision.number, len(sv.products.info(org, sv.products.get(org, slug, principal)).problems)

    saved, refusal = await attempt(ctx, save, field="")
    if refusal is not None or saved is None:
        assert refusal is not None
        errors, message = _refused(refusal.exc)
        info = await ctx.call(read)
        return await _editor(
            request,
            ctx,
            principal,
            org,
            manifest,
            info=info,
            errors=errors,
            message=message,
            status=refusal.status,
        )
    flash(request, _saved(*saved))
    return redirect(path(request, "product_edit", org=org, slug=slug))


routes = [
    Route("/ui/orgs/{org}/products", products, methods=["GET"], name="products"),
    Route("/ui/orgs/{org}/products/new", new_product, methods=["GET", "POST"], name="product_new"),
    Route("/ui/orgs/{org}/products/{slug}/edit", edit_product, methods=["GET", "POST"], name="product_edit"),
]
