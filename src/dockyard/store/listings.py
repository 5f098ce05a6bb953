"""Listings: a product as the store shows it, copied from its live revision when it is published.

Search, the home page and the product page read these rows and never parse a manifest or a stored image on
a customer's request. A listing is written by an in-transaction subscriber on publish and unpublish (so it
commits, or not, with the revision's move), and refreshed when the publisher's profile or a badge changes.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dockyard.accounts.models import Namespace
from dockyard.db import utcnow
from dockyard.events import Event, EventBus, EventTag
from dockyard.publishing.manifest import ProductManifest, parse_manifest
from dockyard.publishing.models import Product, ProductRevision, Publisher
from dockyard.registry import imagefacts as facts
from dockyard.registry.models import Manifest, Repository, RepositoryBlob
from dockyard.storage.blobstore import BlobStore
from dockyard.store.models import CERTIFIED_KINDS, Listing, ListingPlatform, ListingStatus, ProductBadge
from dockyard.store.search import SearchService

log = logging.getLogger("dockyard.store")

CONFIG_LIMIT = 1024 * 1024  # an image config larger than this is not read for its platform


class ListingService:
    """Keeps one listing row per live product."""

    def __init__(self, session: Session, blobs: BlobStore) -> None:
        self.session = session
        self.blobs = blobs

    def sync(self, product_id: int) -> Listing | None:
        """Write the listing of a product from its live revision; remove it when nothing is live."""
        product = self.session.get(Product, product_id)
        # By its id, not the relationship: publishing sets the id, and a relationship loaded before keeps
        # the old revision until the session expires it.
        live_id = product.live_revision_id if product is not None else None
        live = self.session.get(ProductRevision, live_id) if live_id is not None else None
        listing = self.session.scalar(select(Listing).where(Listing.product_id == product_id))
        if product is None or live is None:
            if listing is not None:
                SearchService(self.session).unindex(listing.id)
                self.session.delete(listing)
                self.session.flush()
            return None
        publisher = product.publisher
        org = self.session.scalar(select(Namespace.name).where(Namespace.id == publisher.namespace_id)) or ""
        manifest = parse_manifest(live.manifest)
        images = self.image_facts(live)
        if listing is None:
            listing = Listing(
                product_id=product.id,
                publisher_id=publisher.id,
                published_at=product.published_at or utcnow(),
                status=ListingStatus.LISTED.value,
            )
            self.session.add(listing)
        listing.revision_id = live.id
        listing.publisher_slug, listing.product_slug = org, product.slug
        listing.publisher_name = publisher_display_name(publisher, org)
        self._copy_manifest(listing, manifest)
        listing.images = images
        listing.certified = self._certified(product.id)
        listing.updated_at = live.published_at or utcnow()
        self.session.flush()
        platforms = sorted({p for tags in images.values() for tag in tags.values() for p in tag["platforms"]})
        self.session.execute(delete(ListingPlatform).where(ListingPlatform.listing_id == listing.id))
        if platforms:
            self.session.execute(
                ListingPlatform.__table__.insert(),
                [{"listing_id": listing.id, "platform": p} for p in platforms],
            )
        SearchService(self.session).index(listing)
        return listing

    def sync_publisher(self, publisher_id: int) -> int:
        """Refresh the listings of every live product of a publisher (its name or logo changed)."""
        ids = self.session.scalars(
            select(Product.id).where(
                Product.publisher_id == publisher_id, Product.live_revision_id.is_not(None)
            )
        ).all()
        for product_id in ids:
            self.sync(product_id)
        return len(ids)

    def set_certified(self, product_id: int) -> None:
        """Recompute a listing's certified flag after a badge was granted or withdrawn."""
        listing = self.session.scalar(select(Listing).where(Listing.product_id == product_id))
        if listing is not None:
            listing.certified = self._certified(product_id)
            self.session.flush()

    # -- parts ---------------------------------------------------------------------------------------------
    @staticmethod
    def _copy_manifest(listing: Listing, manifest: ProductManifest) -> None:
        listing.name = manifest.name
        listing.short_description = manifest.short_description
        listing.long_description = manifest.long_description
        listing.category = manifest.category.value if manifest.category else None
        listing.tags = list(manifest.tags)
        listing.logo_id = manifest.logo
        listing.free = any(tier.price is None for tier in manifest.tiers)

    def _certified(self, product_id: int) -> bool:
        # A held or revoked product's certified badges are suspended: it is not found as certified.
        status = self.session.scalar(select(Listing.status).where(Listing.product_id == product_id))
        if status is not None and status != ListingStatus.LISTED.value:
            return False
        kinds = self.session.scalars(select(ProductBadge.kind).where(ProductBadge.product_id == product_id))
        return any(kind in CERTIFIED_KINDS for kind in kinds)

    def image_facts(self, revision: ProductRevision) -> dict[str, dict[str, dict[str, Any]]]:
        """{image: {tag: {"digest", "platforms", "size"}}} of a revision's pinned digests (platform names
        like ``linux/arm64``; size compressed, summed over an index's platforms)."""
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for image, pin in (revision.pins or {}).items():
            repo_id = self.session.scalar(select(Repository.id).where(Repository.name == pin["repository"]))
            tags: dict[str, str] = pin.get("tags", {})
            result[image] = {
                tag: self._digest_facts(repo_id, digest) if repo_id is not None else _unknown(digest)
                for tag, digest in tags.items()
            }
        return result

    def _digest_facts(self, repository_id: int, digest: str) -> dict[str, Any]:
        parsed = self._stored(repository_id, digest)
        if parsed is None:
            return _unknown(digest)
        if parsed.is_index:
            platforms, sizes = [], []
            for d in parsed.manifests:
                if facts.is_attestation(d):
                    continue
                platforms.append(facts.descriptor_platform(d).label)
                size = facts.image_size(self._stored(repository_id, d.digest))
                if size is not None:
                    sizes.append(size)
            return {
                "digest": digest,
                "platforms": sorted(set(platforms)),
                "size": sum(sizes) if sizes else None,
            }
        platform = "unknown"
        if facts.kind_of(parsed) == facts.IMAGE and parsed.config is not None:
            platform = facts.config_platform(self._config(repository_id, parsed.config.digest)).label
        return {"digest": digest, "platforms": [platform], "size": facts.image_size(parsed)}

    def _stored(self, repository_id: int, digest: str) -> Any:
        row = self.session.execute(
            select(Manifest.payload, Manifest.media_type).where(
                Manifest.repository_id == repository_id, Manifest.digest == digest
            )
        ).first()
        return facts.parse(row.payload, row.media_type) if row is not None else None

    def _config(self, repository_id: int, digest: str) -> dict[str, Any] | None:
        # The blob store is shared by every repository: only a blob linked to this one is opened.
        linked = self.session.scalar(
            select(RepositoryBlob.id).where(
                RepositoryBlob.repository_id == repository_id, RepositoryBlob.digest == digest
            )
        )
        if linked is None:
            return None
        try:
            with self.blobs.open(digest) as fh:
                data = fh.read(CONFIG_LIMIT + 1)
        except OSError:
            return None
        return facts.load_config(data) if len(data) <= CONFIG_LIMIT else None


def publisher_display_name(publisher: Publisher, org: str) -> str:
    """The name customers see: the legal entity's, else the organisation's."""
    return (publisher.legal_name or org)[:200]


def _unknown(digest: str) -> dict[str, Any]:
    return {"digest": digest, "platforms": [], "size": None}


def subscribe(bus: EventBus, blobs: BlobStore) -> None:
    """Keep listings in step with publishing, in the transaction of the change."""

    def on_revision(session: Session, event: Event) -> None:
        revision = session.get(ProductRevision, event.data.get("revision"))
        if revision is not None:
            ListingService(session, blobs).sync(revision.product_id)

    def on_publisher(session: Session, event: Event) -> None:
        publisher_id = session.scalar(
            select(Publisher.id)
            .join(Namespace, Namespace.id == Publisher.namespace_id)
            .where(Namespace.name == event.namespace)
        )
        if publisher_id is not None:
            ListingService(session, blobs).sync_publisher(publisher_id)

    bus.subscribe(EventTag.PRODUCT_PUBLISH, on_revision)
    bus.subscribe(EventTag.PRODUCT_UNPUBLISH, on_revision)
    bus.subscribe(EventTag.PUBLISHER_UPDATE, on_publisher)
