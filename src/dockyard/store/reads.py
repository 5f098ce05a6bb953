"""What the store's customer pages and the product details API read: listings (never a manifest parse for a
card), and for one product page its live revision's manifest. Revoked listings never appear on the home
page or a publisher's page; a revoked product's own page says it was withdrawn (``ProductPage.revoked``).

Pure reads: no permission is needed to read what the store lists, and nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard.accounts.models import Namespace
from dockyard.errors import NotFound
from dockyard.publishing.manifest import Category, ProductManifest, parse_manifest
from dockyard.publishing.models import ProductRevision, Publisher
from dockyard.store.models import BADGE_MEANINGS, BadgeKind, Listing, ListingStatus, ProductBadge
from dockyard.store.prices import format_price

HOME_ROW = 8  # cards in each row of the home page
PUBLISHER_LIMIT = 200  # a publisher's page lists at most this many products
BADGE_ORDER = list(BadgeKind)  # how badges line up on a card: the certifications first, Official last
STATUS_LABELS = {
    ListingStatus.LISTED.value: "Listed",
    ListingStatus.ON_HOLD.value: "On hold: security fix overdue",
    ListingStatus.REVOKED.value: "Withdrawn from the store",
}


@dataclass(frozen=True)
class Badge:
    kind: str
    title: str
    meaning: str
    granted_at: dt.datetime | None = None


@dataclass(frozen=True)
class Card:
    """A listing as a card: the home page, a publisher's page (and search's, should it want them)."""

    product_id: int
    publisher: str  # the organisation's name: the URL's
    product: str  # the product's slug
    name: str
    short_description: str
    publisher_name: str
    logo_id: int | None
    category: str | None
    free: bool
    certified: bool
    downloads: int
    status: str
    published_at: dt.datetime
    updated_at: dt.datetime
    badges: tuple[Badge, ...] = ()

    @property
    def on_hold(self) -> bool:
        return self.status == ListingStatus.ON_HOLD.value


@dataclass(frozen=True)
class CategoryCount:
    name: str
    count: int


@dataclass(frozen=True)
class Home:
    categories: list[CategoryCount]
    newest: list[Card]
    popular: list[Card]
    certified: list[Card]
    total: int


@dataclass(frozen=True)
class TagFacts:
    tag: str
    digest: str
    platforms: list[str]
    size: int | None
    pull: str  # HOST/store/<publisher>/<product>/<image>:<tag>


@dataclass(frozen=True)
class ImageFacts:
    name: str
    tags: list[TagFacts]
    tiers: list[str]  # the tiers that include it


@dataclass(frozen=True)
class TierView:
    name: str
    description: str
    free: bool
    price: str  # "Free", "€49.00 / month"
    amount: int | None
    currency: str | None
    period: str | None
    images: list[str]


@dataclass(frozen=True)
class PublisherInfo:
    org: str
    name: str
    logo_id: int | None
    website: str | None
    story: str  # Markdown


@dataclass(frozen=True)
class ProductPage:
    card: Card
    manifest: ProductManifest
    publisher: PublisherInfo
    images: list[ImageFacts]
    tiers: list[TierView]
    status_reason: str
    status_since: dt.datetime | None
    badges: list[Badge] = field(default_factory=list)

    @property
    def revoked(self) -> bool:
        return self.card.status == ListingStatus.REVOKED.value

    @property
    def on_hold(self) -> bool:
        return self.card.status == ListingStatus.ON_HOLD.value

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.card.status, self.card.status)


@dataclass(frozen=True)
class PublisherPage:
    publisher: PublisherInfo
    products: list[Card]


def store_path(publisher: str, product: str, image: str) -> str:
    """The repository a customer pulls: never the publisher's staging repository."""
    return f"store/{publisher}/{product}/{image}"


def badge(kind: str, granted_at: dt.datetime | None = None) -> Badge:
    title, meaning = BADGE_MEANINGS[BadgeKind(kind)]
    return Badge(kind, title, meaning, granted_at)


