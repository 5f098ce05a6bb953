"""Webhooks end to end on the real parts: endpoints made through the service, events emitted in a
transaction, the delivery jobs run by a real worker, and a real HTTP receiver on loopback that checks every
signature with ``verify_signature``. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from tests.support.factories import make_org, make_user
from tests.support.review_world import make_publisher
from tests.support.webhook_receiver import Receiver, running_receiver, settings_reaching_loopback

from dockyard.config import Settings
from dockyard.db import utcnow
from dockyard.entitlements.models import Entitlement
from dockyard.errors import Invalid, NotFound
from dockyard.events import Actor
from dockyard.jobs import Job, JobRegistry, Worker
from dockyard.publishing.models import Product
from dockyard.web.context import AppState
from dockyard.webhooks import jobs as webhook_jobs
from dockyard.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookKind
from dockyard.webhooks.services import DELIVER_JOB, Owner
from dockyard.webhooks.signing import secret_box, verify_signature

ACTOR = Actor(name="tester", kind="user")
ALL = [k.value for k in WebhookKind]
PRODUCT_KINDS = [k.value for k in WebhookKind if k.value.startswith("product.")]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return settings_reaching_loopback(tmp_path, database_url)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


@dataclasses.dataclass
class Shop:
    publisher: Owner
    product_id: int
    customers: dict[str, Owner]  # entitled (active), cancelled, stranger


@pytest.fixture
def shop(app_state: AppState) -> Shop:
    app_state.jobs  # noqa: B018 - wired as the server does
    with app_state.sessions.begin() as s:
        org = make_org(s)
        publisher = make_publisher(s, org)
        product = Product(publisher_id=publisher.id, slug="db")
        s.add(product)
        s.flush()
        customers = {}
        for name, status in (("entitled", "active"), ("cancelled", "cancelled"), ("stranger", None)):
            user = make_user(s)
            customers[name] = Owner("user", user.id, user.username)
            if status:
                s.add(Entitlement(user_id=user.id, product_id=product.id, tier="Community", status=status))
        return Shop(Owner("publisher", publisher.id, org), product.id, customers)


def create(state: AppState, owner: Owner, url: str, kinds: list[str] | None = None) -> tuple[int, str]:
    with state.sessions.begin() as s:
        endpoint, secret = state.services(s).webhooks.create(owner, url=url, kinds=kinds or ALL, actor=ACTOR)
        return endpoint.id, secret


def emit(state: AppState, kind: WebhookKind, shop: Shop, **data: Any) -> int:
    with state.sessions.begin() as s:
        return state.services(s).webhooks.emit(
            kind, publisher_id=shop.publisher.id, product_id=shop.product_id, data=data or {"product": "db"}
        )


def run_jobs(state: AppState) -> int:
    return Worker(state.sessions, state.jobs, bus=state.bus, services=state.services).run_until_idle()


def attempts(state: AppState, endpoint_id: int) -> list[WebhookAttempt]:
    with state.sessions() as s:
        return list(
            s.scalars(
                select(WebhookAttempt)
                .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
                .where(WebhookDelivery.endpoint_id == endpoint_id)
                .order_by(WebhookAttempt.id)
            )
        )


def delivery_of(state: AppState, endpoint_id: int) -> WebhookDelivery:
    with state.sessions() as s:
        rows = list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)))
        assert len(rows) == 1, rows
        return rows[0]


def due_now(state: AppState) -> None:
    """Time passes: every queued job is due (the backoff itself is checked on the stored times)."""
    with state.sessions.begin() as s:
        s.execute(update(Job).where(Job.status == "queued").values(run_after=utcnow()))


# -- delivery ----------------------------------------------------------------------------------------------
def test_an_emitted_event_is_delivered_signed(app_state: AppState, shop: Shop, receiver: Receiver) -> None:
    endpoint_id, secret = create(app_state, shop.publisher, receiver.url())
    receiver.secret = secret
    assert secret.startswith("whsec_")
    with app_state.sessions() as s:  # only the sealed secret is stored
        assert secret not in s.get(WebhookEndpoint, endpoint_id).secret_sealed

    assert emit(app_state, WebhookKind.PRODUCT_HOLD, shop, product="db", reason="CVE-2031-0001 overdue") == 1
    assert receiver.received == []  # queued, not sent from the transaction
    run_jobs(app_state)

    [got] = receiver.received
    assert got.verified
    assert got.path == "/hooks/dockyard"
    body = got.json
    assert body["type"] == "product.hold"
    assert body["data"] == {"product": "db", "reason": "CVE-2031-0001 overdue"}
    assert body["id"].startswith("evt_") and got.headers["dockyard-delivery"] == body["id"]
    assert got.headers["dockyard-event"] == "product.hold"
    assert dt.datetime.fromisoformat(body["created_at"].replace("Z", "+00:00")).tzinfo is not None
    # The signature covers the body: a changed byte, another secret or a replay later are all refused.
    header = got.headers["dockyard-signature"]
    assert not verify_signature(secret, header, got.body.replace(b"hold", b"held"))
    assert not verify_signature(secret + "x", header, got.body)
    t = int(header.split(",")[0].removeprefix("t="))
    assert verify_signature(secret, header, got.body, now=t + 299)
    assert not verify_signature(secret, header, got.body, now=t + 301)

    [attempt] = attempts(app_state, endpoint_id)
    assert (attempt.ok, attempt.status_code, attempt.response_excerpt) == (True, 200, '{"ok": true}')
    assert delivery_of(app_state, endpoint_id).status == "delivered"


def test_a_failure_is_retried_with_the_backoff(app_state: AppState, shop: Shop, receiver: Receiver) -> None:
    receiver.statuses = [500, 200]
    receiver.answer = b"x" * 5000  # only 2 KiB of an answer is kept
    endpoint_id, receiver.secret = create(app_state, shop.publisher, receiver.url())
    emit(app_state, WebhookKind.PRODUCT_REVOKED, shop)
    run_jobs(app_state)

    [first] = attempts(app_state, endpoint_id)
    assert (first.ok, first.status_code, len(first.response_excerpt)) == (False, 500, 2048)
    delivery = delivery_of(app_state, endpoint_id)
    assert delivery.status == "pending" and delivery.attempts == 1
    assert delivery.next_attempt_at == first.at + dt.timedelta(minutes=1)
    with app_state.sessions() as s:
        [job] = s.scalars(select(Job).where(Job.kind == DELIVER_JOB, Job.status == "queued"))
        assert abs((job.run_after - delivery.next_attempt_at).total_seconds()) < 2
    assert run_jobs(app_state) == 0  # not due yet
    assert len(receiver.received) == 1

    due_now(app_state)
    run_jobs(app_state)
    assert [a.status_code for a in attempts(app_state, endpoint_id)] == [500, 200]
    assert [a.number for a in attempts(app_state, endpoint_id)] == [1, 2]
    assert delivery_of(app_state, endpoint_id).status == "delivered"
    first_id, second_id = (r.json["id"] for r in receiver.received)
    assert first_id == second_id  # the same event: receivers drop the duplicate
    assert all(r.verified for r in receiver.received)


def test_a_receiver_that_fails_twice_gets_the_event_on_the_third_attempt(
    app_state: AppState, shop: Shop, receiver: Receiver
) -> None:
    receiver.statuses = [502, 500, 204]
    endpoint_id, receiver.secret = create(app_state, shop.publisher, receiver.url())
    emit(app_state, WebhookKind.PRODUCT_HOLD, shop)
    run_jobs(app_state)
    for _ in range(2):
        due_now(app_state)
        run_jobs(app_state)
    made = attempts(app_state, endpoint_id)
    assert [a.status_code for a in made] == [502, 500, 204]
    assert (
        made[1].at - made[0].at >= dt.timedelta(0)
        and delivery_of(app_state, endpoint_id).status == "delivered"
    )
    assert len({r.json["id"] for r in receiver.received}) == 1 and all(r.verified for r in receiver.received)


def test_every_retry_fails_then_the_delivery_has_failed(
    app_state: AppState, shop: Shop, receiver: Receiver
) -> None:
    receiver.statuses = [503]
    endpoint_id, receiver.secret = create(app_state, shop.publisher, receiver.url())
    emit(app_state, WebhookKind.PRODUCT_HOLD, shop)
    run_jobs(app_state)
    for _ in range(webhook_jobs.MAX_ATTEMPTS):
        due_now(app_state)
        run_jobs(app_state)
    rows = attempts(app_state, endpoint_id)
    assert len(rows) == webhook_jobs.MAX_ATTEMPTS == 6
    gaps = [(b.at - a.at) for a, b in itertools.pairwise(rows)]
    assert all(gap < dt.timedelta(seconds=60) for gap in gaps)  # due_now: the schedule is the job rows
    delivery = delivery_of(app_state, endpoint_id)
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    with app_state.sessions() as s:
        assert s.get(WebhookEndpoint, endpoint_id).consecutive_failures == 1


def test_a_receiver_that_does_not_answer_in_time(
    app_state: AppState, shop: Shop, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhook_jobs, "TIMEOUT", 0.5)
    receiver.delay = 2
    endpoint_id, receiver.secret = create(app_state, shop.publisher, receiver.url())
    emit(app_state, WebhookKind.PRODUCT_HOLD, shop)
    run_jobs(app_state)
    [attempt] = attempts(app_state, endpoint_id)
    assert attempt.status_code is None and attempt.error == "timed out after 0.5 s"
    assert 400 <= attempt.duration_ms < 1900
    assert delivery_of(app_state, endpoint_id).status == "pending"  # retried later


def test_redelivery_sends_the_same_event_again(app_state: AppState, shop: Shop, receiver: Receiver) -> None:
    endpoint_id, receiver.secret = create(app_state, shop.publisher, receiver.url())
    emit(app_state, WebhookKind.PRODUCT_PUBLISHED, shop)
    run_jobs(app_state)
    delivery = delivery_of(app_state, endpoint_id)
    with app_state.sessions.begin() as s:
        app_state.services(s).webhooks.redeliver(shop.publisher, endpoint_id, delivery.id, ACTOR)
    run_jobs(app_state)
    assert [r.json["id"] for r in receiver.received] == [delivery.event_id] * 2
    assert receiver.received[0].body == receiver.received[1].body
    assert [(a.number, a.manual, a.ok) for a in attempts(app_state, endpoint_id)] == [
        (1, False, True),
        (2, True, True),
    ]
    # Another owner cannot redeliver it: the endpoint is not theirs, as if missing.
    with app_state.sessions.begin() as s, pytest.raises(NotFound):
        stranger = shop.customers["stranger"]
        app_state.services(s).webhooks.redeliver(stranger, endpoint_id, delivery.id, ACTOR)


def test_ping(app_state: AppState, shop: Shop, receiver: Receiver) -> None:
    endpoint_id, receiver.secret = create(
        app_state, shop.customers["stranger"], receiver.url(), PRODUCT_KINDS
    )
    with app_state.sessions.begin() as s:
        app_state.services(s).webhooks.ping(shop.customers["stranger"], endpoint_id, ACTOR)
    run_jobs(app_state)
    [got] = receiver.received
    assert got.verified and got.json["type"] == "ping" and got.headers["dockyard-event"] == "ping"
    assert delivery_of(app_state, endpoint_id).status == "delivered"


# -- the audience ------------------------------------------------------------------------------------------
def test_who_gets_what(app_state: AppState, shop: Shop) -> None:
    receivers = {name: Receiver().start() for name in ("publisher", "entitled", "cancelled", "stranger")}
    try:
        ids = {"publisher": create(app_state, shop.publisher, receivers["publisher"].url(), ALL)}
        for name in ("entitled", "cancelled", "stranger"):
            ids[name] = create(app_state, shop.customers[name], receivers[name].url(), PRODUCT_KINDS)
        for name, (_, secret) in ids.items():
            receivers[name].secret = secret
        # A second endpoint of the entitled customer, subscribed to holds only.
        only_hold = Receiver().start()
        _, only_hold.secret = create(app_state, shop.customers["entitled"], only_hold.url(), ["product.hold"])

        assert emit(app_state, WebhookKind.PRODUCT_HOLD, shop) == 3
        assert emit(app_state, WebhookKind.FINDING_CREATED, shop) == 1  # the publisher's only
        assert emit(app_state, WebhookKind.PRODUCT_HOLD_LIFTED, shop) == 2
        run_jobs(app_state)

        def kinds(r: Receiver) -> list[str]:
            assert all(x.verified for x in r.received)
            return sorted(x.json["type"] for x in r.received)

        assert kinds(receivers["publisher"]) == ["finding.created", "product.hold", "product.hold_lifted"]
        assert kinds(receivers["entitled"]) == ["product.hold", "product.hold_lifted"]
        assert kinds(only_hold) == ["product.hold"]
        assert kinds(receivers["cancelled"]) == [] and kinds(receivers["stranger"]) == []
        only_hold.stop()
    finally:
        for r in receivers.values():
            r.stop()


def test_customers_cannot_subscribe_to_findings(app_state: AppState, shop: Shop) -> None:
    with app_state.sessions.begin() as s, pytest.raises(Invalid) as refused:
        app_state.services(s).webhooks.create(
            shop.customers["entitled"], url="http://127.0.0.1/h", kinds=["finding.created"], actor=ACTOR
        )
    assert refused.value.detail == [
        {
            "field": "kinds",
            "message": "finding events go to the product's publisher only: choose product events",
        }
    ]


def test_inactive_endpoints_get_nothing(app_state: AppState, shop: Shop, receiver: Receiver) -> None:
    endpoint_id, receiver.secret = create(app_state, shop.publisher, receiver.url())
    with app_state.sessions.begin() as s:
        app_state.services(s).webhooks.update(shop.publisher, endpoint_id, {"active": False}, ACTOR)
    assert emit(app_state, WebhookKind.PRODUCT_HOLD, shop) == 0
    run_jobs(app_state)
    assert receiver.received == []


# -- the SSRF guard ----------------------------------------------------------------------------------------
def test_a_loopback_url_is_refused_at_creation(app_state: AppState, shop: Shop) -> None:
    guarded = dataclasses.replace(app_state.settings, webhook_allow_private=False)
    with app_state.sessions.begin() as s:
        service = app_state.services(s).webhooks
        service.settings = guarded
        for url in (
            "http://127.0.0.1:8080/h",
            "http://[::1]/h",
            "http://169.254.169.254/latest",
            "http://10.1.2.3/",
        ):
            with pytest.raises(Invalid) as refused:
                service.create(shop.publisher, url=url, kinds=ALL, actor=ACTOR)
            [problem] = refused.value.detail
            assert problem["field"] == "url" and "webhooks go to public addresses only" in problem["message"]
        service.settings = dataclasses.replace(guarded, webhook_allow_http=False)
        with pytest.raises(Invalid, match="use an https:// URL"):
            service.create(shop.publisher, url="http://example.org/h", kinds=ALL, actor=ACTOR)
    with app_state.sessions() as s:
        assert s.scalar(select(WebhookEndpoint.id)) is None


def test_a_name_resolving_to_loopback_is_refused_at_delivery(
    app_state: AppState, shop: Shop, receiver: Receiver
) -> None:
    # Saved while private targets were allowed (or DNS said otherwise then); delivered when they are not.
    endpoint_id, receiver.secret = create(app_state, shop.publisher, receiver.url(host="localhost"))
    emit(app_state, WebhookKind.PRODUCT_HOLD, shop)
    guarded = dataclasses.replace(app_state.settings, webhook_allow_private=False)
    registry = JobRegistry()
    box = secret_box(app_state.settings.data_dir / "keys")
    registry.job(DELIVER_JOB)(webhook_jobs.Deliverer(guarded, box, app_state.bus).run)
    Worker(app_state.sessions, registry, bus=app_state.bus).run_until_idle()
    [attempt] = attempts(app_state, endpoint_id)
    assert attempt.status_code is None and attempt.error is not None
    # One refusal for a name that resolves privately or not at all: no map of internal names to addresses.
    assert (
        "localhost does not resolve to a public address" in attempt.error and "127.0.0.1" not in attempt.error
    )
    assert receiver.received == []


# -- auto-disable ------------------------------------------------------------------------------------------
def test_an_endpoint_is_turned_off_after_many_failed_deliveries(
    app_state: AppState, shop: Shop, receiver: Receiver
) -> None:
    receiver.statuses = [500]
    endpoint_id, receiver.secret = create(app_state, shop.publisher, receiver.url())
    with app_state.sessions.begin() as s:  # nine deliveries failed before this one
        s.get(WebhookEndpoint, endpoint_id).consecutive_failures = webhook_jobs.AUTO_DISABLE_AFTER - 1
    emit(app_state, WebhookKind.PRODUCT_HOLD, shop)
    for _ in range(webhook_jobs.MAX_ATTEMPTS):
        run_jobs(app_state)
        due_now(app_state)
    with app_state.sessions() as s:
        endpoint = s.get(WebhookEndpoint, endpoint_id)
        assert not endpoint.active and "10 deliveries in a row failed" in (endpoint.disabled_reason or "")
    assert emit(app_state, WebhookKind.PRODUCT_HOLD, shop) == 0
    with app_state.sessions.begin() as s:  # turned on again: the note and the count are cleared
        app_state.services(s).webhooks.update(shop.publisher, endpoint_id, {"active": True}, ACTOR)
    with app_state.sessions() as s:
        endpoint = s.get(WebhookEndpoint, endpoint_id)
        assert endpoint.active and endpoint.disabled_reason is None and endpoint.consecutive_failures == 0


def test_publishing_a_revision_emits_product_published(
    app_state: AppState, receiver: Receiver, tmp_path: Path
) -> None:
    from tests.support.review_world import build_world
    from tests.support.store_world import publish

    app_state.jobs  # noqa: B018 - the subscribers wired, as the server does
    world = build_world(app_state, tmp_path / "feed")
    with app_state.sessions.begin() as s:
        publisher_id = s.get(
            Product, s.scalar(select(Product.id).where(Product.slug == world.slug))
        ).publisher_id
    _, receiver.secret = create(
        app_state, Owner("publisher", publisher_id, world.org), receiver.url(), ["product.published"]
    )
    publish(app_state, world)
    run_jobs(app_state)
    [got] = [r for r in receiver.received if r.json["type"] == "product.published"]
    assert got.verified
    assert got.json["data"]["publisher"] == world.org and got.json["data"]["product"] == world.slug
    assert got.json["data"]["url"].endswith(f"/products/{world.org}/{world.slug}")
