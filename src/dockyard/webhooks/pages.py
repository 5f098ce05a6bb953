"""Webhook pages: "Webhooks" for a signed-in user (``/ui/account/webhooks``) and for each publisher
(``/ui/orgs/<org>/webhooks``, its owners'). The list page holds the create form (kinds as checkboxes) and
shows a new secret once, in the answer to the form (never through a redirect, which would keep it in the
session cookie); an endpoint's page holds its settings, ping, a new secret, delete, and the delivery log
with each attempt's answer and a Redeliver button. Plain forms with CSRF tokens: no JavaScript needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.accounts.pages.forms import path, sentence
from dockyard.errors import DockyardError
from dockyard.services import Services
from dockyard.web.context import RequestContext
from dockyard.web.errors import api_status
from dockyard.web.identity import session_principal
from dockyard.web.pages import flash, form, page, redirect, render, text_field
from dockyard.webhooks.jobs import AUTO_DISABLE_AFTER, BACKOFF
from dockyard.webhooks.models import PUBLISHER_ONLY, WebhookKind
from dockyard.webhooks.services import Owner

KIND_HINTS = {
    WebhookKind.FINDING_CREATED: "a new vulnerability found in an image of a live product",
    WebhookKind.FINDING_RESOLVED: "a finding fixed, withdrawn or accepted as not affecting",
    WebhookKind.PRODUCT_HOLD: "a product put on hold (a finding past its due time)",
    WebhookKind.PRODUCT_HOLD_LIFTED: "a hold lifted",
    WebhookKind.PRODUCT_REVOKED: "a product revoked from the store",
    WebhookKind.PRODUCT_PUBLISHED: "a new revision published",
}


@dataclass(frozen=True)
class Place:
    """Where an owner's webhook pages live: the user's account, or an organisation's publisher."""

    kind: str  # user | publisher
    prefix: str  # route-name prefix

    def owner(self, sv: Services, request: Request, principal: Any) -> Owner:
        if self.kind == "user":
            return sv.webhooks.owner_for_user(principal)
        return sv.webhooks.owner_for_publisher(request.path_params["org"], principal)

    def params(self, request: Request) -> dict[str, Any]:
        return {"org": request.path_params["org"]} if self.kind == "publisher" else {}

    def url(self, request: Request, name: str = "", **params: Any) -> str:
        return path(request, self.prefix + name, **self.params(request), **params)


USER, PUBLISHER = Place("user", "account_webhooks"), Place("publisher", "publisher_webhooks")


def _kinds_for(owner: Owner) -> list[tuple[str, str]]:
    return [
        (k.value, KIND_HINTS[k]) for k in WebhookKind if owner.kind == "publisher" or k not in PUBLISHER_ONLY
    ]


def _errors(exc: DockyardError) -> dict[str, str]:
    detail = exc.detail
    if isinstance(detail, list):
        found = {
            str(d["field"]): sentence(str(d["message"]))
            for d in detail
            if isinstance(d, dict) and "field" in d
        }
        if found:
            return found
    return {"form": sentence(exc.message)}


def _values(data: FormData) -> dict[str, Any]:
    return {
        "url": text_field(data, "url", limit=4096),
        "kinds": [k for k in data.getlist("kinds") if isinstance(k, str)],
        "description": text_field(data, "description", limit=400),
        "active": data.get("active") == "on",
    }


def _base(place: Place, request: Request, owner: Owner) -> dict[str, Any]:
    title = "Your webhooks" if owner.kind == "user" else f"Webhooks of {owner.name}"
    return {
        "place": place.kind,
        "owner": owner,
        "org": owner.name if owner.kind == "publisher" else None,
        "title": title,
        "kinds": _kinds_for(owner),
        "section": "account" if owner.kind == "user" else "orgs",
        "list_url": place.url(request),
    }


def _list_page(place: Place) -> Callable[..., Any]:
    @page
    async def view(request: Request, ctx: RequestContext) -> Response:
        principal = await session_principal(ctx)
        values: dict[str, Any] = {"url": "", "kinds": [], "description": "", "active": True}
        errors: dict[str, str] = {}
        created = None
        status = 200
        if request.method == "POST":
            data = await form(request)
            values = _values(data)

            def make(sv: Services) -> tuple[int, str]:
                owner = place.owner(sv, request, principal)
                endpoint, secret = sv.webhooks.create(owner, **values, actor=ctx.actor)
                return endpoint.id, secret

            try:
                endpoint_id, secret = await ctx.call(make)
                # Shown in this answer only: the list below is read in the same (committed) transaction.
                created = {"id": endpoint_id, "secret": secret, "url": values["url"]}
                values, status = {"url": "", "kinds": [], "description": "", "active": True}, 201
            except DockyardError as exc:
                if api_status(exc) in (401, 403, 404):
                    raise
                await ctx.finish(commit=False)
                errors, status = _errors(exc), api_status(exc)

        def read(sv: Services) -> tuple[Owner, list[Any]]:
            owner = place.owner(sv, request, principal)
            return owner, sv.webhooks.list(owner)

        owner, endpoints = await ctx.call(read)
        context = {
            **_base(place, request, owner),
            "endpoints": [{"e": e, "url": place.url(request, "_one", webhook_id=e.id)} for e in endpoints],
            "values": values,
            "errors": errors,
            "created": created,
            "create_url": place.url(request),
            "auto_disable_after": AUTO_DISABLE_AFTER,
        }
        return render(request, "webhooks/list.html", context, status)

    return view


