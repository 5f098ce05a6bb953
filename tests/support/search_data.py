"""Listings for search tests and the search benchmark, inserted in bulk (Core inserts, one statement per
table) with the rows they hang from (organisation, publisher, product, published revision), and indexed by
the real SearchService.index_rows. ``SHARED`` is the data set the SQLite/PostgreSQL comparison runs on."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from dockyard.accounts.models import Namespace
from dockyard.publishing.models import Product, ProductRevision, Publisher
from dockyard.store.models import Listing, ListingPlatform
from dockyard.store.search import SearchService

BASE_TIME = dt.datetime(2026, 1, 1)


@dataclass
class Spec:
    """One listing: ``key`` names it in tests (its product slug); ``age`` days before BASE_TIME."""

    key: str
    name: str
    publisher: str = "acme"
    short: str = ""
    long: str = ""
    category: str | None = None
    tags: list[str] = field(default_factory=list)
    free: bool = False
    certified: bool = False
    downloads: int = 0
    platforms: list[str] = field(default_factory=lambda: ["linux/amd64"])
    status: str = "listed"
    age: int = 0


PUBLISHER_NAMES = {
    "acme": "Acme Data Ltd",
    "globex": "Globex Corporation",
    "initech": "Initech Systems",
    "umbrella": "Umbrella Networks",
}


def insert_listings(session: Session, specs: list[Spec], *, prefix: str = "") -> dict[str, int]:
    """Insert the listings (and their publishers, products and revisions); returns key -> listing id."""
    now = BASE_TIME
    slugs = sorted({prefix + s.publisher for s in specs})
    existing = dict(
        session.execute(select(Namespace.name, Namespace.id).where(Namespace.name.in_(slugs))).all()
    )
    missing = [slug for slug in slugs if slug not in existing]
    if missing:
        session.execute(insert(Namespace), [{"name": n, "kind": "org", "created_at": now} for n in missing])
    ns_ids = dict(
        session.execute(select(Namespace.name, Namespace.id).where(Namespace.name.in_(slugs))).all()
    )
    have = set(
        session.scalars(select(Publisher.namespace_id).where(Publisher.namespace_id.in_(ns_ids.values())))
    )
    new = [
        {"namespace_id": i, "legal_name": PUBLISHER_NAMES.get(n[len(prefix) :], n.title()), "story": ""}
        for n, i in ns_ids.items()
        if i not in have
    ]
    if new:
        session.execute(insert(Publisher), [{**row, "created_at": now, "updated_at": now} for row in new])
    publishers = dict(
        session.execute(
            select(Namespace.name, Publisher.id).join(Publisher, Publisher.namespace_id == Namespace.id)
        ).all()
    )
    product_rows = [
        {"publisher_id": publishers[prefix + s.publisher], "slug": s.key, "created_at": now} for s in specs
    ]
    session.execute(insert(Product), product_rows)
    mine = sorted({publishers[prefix + s.publisher] for s in specs})
    products = dict(
        session.execute(select(Product.slug, Product.id).where(Product.publisher_id.in_(mine))).all()
    )
    session.execute(
        insert(ProductRevision),
        [
            {
                "product_id": products[s.key],
                "number": 1,
                "state": "published",
                "manifest": {},
                "created_at": now,
                "updated_at": now,
            }
            for s in specs
        ],
    )
    revisions = dict(
        session.execute(
            select(ProductRevision.product_id, ProductRevision.id)
            .join(Product, Product.id == ProductRevision.product_id)
            .where(Product.publisher_id.in_(mine))
        ).all()
    )
    rows = []
    for s in specs:
        when = now - dt.timedelta(days=s.age)
        rows.append(
            {
                "product_id": products[s.key],
                "publisher_id": publishers[prefix + s.publisher],
                "revision_id": revisions[products[s.key]],
                "publisher_slug": prefix + s.publisher,
                "product_slug": s.key,
                "publisher_name": PUBLISHER_NAMES.get(s.publisher, s.publisher.title()),
                "name": s.name,
                "short_description": s.short,
                "long_description": s.long,
                "category": s.category,
                "tags": s.tags,
                "free": s.free,
                "certified": s.certified,
                "downloads": s.downloads,
                "images": {},
                "status": s.status,
                "status_reason": "",
                "published_at": when,
                "updated_at": when,
            }
        )
    session.execute(insert(Listing), rows)
    ids = dict(
        session.execute(select(Listing.product_slug, Listing.id).where(Listing.publisher_id.in_(mine))).all()
    )
    platforms = [{"listing_id": ids[s.key], "platform": p} for s in specs for p in sorted(set(s.platforms))]
    if platforms:
        session.execute(insert(ListingPlatform), platforms)
    SearchService(session).index_rows(
        [
            (
                ids[s.key],
                {
                    "name": s.name,
                    "tags": " ".join(s.tags),
                    "publisher": PUBLISHER_NAMES.get(s.publisher, s.publisher.title()),
                    "short": s.short,
                    "category": s.category or "",
                    "long": s.long,
                },
            )
            for s in specs
        ]
    )
    session.flush()
    return ids


# -- the shared data set: the same query gives the same ids, in the same order, on SQLite and PostgreSQL --
LOREM = "reliable fast service for teams running containers in production with support"
SHARED: list[Spec] = [
    Spec(
        "redis-cache",
        "Redis Cache",
        "acme",
        "In-memory key value store",
        "Redis keeps data in memory. " + LOREM,
        "Database",
        ["cache", "kv", "nosql"],
        free=True,
        certified=True,
        downloads=900,
        platforms=["linux/amd64", "linux/arm64"],
        age=10,
    ),
    Spec(
        "pg-backup",
        "Postgres Backup",
        "acme",
        "Backups for PostgreSQL",
        "Point in time recovery. " + LOREM,
        "Database",
        ["postgres", "backup"],
        free=False,
        certified=True,
        downloads=300,
        age=5,
    ),
    Spec(
        "cache-proxy",
        "Edge Proxy",
        "globex",
        "HTTP proxy with a cache",
        "Speeds up web sites. " + LOREM,
        "Networking",
        ["http", "proxy"],
        free=True,
        downloads=500,
        platforms=["linux/amd64"],
        age=20,
    ),
    Spec(
        "log-shipper",
        "Log Shipper",
        "globex",
        "Ships logs",
        "Works with redis and kafka as buffers. " + LOREM,
        "Monitoring",
        ["logs"],
        free=True,
        downloads=120,
        platforms=["linux/arm64"],
        age=1,
    ),
    Spec(
        "metrics-db",
        "Metrics DB",
        "initech",
        "Time series database for metrics",
        "Stores metrics; a cache of recent points. " + LOREM,
        "Database",
        ["metrics", "tsdb"],
        certified=True,
        downloads=700,
        platforms=["linux/amd64", "linux/arm64", "linux/s390x"],
        age=3,
    ),
    Spec(
        "vault-secrets",
        "Secret Vault",
        "initech",
        "Secrets management",
        "Keeps secrets encrypted. " + LOREM,
        "Security",
        ["secrets", "encryption"],
        free=True,
        downloads=50,
        age=40,
    ),
    Spec(
        "kafka-bus",
        "Kafka Message Bus",
        "umbrella",
        "Event streaming",
        "High throughput messaging. " + LOREM,
        "Messaging",
        ["kafka", "events"],
        downloads=800,
        platforms=["linux/amd64"],
        age=8,
    ),
    Spec(
        "nginx-web",
        "Nginx Web Server",
        "umbrella",
        "Fast web server and reverse proxy",
        "Serves static files; proxy_cache for caching. " + LOREM,
        "Web Servers",
        ["http", "web"],
        free=True,
        certified=True,
        downloads=1000,
        platforms=["linux/amd64", "linux/arm64"],
        age=30,
    ),
    Spec(
        "café-analytics",
        "Café Analytics",
        "acme",
        "Analyse des données 😀",
        "Tableaux de bord. " + LOREM,
        "Analytics",
        ["bi", "dashboards"],
        free=True,
        downloads=60,
        age=2,
    ),
    Spec(
        "redis-revoked",
        "Redis Revoked",
        "globex",
        "A revoked redis",
        "Redis but revoked. " + LOREM,
        "Database",
        ["cache"],
        free=True,
        downloads=5000,
        status="revoked",
        age=0,
    ),
    Spec(
        "redis-on-hold",
        "Redis Hold",
        "globex",
        "A redis on hold",
        "Redis cache on hold. " + LOREM,
        "Database",
        ["cache"],
        free=True,
        downloads=10,
        status="on_hold",
        age=6,
    ),
    Spec(
        "ml-notebook",
        "ML Notebook",
        "initech",
        "Machine learning notebooks",
        "Train models. " + LOREM,
        "Machine Learning",
        ["ml", "python"],
        downloads=300,
        platforms=["linux/amd64"],
        age=12,
    ),
]


# Queries (and filter values) that must never be an error, on any database, page or API.
HOSTILE = [
    '"',
    '""',
    '"unterminated phrase',
    "AND OR NOT",
    "NEAR(redis cache, 2)",
    "redis*",
    "*",
    "^redis",
    "name:redis",
    "{name tags}: redis",
    "'; DROP TABLE listing; --",
    "a & b | !c <-> d:*A",
    "-",
    "--",
    "- - -",
    "OR",
    "OR OR redis OR",
    "\x00",
    "redis\x00cache",
    "😀🐳🚀",
    "!!!???...",
    "\uff32\uff25\uff24\uff29\uff33",
    "Ĉàché",
    "数据库 キャッシュ",
    "مخزن",
    "\u200b\u200d\ufeff",
    "x" * 10_000,
    " ".join(["redis"] * 5_000),
    '"' * 10_000,
    "-" + "a" * 9_999,
    "\\",
    "(redis",
    "redis)",
    ":",
    "*:*",
]
