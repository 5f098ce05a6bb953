"""Sending webhooks: the delivery job, its retry schedule, and the subscriber that emits product.published.

One job per attempt. The job reads what to send in a short read transaction, makes the request with no
database transaction open (a slow receiver must not hold SQLite's write lock), then records the attempt in
its own transaction: the attempt row, the delivery's new state and, after a failure, the job of the next
attempt, due at the attempt's stored time plus the backoff (1 min, 5 min, 30 min, 2 h, 8 h; after the sixth
attempt the delivery has failed). A restart loses nothing: the schedule is the job rows and stored times.

An endpoint whose deliveries fail ``AUTO_DISABLE_AFTER`` times in a row (each after all its retries, so
about four days of a dead receiver) is turned off, with a note its owners see on its page.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard import jobs as job_queue
from dockyard.config import Settings
from dockyard.db import utcnow
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.webhooks import targets
from dockyard.webhooks.models import PING, DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from dockyard.webhooks.services import DELIVER_JOB, JOB_TRIES
from dockyard.webhooks.signing import SecretBox, secret_box, sign

if TYPE_CHECKING:
    from dockyard.jobs import JobContext, JobRegistry
    from dockyard.runtime import Runtime

log = logging.getLogger("dockyard.webhooks")

BACKOFF = (60, 300, 1800, 7200, 28800)  # seconds after attempt 1, 2, ... fails
MAX_ATTEMPTS = len(BACKOFF) + 1
AUTO_DISABLE_AFTER = 10
TIMEOUT = 10.0
EXCERPT_MAX = 2048
USER_AGENT = "dockyard-webhooks/1"


@dataclass
class Outcome:
    """What one attempt got."""

    status_code: int | None = None
    excerpt: str = ""
    error: str | None = None
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class Plan:
    """What to send, read before the request."""

    delivery_id: int
    event_id: str
    kind: str
    body: bytes
    url: str
    secret: str
    active: bool


def post(plan: Plan, settings: Settings, *, timeout: float = TIMEOUT) -> Outcome:
    """POST the delivery's body, signed, to the address its URL resolves to now (if that is allowed)."""
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = targets.target(
            plan.url, allow_http=settings.webhook_allow_http, allow_private=settings.webhook_allow_private
        )
    except targets.TargetRefused as exc:
        return Outcome(error=f"not sent: {exc.reason}", duration_ms=took())
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Dockyard-Event": plan.kind,
        "Dockyard-Delivery": plan.event_id,
        "Dockyard-Signature": sign(plan.secret, plan.body),
    }
    # The TLS name (and the certificate check) is the URL's host, though the connection goes to the address.
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        # trust_env off: a proxy from the environment would make its own lookup of the host.
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "POST", target.pinned, content=plan.body, headers=headers, extensions=extensions
            ) as response,
        ):
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= EXCERPT_MAX or time.monotonic() - started > timeout:
                    break
            excerpt = b"".join(chunks)[:EXCERPT_MAX].decode("utf-8", errors="replace")
            return Outcome(status_code=response.status_code, excerpt=excerpt, duration_ms=took())
    except httpx.TimeoutException:
        return Outcome(error=f"timed out after {timeout:g} s", duration_ms=took())
    except httpx.HTTPError as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__, duration_ms=took())


