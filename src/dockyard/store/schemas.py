"""Bodies of the store's product details and badges API."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field

from dockyard.accounts.schemas import UtcDateTime
from dockyard.store.models import BadgeKind, ListingStatus
from dockyard.store.reads import Badge, ProductPage


def image_url(image_id: int | None, rendition: str) -> str | None:
    return f"/catalog-images/{image_id}/{rendition}" if image_id is not None else None


def product_url(publisher: str, product: str) -> str:
    return f"/products/{publisher}/{product}"


class BadgeOut(BaseModel):
    kind: BadgeKind
    title: str = Field(description='e.g. "Certified Container"')
    meaning: str = Field(description="what the badge certifies")
    granted_at: UtcDateTime | None = None


class PriceOut(BaseModel):
    amount: int = Field(description="in the currency's minor units (4900 = 49.00)")
    currency: str = Field(description="ISO 4217")
    period: str = Field(description="month, year or one-time")


class TierOut(BaseModel):
    name: str
    description: str
    free: bool
    price: PriceOut | None = Field(description="null for a free tier")
    price_label: str = Field(description='as the page shows it: "Free", "€49.00 / month"')
    images: list[str] = Field(description="the names of the images the tier entitles")
    get_url: str | None = Field(description="the page that gets (free) or subscribes to (paid) the tier")


class TagOut(BaseModel):
    tag: str
    digest: str = Field(description="the digest pinned when the revision was published")
    platforms: list[str] = Field(description='e.g. ["linux/amd64", "linux/arm64"]')
    size: int | None = Field(description="compressed bytes (summed over an index's platforms)")
    pull: str = Field(description="HOST/store/<publisher>/<product>/<image>:<tag>")


class ImageOut(BaseModel):
    name: str = Field(description="the customer-facing image name")
    tiers: list[str]
    tags: list[TagOut]


class SlaOut(BaseModel):
    hours: str
    response: str


class SupportOut(BaseModel):
    url: str | None = None
    email: str | None = None
    resources: list[str] = []
    sla: SlaOut | None = None


class ScreenshotOut(BaseModel):
    full: str
    thumb: str


class PublisherRef(BaseModel):
    org: str
    name: str
    website: str | None
    logo: str | None
    url: str = Field(description="the publisher's store page")


class ProductDetails(BaseModel):
    """A published product as customers see it: every item of its live manifest (never the staging
    repositories), its badges, its images with their platforms, sizes and store pull references."""

    publisher: PublisherRef
    product: str = Field(description="the product's slug")
    name: str
    url: str = Field(description="the product's store page")
    logo: str | None
    short_description: str
    long_description: str = Field(description="Markdown")
    category: str | None
    tags: list[str]
    screenshots: list[ScreenshotOut]
    support: SupportOut | None
    tiers: list[TierOut]
    install: str = Field(description="installation instructions, Markdown")
    license_url: str | None
    badges: list[BadgeOut]
    certified: bool
    images: list[ImageOut]
    downloads: int
    status: ListingStatus = Field(description="listed, on_hold (a security fix is overdue) or revoked")
    status_label: str
    status_reason: str
    status_since: UtcDateTime | None
    published_at: UtcDateTime
    updated_at: UtcDateTime


class BadgeChange(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="why: kept in the audit log")


def badge_out(badge: Badge) -> dict[str, Any]:
    return {
        "kind": badge.kind,
        "title": badge.title,
        "meaning": badge.meaning,
        "granted_at": badge.granted_at,
    }


def details(page: ProductPage) -> dict[str, Any]:
    card, m = page.card, page.manifest
    base = product_url(card.publisher, card.product)
    support = m.support
    return {
        "publisher": {
            "org": page.publisher.org,
            "name": page.publisher.name,
            "website": page.publisher.website,
            "logo": image_url(page.publisher.logo_id, "128"),
            "url": f"/publishers/{page.publisher.org}",
        },
        "product": card.product,
        "name": m.name,
        "url": base,
        "logo": image_url(m.logo if isinstance(m.logo, int) else None, "128"),
        "short_description": m.short_description,
        "long_description": m.long_description,
        "category": m.category.value if m.category else None,
        "tags": list(m.tags),
        "screenshots": [
            {"full": f"/catalog-images/{s}/full", "thumb": f"/catalog-images/{s}/thumb"}
            for s in m.screenshots
            if isinstance(s, int)
        ],
        "support": support.model_dump(mode="json") if support is not None else None,
        "tiers": [
            {
                "name": t.name,
                "description": t.description,
                "free": t.free,
                "price": None if t.free else {"amount": t.amount, "currency": t.currency, "period": t.period},
                "price_label": t.price,
                "images": t.images,
                "get_url": None if page.revoked else f"{base}/get?tier={quote(t.name, safe='')}",
            }
            for t in page.tiers
        ],
        "install": m.install,
        "license_url": m.license_url,
        "badges": [badge_out(b) for b in page.badges],
        "certified": card.certified,
        "images": [
            {
                "name": i.name,
                "tiers": i.tiers,
                "tags": [
                    {
                        "tag": t.tag,
                        "digest": t.digest,
                        "platforms": t.platforms,
                        "size": t.size,
                        "pull": t.pull,
                    }
                    for t in i.tags
                ],
            }
            for i in page.images
        ],
        "downloads": card.downloads,
        "status": card.status,
        "status_label": page.status_label,
        "status_reason": page.status_reason,
        "status_since": page.status_since,
        "published_at": card.published_at,
        "updated_at": card.updated_at,
    }
