"""Webhook endpoints and the events sent to them.

Owners: a publisher's endpoints are managed by the organisation's owners (``PUBLISHER_MANAGE``; other
members are refused, anyone else is told the organisation does not exist); a user's endpoints by that user
(``ACCOUNT_MANAGE``: people, not robots). An endpoint of another owner is NotFound, as a missing one is.

``emit`` is what the rest of dockyard calls, inside its own transaction: it adds one delivery row and one
job row per endpoint of the audience, so nothing is sent unless that transaction commits, and everything
that committed is sent (``jobs.py`` makes the requests). The audience of an event: the publisher's endpoints
for every kind; for ``product.*`` kinds also the endpoints of the customers holding an active entitlement
to the product. ``finding.*`` events go to the publisher only: scan results are private to it and the store
team.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard import jobs as job_queue
from dockyard.accounts.reads import AccountReads
from dockyard.accounts.services import AccountService
from dockyard.authz import Permission, Principal, allowed
from dockyard.config import Settings
from dockyard.db import MAX_ID, utcnow
from dockyard.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.webhooks import targets
from dockyard.webhooks.models import (
    PING,
    PUBLISHER_ONLY,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookKind,
)
from dockyard.webhooks.signing import SecretBox, new_secret

DELIVER_JOB = "webhooks.deliver"
DESCRIPTION_MAX = 200
ENDPOINTS_MAX = 20  # per owner: enough for every integration, not a way to amplify one event
DELIVERIES_SHOWN = 50
# A delivery job raises only when the database does (an HTTP failure is an attempt row and a scheduled
# retry, never an exception): the queue retries it a few times, then gives up.
JOB_TRIES = 3


@dataclass(frozen=True)
class Owner:
    """Whose endpoints: a publisher (``name``: its organisation) or a user (``name``: the username)."""

    kind: str  # publisher | user
    id: int
    name: str

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass
class DeliveryView:
    delivery: WebhookDelivery
    attempts: list[WebhookAttempt] = field(default_factory=list)


def json_body(event_id: str, kind: str, created_at: dt.datetime, data: Mapping[str, Any]) -> str:
    """The body every attempt of a delivery sends (compact JSON, keys in a stable order)."""
    body = {
        "id": event_id,
        "type": kind,
        "created_at": created_at.replace(microsecond=0).isoformat() + "Z",
        "data": dict(data),
    }
    return json.dumps(body, separators=(",", ":"), default=str)


class WebhookService:
    def __init__(
        self, session: Session, bus: EventBus, settings: Settings, accounts: AccountService, box: SecretBox
    ) -> None:
        self.session = session
        self.bus = bus
        self.settings = settings
        self.accounts = accounts
        self.box = box

    # -- owners --------------------------------------------------------------------------------------------
    def owner_for_user(self, principal: Principal) -> Owner:
        """The signed-in user as an owner of endpoints (people only: robots manage no account)."""
        if principal.is_anonymous:
            raise Unauthenticated("authentication required")
        if principal.user_id is None or not allowed(principal, Permission.ACCOUNT_MANAGE):
            raise Forbidden(f"not allowed: {Permission.ACCOUNT_MANAGE.value}")
        return Owner("user", principal.user_id, principal.name)

    def owner_for_publisher(self, org: str, principal: Principal) -> Owner:
        """Organisation ``org``'s publisher as an owner of endpoints, for its owners: NotFound for those
        who may not see the organisation (as for a missing one), Forbidden for those who see but may not."""
        from dockyard.publishing.reads import publisher_for

        if principal.is_anonymous:
            raise Unauthenticated("authentication required")
        found = AccountReads(self.session).namespace(org)
        role = self.accounts.role_in(principal, org) if found is not None else None
        readable = allowed(principal, Permission.PRODUCT_READ, namespace_role=role) or allowed(
            principal, Permission.CATALOG_READ
        )
        if found is None or not readable or found[1] != "org":
            raise NotFound(f"organisation {org!r} not found")
        if not allowed(principal, Permission.PUBLISHER_MANAGE, namespace_role=role):
            raise Forbidden("Only the organisation's owners manage its webhooks.")
        publisher = publisher_for(self.session, org, create=True)
        assert publisher is not None
        return Owner("publisher", publisher.id, org)

    # -- endpoints -----------------------------------------------------------------------------------------
    def _owned(self, owner: Owner) -> Any:
        column = WebhookEndpoint.publisher_id if owner.kind == "publisher" else WebhookEndpoint.user_id
        return column == owner.id

    def list(self, owner: Owner) -> list[WebhookEndpoint]:
        """The owner's endpoints, oldest first."""
        query = select(WebhookEndpoint).where(self._owned(owner)).order_by(WebhookEndpoint.id)
        return list(self.session.scalars(query))

    def get(self, owner: Owner, endpoint_id: int) -> WebhookEndpoint:
        """One of the owner's endpoints; NotFound for another owner's, as for a missing one."""
        if not 1 <= endpoint_id <= MAX_ID:  # a page takes any run of digits: no such row, not a 500
            raise NotFound(f"webhook {endpoint_id} not found")
        endpoint = self.session.scalar(
            select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, self._owned(owner))
        )
        if endpoint is None:
            raise NotFound(f"webhook {endpoint_id} not found")
        return endpoint

    def _check(self, owner: Owner, values: Mapping[str, Any]) -> dict[str, Any]:
        """The fields given, checked (every wrong one reported at once) and normalised."""
        problems: list[dict[str, str]] = []
        out: dict[str, Any] = {}
        if "url" in values:
            try:
                url = str(values["url"] or "").strip()
                targets.check_url(url, allow_http=self.settings.webhook_allow_http)
                # Resolved now too: a URL that points inside is refused before anything is queued for it.
                targets.target(
                    url,
                    allow_http=self.settings.webhook_allow_http,
                    allow_private=self.settings.webhook_allow_private,
                )
                out["url"] = url
            except targets.TargetRefused as exc:
                problems.append({"field": "url", "message": exc.reason})
        if "kinds" in values:
            raw = values["kinds"]
            kinds = [str(k) for k in raw] if isinstance(raw, list | tuple | set) else []
            known = {k.value for k in WebhookKind}
            unknown = [k for k in kinds if k not in known]
            if unknown:
                problems.append({"field": "kinds", "message": f"unknown event kinds: {', '.join(unknown)}"})
            elif not kinds:
                problems.append({"field": "kinds", "message": "choose at least one kind of event"})
            elif owner.kind == "user" and PUBLISHER_ONLY & set(kinds):
                message = "finding events go to the product's publisher only: choose product events"
                problems.append({"field": "kinds", "message": message})
            else:
                out["kinds"] = [k.value for k in WebhookKind if k.value in kinds]  # one order, no repeats
        if "description" in values:
            text = str(values["description"] or "").strip()
            if len(text) > DESCRIPTION_MAX:
                problems.append(
                    {"field": "description", "message": f"use at most {DESCRIPTION_MAX} characters"}
                )
            elif any(ord(c) < 32 for c in text):
                problems.append({"field": "description", "message": "use one line of text"})
            else:
                out["description"] = text
        if "active" in values:
            if not isinstance(values["active"], bool):
                problems.append({"field": "active", "message": "must be true or false"})
            else:
                out["active"] = values["active"]
        if problems:
            first = problems[0]
            raise Invalid(f"{first['field']}: {first['message']}", detail=problems)
        return out

    def create(
        self,
        owner: Owner,
        *,
        url: str,
        kinds: Iterable[str],
        description: str = "",
        active: bool = True,
        actor: Actor,
    ) -> tuple[WebhookEndpoint, str]:
        """A new endpoint and its secret (returned this once: only its sealed form is kept)."""
        values = self._check(
            owner, {"url": url, "kinds": list(kinds), "description": description, "active": active}
        )
        if len(self.list(owner)) >= ENDPOINTS_MAX:
            raise Conflict(f"at most {ENDPOINTS_MAX} webhooks each: delete one first")
        secret = new_secret()
        endpoint = WebhookEndpoint(
            publisher_id=owner.id if owner.kind == "publisher" else None,
            user_id=owner.id if owner.kind == "user" else None,
            secret_sealed=self.box.seal(secret),
            created_by=actor.user_id,
            consecutive_failures=0,
            **values,
        )
        self.session.add(endpoint)
        self.session.flush()
        self._audit(EventTag.WEBHOOK_CREATE, owner, endpoint, actor, {"kinds": endpoint.kinds})
        return endpoint, secret

    def update(
        self, owner: Owner, endpoint_id: int, changes: Mapping[str, Any], actor: Actor
    ) -> WebhookEndpoint:
        """Change the URL, kinds, description or active flag; turning an endpoint on clears its failures."""
        endpoint = self.get(owner, endpoint_id)
        values = self._check(owner, changes)
        changed = {k: v for k, v in values.items() if getattr(endpoint, k) != v}
        for name, value in changed.items():
            setattr(endpoint, name, value)
        if changed.get("active") is True:
            endpoint.consecutive_failures = 0
            endpoint.disabled_reason = None
            endpoint.disabled_at = None
        if changed:
            self.session.flush()
            self._audit(EventTag.WEBHOOK_UPDATE, owner, endpoint, actor, {"changed": sorted(changed)})
        return endpoint

    def rotate_secret(self, owner: Owner, endpoint_id: int, actor: Actor) -> tuple[WebhookEndpoint, str]:
        """A new secret for the endpoint, used from the next attempt on (the old one stops at once)."""
        endpoint = self.get(owner, endpoint_id)
        secret = new_secret()
        endpoint.secret_sealed = self.box.seal(secret)
        endpoint.updated_at = utcnow()
        self.session.flush()
        self._audit(EventTag.WEBHOOK_UPDATE, owner, endpoint, actor, {"secret_rotated": True})
        return endpoint, secret

    def delete(self, owner: Owner, endpoint_id: int, actor: Actor) -> None:
        """Delete the endpoint with its delivery log; what was queued for it is not sent."""
        endpoint = self.get(owner, endpoint_id)
        self._audit(EventTag.WEBHOOK_DELETE, owner, endpoint, actor, {})
        self.session.delete(endpoint)
        self.session.flush()

    def secret_of(self, endpoint: WebhookEndpoint) -> str:
        """The endpoint's secret, to sign with (never shown again after creation or rotation)."""
        return self.box.open(endpoint.secret_sealed)

    def _audit(
        self, tag: EventTag, owner: Owner, endpoint: WebhookEndpoint, actor: Actor, data: dict[str, Any]
    ) -> None:
        payload = {"webhook": endpoint.id, "owner": owner.label, "url": endpoint.url, **data}
        namespace = owner.name if owner.kind == "publisher" else None
        self.bus.publish(self.session, Event(tag, actor, namespace=namespace, data=payload))

    # -- deliveries ----------------------------------------------------------------------------------------
    def deliveries(
        self, owner: Owner, endpoint_id: int, *, limit: int = DELIVERIES_SHOWN
    ) -> list[DeliveryView]:
        """The endpoint's latest deliveries, newest first, each with its attempts (oldest first)."""
        endpoint = self.get(owner, endpoint_id)
        rows = list(
            self.session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == endpoint.id)
                .order_by(WebhookDelivery.id.desc())
                .limit(max(1, min(limit, 200)))
            )
        )
        views = {row.id: DeliveryView(row) for row in rows}
        if views:
            attempts = self.session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id.in_(list(views)))
                .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
            )
            for attempt in attempts:
                views[attempt.delivery_id].attempts.append(attempt)
        return list(views.values())

    def redeliver(self, owner: Owner, endpoint_id: int, delivery_id: int, actor: Actor) -> WebhookDelivery:
        """Send a delivery again now (the same event id and body), whatever became of it."""
        endpoint = self.get(owner, endpoint_id)
        delivery = (
            None
            if not 1 <= delivery_id <= MAX_ID
            else self.session.scalar(
                select(WebhookDelivery).where(
                    WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id
                )
            )
        )
        if delivery is None:
            raise NotFound(f"delivery {delivery_id} not found")
        payload = {"delivery": delivery.id, "manual": True}
        job_queue.enqueue(self.session, DELIVER_JOB, payload, max_attempts=JOB_TRIES)
        data = {"delivery": delivery.id, "event_id": delivery.event_id}
        self._audit(EventTag.WEBHOOK_REDELIVER, owner, endpoint, actor, data)
        return delivery

    def ping(self, owner: Owner, endpoint_id: int, actor: Actor) -> WebhookDelivery:
        """Queue a ``ping`` event to the endpoint (sent once, even when it is turned off: a test)."""
        endpoint = self.get(owner, endpoint_id)
        data = {"webhook": endpoint.id, "owner": owner.label, "message": "A test event sent from dockyard."}
        return self._queue(endpoint, PING, data, force=True)

    def emit(
        self, kind: WebhookKind, *, publisher_id: int, product_id: int | None, data: dict[str, Any]
    ) -> int:
        """Queue ``kind`` for its audience, in the caller's transaction: how many deliveries were queued."""
        kind = WebhookKind(kind)
        audience = [WebhookEndpoint.publisher_id == publisher_id]
        if product_id is not None and kind not in PUBLISHER_ONLY:
            from dockyard.entitlements.models import Entitlement, EntitlementStatus

            customers = select(Entitlement.user_id).where(
                Entitlement.product_id == product_id, Entitlement.status == EntitlementStatus.ACTIVE.value
            )
            audience.append(WebhookEndpoint.user_id.in_(customers))
        from sqlalchemy import or_

        endpoints = self.session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.active.is_(True), or_(*audience))
            .order_by(WebhookEndpoint.id)
        )
        count = 0
        for endpoint in endpoints:
            if kind.value in (endpoint.kinds or []):
                self._queue(endpoint, kind.value, data)
                count += 1
        return count

    def _queue(
        self, endpoint: WebhookEndpoint, kind: str, data: Mapping[str, Any], *, force: bool = False
    ) -> WebhookDelivery:
        now = utcnow()
        event_id = "evt_" + uuid.uuid4().hex
        delivery = WebhookDelivery(
            endpoint_id=endpoint.id,
            event_id=event_id,
            kind=kind,
            body=json_body(event_id, kind, now, data),
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        self.session.add(delivery)
        self.session.flush()
        # force: sent even while the endpoint is turned off (a ping is how its owner tests it first).
        payload = {"delivery": delivery.id, "manual": False, "after": 0, "force": force}
        # A failed request is retried by the delivery's own schedule (jobs.py), not the queue's, so that
        # the backoff is the webhook one and every attempt is logged.
        job_queue.enqueue(self.session, DELIVER_JOB, payload, max_attempts=JOB_TRIES)
        return delivery
