"""A small living store for looking at the store's pages: the published world of tests.support.store_world
with real logos and screenshots (drawn here with Pillow, stored through the real image pipeline), and five
more products of two publishers in several categories: certified, official, on hold, revoked, free and paid.

The extra products are written as published rows (a live revision pinned to the world's digests) and listed
by the real ListingService, so that the pages read exactly what publishing would have written."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from sqlalchemy import select, update

from dockyard.db import utcnow
from dockyard.publishing import imaging
from dockyard.publishing.assets import AssetStore
from dockyard.publishing.models import CatalogImage, Product, ProductRevision, Publisher
from dockyard.store.listings import ListingService
from dockyard.store.models import Listing, ListingStatus, ProductBadge
from dockyard.web.context import AppState
from tests.support.review_world import manifest_data
from tests.support.store_world import published_world

LONG = """Acme Database is a **PostgreSQL-compatible** SQL database built for containers: it starts in under a
second, keeps its data on any volume, and replicates across nodes without an operator.

## Features

- Wire-compatible with PostgreSQL 16 clients and drivers
- Synchronous replication and automatic fail-over
- Point-in-time recovery to any object store
- Prometheus metrics and structured logs out of the box

| Edition | Nodes | Backups |
|---|---|---|
| Community | 1 | manual |
| Enterprise | unlimited | continuous |
"""
INSTALL = """Get a plan, log in to the store, and run the server:

```sh
docker run -d -p 5432:5432 -v acme-data:/var/lib/acme STORE/acme/acme-db/server:16
```

