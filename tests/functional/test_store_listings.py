"""Listings follow publishing: written from the live revision when it is published (with the platforms and
sizes of the pinned images), refreshed when the publisher's name changes, removed when unpublished."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from tests.support.store_world import principal, published_world

from dockyard.publishing.models import Product
from dockyard.store.models import Listing, ListingPlatform, ListingStatus
from dockyard.web.context import AppState


def listing_of(state: AppState, org: str, slug: str) -> Listing | None:
    with state.sessions() as s:
        row = s.scalar(select(Listing).where(Listing.publisher_slug == org, Listing.product_slug == slug))
        if row is not None:
            s.expunge(row)
        return row


def test_a_published_product_is_listed_with_its_pinned_images(app_state: AppState, tmp_path: Path) -> None:
    world = published_world(app_state, tmp_path / "feed")
    listing = listing_of(app_state, world.org, world.slug)
    assert listing is not None
    assert listing.status == ListingStatus.LISTED
    assert listing.name == "Acme Database" and listing.publisher_name == "Acme Ltd"
    assert listing.category == "Database" and "sql" in listing.tags
    assert listing.free is True and listing.certified is False and listing.downloads == 0
    assert listing.images["server"]["16"]["digest"] == world.server
    assert listing.images["agent"]["1.4"]["digest"] == world.agent
    assert listing.images["server"]["16"]["platforms"] == ["linux/amd64"]
    assert listing.images["server"]["16"]["size"] > 0
    with app_state.sessions() as s:
        platforms = s.scalars(
            select(ListingPlatform.platform).where(ListingPlatform.listing_id == listing.id)
        )
        assert list(platforms) == ["linux/amd64"]


def test_the_publishers_new_name_reaches_its_listings(app_state: AppState, tmp_path: Path) -> None:
    world = published_world(app_state, tmp_path / "feed")
    with app_state.sessions.begin() as s:
        p, actor = principal(s, world.users["owner"])
        app_state.services(s).publishers.update(world.org, {"legal_name": "Acme Databases GmbH"}, p, actor)
    assert listing_of(app_state, world.org, world.slug).publisher_name == "Acme Databases GmbH"


def test_unpublishing_removes_the_listing(app_state: AppState, tmp_path: Path) -> None:
    world = published_world(app_state, tmp_path / "feed")
    assert listing_of(app_state, world.org, world.slug) is not None
    with app_state.sessions.begin() as s:
        p, actor = principal(s, world.users["admin"])
        app_state.services(s).reviews.unpublish(world.revision, p, actor, "taken down")
    assert listing_of(app_state, world.org, world.slug) is None
    with app_state.sessions() as s:
        assert s.scalar(select(Product.live_revision_id).where(Product.slug == world.slug)) is None
