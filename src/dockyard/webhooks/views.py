"""The webhooks API: a user's own endpoints under /me/webhooks, a publisher's under
/publishers/{org}/webhooks (its owners'). The same operations on both: list, create (the secret is in that
answer only), read, update, delete, rotate the secret, ping, list deliveries with their attempts, redeliver.
Thin views: parse, resolve the owner (the service authorizes), one service call, shape the answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from dockyard.authz import Principal, Scope
from dockyard.db import MAX_ID
from dockyard.services import Services
from dockyard.web.api import AUTHENTICATED, Ctx, UnitOfWorkRoute, caller, errors
from dockyard.webhooks import schemas as s
from dockyard.webhooks.models import WebhookDelivery, WebhookEndpoint
from dockyard.webhooks.services import DeliveryView, Owner

router = APIRouter(route_class=UnitOfWorkRoute, tags=["webhooks"], responses=AUTHENTICATED)
Account = Annotated[Principal, caller(Scope.API)]
OrgName = Annotated[str, Path(min_length=1, max_length=64)]
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
OwnerOf = Callable[[Services], Owner]


def endpoint_out(owner: Owner, e: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": e.id,
        "owner": owner.label,
        "url": e.url,
        "kinds": list(e.kinds or []),
        "description": e.description,
        "active": e.active,
        "disabled_reason": e.disabled_reason,
        "consecutive_failures": e.consecutive_failures,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
    }


def delivery_out(view: DeliveryView) -> dict[str, Any]:
    d = view.delivery
    return {
        "id": d.id,
        "event_id": d.event_id,
        "kind": d.kind,
        "status": d.status,
        "attempts": [a.as_dict() for a in view.attempts],
        "next_attempt_at": d.next_attempt_at,
        "created_at": d.created_at,
        "body": d.body,
    }


def queued_out(d: WebhookDelivery) -> dict[str, Any]:
    return {"id": d.id, "event_id": d.event_id, "status": d.status}


# -- the operations, for either owner ----------------------------------------------------------------------
async def _list(ctx: Ctx, owner_of: OwnerOf) -> list[dict[str, Any]]:
    def work(sv: Services) -> list[dict[str, Any]]:
        owner = owner_of(sv)
        return [endpoint_out(owner, e) for e in sv.webhooks.list(owner)]

    return await ctx.call(work)


async def _create(ctx: Ctx, owner_of: OwnerOf, body: s.WebhookIn) -> dict[str, Any]:
    def work(sv: Services) -> dict[str, Any]:
        owner = owner_of(sv)
        kinds = [k.value for k in body.kinds]
        e, secret = sv.webhooks.create(
            owner,
            url=body.url,
            kinds=kinds,
            description=body.description,
            active=body.active,
            actor=ctx.actor,
        )
        return {**endpoint_out(owner, e), "secret": secret}

    return await ctx.call(work)


async def _get(ctx: Ctx, owner_of: OwnerOf, webhook_id: int) -> dict[str, Any]:
    def work(sv: Services) -> dict[str, Any]:
        owner = owner_of(sv)
        return endpoint_out(owner, sv.webhooks.get(owner, webhook_id))

    return await ctx.call(work)


async def _update(ctx: Ctx, owner_of: OwnerOf, webhook_id: int, body: s.WebhookPatch) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    if changes.get("kinds") is not None:
        changes["kinds"] = [k.value for k in body.kinds or []]

    def work(sv: Services) -> dict[str, Any]:
        owner = owner_of(sv)
        return endpoint_out(owner, sv.webhooks.update(owner, webhook_id, changes, ctx.actor))

    return await ctx.call(work)


async def _delete(ctx: Ctx, owner_of: OwnerOf, webhook_id: int) -> Response:
    await ctx.call(lambda sv: sv.webhooks.delete(owner_of(sv), webhook_id, ctx.actor))
    return Response(status_code=204)


async def _rotate(ctx: Ctx, owner_of: OwnerOf, webhook_id: int) -> dict[str, Any]:
    def work(sv: Services) -> dict[str, Any]:
        owner = owner_of(sv)
        e, secret = sv.webhooks.rotate_secret(owner, webhook_id, ctx.actor)
        return {**endpoint_out(owner, e), "secret": secret}

    return await ctx.call(work)


async def _ping(ctx: Ctx, owner_of: OwnerOf, webhook_id: int) -> dict[str, Any]:
    return queued_out(await ctx.call(lambda sv: sv.webhooks.ping(owner_of(sv), webhook_id, ctx.actor)))


async def _deliveries(ctx: Ctx, owner_of: OwnerOf, webhook_id: int) -> list[dict[str, Any]]:
    views = await ctx.call(lambda sv: sv.webhooks.deliveries(owner_of(sv), webhook_id))
    return [delivery_out(v) for v in views]


async def _redeliver(ctx: Ctx, owner_of: OwnerOf, webhook_id: int, delivery_id: int) -> dict[str, Any]:
    delivery = await ctx.call(
        lambda sv: sv.webhooks.redeliver(owner_of(sv), webhook_id, delivery_id, ctx.actor)
    )
    return queued_out(delivery)


# -- a user's own ------------------------------------------------------------------------------------------
ME = "/me/webhooks"
ONE = ME + "/{webhook_id}"
MINE = errors(400, 403, 404)


def _me(who: Principal) -> OwnerOf:
    return lambda sv: sv.webhooks.owner_for_user(who)


@router.get(ME, response_model=list[s.WebhookOut], responses=errors(403))
async def list_my_webhooks(ctx: Ctx, who: Account) -> list[dict[str, Any]]:
    """Your webhook endpoints (as a customer: product events of the products you are entitled to)."""
    return await _list(ctx, _me(who))


@router.post(ME, status_code=201, response_model=s.WebhookCreated, responses=errors(400, 403, 409))
async def create_my_webhook(body: s.WebhookIn, ctx: Ctx, who: Account) -> dict[str, Any]:
    """A new endpoint; its signing secret is in this answer only."""
    return await _create(ctx, _me(who), body)


@router.get(ONE, response_model=s.WebhookOut, responses=MINE)
async def get_my_webhook(webhook_id: Id, ctx: Ctx, who: Account) -> dict[str, Any]:
    """One of your endpoints."""
    return await _get(ctx, _me(who), webhook_id)


@router.patch(ONE, response_model=s.WebhookOut, responses=MINE)
async def update_my_webhook(webhook_id: Id, body: s.WebhookPatch, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Change an endpoint's URL, events, description or active flag."""
    return await _update(ctx, _me(who), webhook_id, body)