def _detail_context(
    place: Place,
    request: Request,
    owner: Owner,
    endpoint: Any,
    deliveries: list[Any],
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    created: dict[str, str] | None = None,
) -> dict[str, Any]:
    one = {"webhook_id": endpoint.id}
    saved = {
        "url": endpoint.url,
        "kinds": list(endpoint.kinds or []),
        "description": endpoint.description,
        "active": endpoint.active,
    }
    return {
        **_base(place, request, owner),
        "e": endpoint,
        "values": values or saved,
        "errors": errors or {},
        "deliveries": deliveries,
        "urls": {
            "self": place.url(request, "_one", **one),
            "secret": place.url(request, "_secret", **one),
            "ping": place.url(request, "_ping", **one),
            "delete": place.url(request, "_delete", **one),
            "redeliver": lambda delivery_id: place.url(request, "_redeliver", **one, delivery_id=delivery_id),
        },
        "backoff": BACKOFF,
        "created": created,
    }


def _detail_page(place: Place) -> Callable[..., Any]:
    @page
    async def view(request: Request, ctx: RequestContext) -> Response:
        principal = await session_principal(ctx)
        webhook_id = request.path_params["webhook_id"]
        errors: dict[str, str] = {}
        values: dict[str, Any] | None = None
        status = 200
        if request.method == "POST":
            data = await form(request)
            values = _values(data)

            def save(sv: Services) -> None:
                owner = place.owner(sv, request, principal)
                sv.webhooks.update(owner, webhook_id, values or {}, ctx.actor)

            try:
                await ctx.call(save)
                flash(request, "Webhook saved.")
                return redirect(place.url(request, "_one", webhook_id=webhook_id))
            except DockyardError as exc:
                if api_status(exc) in (401, 403, 404):
                    raise
                await ctx.finish(commit=False)
                errors, status = _errors(exc), api_status(exc)

        def read(sv: Services) -> tuple[Owner, Any, list[Any]]:
            owner = place.owner(sv, request, principal)
            return owner, sv.webhooks.get(owner, webhook_id), sv.webhooks.deliveries(owner, webhook_id)

        owner, endpoint, deliveries = await ctx.call(read)
        context = _detail_context(place, request, owner, endpoint, deliveries, values=values, errors=errors)
        return render(request, "webhooks/detail.html", context, status)

    return view


def _action(place: Place, act: Callable[[Services, Owner, int, RequestContext, Request], str], where: str):
    @page
    async def view(request: Request, ctx: RequestContext) -> Response:
        await form(request)
        principal = await session_principal(ctx)
        webhook_id = request.path_params["webhook_id"]
        message = await ctx.call(
            lambda sv: act(sv, place.owner(sv, request, principal), webhook_id, ctx, request)
        )
        flash(request, message)
        if where == "list":
            return redirect(place.url(request))
        return redirect(place.url(request, "_one", webhook_id=webhook_id) + "#deliveries")

    return view


def _ping(sv: Services, owner: Owner, webhook_id: int, ctx: RequestContext, request: Request) -> str:
    sv.webhooks.ping(owner, webhook_id, ctx.actor)
    return "A ping is on its way: it appears in the delivery log below within moments."


def _redeliver(sv: Services, owner: Owner, webhook_id: int, ctx: RequestContext, request: Request) -> str:
    delivery = sv.webhooks.redeliver(owner, webhook_id, request.path_params["delivery_id"], ctx.actor)
    return f"Delivery {delivery.event_id} is being sent again."


def _delete(sv: Services, owner: Owner, webhook_id: int, ctx: RequestContext, request: Request) -> str:
    url = sv.webhooks.get(owner, webhook_id).url
    sv.webhooks.delete(owner, webhook_id, ctx.actor)
    return f"Webhook {url} deleted."


def _secret_page(place: Place) -> Callable[..., Any]:
    @page
    async def view(request: Request, ctx: RequestContext) -> Response:
        await form(request)
        principal = await session_principal(ctx)
        webhook_id = request.path_params["webhook_id"]

        def rotate(sv: Services) -> tuple[Owner, Any, str, list[Any]]:
            owner = place.owner(sv, request, principal)
            endpoint, secret = sv.webhooks.rotate_secret(owner, webhook_id, ctx.actor)
            return owner, endpoint, secret, sv.webhooks.deliveries(owner, webhook_id)

        owner, endpoint, secret, deliveries = await ctx.call(rotate)
        context = _detail_context(place, request, owner, endpoint, deliveries, created={"secret": secret})
        return render(request, "webhooks/detail.html", context)

    return view


def _routes(place: Place, base: str) -> list[Route]:
    one = base + "/{webhook_id:int}"
    p = place.prefix
    return [
        Route(base, _list_page(place), methods=["GET", "POST"], name=p),
        Route(one, _detail_page(place), methods=["GET", "POST"], name=p + "_one"),
        Route(one + "/secret", _secret_page(place), methods=["POST"], name=p + "_secret"),
        Route(one + "/ping", _action(place, _ping, "one"), methods=["POST"], name=p + "_ping"),
        Route(one + "/delete", _action(place, _delete, "list"), methods=["POST"], name=p + "_delete"),
        Route(
            one + "/deliveries/{delivery_id:int}/redeliver",
            _action(place, _redeliver, "one"),
            methods=["POST"],
            name=p + "_redeliver",
        ),
    ]


routes = [*_routes(USER, "/ui/account/webhooks"), *_routes(PUBLISHER, "/ui/orgs/{org}/webhooks")]
