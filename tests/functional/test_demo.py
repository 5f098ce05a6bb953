"""`dockyard demo` seeds a living store through the real services: six complete publishers with logos,
twenty-one products on the store across the categories (some multi-arch), the others in each state of
review, customers; and a second run changes nothing."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from dockyard.demo.catalog import PUBLISHERS
from dockyard.demo.seed import DemoSeeder
from dockyard.entitlements.models import DownloadEvent, Entitlement
from dockyard.publishing.models import ProductRevision, Publisher
from dockyard.store.models import Listing, ListingPlatform
from dockyard.web.context import AppState

pytestmark = pytest.mark.slow


def test_the_demo_store(app_state: AppState) -> None:
    done = DemoSeeder(app_state).seed()
    assert not done.skipped
    with app_state.sessions() as s:
        publishers = s.scalars(select(Publisher)).all()
        assert len(publishers) == len(PUBLISHERS) >= 6
        for publisher in publishers:
            assert app_state.services(s).publishers.completeness_problems(publisher) == []
            assert publisher.logo_id is not None
        listings = s.scalars(select(Listing)).all()
        assert len(listings) >= 20
        assert len({listing.category for listing in listings}) >= 10
        assert any(listing.free for listing in listings) and not all(listing.free for listing in listings)
        assert 3 <= sum(listing.certified for listing in listings) < len(listings)
        arm = s.scalar(
            select(func.count()).select_from(ListingPlatform).where(ListingPlatform.platform == "linux/arm64")
        )
        assert arm and arm >= 5
        for listing in listings:  # every pinned tag of every image was pushed and resolved
            for tags in listing.images.values():
                assert tags and all(t["digest"].startswith("sha256:") and t["size"] for t in tags.values())
        states = Counter(s.scalars(select(ProductRevision.state)))
    every = {"draft", "submitted", "in_review", "changes_requested", "resubmitted", "approved", "rejected"}
    assert every | {"withdrawn", "published", "superseded"} <= set(states), states
    assert states["published"] == len(listings)
    with app_state.sessions() as s:
        entitled = s.scalars(select(Entitlement)).all()
        assert len({e.user_id for e in entitled}) == 3 and len(entitled) >= 12
        assert all(e.status == "active" and e.license_accepted_at is not None for e in entitled)
        downloads = s.scalar(select(func.count()).select_from(DownloadEvent))
        assert downloads and downloads == sum(listing.downloads for listing in s.scalars(select(Listing)))

    again = DemoSeeder(app_state).seed()
    assert again.skipped
    with app_state.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Listing)) == len(listings)