Then connect with any PostgreSQL client: `psql -h localhost -U acme`.
"""


HOLD_REASON = "CVE-2031-0001 (zlib, Critical) in the server image is past its 72-hour fix deadline."


@dataclass
class Showcase:
    org: str
    other_org: str
    products: dict[str, str] = field(default_factory=dict)  # role -> slug (flagship, held, revoked, ...)
    users: dict[str, str] = field(default_factory=dict)


def drawn_logo(letter: str, colour: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (512, 512), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((40, 40, 472, 472), radius=96, fill=colour)
    draw.ellipse((150, 150, 362, 362), outline=(255, 255, 255), width=36)
    draw.rectangle((236, 90, 276, 200), fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def drawn_screenshot(colour: tuple[int, int, int], variant: int) -> bytes:
    """A made-up dashboard: a top bar, a side menu, cards and a chart."""
    w, h = 1280, 800
    image = Image.new("RGB", (w, h), (245, 247, 251))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, w, 64), fill=(15, 27, 45))
    draw.rectangle((0, 64, 220, h), fill=(230, 235, 244))
    for i in range(6):
        draw.rounded_rectangle((24, 100 + i * 52, 196, 130 + i * 52), radius=8, fill=(210, 218, 232))
    for i in range(3):
        x = 250 + i * 340
        draw.rounded_rectangle(
            (x, 96, x + 310, 236), radius=14, fill=(255, 255, 255), outline=(220, 226, 236)
        )
        draw.rectangle((x + 24, 126, x + 24 + 80 + 40 * ((i + variant) % 3), 146), fill=colour)
    draw.rounded_rectangle((250, 270, 1250, 760), radius=14, fill=(255, 255, 255), outline=(220, 226, 236))
    points = [(290 + i * 60, 700 - ((i * 37 * (variant + 2)) % 300) - i * 8) for i in range(16)]
    draw.line(points, fill=colour, width=6, joint="curve")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def store_image(state: AppState, session: Any, publisher_id: int, kind: str, data: bytes) -> int:
    checked = imaging.process(kind, data)
    assets = AssetStore(state.blobs)
    image = CatalogImage(
        publisher_id=publisher_id,
        kind=checked.kind.value,
        media_type=checked.media_type,
        width=checked.width,
        height=checked.height,
        renditions={r.name: assets.put(r.data) for r in checked.renditions},
    )
    session.add(image)
    session.flush()
    return image.id


TIERS_3 = [
    {"name": "Community", "description": "One node, community forum support.", "price": "free",
     "images": ["server"]},
    {"name": "Team", "description": "Replication, the agent and business-hours support.",
     "price": {"amount": 4900, "currency": "EUR", "period": "month"}, "images": ["server", "agent"]},
    {"name": "Enterprise", "description": "Unlimited nodes, 24x7 support with a 1-hour response.",
     "price": {"amount": 490000, "currency": "USD", "period": "year"}, "images": ["server", "agent"]},
]  # fmt: skip

EXTRA = [
    # role, org key, slug, name, category, tags, short description, tiers (None: the world's), colour
    ("metrics", "org", "acme-metrics", "Acme Metrics", "Monitoring", ["prometheus", "metrics"],
     "Metrics, dashboards and alerts for every container you run.", "free", (22, 128, 86)),
    ("held", "org", "acme-cache", "Acme Cache", "Database", ["cache", "redis"],
     "An in-memory key-value cache with persistence and clustering.", None, (190, 90, 20)),
    ("gateway", "other", "northwind-gateway", "Northwind Gateway", "Networking", ["proxy", "tls"],
     "An API gateway with TLS, rate limits and single sign-on in one small image.", "paid", (120, 60, 180)),
    ("analytics", "other", "northwind-analytics", "Northwind Analytics", "Analytics", ["sql", "olap"],
     "Columnar analytics over your object store, queried in SQL.", None, (30, 110, 190)),
    ("revoked", "other", "northwind-vault", "Northwind Vault", "Security", ["secrets"],
     "Secrets management for containers.", "free", (160, 30, 50)),
]  # fmt: skip


def build_showcase(state: AppState, feed_dir: Path) -> Showcase:
    """The published world, dressed, and five more products (see the module's docstring)."""
    world = published_world(state, feed_dir)
    show = Showcase(world.org, world.other_org, {"flagship": world.slug}, dict(world.users))
    with state.sessions.begin() as s:
        publishers = {
            "org": s.scalar(
                select(Publisher)
                .join(Product, Product.publisher_id == Publisher.id)
                .where(Product.slug == world.slug)
            ),
            "other": s.scalar(
                select(Publisher)
                .join(Product, Product.publisher_id == Publisher.id)
                .where(Product.slug == "rival-db")
            ),
        }
        publishers["other"].legal_name, publishers["other"].website = (
            "Northwind Systems",
            "https://northwind.example",
        )
        publishers[
            "other"
        ].story = "Northwind builds **network and data infrastructure** for teams of every size."
        publishers["org"].story = (
            "Acme has made databases since 2009.\n\nWe build software that is **boring in production**: "
            "fast to start, easy to operate, and supported by the people who wrote it."
        )
        publishers["org"].logo_id = store_image(
            state, s, publishers["org"].id, "logo", drawn_logo("A", (37, 99, 235))
        )
        publishers["other"].logo_id = store_image(
            state, s, publishers["other"].id, "logo", drawn_logo("N", (120, 60, 180))
        )
        live = s.get(ProductRevision, world.revision)
        pub_id = publishers["org"].id
        logo = store_image(state, s, pub_id, "logo", drawn_logo("D", (37, 99, 235)))
        shots = [
            store_image(state, s, pub_id, "screenshot", drawn_screenshot((37, 99, 235), i)) for i in range(3)
        ]
        manifest = dict(live.manifest)
        manifest.update(
            logo=logo, screenshots=shots, long_description=LONG, install=INSTALL, tiers=TIERS_3,
            tags=["sql", "database", "postgresql", "replication"],
        )  # fmt: skip
        live.manifest = manifest
        s.flush()
        ListingService(s, state.blobs).sync(live.product_id)
        pins = live.pins
        for role, key, slug, name, category, tags, short, tiers, colour in EXTRA:
            publisher = publishers[key]
            org = world.org if key == "org" else world.other_org
            logo_id = store_image(state, s, publisher.id, "logo", drawn_logo(name[0], colour))
            shot = store_image(state, s, publisher.id, "screenshot", drawn_screenshot(colour, 1))
            data = manifest_data(org, slug, logo_id, shot, name=name, category=category, tags=tags)
            data["short_description"] = short
            data["long_description"] = (
                f"**{name}**: {short}\n\nRuns anywhere containers run; see the plans for support."
            )
            data["install"] = "Get a plan, then pull the image with the reference shown below."
            data["images"] = [
                {**i, "repository": i["repository"].replace(org, world.org)} for i in data["images"]
            ]
            if tiers == "free":
                data["tiers"] = [data["tiers"][0]]
            elif tiers == "paid":
                data["tiers"] = [data["tiers"][1]]
            product = Product(publisher_id=publisher.id, slug=slug, published_at=utcnow())
            s.add(product)
            s.flush()
            revision = ProductRevision(
                product_id=product.id, number=1, state="published", manifest=data, pins=pins,
                published_at=utcnow(),
            )  # fmt: skip
            s.add(revision)
            s.flush()
            product.live_revision_id = revision.id
            s.flush()
            ListingService(s, state.blobs).sync(product.id)
            show.products[role] = slug
        ids = {r.product_slug: r.product_id for r in s.scalars(select(Listing))}
        badges = [
            (world.slug, "certified_container"), (world.slug, "official"),
            ("acme-metrics", "certified_container"), ("northwind-gateway", "certified_infrastructure"),
        ]  # fmt: skip
        for slug, kind in badges:
            s.add(ProductBadge(product_id=ids[slug], kind=kind, reason="showcase"))
        s.flush()
        for slug in {slug for slug, _ in badges}:
            ListingService(s, state.blobs).set_certified(ids[slug])
        downloads = {world.slug: 12840, "acme-metrics": 5312, "northwind-gateway": 871, "acme-cache": 2310}
        for slug, n in downloads.items():
            s.execute(update(Listing).where(Listing.product_slug == slug).values(downloads=n))
        since = utcnow() - dt.timedelta(days=9)
        s.execute(
            update(Listing)
            .where(Listing.product_slug == "acme-cache")
            .values(
                status=ListingStatus.ON_HOLD.value, status_since=since,
                status_reason=HOLD_REASON,
            )
        )  # fmt: skip
        s.execute(
            update(Listing)
            .where(Listing.product_slug == "northwind-vault")
            .values(
                status=ListingStatus.REVOKED.value, status_since=utcnow() - dt.timedelta(days=2),
                status_reason="On hold for a month without a fix for CVE-2031-0001.",
            )
        )  # fmt: skip
    return show
