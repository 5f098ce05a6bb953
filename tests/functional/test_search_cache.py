"""The per-process cache of browsing figures (store.search_cache): used while the listings' version stands,
and never stale: every change a facet or filter reads moves the version (triggers of migration 0013), on
SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, update
from sqlalchemy.orm import Session
from tests.support.search_data import SHARED, Spec, insert_listings

from dockyard.store import search_cache as cache
from dockyard.store.models import Listing, ListingPlatform
from dockyard.store.search import Facets, Filters, SearchService


@pytest.fixture
def ids(db_session: Session) -> dict[str, int]:
    cache.clear()
    return insert_listings(db_session, SHARED)


@pytest.fixture
def service(db_session: Session) -> SearchService:
    return SearchService(db_session)


def counts(facets: list) -> dict[str, int]:
    return {f.value: f.count for f in facets}


def test_browsing_figures_come_from_the_cache_while_the_version_stands(
    db_session: Session, ids: dict[str, int], service: SearchService
) -> None:
    first = service.search("", Filters(category="Database"))
    version = cache.version(db_session)
    assert version is not None
    assert cache.version(db_session) == version  # reading does not move it
    # The figures kept for this version are the ones answered (a planted value shows it is read).
    planted = Facets(free=12345)
    cache.put(db_session, version, (False, False, "Database", None, None), (99, planted))
    again = service.search("", Filters(category="Database"))
    assert (again.total, again.facets.free) == (99, 12345)
    assert [h.listing.id for h in again.hits] == [h.listing.id for h in first.hits]  # the page is not cached
    # A search with words never reads the cache.
    assert service.search("redis", Filters(category="Database")).facets.free != 12345


def test_downloads_do_not_move_the_version(
    db_session: Session, ids: dict[str, int], service: SearchService
) -> None:
    version = cache.version(db_session)
    db_session.execute(update(Listing).values(downloads=Listing.downloads + 1))
    assert cache.version(db_session) == version
    # ...but the page, read from the listings, is in the new order at once.
    db_session.execute(update(Listing).where(Listing.id == ids["vault-secrets"]).values(downloads=10**6))
    assert service.search("").hits[0].listing.id == ids["vault-secrets"]


CHANGES = {
    "revoked": lambda ids: update(Listing).where(Listing.id == ids["nginx-web"]).values(status="revoked"),
    "category": lambda ids: update(Listing).where(Listing.id == ids["nginx-web"]).values(category="Security"),
    "certified": lambda ids: update(Listing).where(Listing.id == ids["kafka-bus"]).values(certified=True),
    "free": lambda ids: update(Listing).where(Listing.id == ids["kafka-bus"]).values(free=True),
    "publisher": lambda ids: (
        update(Listing)
        .where(Listing.id == ids["kafka-bus"])
        .values(publisher_slug="acme", publisher_name="Acme Data Ltd")
    ),
    "platform added": lambda ids: insert(ListingPlatform).values(
        listing_id=ids["kafka-bus"], platform="linux/riscv64"
    ),
    "platform removed": lambda ids: delete(ListingPlatform).where(
        ListingPlatform.listing_id == ids["metrics-db"], ListingPlatform.platform == "linux/s390x"
    ),
    "unpublished": lambda ids: delete(Listing).where(Listing.id == ids["nginx-web"]),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_every_change_a_facet_reads_moves_the_version_and_the_figures_follow(
    db_session: Session, ids: dict[str, int], service: SearchService, change: str
) -> None:
    def figures() -> tuple:
        r = service.search("")
        f = r.facets
        return r.total, f.free, f.certified, counts(f.category), counts(f.publisher), counts(f.arch)

    before = figures()
    version = cache.version(db_session)
    db_session.execute(CHANGES[change](ids))
    db_session.flush()
    assert cache.version(db_session) != version
    after = figures()
    assert after != before
    # The same figures as computed without any cache.
    cache.clear()
    assert figures() == after


def test_a_new_listing_moves_the_version(
    db_session: Session, ids: dict[str, int], service: SearchService
) -> None:
    assert service.search("").total == 11
    insert_listings(db_session, [Spec("new-one", "New One", "umbrella", category="Database")])
    assert service.search("").total == 12
    assert counts(service.search("").facets.category)["Database"] == 5
