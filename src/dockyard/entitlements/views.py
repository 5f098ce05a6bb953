"""The entitlements API: one's own entitlements (list, get a free tier, cancel) and revoking one (the
store-admins; the publisher's editors). Thin views: parse, one service call (which authorizes), shape."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from starlette.responses import Response

from dockyard.authz import Principal, Scope
from dockyard.entitlements import schemas as s
from dockyard.services import Services
from dockyard.web.api import AUTHENTICATED, Ctx, UnitOfWorkRoute, caller, errors

router = APIRouter(route_class=UnitOfWorkRoute, tags=["entitlements"])
Account = Annotated[Principal, caller(Scope.API)]
EntitlementId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/entitlements", response_model=s.EntitlementList, responses={**AUTHENTICATED, **errors(403)})
async def list_entitlements(ctx: Ctx, who: Account) -> dict[str, Any]:
    """My entitlements, newest first, each with the store paths and tags it lets me pull."""

    def work(sv: Services) -> list[dict[str, Any]]:
        return [s.entitlement_out(e) for e in sv.entitlements.list_for(who)]

    return {"entitlements": await ctx.call(work)}


@router.post(
    "/entitlements",
    response_model=s.EntitlementOut,
    status_code=201,
    responses={**AUTHENTICATED, **errors(400, 403, 404, 409)},
)
async def get_tier(body: s.EntitlementIn, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Get a free tier of a product on the store (``accept_license`` must be true); active at once. Getting
    it again re-activates it. A paid tier: 409 PAYMENT_UNAVAILABLE (payment is not yet available)."""

    def work(sv: Services) -> dict[str, Any]:
        row = sv.entitlements.get_tier(
            body.publisher,
            body.product,
            body.tier,
            who,
            ctx.actor,
            accept_license=body.accept_license,
            notify_security=body.notify_security,
        )
        return s.entitlement_out(sv.entitlements.info(row))

    return await ctx.call(work)


@router.delete(
    "/entitlements/{entitlement_id}",
    status_code=204,
    responses={**AUTHENTICATED, **errors(403, 404, 409)},
)
async def cancel_entitlement(entitlement_id: EntitlementId, ctx: Ctx, who: Account) -> Response:
    """Cancel one of my entitlements: pulls stop with the next registry token."""
    await ctx.call(lambda sv: sv.entitlements.cancel(entitlement_id, who, ctx.actor))
    return Response(status_code=204)


@router.post(
    "/entitlements/{entitlement_id}/revoke",
    response_model=s.EntitlementOut,
    responses={**AUTHENTICATED, **errors(400, 403, 404, 409)},
)
async def revoke_entitlement(
    entitlement_id: EntitlementId, body: s.RevokeIn, ctx: Ctx, who: Account
) -> dict[str, Any]:
    """Revoke a customer's entitlement, with a reason (audited): store-admins, and the publisher's owners
    and maintainers. Anyone else gets 404, as for an entitlement that does not exist."""

    def work(sv: Services) -> dict[str, Any]:
        row = sv.entitlements.revoke(entitlement_id, who, ctx.actor, body.reason)
        return s.entitlement_out(sv.entitlements.info(row))

    return await ctx.call(work)