@router.delete(ONE, status_code=204, response_class=Response, responses=MINE)
async def delete_my_webhook(webhook_id: Id, ctx: Ctx, who: Account) -> Response:
    """Delete an endpoint and its delivery log."""
    return await _delete(ctx, _me(who), webhook_id)


@router.post(ONE + "/secret", response_model=s.WebhookCreated, responses=MINE)
async def rotate_my_webhook_secret(webhook_id: Id, ctx: Ctx, who: Account) -> dict[str, Any]:
    """A new signing secret (in this answer only); the old one stops signing at once."""
    return await _rotate(ctx, _me(who), webhook_id)


@router.post(ONE + "/ping", status_code=202, response_model=s.DeliveryQueued, responses=MINE)
async def ping_my_webhook(webhook_id: Id, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Send a test ``ping`` event (see its delivery in the log)."""
    return await _ping(ctx, _me(who), webhook_id)


@router.get(ONE + "/deliveries", response_model=list[s.DeliveryOut], responses=MINE)
async def list_my_webhook_deliveries(webhook_id: Id, ctx: Ctx, who: Account) -> list[dict[str, Any]]:
    """The latest 50 deliveries, newest first, each with every attempt and the answer it got."""
    return await _deliveries(ctx, _me(who), webhook_id)


@router.post(
    ONE + "/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=s.DeliveryQueued,
    responses=MINE,
)
async def redeliver_my_webhook(webhook_id: Id, delivery_id: Id, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Send a delivery again (the same event id and body, a fresh signature)."""
    return await _redeliver(ctx, _me(who), webhook_id, delivery_id)


# -- a publisher's -----------------------------------------------------------------------------------------
PUB = "/publishers/{org}/webhooks"
PUB_ONE = PUB + "/{webhook_id}"


def _pub(org: str, who: Principal) -> OwnerOf:
    return lambda sv: sv.webhooks.owner_for_publisher(org, who)


@router.get(PUB, response_model=list[s.WebhookOut], responses=MINE)
async def list_publisher_webhooks(org: OrgName, ctx: Ctx, who: Account) -> list[dict[str, Any]]:
    """The publisher's endpoints (its owners): every event of its products, findings included."""
    return await _list(ctx, _pub(org, who))


@router.post(PUB, status_code=201, response_model=s.WebhookCreated, responses=errors(400, 403, 404, 409))
async def create_publisher_webhook(org: OrgName, body: s.WebhookIn, ctx: Ctx, who: Account) -> dict[str, Any]:
    """A new endpoint of the publisher; its signing secret is in this answer only."""
    return await _create(ctx, _pub(org, who), body)


@router.get(PUB_ONE, response_model=s.WebhookOut, responses=MINE)
async def get_publisher_webhook(org: OrgName, webhook_id: Id, ctx: Ctx, who: Account) -> dict[str, Any]:
    """One of the publisher's endpoints."""
    return await _get(ctx, _pub(org, who), webhook_id)


@router.patch(PUB_ONE, response_model=s.WebhookOut, responses=MINE)
async def update_publisher_webhook(
    org: OrgName, webhook_id: Id, body: s.WebhookPatch, ctx: Ctx, who: Account
) -> dict[str, Any]:
    """Change an endpoint's URL, events, description or active flag."""
    return await _update(ctx, _pub(org, who), webhook_id, body)


@router.delete(PUB_ONE, status_code=204, response_class=Response, responses=MINE)
async def delete_publisher_webhook(org: OrgName, webhook_id: Id, ctx: Ctx, who: Account) -> Response:
    """Delete an endpoint and its delivery log."""
    return await _delete(ctx, _pub(org, who), webhook_id)


@router.post(PUB_ONE + "/secret", response_model=s.WebhookCreated, responses=MINE)
async def rotate_publisher_webhook_secret(
    org: OrgName, webhook_id: Id, ctx: Ctx, who: Account
) -> dict[str, Any]:
    """A new signing secret (in this answer only); the old one stops signing at once."""
    return await _rotate(ctx, _pub(org, who), webhook_id)


@router.post(PUB_ONE + "/ping", status_code=202, response_model=s.DeliveryQueued, responses=MINE)
async def ping_publisher_webhook(org: OrgName, webhook_id: Id, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Send a test ``ping`` event."""
    return await _ping(ctx, _pub(org, who), webhook_id)


@router.get(PUB_ONE + "/deliveries", response_model=list[s.DeliveryOut], responses=MINE)
async def list_publisher_webhook_deliveries(
    org: OrgName, webhook_id: Id, ctx: Ctx, who: Account
) -> list[dict[str, Any]]:
    """The latest 50 deliveries, newest first, each with every attempt and the answer it got."""
    return await _deliveries(ctx, _pub(org, who), webhook_id)


@router.post(
    PUB_ONE + "/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=s.DeliveryQueued,
    responses=MINE,
)
async def redeliver_publisher_webhook(
    org: OrgName, webhook_id: Id, delivery_id: Id, ctx: Ctx, who: Account
) -> dict[str, Any]:
    """Send a delivery again (the same event id and body, a fresh signature)."""
    return await _redeliver(ctx, _pub(org, who), webhook_id, delivery_id)