class StoreReads:
    """Reads of the store's listings for its customer pages and API."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- the home page -------------------------------------------------------------------------------------
    def home(self, limit: int = HOME_ROW) -> Home:
        """Categories with their counts, the newest, the most downloaded and the certified listings."""
        shown = Listing.status != ListingStatus.REVOKED.value
        counts = dict(
            self.session.execute(
                select(Listing.category, func.count()).where(shown).group_by(Listing.category)
            ).all()
        )
        categories = [CategoryCount(c.value, int(counts.get(c.value, 0))) for c in Category]
        total = int(sum(counts.values()))
        newest = self._cards(
            select(Listing).where(shown).order_by(Listing.published_at.desc(), Listing.id.desc()).limit(limit)
        )
        popular = self._cards(
            select(Listing)
            .where(shown, Listing.downloads > 0)
            .order_by(Listing.downloads.desc(), Listing.name)
            .limit(limit)
        )
        certified = self._cards(
            select(Listing)
            .where(shown, Listing.certified.is_(True))
            .order_by(Listing.downloads.desc(), Listing.name)
            .limit(limit)
        )
        return Home(categories, newest, popular, certified, total)

    # -- a product -----------------------------------------------------------------------------------------
    def product(self, publisher: str, product: str, host: str) -> ProductPage:
        """A listed product's page (a revoked one too: its page says it was withdrawn). NotFound when the
        product is unknown or not published."""
        listing = self.session.scalar(
            select(Listing).where(Listing.publisher_slug == publisher, Listing.product_slug == product)
        )
        revision = self.session.get(ProductRevision, listing.revision_id) if listing is not None else None
        if listing is None or revision is None:
            raise NotFound("no such product in the store")
        badges = self._badges([listing.product_id]).get(listing.product_id, ())
        card = _card(listing, badges)
        manifest = parse_manifest(revision.manifest)
        tiers = [_tier(t) for t in manifest.tiers]
        images = []
        for image in manifest.images:
            facts = (listing.images or {}).get(image.name, {})
            path = store_path(publisher, product, image.name)
            tags = [
                TagFacts(
                    tag,
                    str(facts.get(tag, {}).get("digest", "")),
                    list(facts.get(tag, {}).get("platforms", [])),
                    facts.get(tag, {}).get("size"),
                    f"{host}/{path}:{tag}",
                )
                for tag in image.tags
            ]
            in_tiers = [t.name for t in manifest.tiers if image.name in t.images]
            images.append(ImageFacts(image.name, tags, in_tiers))
        return ProductPage(
            card,
            manifest,
            self._publisher_info(listing.publisher_id, publisher),
            images,
            tiers,
            listing.status_reason or "",
            listing.status_since,
            list(badges),
        )

    def product_id(self, publisher: str, product: str) -> int:
        """The id of a published product (its listing's), NotFound when there is none."""
        found = self.session.scalar(
            select(Listing.product_id).where(
                Listing.publisher_slug == publisher, Listing.product_slug == product
            )
        )
        if found is None:
            raise NotFound("no such product in the store")
        return found

    # -- a publisher ---------------------------------------------------------------------------------------
    def publisher(self, org: str) -> PublisherPage:
        """A publisher's public profile and its listed products; NotFound unless it lists one (a publisher
        with nothing on the store has no public page, so private organisations cannot be found here)."""
        publisher_id = self.session.scalar(
            select(Publisher.id)
            .join(Namespace, Namespace.id == Publisher.namespace_id)
            .where(Namespace.name == org)
        )
        products = (
            self._cards(
                select(Listing)
                .where(
                    Listing.publisher_id == publisher_id,
                    Listing.status != ListingStatus.REVOKED.value,
                )
                .order_by(Listing.certified.desc(), Listing.downloads.desc(), Listing.name)
                .limit(PUBLISHER_LIMIT)
            )
            if publisher_id is not None
            else []
        )
        if publisher_id is None or not products:
            raise NotFound("no such publisher in the store")
        return PublisherPage(self._publisher_info(publisher_id, org), products)

    # -- parts ---------------------------------------------------------------------------------------------
    def _cards(self, query: Any) -> list[Card]:
        listings = list(self.session.scalars(query))
        badges = self._badges([listing.product_id for listing in listings])
        return [_card(listing, badges.get(listing.product_id, ())) for listing in listings]

    def _badges(self, product_ids: list[int]) -> dict[int, tuple[Badge, ...]]:
        if not product_ids:
            return {}
        rows = self.session.execute(
            select(ProductBadge.product_id, ProductBadge.kind, ProductBadge.granted_at).where(
                ProductBadge.product_id.in_(product_ids)
            )
        ).all()
        found: dict[int, list[Badge]] = {}
        for product_id, kind, granted_at in rows:
            if kind in BadgeKind._value2member_map_:
                found.setdefault(product_id, []).append(badge(kind, granted_at))
        return {
            pid: tuple(sorted(items, key=lambda b: BADGE_ORDER.index(BadgeKind(b.kind))))
            for pid, items in found.items()
        }

    def _publisher_info(self, publisher_id: int, org: str) -> PublisherInfo:
        publisher = self.session.get(Publisher, publisher_id)
        assert publisher is not None
        return PublisherInfo(
            org=org,
            name=publisher.legal_name or org,
            logo_id=publisher.logo_id,
            website=publisher.website,
            story=publisher.story or "",
        )


def _card(listing: Listing, badges: tuple[Badge, ...]) -> Card:
    return Card(
        product_id=listing.product_id,
        publisher=listing.publisher_slug,
        product=listing.product_slug,
        name=listing.name,
        short_description=listing.short_description,
        publisher_name=listing.publisher_name,
        logo_id=listing.logo_id,
        category=listing.category,
        free=listing.free,
        certified=listing.certified,
        downloads=listing.downloads,
        status=listing.status,
        published_at=listing.published_at,
        updated_at=listing.updated_at,
        badges=badges,
    )


def _tier(tier: Any) -> TierView:
    price = tier.price
    return TierView(
        name=tier.name,
        description=tier.description,
        free=price is None,
        price=format_price(price),
        amount=price.amount if price is not None else None,
        currency=price.currency if price is not None else None,
        period=str(price.period) if price is not None else None,
        images=list(tier.images),
    )
