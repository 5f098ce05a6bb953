"""The store's product details API (public) and its badges (store-admins).

``/api/v1/products/{publisher}/{product}`` is the customer's view of a published product; the publisher's
own product API (drafts, revisions) stays at ``/api/v1/publishers/{org}/products/{slug}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from dockyard.authz import Principal, Scope
from dockyard.registry.pages import registry_host
from dockyard.services import Services
from dockyard.store import schemas as s
from dockyard.store.models import BadgeKind
from dockyard.store.reads import badge
from dockyard.web.api import AUTHENTICATED, Ctx, UnitOfWorkRoute, caller, errors

router = APIRouter(route_class=UnitOfWorkRoute, tags=["store"])
Org = Annotated[str, Path(min_length=1, max_length=255)]
Slug = Annotated[str, Path(min_length=1, max_length=64)]
Account = Annotated[Principal, caller(Scope.API)]
PRODUCT = "/products/{publisher}/{product}"


@router.get(PRODUCT, response_model=s.ProductDetails, responses=errors(400, 404))
async def product_details(publisher: Org, product: Slug, request: Request, ctx: Ctx) -> dict[str, Any]:
    """A published product as customers see it (public): every manifest item of its live revision, its
    badges with their meanings, its images with platforms, sizes and store pull references, its downloads,
    and its status (on hold: a security fix is overdue; revoked: withdrawn from the store)."""
    host = registry_host(request)
    return await ctx.call(lambda sv: s.details(sv.store_reads.product(publisher, product, host)))


@router.put(
    PRODUCT + "/badges/{kind}",
    response_model=s.BadgeOut,
    responses={**AUTHENTICATED, **errors(400, 403, 404)},
)
async def grant_badge(
    publisher: Org, product: Slug, kind: BadgeKind, body: s.BadgeChange, ctx: Ctx, who: Account
) -> dict[str, Any]:
    """Grant a badge to a published product, with the reason (audited); again: a new reason and date.
    Store-admins only."""

    def work(sv: Services) -> dict[str, Any]:
        row = sv.badges.grant(publisher, product, kind.value, body.reason, who, ctx.actor)
        return s.badge_out(badge(row.kind, row.granted_at))

    return await ctx.call(work)


@router.delete(
    PRODUCT + "/badges/{kind}",
    status_code=204,
    responses={**AUTHENTICATED, **errors(400, 403, 404)},
)
async def withdraw_badge(
    publisher: Org, product: Slug, kind: BadgeKind, body: s.BadgeChange, ctx: Ctx, who: Account
) -> Response:
    """Withdraw a product's badge, with the reason (audited); 404 when it does not have it. Store-admins
    only."""
    await ctx.call(lambda sv: sv.badges.withdraw(publisher, product, kind.value, body.reason, who, ctx.actor))
    return Response(status_code=204)
