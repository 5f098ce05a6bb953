"""Entitlements on a real database, registry and review: getting a free tier (licence recorded, re-getting
re-activates a cancelled row, never a revoked one), paid tiers refused, cancel and revoke (audited), and
pulling at the store path through /token and /v2 with the Python registry client: who is granted, what a
refusal looks like (the very answer a missing repository gets), pins (a later push changes nothing),
digests reachable from a pin only, the staging repository never named, download events, and pinned
manifests that cannot be deleted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD, make_org, make_user
from tests.support.registry_client import access_of, assert_oci_error, bearer, get_token, request_token
from tests.support.review_world import World
from tests.support.scanimages import Images, file_layer
from tests.support.store_world import MANIFEST_TYPES, as_user, publish, published_world, who
from tests.support.store_world import store_path as store

from dockyard.audit.models import AuditEvent
from dockyard.entitlements.models import DownloadEvent, Entitlement
from dockyard.entitlements.services import PaymentUnavailable
from dockyard.errors import Conflict, Forbidden, Invalid, NotFound
from dockyard.publishing.manifest import ManifestInvalid, parse_manifest
from dockyard.store.models import Listing
from dockyard.web.context import AppState


@pytest.fixture
def world(app_state: AppState, tmp_path: Path) -> World:
    return published_world(app_state, tmp_path / "feed")


def get_free(state: AppState, world: World, username: str | None = None, **kw) -> int:
    kw.setdefault("accept_license", True)
    return as_user(
        state,
        username or world.users["customer"],
        lambda sv, p, a: sv.entitlements.get_tier(world.org, world.slug, "Community", p, a, **kw).id,
    )


def token_for(client: TestClient, name: str, username: str | None, actions: str = "pull") -> str:
    return get_token(client, f"repository:{name}:{actions}", username, PASSWORD if username else None)


def pull(client: TestClient, name: str, ref: str, username: str | None, method: str = "GET"):
    token = token_for(client, name, username)
    return client.request(
        method, f"/v2/{name}/manifests/{ref}", headers=bearer(token, {"Accept": MANIFEST_TYPES})
    )


# -- the service ---------------------------------------------------------------------------------------
def test_getting_a_free_tier_records_the_licence_and_getting_it_again_reactivates_the_row(
    app_state: AppState, world: World
) -> None:
    customer = world.users["customer"]
    with pytest.raises(Invalid) as refused:
        get_free(app_state, world, accept_license=False)
    assert refused.value.detail == [
        {"field": "accept_license", "message": "Accept the licence to get this tier."}
    ]
    first = get_free(app_state, world, notify_security=False)
    with app_state.sessions() as s:
        row = s.get(Entitlement, first)
        assert (row.status, row.kind, row.tier) == ("active", "free", "Community")
        assert row.license_url == "https://acme.example/eula" and row.license_accepted_at is not None
        assert row.notify_security is False
    as_user(app_state, customer, lambda sv, p, a: sv.entitlements.cancel(first, p, a))
    with pytest.raises(Conflict):
        as_user(app_state, customer, lambda sv, p, a: sv.entitlements.cancel(first, p, a))
    assert get_free(app_state, world) == first  # the same row, active again, security mail on by default
    with app_state.sessions() as s:
        row = s.get(Entitlement, first)
        assert (row.status, row.notify_security, row.ended_at) == ("active", True, None)
        events = select(AuditEvent).where(AuditEvent.tag.like("entitlement:%")).order_by(AuditEvent.id)
        tags = [e.tag for e in s.scalars(events)]
    assert tags == ["entitlement:create", "entitlement:cancel", "entitlement:create"]
    listed = as_user(app_state, customer, lambda sv, p, a: sv.entitlements.list_for(p))
    assert [(e.id, e.tier, e.status, [(i.image, i.tags) for i in e.images]) for e in listed] == [
        (first, "Community", "active", [("server", ["16"])])
    ]


def test_a_paid_tier_says_payment_is_not_available_and_unknown_products_and_tiers_are_refused(
    app_state: AppState, world: World
) -> None:
    customer = world.users["customer"]
    with pytest.raises(PaymentUnavailable, match="payment is not yet available"):
        as_user(
            app_state,
            customer,
            lambda sv, p, a: sv.entitlements.get_tier(
                world.org, world.slug, "Enterprise", p, a, accept_license=True
            ),
        )
    with pytest.raises(Invalid, match="no tier named"):
        as_user(
            app_state,
            customer,
            lambda sv, p, a: sv.entitlements.get_tier(
                world.org, world.slug, "Gold", p, a, accept_license=True
            ),
        )
    with pytest.raises(NotFound):
        as_user(
            app_state,
            customer,
            lambda sv, p, a: sv.entitlements.get_tier(
                world.org, "nope", "Community", p, a, accept_license=True
            ),
        )


def test_revoking_needs_the_store_admin_or_the_publishers_editors_and_a_reason(
    app_state: AppState, world: World
) -> None:
    eid = get_free(app_state, world)
    for outsider in ("outsider", "reader", "customer", "reviewer"):
        with pytest.raises(NotFound):
            as_user(app_state, world.users[outsider], lambda sv, p, a: sv.entitlements.revoke(eid, p, a, "x"))
    with pytest.raises(Invalid, match="Say why"):
        as_user(app_state, world.users["maintainer"], lambda sv, p, a: sv.entitlements.revoke(eid, p, a, " "))
    as_user(app_state, world.users["maintainer"], lambda sv, p, a: sv.entitlements.revoke(eid, p, a, "abuse"))
    with app_state.sessions() as s:
        assert s.get(Entitlement, eid).status == "revoked"
        event = s.scalar(select(AuditEvent).where(AuditEvent.tag == "entitlement:revoke"))
        assert event.data["reason"] == "abuse" and event.actor_name == world.users["maintainer"]
    with pytest.raises(Forbidden, match="revoked"):  # getting it again does not undo a revocation
        get_free(app_state, world)
    with pytest.raises(Conflict, match="revoked already"):
        as_user(app_state, world.users["admin"], lambda sv, p, a: sv.entitlements.revoke(eid, p, a, "again"))


def test_only_a_free_tier_may_allow_anonymous_pulls(world: World) -> None:
    from tests.support.products import manifest

    data = manifest(world.org, logo=1, screenshots=[1])
    data["tiers"][1]["anonymous_pulls"] = True
    with pytest.raises(ManifestInvalid) as refused:
        parse_manifest(data)
    assert refused.value.problems[0].path == "tiers[1].anonymous_pulls"
    data["tiers"][1]["anonymous_pulls"] = False
    data["tiers"][0]["anonymous_pulls"] = True
    assert parse_manifest(data).tiers[0].anonymous_pulls is True


def test_store_names_are_reserved(app_state: AppState) -> None:
    with app_state.sessions.begin() as s:
        for name in ("store", "products", "publishers", "search"):
            with pytest.raises(Conflict, match="reserved"):
                make_org(s, name)
            with pytest.raises(Conflict, match="reserved"):
                make_user(s, name)


# -- the registry ----------------------------------------------------------------------------------------
def test_pull_at_the_store_path_needs_an_entitlement_and_a_refusal_is_a_missing_repositorys(
    client: TestClient, app_state: AppState, world: World
) -> None:
    customer, name = world.users["customer"], store(world)
    missing = f"store/{world.org}/{world.slug}/nothing"
    for user in (None, customer, world.users["outsider"]):
        token = token_for(client, name, user, "pull,push,delete")
        assert access_of(token)[("repository", name)] == []
        refused = pull(client, name, "16", user)
        like_missing = pull(client, missing, "16", user)
        assert refused.status_code == like_missing.status_code == 401
        assert refused.json() == like_missing.json()
        assert refused.headers["www-authenticate"].replace(name, "X") == like_missing.headers[
            "www-authenticate"
        ].replace(missing, "X")
    eid = get_free(app_state, world)
    token = token_for(client, name, customer, "pull,push,delete")
    assert access_of(token)[("repository", name)] == ["pull"]  # never push or delete
    got = pull(client, name, "16", customer)
    assert got.status_code == 200 and got.headers["docker-content-digest"] == world.server
    assert world.org + "/db-server" not in json.dumps(dict(got.headers))
    # The paid tier's image is not in Community: refused like a missing repository.
    assert pull(client, store(world, "agent"), "1.4", customer).status_code == 401
    # Members of the publisher and the store team pull without an entitlement.
    for role in ("reader", "reviewer", "admin"):
        assert pull(client, store(world, "agent"), "1.4", world.users[role]).status_code == 200, role
    # The blobs of the pinned image, and its tags (only the pinned ones).
    manifest = got.json()
    for blob in [manifest["config"], *manifest["layers"]]:
        r = client.get(
            f"/v2/{name}/blobs/{blob['digest']}",
            headers=bearer(token_for(client, name, customer)),
            follow_redirects=False,
        )
        assert r.status_code in (200, 307), r.text
        assert "db-server" not in r.headers.get("location", "")
    tags = client.get(f"/v2/{name}/tags/list", headers=bearer(token_for(client, name, customer)))
    assert tags.json() == {"name": name, "tags": ["16"]}
    # Revoked: the next token grants nothing.
    as_user(app_state, world.users["admin"], lambda sv, p, a: sv.entitlements.revoke(eid, p, a, "abuse"))
    assert pull(client, name, "16", customer).status_code == 401


def test_the_store_serves_the_pinned_digest_whatever_is_pushed_later_and_nothing_else(
    client: TestClient, app_state: AppState, world: World
) -> None:
    customer, name = world.users["customer"], store(world)
    get_free(app_state, world)
    with app_state.sessions.begin() as s:
        images = Images(s, app_state.blobs, app_state.bus)
        newer = images.image(f"{world.org}/db-server", "16", [file_layer("new.txt", "newer")]).digest
        other = images.image(f"{world.org}/db-server", "17", [file_layer("new.txt", "other")]).digest
    assert newer != world.server
    assert pull(client, name, "16", customer).headers["docker-content-digest"] == world.server
    assert pull(client, name, world.server, customer).status_code == 200
    for ref in (newer, other):  # in the staging repository, but not pinned: unknown here
        error = assert_oci_error(pull(client, name, ref, customer), 404, "MANIFEST_UNKNOWN")
        assert "db-server" not in json.dumps(error)
    assert_oci_error(pull(client, name, "17", customer), 404, "MANIFEST_UNKNOWN")
    blob = json.loads(
        client.get(
            f"/v2/{world.org}/db-server/manifests/{newer}",
            headers=bearer(token_for(client, f"{world.org}/db-server", world.users["owner"])),
        ).content
    )["layers"][0]["digest"]
    r = client.get(f"/v2/{name}/blobs/{blob}", headers=bearer(token_for(client, name, customer)))
    assert_oci_error(r, 404, "BLOB_UNKNOWN")
    # The staging repository's pinned manifest cannot be deleted; the tag can (the store serves pins).
    owner_token = token_for(client, f"{world.org}/db-server", world.users["owner"], "pull,push,delete")
    refused = client.delete(
        f"/v2/{world.org}/db-server/manifests/{world.server}", headers=bearer(owner_token)
    )
    error = assert_oci_error(refused, 403, "DENIED")
    assert f"{world.org}/{world.slug}" in error["message"]
    assert (
        client.delete(f"/v2/{world.org}/db-server/manifests/16", headers=bearer(owner_token)).status_code
        == 202
    )
    assert pull(client, name, "16", customer).headers["docker-content-digest"] == world.server


def test_an_unpublished_product_answers_404_and_anonymous_pulls_follow_the_tier(
    client: TestClient, app_state: AppState, tmp_path: Path
) -> None:
    world = published_world(app_state, tmp_path / "feed", anonymous=True)
    name = store(world)
    assert pull(client, name, "16", None).status_code == 200  # Community allows anonymous pulls
    assert pull(client, store(world, "agent"), "1.4", None).status_code == 401  # Enterprise does not
    get_free(app_state, world)
    as_user(app_state, world.users["admin"], lambda sv, p, a: sv.reviews.unpublish(world.revision, p, a))
    for user in (world.users["customer"], world.users["reader"]):
        assert_oci_error(pull(client, name, "16", user), 404, "NAME_UNKNOWN")
    assert pull(client, name, "16", None).status_code == 401


def test_every_manifest_get_is_a_download_event(
    client: TestClient, app_state: AppState, world: World
) -> None:
    customer, name = world.users["customer"], store(world)
    eid = get_free(app_state, world)
    token = token_for(client, name, customer)
    headers = bearer(token, {"Accept": MANIFEST_TYPES, "User-Agent": "skopeo/1.0"})
    assert client.get(f"/v2/{name}/manifests/16", headers=headers).status_code == 200
    assert client.head(f"/v2/{name}/manifests/16", headers=headers).status_code == 200  # no download
    assert client.get(f"/v2/{name}/manifests/{world.server}", headers=headers).status_code == 200
    assert pull(client, store(world, "agent"), "1.4", world.users["reader"]).status_code == 200
    with app_state.sessions() as s:
        rows = list(s.scalars(select(DownloadEvent).order_by(DownloadEvent.id)))
        customer_id = who(s, customer).user_id
        reader_id = who(s, world.users["reader"]).user_id
    facts = [
        (r.user_id, r.entitlement_id, r.tier, r.paid, r.image, r.tag, r.digest, r.user_agent) for r in rows
    ]
    assert facts[:2] == [
        (customer_id, eid, "Community", False, "server", "16", world.server, "skopeo/1.0"),
        (customer_id, eid, "Community", False, "server", None, world.server, "skopeo/1.0"),
    ]
    assert facts[2][:6] == (reader_id, None, None, False, "agent", "1.4")
    assert all(r.at is not None and r.product_id == rows[0].product_id for r in rows)
    # The store's count: the customer's two pulls; not the publisher's member's own.
    with app_state.sessions() as s:
        listing = s.scalar(select(Listing).where(Listing.product_id == rows[0].product_id))
        assert listing is not None and listing.downloads == 2


def test_basic_credentials_on_the_store_path_get_the_same_answers(
    client: TestClient, app_state: AppState, world: World
) -> None:
    from tests.support.registry_client import basic_auth

    customer, name = world.users["customer"], store(world)
    r = client.get(f"/v2/{name}/manifests/16", headers=basic_auth(customer, PASSWORD))
    assert r.status_code == 401
    get_free(app_state, world)
    r = client.get(
        f"/v2/{name}/manifests/16", headers={**basic_auth(customer, PASSWORD), "Accept": MANIFEST_TYPES}
    )
    assert r.status_code == 200
    assert request_token(client, f"repository:{name}:push", customer, PASSWORD).status_code == 200


def test_a_platform_manifest_fetched_after_its_index_is_not_a_second_pull(
    app_state: AppState, world: World
) -> None:
    from dockyard.entitlements.downloads import download_row

    with app_state.sessions() as s:
        live = app_state.services(s).entitlements.catalog.live(world.org, world.slug)
    assert live is not None
    by_tag = download_row(live, "server", "16", world.server, 1, "docker/27")
    by_pin = download_row(live, "server", None, world.server, 1, "docker/27")
    child = download_row(live, "server", None, "sha256:" + "c" * 64, 1, "docker/27")
    assert by_tag["_whole_pull"] and by_pin["_whole_pull"] and not child["_whole_pull"]


def test_a_new_live_revision_is_served_at_once(client: TestClient, app_state: AppState, world: World) -> None:
    """The store path's one-round-trip read (the revision this process saw live last) notices a new live
    revision, and an unpublished product, on the next request."""
    customer, name = world.users["customer"], store(world)
    get_free(app_state, world)
    assert pull(client, name, "16", customer).headers["docker-content-digest"] == world.server  # seen live
    with app_state.sessions.begin() as s:
        newer = (
            Images(s, app_state.blobs, app_state.bus)
            .image(f"{world.org}/db-server", "16", [file_layer("fix.txt", "the fix")])
            .digest
        )

    def new_draft(sv, p, a) -> int:
        live = sv.products.get(world.org, world.slug, p).live_revision
        return sv.products.update_draft(
            world.org, world.slug, {**live.manifest, "short_description": "Fixed."}, p, a
        ).id

    revision = as_user(app_state, world.users["owner"], new_draft)
    publish(app_state, world, revision)
    assert pull(client, name, "16", customer).headers["docker-content-digest"] == newer
    assert pull(client, name, world.server, customer).status_code == 404  # no longer pinned
    as_user(app_state, world.users["admin"], lambda sv, p, a: sv.reviews.unpublish(revision, p, a))
    assert_oci_error(pull(client, name, "16", customer), 404, "NAME_UNKNOWN")
