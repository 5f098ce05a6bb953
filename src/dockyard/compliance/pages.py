"""The compliance pages: a product's findings with their due times (its publisher's people and the store
team; the publisher files VEX statements, the store team extends due times and decides statements), and the
store team's overview of products near a breach, on hold or revoked. Every form works without JavaScript;
a refused statement is shown beside its field, a refused decision or extension on the error page (both
forms are one field and a reason)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.accounts.pages.forms import attempt, path
from dockyard.compliance.models import VexJustification, VexStatus
from dockyard.compliance.reads import ComplianceReads, ProductCompliance
from dockyard.db import utcnow
from dockyard.errors import Invalid
from dockyard.services import Services
from dockyard.web.context import RequestContext
from dockyard.web.identity import session_principal
from dockyard.web.pages import flash, form, page, redirect, render, text_field

JUSTIFICATIONS = {
    VexJustification.COMPONENT_NOT_PRESENT: "The component is not present",
    VexJustification.VULNERABLE_CODE_NOT_PRESENT: "The vulnerable code is not present",
    VexJustification.VULNERABLE_CODE_NOT_IN_EXECUTE_PATH: "The vulnerable code is never run",
    VexJustification.VULNERABLE_CODE_CANNOT_BE_CONTROLLED_BY_ADVERSARY: "An attacker cannot reach it",
    VexJustification.INLINE_MITIGATIONS_ALREADY_EXIST: "Mitigations are in place",
}
RESOLUTIONS = {
    "fixed": "Fixed by a new revision",
    "feed": "Withdrawn or fixed by the feed",
    "vex": "VEX accepted",
}


def _render(
    request: Request,
    view: ProductCompliance,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    context = {
        "view": view,
        "justifications": JUSTIFICATIONS,
        "statuses": [s.value for s in VexStatus],
        "resolutions": RESOLUTIONS,
        "vulnerabilities": sorted({r.clock.vuln_id for r in view.open}),
        "errors": errors or {},
        "values": {"vulnerability": "", "status": "", "justification": "", "impact_statement": ""}
        | (values or {}),
        "section": "review" if view.can_manage and not view.can_file_vex else "publishing",
    }
    return render(request, "compliance/product.html", context, status)


def _view(ctx: RequestContext, request: Request, principal: Any) -> Any:
    org, slug = request.path_params["org"], request.path_params["slug"]
    return ctx.call(lambda sv: ComplianceReads(sv.session, sv).product(org, slug, principal, utcnow()))


@page
async def product_page(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    return _render(request, await _view(ctx, request, principal))


@page
async def file_vex_page(request: Request, ctx: RequestContext) -> Response:
    data = await form(request)
    principal = await session_principal(ctx)
    org, slug = request.path_params["org"], request.path_params["slug"]
    values = {
        "vulnerability": text_field(data, "vulnerability", limit=128),
        "status": text_field(data, "status", limit=32),
        "justification": text_field(data, "justification", limit=64),
        "impact_statement": text_field(data, "impact_statement", limit=4000),
    }

    def file(sv: Services) -> Any:
        return sv.vex.submit(
            org,
            slug,
            principal,
            ctx.actor,
            vulnerability=values["vulnerability"],
            status=values["status"],
            justification=values["justification"] or None,
            impact_statement=values["impact_statement"],
        )

    _, refusal = await attempt(ctx, file, field="vulnerability")
    if refusal is not None:
        view = await _view(ctx, request, principal)
        return _render(request, view, status=refusal.status, errors=_errors(refusal), values=values)
    flash(request, "Statement filed: the store team decides it.")
    return redirect(path(request, "product_compliance", org=org, slug=slug) + "#vex")


@page
async def decide_vex_page(request: Request, ctx: RequestContext) -> Response:
    data = await form(request)
    principal = await session_principal(ctx)
    vex_id = request.path_params["vex_id"]
    accept = text_field(data, "decision", limit=10) == "accept"
    reason = text_field(data, "reason", limit=4000)
    row = await ctx.call(lambda sv: sv.vex.decide(vex_id, accept, reason, principal, ctx.actor))
    flash(request, "Statement accepted: its findings are resolved." if accept else "Statement rejected.")
    return redirect(text_field(data, "next", limit=500) if _local(data) else f"/ui/compliance#vex-{row.id}")


@page
async def extend_page(request: Request, ctx: RequestContext) -> Response:
    data = await form(request)
    principal = await session_principal(ctx)
    clock_id = request.path_params["clock_id"]
    until = _when(text_field(data, "until", limit=40))
    reason = text_field(data, "reason", limit=2000)
    await ctx.call(lambda sv: sv.compliance.extend(clock_id, until, reason, principal, ctx.actor))
    flash(request, f"Due time extended to {until:%Y-%m-%d %H:%M} UTC.")
    return redirect(text_field(data, "next", limit=500) if _local(data) else "/ui/compliance")


@page
async def overview_page(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    view = await ctx.call(lambda sv: ComplianceReads(sv.session, sv).store(principal, utcnow()))
    return render(
        request,
        "compliance/overview.html",
        {"view": view, "justifications": JUSTIFICATIONS, "section": "compliance"},
    )


def _local(data: Any) -> bool:
    target = text_field(data, "next", limit=500)
    return target.startswith("/ui/") and "//" not in target and "\\" not in target


def _when(value: str) -> dt.datetime:
    """A ``datetime-local`` field (``2026-12-10T14:00``), read as UTC (an offset, if typed, is honoured)."""
    try:
        when = dt.datetime.fromisoformat(value)
        if when.tzinfo is not None:  # an offset typed in: the same instant in UTC, as the API reads it
            when = when.astimezone(dt.UTC).replace(tzinfo=None)
        return when.replace(second=0, microsecond=0)
    except (ValueError, OverflowError):
        raise Invalid(
            "enter the new due time as a date and time (UTC)",
            detail=[{"field": "until", "message": "A date and time, UTC."}],
        ) from None


def _errors(refusal: Any) -> dict[str, str]:
    detail = refusal.exc.detail
    if isinstance(detail, list):
        return {str(d.get("field")): str(d.get("message")) for d in detail if isinstance(d, dict)}
    return refusal.errors


routes = [
    Route("/ui/compliance", overview_page, methods=["GET"], name="compliance_overview"),
    Route(
        "/ui/orgs/{org}/products/{slug}/compliance", product_page, methods=["GET"], name="product_compliance"
    ),
    Route(
        "/ui/orgs/{org}/products/{slug}/compliance/vex",
        file_vex_page,
        methods=["POST"],
        name="product_vex",
    ),
    Route("/ui/compliance/vex/{vex_id:int}/decision", decide_vex_page, methods=["POST"], name="vex_decision"),
    Route(
        "/ui/compliance/clocks/{clock_id:int}/extension",
        extend_page,
        methods=["POST"],
        name="clock_extension",
    ),
]
