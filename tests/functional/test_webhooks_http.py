"""The webhooks API and pages over HTTP: who may manage which endpoints, the secret shown once, the error
envelope, a ping seen in the delivery log, and a redelivery from the page. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.support.accounts import browser, post, run_jobs
from tests.support.factories import PASSWORD, make_org, make_user
from tests.support.webhook_receiver import Receiver, running_receiver, settings_reaching_loopback

from dockyard.config import Settings
from dockyard.web.context import AppState
from dockyard.webhooks.models import WebhookAttempt, WebhookEndpoint


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return settings_reaching_loopback(tmp_path, database_url)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


def people(state: AppState) -> dict[str, str]:
    with state.sessions.begin() as s:
        names = {role: make_user(s).username for role in ("owner", "member", "outsider", "customer")}
        names["org"] = make_org(s, owner=names["owner"], members={names["member"]: "maintainer"})
        return names


def test_publisher_webhooks_are_the_owners(
    client: TestClient, app_state: AppState, receiver: Receiver
) -> None:
    p = people(app_state)
    base = f"/api/v1/publishers/{p['org']}/webhooks"
    body = {"url": receiver.url(), "kinds": ["product.hold", "finding.created"], "description": "CI"}
    r = client.post(base, json=body, auth=(p["owner"], PASSWORD))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_") and created["owner"] == f"publisher:{p['org']}"
    assert created["kinds"] == ["finding.created", "product.hold"]
    listed = client.get(base, auth=(p["owner"], PASSWORD)).json()
    assert [w["id"] for w in listed] == [created["id"]] and "secret" not in listed[0]

    # A member sees the organisation but may not manage its webhooks; an outsider is told it does not exist,
    # exactly as for an organisation that does not.
    assert client.get(base, auth=(p["member"], PASSWORD)).status_code == 403
    hidden = client.get(base, auth=(p["outsider"], PASSWORD))
    missing = client.get("/api/v1/publishers/nosuchorg/webhooks", auth=(p["outsider"], PASSWORD))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == {
        "error": {**missing.json()["error"], "message": f"organisation {p['org']!r} not found"}
    }
    one = f"{base}/{created['id']}"
    assert client.delete(one, auth=(p["outsider"], PASSWORD)).status_code == 404
    assert client.delete(one, auth=(p["member"], PASSWORD)).status_code == 403

    # Ping, then the log shows the attempt and the receiver's answer.
    receiver.secret = created["secret"]
    r = client.post(one + "/ping", auth=(p["owner"], PASSWORD))
    assert r.status_code == 202
    run_jobs(client.app, app_state)
    assert receiver.received[0].verified
    log = client.get(one + "/deliveries", auth=(p["owner"], PASSWORD)).json()
    assert log[0]["kind"] == "ping" and log[0]["status"] == "delivered"
    assert (
        log[0]["attempts"][0]["status_code"] == 200
        and log[0]["attempts"][0]["response_excerpt"] == '{"ok": true}'
    )

    # A new secret signs from now on.
    rotated = client.post(one + "/secret", auth=(p["owner"], PASSWORD)).json()
    assert rotated["secret"] != created["secret"]
    receiver.secret = rotated["secret"]
    r = client.post(f"{one}/deliveries/{log[0]['id']}/redeliver", auth=(p["owner"], PASSWORD))
    assert r.status_code == 202
    run_jobs(client.app, app_state)
    assert receiver.received[1].verified and receiver.received[1].json["id"] == log[0]["event_id"]

    r = client.patch(one, json={"active": False, "description": "paused"}, auth=(p["owner"], PASSWORD))
    assert r.json()["active"] is False and r.json()["description"] == "paused"
    assert client.delete(one, auth=(p["owner"], PASSWORD)).status_code == 204
    assert client.get(one, auth=(p["owner"], PASSWORD)).status_code == 404


def test_a_customers_webhooks_and_the_error_envelope(client: TestClient, app_state: AppState) -> None:
    p = people(app_state)
    auth = (p["customer"], PASSWORD)
    r = client.post(
        "/api/v1/me/webhooks", json={"url": "http://127.0.0.1:9/h", "kinds": ["finding.created"]}, auth=auth
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID"
    assert r.json()["error"]["detail"] == [
        {
            "field": "kinds",
            "message": "finding events go to the product's publisher only: choose product events",
        }
    ]
    r = client.post("/api/v1/me/webhooks", json={"url": "ftp://x", "kinds": ["product.hold"]}, auth=auth)
    assert r.status_code == 400 and r.json()["error"]["detail"][0]["field"] == "url"
    r = client.post(
        "/api/v1/me/webhooks", json={"url": "http://127.0.0.1:9/h", "kinds": ["product.hold"]}, auth=auth
    )
    assert r.status_code == 201
    mine = r.json()["id"]
    # Someone else's endpoint is not there for another user.
    other = (p["outsider"], PASSWORD)
    assert client.get(f"/api/v1/me/webhooks/{mine}", auth=other).status_code == 404
    assert client.get("/api/v1/me/webhooks", auth=other).json() == []
    assert client.get("/api/v1/me/webhooks").status_code == 401


def test_the_pages(app: Any, app_state: AppState, receiver: Receiver) -> None:
    p = people(app_state)
    with browser(app, p["customer"], PASSWORD) as c:
        assert 'href="/ui/account/webhooks"' in c.get("/ui/account").text
        page = c.get("/ui/account/webhooks")
        assert page.status_code == 200 and "finding.created" not in page.text  # not offered to customers
        refused = post(c, "/ui/account/webhooks", {"url": "", "kinds": []})
        assert refused.status_code == 400
        assert "Enter the URL that should receive the events." in refused.text
        assert "Choose at least one kind of event." in refused.text
        r = post(
            c,
            "/ui/account/webhooks",
            {"url": receiver.url(), "kinds": ["product.hold", "product.revoked"], "active": "on"},
        )
        assert r.status_code == 201, r.text[:2000]
        secret = re.search(r"<code>(whsec_[A-Za-z0-9_-]+)</code>", r.text)
        assert secret, "the secret is shown in the answer to the form"
        receiver.secret = secret.group(1)
        again = c.get("/ui/account/webhooks").text
        assert secret.group(1) not in again and receiver.url() in again
        with app_state.sessions() as s:
            endpoint_id = s.scalar(select(WebhookEndpoint.id))
        one = f"/ui/account/webhooks/{endpoint_id}"
        assert post(c, one + "/ping").status_code == 303
        run_jobs(app, app_state)
        detail = c.get(one).text
        assert "HTTP 200" in detail and "Redeliver" in detail and "ping" in detail
        action = re.search(r'action="(/ui/account/webhooks/\d+/deliveries/\d+/redeliver)"', detail)
        assert action
        assert post(c, action.group(1)).status_code == 303
        run_jobs(app, app_state)
        assert len(receiver.received) == 2 and all(x.verified for x in receiver.received)
        with app_state.sessions() as s:
            assert [a.manual for a in s.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id))] == [
                False,
                True,
            ]
        # Another user gets the 404 page for it.
    with browser(app, p["outsider"], PASSWORD) as c:
        assert c.get(one).status_code == 404
    with browser(app, p["owner"], PASSWORD) as c:
        assert f'href="/ui/orgs/{p["org"]}/webhooks"' in c.get(f"/ui/orgs/{p['org']}/publisher").text
        page = c.get(f"/ui/orgs/{p['org']}/webhooks")
        assert page.status_code == 200 and "finding.created" in page.text
    with browser(app, p["member"], PASSWORD) as c:
        assert c.get(f"/ui/orgs/{p['org']}/webhooks").status_code == 403


def test_an_id_past_the_integer_column_is_a_404_on_the_pages(app, app_state: AppState) -> None:  # type: ignore[no-untyped-def]
    from tests.support.accounts import browser, post
    from tests.support.factories import PASSWORD, make_user

    with app_state.sessions.begin() as s:
        name = make_user(s).username
    with browser(app, name, PASSWORD) as c:
        huge = "99999999999999999999"
        assert c.get(f"/ui/account/webhooks/{huge}").status_code == 404
        assert post(c, f"/ui/account/webhooks/{huge}/ping").status_code == 404
        assert post(c, f"/ui/account/webhooks/1/deliveries/{huge}/redeliver").status_code == 404
