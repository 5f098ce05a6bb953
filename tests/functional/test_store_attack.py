"""Attacks on the storefront that once worked, each kept as a test: a customer undoing a revocation by
getting the tier again, a publisher breaking customers' pulls by unlinking a pinned blob from the staging
repository (gc then frees its bytes), a withdrawn (revoked) product still handing out new entitlements, an
out-of-range entitlement id answered with a 500, and organisations taking the names reserved for the store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD, make_org, make_user
from tests.support.pages import csrf_token, sign_in
from tests.support.registry_client import (
    assert_api_error,
    assert_oci_error,
    basic_auth,
    bearer,
    get_token,
)
from tests.support.review_world import World
from tests.support.store_world import MANIFEST_TYPES, as_user, published_world
from tests.support.store_world import store_path as store

from dockyard.entitlements.models import Entitlement
from dockyard.errors import Conflict
from dockyard.store.models import Listing
from dockyard.web.context import AppState


@pytest.fixture
def world(app_state: AppState, tmp_path: Path) -> World:
    return published_world(app_state, tmp_path / "feed")


def get_community(client: TestClient, world: World, username: str):
    return client.post(
        "/api/v1/entitlements",
        headers=basic_auth(username, PASSWORD),
        json={"publisher": world.org, "product": world.slug, "tier": "Community", "accept_license": True},
    )


def pull_token(client: TestClient, name: str, username: str, actions: str = "pull") -> str:
    return get_token(client, f"repository:{name}:{actions}", username, PASSWORD)


def test_a_revoked_entitlement_cannot_be_got_again_but_a_cancelled_one_can(
    client: TestClient, app_state: AppState, world: World
) -> None:
    customer = world.users["customer"]
    got = get_community(client, world, customer)
    assert got.status_code == 201, got.text
    eid = got.json()["id"]
    revoked = client.post(
        f"/api/v1/entitlements/{eid}/revoke",
        headers=basic_auth(world.users["maintainer"], PASSWORD),
        json={"reason": "resold our images"},
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    # The attack: get the same free tier again, and pull as before.
    again = get_community(client, world, customer)
    assert_api_error(again, 403)
    with app_state.sessions() as s:
        assert s.get(Entitlement, eid).status == "revoked"
    token = pull_token(client, store(world), customer)
    r = client.get(f"/v2/{store(world)}/manifests/16", headers=bearer(token, {"Accept": MANIFEST_TYPES}))
    assert r.status_code == 401
    # The page says so beside the form instead of re-activating it.
    assert sign_in(client, customer, PASSWORD).status_code == 303
    path = f"/products/{world.org}/{world.slug}/get"
    token = csrf_token(client, path + "?tier=Community")
    page = client.post(
        path,
        data={"tier": "Community", "accept_license": "on", "csrf_token": token},
        follow_redirects=False,
    )
    assert page.status_code == 403 and "revoked" in page.text
    mine = client.get("/ui/subscriptions").text
    assert "it was revoked" in mine and "Get it again" not in mine
    # A customer's own cancellation is theirs to undo.
    other = make_customer(app_state)
    eid2 = get_community(client, world, other).json()["id"]
    assert (
        client.delete(f"/api/v1/entitlements/{eid2}", headers=basic_auth(other, PASSWORD)).status_code == 204
    )
    back = get_community(client, world, other)
    assert back.status_code == 201 and back.json()["id"] == eid2 and back.json()["status"] == "active"


def make_customer(app_state: AppState) -> str:
    from tests.support.factories import unique

    with app_state.sessions.begin() as s:
        return make_user(s, unique("buyer")).username


def test_a_publisher_cannot_unlink_a_pinned_blob_from_under_its_customers(
    client: TestClient, app_state: AppState, world: World
) -> None:
    customer, name = world.users["customer"], store(world)
    assert get_community(client, world, customer).status_code == 201
    token = pull_token(client, name, customer)
    manifest = client.get(f"/v2/{name}/manifests/16", headers=bearer(token, {"Accept": MANIFEST_TYPES}))
    assert manifest.status_code == 200
    blobs = [b["digest"] for b in [manifest.json()["config"], *manifest.json()["layers"]]]
    staging = f"{world.org}/db-server"
    owner = pull_token(client, staging, world.users["owner"], "pull,push,delete")
    for digest in blobs:
        refused = client.delete(f"/v2/{staging}/blobs/{digest}", headers=bearer(owner))
        error = assert_oci_error(refused, 403, "DENIED")
        assert f"{world.org}/{world.slug}" in error["message"]
        r = client.get(f"/v2/{name}/blobs/{digest}", headers=bearer(token), follow_redirects=False)
        assert r.status_code in (200, 307), (digest, r.text)
    # A blob no pin reaches is the publisher's to delete, as before.
    from tests.support.scanimages import Images, file_layer

    with app_state.sessions.begin() as s:
        newer = Images(s, app_state.blobs, app_state.bus).image(
            staging, "17", [file_layer("new.txt", "not pinned")]
        )
    loose = json.loads(client.get(f"/v2/{staging}/manifests/{newer.digest}", headers=bearer(owner)).content)[
        "layers"
    ][0]["digest"]
    assert client.delete(f"/v2/{staging}/blobs/{loose}", headers=bearer(owner)).status_code == 202


def test_a_withdrawn_product_offers_no_tier(client: TestClient, app_state: AppState, world: World) -> None:
    customer = world.users["customer"]
    with app_state.sessions.begin() as s:
        s.execute(
            update(Listing)
            .where(Listing.publisher_slug == world.org, Listing.product_slug == world.slug)
            .values(status="revoked", status_reason="a month on hold")
        )
    assert_api_error(get_community(client, world, customer), 404)
    assert sign_in(client, customer, PASSWORD).status_code == 303
    assert client.get(f"/products/{world.org}/{world.slug}/get?tier=Community").status_code == 404
    with app_state.sessions() as s:
        assert s.query(Entitlement).count() == 0


def test_an_entitlement_id_out_of_range_is_unknown_not_a_server_error(
    client: TestClient, world: World
) -> None:
    customer = world.users["customer"]
    assert sign_in(client, customer, PASSWORD).status_code == 303
    token = csrf_token(client, "/ui/subscriptions")
    for eid in ("99999999999999999999999", "2147483648"):
        r = client.post(f"/ui/subscriptions/{eid}/cancel", data={"csrf_token": token}, follow_redirects=False)
        assert r.status_code == 404, (eid, r.status_code)


@pytest.mark.parametrize("name", ["official", "dockyard", "library", "security", "support", "v2", "store"])
def test_organisations_cannot_take_the_reserved_names(
    client: TestClient, app_state: AppState, name: str
) -> None:
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    r = client.post("/api/v1/orgs", headers=basic_auth(user, PASSWORD), json={"name": name})
    assert_api_error(r, 409)
    with app_state.sessions.begin() as s, pytest.raises(Conflict, match="reserved"):
        make_org(s, name)


def test_as_user_is_the_service_path_too(app_state: AppState, world: World) -> None:
    """The service refuses the re-get itself (the CLI and jobs go through it too)."""
    from dockyard.errors import Forbidden

    customer = world.users["customer"]
    eid = as_user(
        app_state,
        customer,
        lambda sv, p, a: (
            sv.entitlements.get_tier(world.org, world.slug, "Community", p, a, accept_license=True).id
        ),
    )
    as_user(app_state, world.users["admin"], lambda sv, p, a: sv.entitlements.revoke(eid, p, a, "chargeback"))
    with pytest.raises(Forbidden, match="revoked"):
        as_user(
            app_state,
            customer,
            lambda sv, p, a: sv.entitlements.get_tier(
                world.org, world.slug, "Community", p, a, accept_license=True
            ),
        )