class Deliverer:
    """The delivery job's work: plan (read), send (no transaction), record (the job's transaction)."""

    def __init__(self, settings: Settings, box: SecretBox, bus: EventBus) -> None:
        self.settings = settings
        self.box = box
        self.bus = bus

    def run(self, ctx: JobContext, payload: dict[str, Any]) -> None:
        delivery_id, manual = int(payload["delivery"]), bool(payload.get("manual"))
        after = payload.get("after")
        plan = ctx.read(lambda s: self.plan(s, delivery_id, manual=manual, after=after))
        if plan is None:
            return
        at = utcnow()
        if not plan.active and not manual and not payload.get("force"):
            outcome = Outcome(error="not sent: the endpoint is turned off")
        else:
            outcome = post(plan, self.settings, timeout=TIMEOUT)
        self.record(ctx.session, delivery_id, outcome, at=at, manual=manual)

    def plan(self, session: Session, delivery_id: int, *, manual: bool, after: Any) -> Plan | None:
        """What to send; None when there is nothing to do (the endpoint deleted, the delivery done, or a
        scheduled retry overtaken by a redelivery that scheduled its own)."""
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return None
        if not manual and (
            delivery.status != DeliveryStatus.PENDING.value
            or (after is not None and delivery.attempts != after)
        ):
            return None
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        if endpoint is None:
            return None
        return Plan(
            delivery_id=delivery.id,
            event_id=delivery.event_id,
            kind=delivery.kind,
            body=delivery.body.encode(),
            url=endpoint.url,
            secret=self.box.open(endpoint.secret_sealed),
            active=endpoint.active,
        )

    def record(
        self, session: Session, delivery_id: int, outcome: Outcome, *, at: dt.datetime, manual: bool
    ) -> None:
        """The attempt row, the delivery's state, its next attempt, and the endpoint's failure count."""
        delivery = session.scalar(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id))
        if delivery is None:
            return  # the endpoint was deleted while the request was out
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        assert endpoint is not None
        delivery.attempts += 1
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                number=delivery.attempts,
                manual=manual,
                at=at,
                duration_ms=outcome.duration_ms,
                status_code=outcome.status_code,
                response_excerpt=outcome.excerpt,
                error=outcome.error,
                ok=outcome.ok,
            )
        )
        now = utcnow()
        if outcome.ok:
            delivery.status, delivery.finished_at, delivery.next_attempt_at = (
                DeliveryStatus.DELIVERED.value,
                now,
                None,
            )
            endpoint.consecutive_failures = 0
        elif delivery.status != DeliveryStatus.PENDING.value:
            pass  # a redelivery of a finished delivery that failed: logged, nothing else changes
        elif delivery.kind == PING or (not endpoint.active and not manual):
            delivery.status, delivery.finished_at, delivery.next_attempt_at = (
                DeliveryStatus.FAILED.value,
                now,
                None,
            )
        elif delivery.attempts < MAX_ATTEMPTS:
            due = at + dt.timedelta(seconds=BACKOFF[delivery.attempts - 1])
            delivery.next_attempt_at = due
            payload = {"delivery": delivery.id, "manual": False, "after": delivery.attempts}
            delay = max(0.0, (due - now).total_seconds())
            job_queue.enqueue(session, DELIVER_JOB, payload, delay=delay, max_attempts=JOB_TRIES)
        else:
            delivery.status, delivery.finished_at, delivery.next_attempt_at = (
                DeliveryStatus.FAILED.value,
                now,
                None,
            )
            endpoint.consecutive_failures = (endpoint.consecutive_failures or 0) + 1
            if endpoint.active and endpoint.consecutive_failures >= AUTO_DISABLE_AFTER:
                self.disable(session, endpoint, now)
        session.flush()

    def disable(self, session: Session, endpoint: WebhookEndpoint, now: dt.datetime) -> None:
        endpoint.active = False
        endpoint.disabled_at = now
        endpoint.disabled_reason = (
            f"Turned off by dockyard on {now:%Y-%m-%d %H:%M} UTC: {endpoint.consecutive_failures} deliveries "
            "in a row failed after all their retries. Fix the receiver, send a ping, then turn it on again."
        )
        data = {"webhook": endpoint.id, "url": endpoint.url, "failures": endpoint.consecutive_failures}
        self.bus.publish(session, Event(EventTag.WEBHOOK_DISABLE, Actor.system(), data=data))
        log.warning(
            "webhook %s turned off after %s failed deliveries", endpoint.id, endpoint.consecutive_failures
        )


def register(registry: JobRegistry, runtime: Runtime) -> None:
    """The delivery job."""
    deliverer = Deliverer(runtime.settings, secret_box(runtime.settings.data_dir / "keys"), runtime.bus)
    registry.job(DELIVER_JOB)(deliverer.run)


def subscribe(bus: EventBus, runtime: Runtime) -> None:
    """product.published, queued in the transaction that published the revision."""
    from dockyard.publishing.models import ProductRevision
    from dockyard.webhooks.models import WebhookKind

    def on_publish(session: Session, event: Event) -> None:
        revision = session.get(ProductRevision, event.data.get("revision"))
        if revision is None:
            return
        product = revision.product
        manifest = revision.manifest or {}
        org, slug = event.namespace or "", product.slug
        data = {
            "publisher": org,
            "product": slug,
            "name": manifest.get("name") or slug,
            "revision": revision.number,
            "url": f"{runtime.settings.public_url}/products/{org}/{slug}",
        }
        runtime.services(session).webhooks.emit(
            WebhookKind.PRODUCT_PUBLISHED, publisher_id=product.publisher_id, product_id=product.id, data=data
        )

    bus.subscribe(EventTag.PRODUCT_PUBLISH, on_publish)
