"""The compliance loop's webhooks, queued in the transaction of its events: ``finding.created`` and
``finding.resolved`` to the publisher (scan results are the publisher's and the store team's only), and
``product.hold``, ``product.hold_lifted`` and ``product.revoked`` to the publisher and to the customers
entitled to the product (what a hold says is on the store's public label anyway)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from dockyard.events import Event, EventBus, EventTag
from dockyard.webhooks.models import WebhookKind

TRANSITIONS = {
    EventTag.PRODUCT_HOLD: WebhookKind.PRODUCT_HOLD,
    EventTag.PRODUCT_HOLD_LIFT: WebhookKind.PRODUCT_HOLD_LIFTED,
    EventTag.PRODUCT_REVOKE: WebhookKind.PRODUCT_REVOKED,
}


def subscribe(bus: EventBus, services_for: Any, public_url: str) -> None:
    def base(event: Event) -> dict[str, Any]:
        org, slug = event.namespace or "", event.data["product"]
        return {"publisher": org, "product": slug, "url": f"{public_url}/products/{org}/{slug}"}

    def on_findings(session: Session, event: Event) -> None:
        hooks = services_for(session).webhooks
        ids = {"publisher_id": event.data["publisher_id"], "product_id": event.data["product_id"]}
        for kind, clocks in (
            (WebhookKind.FINDING_CREATED, event.data.get("opened") or []),
            (WebhookKind.FINDING_RESOLVED, event.data.get("resolved") or []),
        ):
            for clock in clocks:
                hooks.emit(kind, **ids, data={**base(event), "finding": clock})

    def on_transition(session: Session, event: Event) -> None:
        overdue = [
            {k: c.get(k) for k in ("vulnerability", "severity", "image", "due_at")}
            for c in event.data.get("overdue") or []
        ]
        data = {
            **base(event),
            "since": event.data.get("since"),
            "reason": event.data.get("reason"),
            "overdue": overdue,
        }
        services_for(session).webhooks.emit(
            TRANSITIONS[event.tag],
            publisher_id=event.data["publisher_id"],
            product_id=event.data["product_id"],
            data=data,
        )

    bus.subscribe(EventTag.COMPLIANCE_FINDINGS, on_findings)
    for tag in TRANSITIONS:
        bus.subscribe(tag, on_transition)
