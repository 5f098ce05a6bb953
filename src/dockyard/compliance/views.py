"""The compliance API: a product's open findings with their due times, VEX statements (the publisher files
them, the store team decides), extensions, and the store team's overview."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path

from dockyard.authz import Principal, Scope
from dockyard.compliance import schemas as s
from dockyard.compliance.reads import ComplianceReads
from dockyard.db import utcnow
from dockyard.errors import Invalid
from dockyard.services import Services
from dockyard.web.api import AUTHENTICATED, Ctx, UnitOfWorkRoute, caller, errors

router = APIRouter(route_class=UnitOfWorkRoute, tags=["compliance"])
Org = Annotated[str, Path(min_length=1, max_length=255)]
Slug = Annotated[str, Path(min_length=1, max_length=64)]
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
Account = Annotated[Principal, caller(Scope.API)]
PRODUCT = "/products/{publisher}/{product}"


def _naive(value: dt.datetime) -> dt.datetime:
    """A due time in UTC without its zone (as stored); one that cannot be a UTC time is a 400."""
    try:
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    except (OverflowError, ValueError):
        raise Invalid(
            "until: not a time this store can keep", detail=[{"field": "until", "message": "Out of range."}]
        ) from None


@router.get(
    PRODUCT + "/compliance",
    response_model=s.ProductComplianceOut,
    responses={**AUTHENTICATED, **errors(400, 403, 404)},
)
async def product_compliance(publisher: Org, product: Slug, ctx: Ctx, who: Account) -> dict[str, Any]:
    """A product's open findings, most urgent first (class, due time, time left), the latest resolved ones,
    its listing's state and its VEX statements. The publisher's people and the store team only; reading it
    as the publisher counts as the notice that starts clocks not yet started."""

    def work(sv: Services) -> dict[str, Any]:
        return s.product_out(ComplianceReads(sv.session, sv).product(publisher, product, who, utcnow()))

    return await ctx.call(work)


@router.post(
    PRODUCT + "/vex",
    status_code=201,
    response_model=s.VexOut,
    responses={**AUTHENTICATED, **errors(400, 403, 404)},
)
async def file_vex(publisher: Org, product: Slug, body: s.VexIn, ctx: Ctx, who: Account) -> dict[str, Any]:
    """File a VEX statement on an open finding (the publisher's owners and maintainers): ``not_affected``
    with an OpenVEX justification and an impact statement, or ``fixed``. It waits for the store team."""

    def work(sv: Services) -> dict[str, Any]:
        row = sv.vex.submit(
            publisher,
            product,
            who,
            ctx.actor,
            vulnerability=body.vulnerability,
            status=body.status.value,
            justification=body.justification.value if body.justification else None,
            impact_statement=body.impact_statement,
            component=body.component,
        )
        return s.vex_out(row)

    return await ctx.call(work)


@router.get(PRODUCT + "/vex", responses={**AUTHENTICATED, **errors(400, 403, 404)})
async def openvex(publisher: Org, product: Slug, ctx: Ctx, who: Account) -> dict[str, Any]:
    """The product's accepted VEX statements as an OpenVEX document (the publisher's people and the store
    team)."""
    return await ctx.call(lambda sv: sv.vex.openvex(publisher, product, who))


@router.post(
    "/compliance/vex/{vex_id}/decision",
    response_model=s.VexOut,
    responses={**AUTHENTICATED, **errors(400, 403, 404, 409)},
)
async def decide_vex(vex_id: Id, body: s.VexDecisionIn, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Accept (its findings resolve at once, and a hold they caused lifts) or reject a VEX statement, with
    the reason (store team; audited)."""
    return await ctx.call(
        lambda sv: s.vex_out(sv.vex.decide(vex_id, body.accept, body.reason, who, ctx.actor))
    )


@router.post(
    "/compliance/clocks/{clock_id}/extension",
    response_model=s.ClockOut,
    responses={**AUTHENTICATED, **errors(400, 403, 404, 409)},
)
async def extend(clock_id: Id, body: s.ExtensionIn, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Give a finding a later due time, with the reason (store team; audited)."""

    def work(sv: Services) -> dict[str, Any]:
        return s.clock_out(sv.compliance.extend(clock_id, _naive(body.until), body.reason, who, ctx.actor))

    return await ctx.call(work)


@router.get("/compliance", response_model=s.StoreComplianceOut, responses={**AUTHENTICATED, **errors(403)})
async def overview(ctx: Ctx, who: Account) -> dict[str, Any]:
    """Every product near a breach (due within 24 hours or overdue), on hold or revoked, and the VEX
    statements waiting for a decision (store team)."""
    return await ctx.call(lambda sv: s.store_out(ComplianceReads(sv.session, sv).store(who, utcnow())))
