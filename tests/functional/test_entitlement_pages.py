"""The get-a-tier page and "My subscriptions" (sign-in, CSRF, the licence checkbox, paid tiers, cancel, the
commands shown), and the entitlements API (list, get, cancel, revoke, errors in the envelope)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD
from tests.support.pages import csrf_token, sign_in
from tests.support.registry_client import assert_api_error
from tests.support.review_world import World
from tests.support.store_world import published_world

from dockyard.entitlements.models import Entitlement
from dockyard.web.context import AppState


@pytest.fixture
def world(app_state: AppState, tmp_path: Path) -> World:
    return published_world(app_state, tmp_path / "feed")


def get_path(world: World) -> str:
    return f"/products/{world.org}/{world.slug}/get"


def test_the_get_page_needs_a_sign_in_and_comes_back_with_the_tier(client: TestClient, world: World) -> None:
    r = client.get(get_path(world) + "?tier=Community", follow_redirects=False)
    assert r.status_code == 303
    assert (
        r.headers["location"]
        == f"/ui/login?next=%2Fproducts%2F{world.org}%2F{world.slug}%2Fget%3Ftier%3DCommunity"
    )
    assert (
        client.get("/ui/subscriptions", follow_redirects=False)
        .headers["location"]
        .startswith("/ui/login?next=")
    )


def test_getting_a_free_tier_from_the_page(client: TestClient, app_state: AppState, world: World) -> None:
    customer = world.users["customer"]
    assert sign_in(client, customer, PASSWORD).status_code == 303
    page = client.get(get_path(world) + "?tier=Community")
    assert page.status_code == 200
    html = page.text
    assert "Free" in html and "https://acme.example/eula" in html and "I accept the licence" in html
    assert 'name="notify_security" checked' in html
    assert client.get(get_path(world) + "?tier=Gold").status_code == 404
    # Without the CSRF token: refused, nothing created.
    r = client.post(
        get_path(world), data={"tier": "Community", "accept_license": "on"}, follow_redirects=False
    )
    assert r.status_code == 403
    token = csrf_token(client, get_path(world) + "?tier=Community")
    r = client.post(get_path(world), data={"tier": "Community", "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 400 and "Accept the licence to get this tier." in r.text
    with app_state.sessions() as s:
        assert s.query(Entitlement).count() == 0
    r = client.post(
        get_path(world),
        data={"tier": "Community", "accept_license": "on", "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/subscriptions#entitlement-")
    with app_state.sessions() as s:
        row = s.query(Entitlement).one()
        assert (row.status, row.notify_security, row.license_url) == (
            "active",
            False,
            "https://acme.example/eula",
        )
    subs = client.get("/ui/subscriptions").text
    ref = f"127.0.0.1:5999/store/{world.org}/{world.slug}/server"
    for command in (
        "docker login 127.0.0.1:5999",
        "podman login --tls-verify=false 127.0.0.1:5999",
        f"docker pull {ref}:16",
        f"skopeo copy --src-tls-verify=false docker://{ref}:16 oci:server:16",
    ):
        assert command in subs, command
    assert "db-server" not in subs  # the staging repository is never shown
    assert 'name="scopes" value="pull"' in subs
    # Cancel (CSRF again).
    token = csrf_token(client, "/ui/subscriptions")
    r = client.post(f"/ui/subscriptions/{row.id}/cancel", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    with app_state.sessions() as s:
        assert s.get(Entitlement, row.id).status == "cancelled"
    assert f"docker pull {ref}:16" not in client.get("/ui/subscriptions").text


def test_a_paid_tier_shows_its_price_and_says_payment_is_not_available(
    client: TestClient, world: World
) -> None:
    sign_in(client, world.users["customer"], PASSWORD)
    html = client.get(get_path(world) + "?tier=Enterprise").text
    assert "49.00 USD per month" in html and "Payment is not yet available" in html
    assert "disabled" in html and "I accept the licence" not in html
    token = csrf_token(client, get_path(world) + "?tier=Enterprise")
    r = client.post(get_path(world), data={"tier": "Enterprise", "accept_license": "on", "csrf_token": token})
    assert r.status_code == 409 and "payment is not yet available" in r.text


def test_the_entitlements_api(client: TestClient, app_state: AppState, world: World) -> None:
    customer = (world.users["customer"], PASSWORD)
    body = {"publisher": world.org, "product": world.slug, "tier": "Community", "accept_license": True}
    assert_api_error(client.post("/api/v1/entitlements", json=body), 401)
    refused = client.post("/api/v1/entitlements", json={**body, "accept_license": False}, auth=customer)
    assert assert_api_error(refused, 400)["detail"][0]["field"] == "accept_license"
    paid = client.post("/api/v1/entitlements", json={**body, "tier": "Enterprise"}, auth=customer)
    assert assert_api_error(paid, 409, "PAYMENT_UNAVAILABLE")
    r = client.post("/api/v1/entitlements", json={**body, "notify_security": False}, auth=customer)
    assert r.status_code == 201, r.text
    got = r.json()
    assert (got["tier"], got["status"], got["notify_security"]) == ("Community", "active", False)
    assert got["images"] == [
        {"image": "server", "reference": f"store/{world.org}/{world.slug}/server", "tags": ["16"]}
    ]
    listed = client.get("/api/v1/entitlements", auth=customer).json()["entitlements"]
    assert [e["id"] for e in listed] == [got["id"]]
    revoke = f"/api/v1/entitlements/{got['id']}/revoke"
    assert_api_error(client.post(revoke, json={"reason": "x"}, auth=(world.users["outsider"], PASSWORD)), 404)
    r = client.post(revoke, json={"reason": "abuse"}, auth=(world.users["owner"], PASSWORD))
    assert r.status_code == 200 and r.json()["status"] == "revoked" and r.json()["images"] == []
    assert_api_error(client.delete(f"/api/v1/entitlements/{got['id']}", auth=customer), 409)
    # Getting it again does not undo the revocation (a cancelled one is re-activated: test_store_attack).
    assert_api_error(client.post("/api/v1/entitlements", json=body, auth=customer), 403)
    assert_api_error(
        client.delete(f"/api/v1/entitlements/{got['id']}", auth=(world.users["outsider"], PASSWORD)), 404
    )
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert {"/entitlements", "/entitlements/{entitlement_id}", "/entitlements/{entitlement_id}/revoke"} <= {
        p.removeprefix("/api/v1") for p in paths
    }
