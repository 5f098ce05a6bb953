"""Customers' pages: getting a tier (``/products/<publisher>/<product>/get?tier=<name>``: the tier, its
price, the licence to accept, the security-mail choice; paid tiers say payment is not yet available) and
"My subscriptions" (``/ui/subscriptions``): each entitlement with the exact login and pull commands for its
images, cancel, and a pull-only access token for CI. Signed-in users only (else the sign-in form, back here).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.accounts.pages.forms import attempt, path
from dockyard.authz import Principal
from dockyard.config import Settings
from dockyard.entitlements.services import EntitlementInfo, PaymentUnavailable
from dockyard.entitlements.store import LiveRevision, TierFacts
from dockyard.errors import Invalid, NotFound, Unauthenticated
from dockyard.services import Services
from dockyard.web.context import RequestContext
from dockyard.web.identity import session_principal
from dockyard.web.pages import flash, form, page, redirect, render, text_field


async def _signed_in(request: Request, ctx: RequestContext) -> Principal | Response:
    """The signed-in user, or the redirect to the sign-in form that comes back to this exact address."""
    try:
        return await session_principal(ctx)
    except Unauthenticated:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"/ui/login?next={quote(here, safe='')}")


def price_label(tier: TierFacts) -> str:
    if tier.free or tier.price is None:
        return "Free"
    amount, currency = int(tier.price.get("amount", 0)), str(tier.price.get("currency", ""))
    period = str(tier.price.get("period", ""))
    per = {"month": " per month", "year": " per year"}.get(period, " once")
    return f"{amount / 100:,.2f} {currency}{per}"


def commands(settings: Settings, info: EntitlementInfo, username: str) -> list[dict[str, Any]]:
    """For each image and pinned tag: the exact login and pull commands (HOST: the public URL's)."""
    host = settings.registry_host
    plain = settings.public_url.startswith("http://")
    tls = " --tls-verify=false" if plain else ""
    src_tls = " --src-tls-verify=false" if plain else ""
    out = []
    for image in info.images:
        ref = f"{host}/store/{info.publisher}/{info.product}/{image.image}"
        out.append(
            {
                "image": image.image,
                "reference": ref,
                "tags": [
                    {
                        "tag": tag,
                        "docker_pull": f"docker pull {ref}:{tag}",
                        "podman_pull": f"podman pull{tls} {ref}:{tag}",
                        "skopeo_copy": f"skopeo copy{src_tls} docker://{ref}:{tag} oci:{image.image}:{tag}",
                    }
                    for tag in image.tags
                ],
            }
        )
    return out


async def _offer(
    ctx: RequestContext, publisher: str, product: str, tier: str
) -> tuple[LiveRevision, TierFacts]:
    try:
        return await ctx.call(lambda sv: sv.entitlements.tier_offer(publisher, product, tier))
    except Invalid:
        raise NotFound(f"{publisher}/{product} has no tier named {tier!r}") from None


def _get_page(
    request: Request,
    publisher: str,
    product: str,
    live: LiveRevision,
    tier: TierFacts,
    *,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    notify: bool = True,
    status: int = 200,
) -> Response:
    context = {
        "publisher": publisher,
        "product": product,
        "live": live,
        "tier": tier,
        "price": price_label(tier),
        "images": sorted(i for i in tier.images if i in live.pins),
        "errors": errors or {},
        "message": message,
        "notify": notify,
        "section": "subscriptions",
    }
    return render(request, "entitlements/get.html", context, status)


@page
async def get_tier(request: Request, ctx: RequestContext) -> Response:
    who = await _signed_in(request, ctx)
    if isinstance(who, Response):
        return who
    publisher, product = request.path_params["publisher"], request.path_params["product"]
    if request.method in ("GET", "HEAD"):
        live, tier = await _offer(ctx, publisher, product, request.query_params.get("tier", ""))
        return _get_page(request, publisher, product, live, tier)
    data = await form(request)
    live, tier = await _offer(ctx, publisher, product, text_field(data, "tier", limit=60))
    accept, notify = data.get("accept_license") == "on", data.get("notify_security") == "on"

    def get(sv: Services) -> int:
        return sv.entitlements.get_tier(
            publisher, product, tier.name, who, ctx.actor, accept_license=accept, notify_security=notify
        ).id

    done, refusal = await attempt(ctx, get, field="")
    if refusal is not None:
        exc = refusal.exc
        if isinstance(exc, PaymentUnavailable):
            return _get_page(request, publisher, product, live, tier, message=exc.message, status=409)
        errors = {d["field"]: d["message"] for d in exc.detail or [] if isinstance(d, dict) and "field" in d}
        return _get_page(
            request,
            publisher,
            product,
            live,
            tier,
            errors=errors,
            message=None if errors else exc.message,
            notify=notify,
            status=refusal.status,
        )
    flash(request, f"You have {live.name}, tier {tier.name}. Pull it with the commands below.")
    return redirect(path(request, "subscriptions") + f"#entitlement-{done}")


@page
async def subscriptions(request: Request, ctx: RequestContext) -> Response:
    who = await _signed_in(request, ctx)
    if isinstance(who, Response):
        return who
    items = await ctx.call(lambda sv: sv.entitlements.list_for(who))
    settings = ctx.state.settings
    rows = [
        {"e": e, "commands": commands(settings, e, who.name) if e.status == "active" else []} for e in items
    ]
    tls = " --tls-verify=false" if settings.public_url.startswith("http://") else ""
    context = {
        "rows": rows,
        "host": settings.registry_host,
        "docker_login": f"docker login {settings.registry_host}",
        "podman_login": f"podman login{tls} {settings.registry_host}",
        "section": "subscriptions",
    }
    return render(request, "entitlements/subscriptions.html", context)


@page
async def cancel(request: Request, ctx: RequestContext) -> Response:
    await form(request)
    who = await session_principal(ctx)
    entitlement_id = request.path_params["entitlement_id"]
    row = await ctx.call(
        lambda sv: sv.entitlements.info(sv.entitlements.cancel(entitlement_id, who, ctx.actor))
    )
    flash(request, f"Cancelled {row.product_name}, tier {row.tier}: pulls stop with the next login.")
    return redirect(path(request, "subscriptions"))


routes = [
    Route("/products/{publisher}/{product}/get", get_tier, methods=["GET", "POST"], name="entitlement_get"),
    Route("/ui/subscriptions", subscriptions, methods=["GET"], name="subscriptions"),
    Route(
        "/ui/subscriptions/{entitlement_id:int}/cancel", cancel, methods=["POST"], name="subscription_cancel"
    ),
]
