"""Store badges: granted and withdrawn by store-admins only, each with a reason, audited, and followed by the
listing's certified flag (search's certified filter); through the service, the API and the product page."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD
from tests.support.pages import sign_in, with_csrf
from tests.support.store_world import principal, published_world

from dockyard.audit.models import AuditEvent
from dockyard.errors import Forbidden, Invalid, NotFound
from dockyard.store.models import Listing, ProductBadge
from dockyard.web.context import AppState


@pytest.fixture
def world(app_state: AppState, tmp_path: Path):  # type: ignore[no-untyped-def]
    return published_world(app_state, tmp_path / "feed")


def certified(state: AppState, slug: str) -> bool:
    with state.sessions() as s:
        return bool(s.scalar(select(Listing.certified).where(Listing.product_slug == slug)))


def kinds(state: AppState, slug: str) -> set[str]:
    with state.sessions() as s:
        pid = s.scalar(select(Listing.product_id).where(Listing.product_slug == slug))
        return set(s.scalars(select(ProductBadge.kind).where(ProductBadge.product_id == pid)))


def audit(state: AppState, tag: str) -> list[AuditEvent]:
    with state.sessions() as s:
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.id)))
        for row in rows:
            s.expunge(row)
        return rows


def test_a_store_admin_grants_and_withdraws_with_reasons(app_state: AppState, world) -> None:  # type: ignore[no-untyped-def]
    with app_state.sessions.begin() as s:
        p, actor = principal(s, world.users["admin"])
        app_state.services(s).badges.grant(world.org, world.slug, "official", "made by Acme", p, actor)
    assert kinds(app_state, world.slug) == {"official"} and not certified(app_state, world.slug)
    with app_state.sessions.begin() as s:
        p, actor = principal(s, world.users["admin"])
        app_state.services(s).badges.grant(
            world.org, world.slug, "certified_container", "passed the checks", p, actor
        )
    assert certified(app_state, world.slug)
    [event] = [e for e in audit(app_state, "badge:grant") if e.data["kind"] == "certified_container"]
    assert event.actor_name == world.users["admin"] and event.namespace == world.org
    assert event.data == {"product": world.slug, "kind": "certified_container", "reason": "passed the checks"}
    with app_state.sessions.begin() as s:
        p, actor = principal(s, world.users["admin"])
        app_state.services(s).badges.withdraw(
            world.org, world.slug, "certified_container", "lapsed", p, actor
        )
    assert kinds(app_state, world.slug) == {"official"} and not certified(app_state, world.slug)
    [event] = audit(app_state, "badge:withdraw")
    assert event.data["reason"] == "lapsed"


@pytest.mark.parametrize("role", ["reviewer", "owner", "maintainer", "outsider"])
def test_only_store_admins_manage_badges(app_state: AppState, world, role: str) -> None:  # type: ignore[no-untyped-def]
    with app_state.sessions.begin() as s, pytest.raises(Forbidden):
        p, actor = principal(s, world.users[role])
        app_state.services(s).badges.grant(world.org, world.slug, "official", "because", p, actor)
    assert kinds(app_state, world.slug) == set() and audit(app_state, "badge:grant") == []


def test_a_reason_is_required_and_the_product_must_be_in_the_store(app_state: AppState, world) -> None:  # type: ignore[no-untyped-def]
    with app_state.sessions.begin() as s:
        p, actor = principal(s, world.users["admin"])
        badges = app_state.services(s).badges
        with pytest.raises(Invalid) as refused:
            badges.grant(world.org, world.slug, "official", "   ", p, actor)
        assert refused.value.detail[0]["field"] == "reason"
        with pytest.raises(Invalid):
            badges.grant(world.org, world.slug, "gold-star", "why not", p, actor)
        with pytest.raises(NotFound):
            badges.grant(world.other_org, "rival-db", "official", "not published", p, actor)
        with pytest.raises(NotFound):
            badges.withdraw(world.org, world.slug, "official", "never had it", p, actor)
    assert kinds(app_state, world.slug) == set()


def test_the_badges_api(client: TestClient, app_state: AppState, world) -> None:  # type: ignore[no-untyped-def]
    url = f"/api/v1/products/{world.org}/{world.slug}/badges/certified_plugin"
    admin = (world.users["admin"], PASSWORD)
    for role in ("reviewer", "owner", "maintainer", "outsider"):
        r = client.put(url, json={"reason": "please"}, auth=(world.users[role], PASSWORD))
        assert r.status_code == 403 and r.json()["error"]["code"] == "DENIED", role
    assert client.put(url, json={"reason": "please"}).status_code == 401
    r = client.put(url, json={"reason": ""}, auth=admin)
    assert r.status_code == 400 and r.json()["error"]["detail"][0]["field"] == "body.reason"
    assert client.put(url, json={}, auth=admin).status_code == 400
    r = client.put(url, json={"reason": "plugin suite passed"}, auth=admin)
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "Certified Plugin" and "plugin" in r.json()["meaning"]
    assert certified(app_state, world.slug)
    details = client.get(f"/api/v1/products/{world.org}/{world.slug}").json()
    assert [b["kind"] for b in details["badges"]] == ["certified_plugin"] and details["certified"] is True
    r = client.request(
        "DELETE", url, json={"reason": "plugin suite failed"}, auth=(world.users["owner"], PASSWORD)
    )
    assert r.status_code == 403
    r = client.request("DELETE", url, json={"reason": "plugin suite failed"}, auth=admin)
    assert r.status_code == 204 and not certified(app_state, world.slug)
    assert client.request("DELETE", url, json={"reason": "again"}, auth=admin).status_code == 404
    assert (
        client.put(url.replace("certified_plugin", "gold"), json={"reason": "x"}, auth=admin).status_code
        == 400
    )
    assert [e.data["reason"] for e in audit(app_state, "badge:withdraw")] == ["plugin suite failed"]


def test_the_product_page_manages_badges_for_store_admins_only(
    client: TestClient, app_state: AppState, world
) -> None:  # type: ignore[no-untyped-def]
    page = f"/products/{world.org}/{world.slug}"
    assert "Manage badges" not in client.get(page).text
    sign_in(client, world.users["reviewer"], PASSWORD)
    assert "Manage badges" not in client.get(page).text
    r = client.post(page + "/badges", data=with_csrf(client, {"kind": "official", "reason": "x"}, page))
    assert r.status_code == 403
    client.cookies.clear()
    sign_in(client, world.users["admin"], PASSWORD)
    assert "Manage badges" in client.get(page).text
    r = client.post(page + "/badges", data=with_csrf(client, {"kind": "official", "action": "grant"}, page))
    assert r.status_code == 400 and 'id="badge-reason-error"' in r.text and 'aria-invalid="true"' in r.text
    data = with_csrf(client, {"kind": "certified_container", "action": "grant", "reason": "passed"}, page)
    r = client.post(page + "/badges", data=data, follow_redirects=False)
    assert r.status_code == 303 and certified(app_state, world.slug)
    assert "Certified Container granted to this product." in client.get(page).text
    r = client.post(page + "/badges", data={"kind": "official", "reason": "no csrf"})
    assert r.status_code == 403 and kinds(app_state, world.slug) == {"certified_container"}
    data = with_csrf(client, {"kind": "certified_container", "action": "withdraw", "reason": "lapsed"}, page)
    client.post(page + "/badges", data=data)
    assert not certified(app_state, world.slug)
