"""The products API: a publisher's products, each created and edited as a whole manifest (the JSON of
``dockyard-product.yaml``), answered with its working revision and the problems submitting it would meet;
and the manifest's JSON Schema. Thin views: parse, one service call (which authorizes), shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from starlette.responses import JSONResponse, Response

from dockyard.authz import Principal, Scope
from dockyard.publishing import product_schemas as s
from dockyard.publishing.manifest import json_schema
from dockyard.services import Services
from dockyard.web.api import AUTHENTICATED, Ctx, UnitOfWorkRoute, caller, errors

router = APIRouter(route_class=UnitOfWorkRoute, tags=["products"])
OrgName = Annotated[str, Path(min_length=1, max_length=64)]
Slug = Annotated[str, Path(min_length=1, max_length=64)]
Account = Annotated[Principal, caller(Scope.API)]
ManifestBody = Annotated[
    dict[str, Any],
    Body(
        description="the product manifest (see /api/v1/schemas/product.json); logo and screenshots by "
        "catalogue image id (POST /api/v1/publishers/{org}/images)"
    ),
]


@router.get(
    "/publishers/{org}/products",
    response_model=s.ProductList,
    responses={**AUTHENTICATED, **errors(400, 403, 404)},
)
async def list_products(org: OrgName, ctx: Ctx, who: Account) -> dict[str, Any]:
    """The organisation's products with the state of their working and live revisions."""

    def work(sv: Services) -> list[dict[str, Any]]:
        return [s.summary(sv.products.info(org, p)) for p in sv.products.list_for(org, who)]

    return {"products": await ctx.call(work)}


@router.post(
    "/publishers/{org}/products",
    response_model=s.ProductOut,
    status_code=201,
    responses={**AUTHENTICATED, **errors(400, 403, 404, 409)},
)
async def create_product(org: OrgName, body: ManifestBody, ctx: Ctx, who: Account) -> dict[str, Any]:
    """A new product from its manifest: revision 1, a draft (which may be incomplete: see ``problems``)."""

    def work(sv: Services) -> dict[str, Any]:
        product = sv.products.create(org, body, who, ctx.actor)
        return s.product_out(sv.products.info(org, product))

    return await ctx.call(work)


@router.get(
    "/publishers/{org}/products/{slug}",
    response_model=s.ProductOut,
    responses={**AUTHENTICATED, **errors(400, 403, 404)},
)
async def get_product(org: OrgName, slug: Slug, ctx: Ctx, who: Account) -> dict[str, Any]:
    """A product: its working revision's manifest and state, the live revision, the open problems."""

    def work(sv: Services) -> dict[str, Any]:
        return s.product_out(sv.products.info(org, sv.products.get(org, slug, who)))

    return await ctx.call(work)


@router.put(
    "/publishers/{org}/products/{slug}",
    response_model=s.ProductOut,
    responses={**AUTHENTICATED, **errors(400, 403, 404, 409)},
)
async def update_product(
    org: OrgName, slug: Slug, body: ManifestBody, ctx: Ctx, who: Account
) -> dict[str, Any]:
    """Replace the working revision's manifest (a new working revision from the live one when there is
    none); 409 while the working revision is submitted or in review (it is frozen)."""

    def work(sv: Services) -> dict[str, Any]:
        sv.products.update_draft(org, slug, body, who, ctx.actor)
        return s.product_out(sv.products.info(org, sv.products.get(org, slug, who)))

    return await ctx.call(work)


@router.get(
    "/schemas/product.json",
    tags=["schemas"],
    responses={200: {"content": {"application/schema+json": {}}, "description": "a JSON Schema"}},
)
async def product_schema() -> Response:
    """The product manifest's JSON Schema (public): what POST and PUT take, and dockyard-product.yaml."""
    return JSONResponse(json_schema(), media_type="application/schema+json")
