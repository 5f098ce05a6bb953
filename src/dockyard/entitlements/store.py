"""What a store path serves: ``store/<publisher>/<product>/<image>`` resolved to the live revision's pins.

A revision is frozen once submitted and its pins are set when it goes live, so what a revision offers (its
tiers, the digests pinned for each image and every manifest and blob reachable from them) never changes:
it is kept per process by revision id (``StoreCache``). Which revision is live is read on each request
(one indexed query), so publishing and unpublishing take effect at once in every worker process.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from dockyard.accounts.models import Namespace
from dockyard.publishing.models import Product, ProductRevision, Publisher, RevisionState
from dockyard.registry.models import Manifest, ManifestReference, Repository
from dockyard.store.models import Listing

STORE_NAMESPACE = "store"
STORE_PREFIX = STORE_NAMESPACE + "/"


def split_store_name(name: str) -> tuple[str, str, str] | None:
    """``store/<publisher>/<product>/<image>`` as its three parts; None for any other name."""
    if not name.startswith(STORE_PREFIX):
        return None
    parts = name.split("/")
    if len(parts) != 4 or not all(parts[1:]):
        return None
    return parts[1], parts[2], parts[3]


def store_name(publisher: str, product: str, image: str) -> str:
    return f"{STORE_PREFIX}{publisher}/{product}/{image}"


@dataclass(frozen=True)
class TierFacts:
    name: str
    free: bool
    images: frozenset[str]
    anonymous: bool
    price: dict[str, Any] | None  # None: free


@dataclass(frozen=True)
class PinnedImage:
    repository: str  # the staging repository: never shown to customers
    tags: dict[str, str]  # tag -> digest


@dataclass
class LiveRevision:
    """What one published revision offers (immutable, hence cached by revision id)."""

    revision_id: int
    product_id: int
    publisher_id: int
    name: str
    license_url: str | None
    tiers: tuple[TierFacts, ...]
    pins: dict[str, PinnedImage]
    # image -> (manifest digests, blob digests) reachable from its pinned digests; filled on first use.
    reachable: dict[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)

    def tier(self, name: str) -> TierFacts | None:
        return next((t for t in self.tiers if t.name == name), None)

    def tiers_with(self, image: str) -> list[TierFacts]:
        return [t for t in self.tiers if image in t.images]


@dataclass(frozen=True)
class ProductRef:
    product_id: int
    publisher_id: int
    live_revision_id: int | None


@dataclass(frozen=True)
class ListingState:
    """Where the product stands with the compliance rules when it was read (held and revoked products
    answer pulls with a warning, or refuse them once a revocation's grace has passed)."""

    status: str | None = None
    since: dt.datetime | None = None


# The one query each store request makes before serving: which product, which revision is live, and the
# state of its listing.
PRODUCT_REF = (
    select(Product.id, Product.publisher_id, Product.live_revision_id, Listing.status, Listing.status_since)
    .join(Publisher, Publisher.id == Product.publisher_id)
    .join(Namespace, Namespace.id == Publisher.namespace_id)
    .outerjoin(Listing, Listing.product_id == Product.id)
    .where(Namespace.name == bindparam("publisher"), Product.slug == bindparam("product"))
)


# A manifest GET's one round trip when the live revision is the one this process saw last: which revision is
# live now, and the manifest the pins of the one seen last name, together. Used only when the two agree.
_manifest = Manifest.__table__
_repository = Repository.__table__
LIVE_AND_MANIFEST = (
    PRODUCT_REF.with_only_columns(
        Product.live_revision_id,
        Listing.status,
        Listing.status_since,
        _manifest.c.digest,
        _manifest.c.media_type,
        _manifest.c.payload,
        _manifest.c.subject_digest,
    )
    .outerjoin(_repository, _repository.c.name == bindparam("repository"))
    .outerjoin(
        _manifest,
        (_manifest.c.repository_id == _repository.c.id) & (_manifest.c.digest == bindparam("digest")),
    )
)


class StoreCache:
    """Live revisions' facts by revision id, shared by one process's requests (bounded: cleared when full),
    and the live revision each store path had when this process last served it (a guess, always checked)."""

    LIMIT = 2048

    def __init__(self) -> None:
        self._revisions: dict[int, LiveRevision] = {}
        self._last_live: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def last_live(self, publisher: str, product: str) -> LiveRevision | None:
        """The revision last seen live for ``publisher/product`` (None: none seen, or no longer cached)."""
        revision_id = self._last_live.get((publisher, product))
        return self._revisions.get(revision_id) if revision_id is not None else None

    def saw_live(self, publisher: str, product: str, revision_id: int) -> None:
        with self._lock:
            if len(self._last_live) >= self.LIMIT:
                self._last_live.clear()
            self._last_live[(publisher, product)] = revision_id

    def get(self, revision_id: int) -> LiveRevision | None:
        return self._revisions.get(revision_id)

    def put(self, live: LiveRevision) -> LiveRevision:
        with self._lock:
            if len(self._revisions) >= self.LIMIT:
                self._revisions.clear()
            return self._revisions.setdefault(live.revision_id, live)

    def clear(self) -> None:
        with self._lock:
            self._revisions.clear()


class StoreCatalog:
    """Reads a store path needs, on one session: the product, its live revision, what that pins."""

    def __init__(self, session: Session, cache: StoreCache | None = None) -> None:
        self.session = session
        self.cache = cache if cache is not None else StoreCache()
        self.state = ListingState()  # the listing's state as the last read of the product found it

    def product_ref(self, publisher: str, product: str) -> ProductRef | None:
        """The product ``publisher/product`` and its live revision id; None when there is no such product."""
        row = (
            self.session.connection()
            .execute(PRODUCT_REF, {"publisher": publisher, "product": product})
            .first()
        )
        if row is None:
            return None
        self.state = ListingState(row.status, row.status_since)
        return ProductRef(row[0], row[1], row[2])

    def revision(self, revision_id: int) -> LiveRevision:
        """The facts of a published revision (cached: a published revision never changes)."""
        cached = self.cache.get(revision_id)
        if cached is not None:
            return cached
        revision = self.session.get(ProductRevision, revision_id)
        assert revision is not None
        product = self.session.get(Product, revision.product_id)
        assert product is not None
        manifest = revision.manifest or {}
        tiers = tuple(
            TierFacts(
                name=str(t.get("name")),
                free=t.get("price") in (None, "free"),
                images=frozenset(t.get("images") or ()),
                anonymous=bool(t.get("anonymous_pulls")) and t.get("price") in (None, "free"),
                price=t.get("price") if isinstance(t.get("price"), dict) else None,
            )
            for t in manifest.get("tiers") or []
        )
        pins = {
            image: PinnedImage(str(pin["repository"]), {str(k): str(v) for k, v in pin["tags"].items()})
            for image, pin in (revision.pins or {}).items()
        }
        live = LiveRevision(
            revision.id,
            product.id,
            product.publisher_id,
            str(manifest.get("name") or product.slug),
            manifest.get("license_url"),
            tiers,
            pins,
        )
        return self.cache.put(live)

    def live(self, publisher: str, product: str) -> LiveRevision | None:
        """The live revision of ``publisher/product``; None when unknown or not on the store."""
        ref = self.product_ref(publisher, product)
        if ref is None or ref.live_revision_id is None:
            return None
        live = self.revision(ref.live_revision_id)
        self.cache.saw_live(publisher, product, live.revision_id)
        return live

    def live_with_manifest(
        self, publisher: str, product: str, repository: str, digest: str, seen: LiveRevision
    ) -> tuple[bool, Any]:
        """In one statement: whether ``seen`` is still the live revision, and the row of ``digest`` in
        ``repository`` (None when absent). When it is not live any more, the caller starts again."""
        row = (
            self.session.connection()
            .execute(
                LIVE_AND_MANIFEST,
                {"publisher": publisher, "product": product, "repository": repository, "digest": digest},
            )
            .first()
        )
        if row is None or row.live_revision_id != seen.revision_id:
            return False, None
        self.state = ListingState(row.status, row.status_since)
        return True, row if row.digest is not None else None

    def reachable(self, live: LiveRevision, image: str) -> tuple[frozenset[str], frozenset[str]]:
        """The manifests and blobs a customer may fetch by digest for ``image``: its pinned digests, the
        children of a pinned index, and their configs and layers (the registry's reference edges)."""
        found = live.reachable.get(image)
        if found is not None:
            return found
        pin = live.pins[image]
        manifests: set[str] = set(pin.tags.values())
        blobs: set[str] = set()
        frontier = set(manifests)
        repository_id = self.session.scalar(select(Repository.id).where(Repository.name == pin.repository))
        while frontier and repository_id is not None:
            rows = self.session.execute(
                select(ManifestReference.digest, ManifestReference.kind)
                .join(Manifest, Manifest.id == ManifestReference.manifest_id)
                .where(Manifest.repository_id == repository_id, Manifest.digest.in_(sorted(frontier)))
            ).all()
            frontier = set()
            for digest, kind in rows:
                if kind == "manifest":
                    if digest not in manifests:
                        manifests.add(digest)
                        frontier.add(digest)
                else:
                    blobs.add(digest)
        found = (frozenset(manifests), frozenset(blobs))
        live.reachable[image] = found
        return found


def pinned_manifests(session: Session, repository: str) -> dict[str, str]:
    """Digests of ``repository`` that an approved or live revision pins (with what can reach them: index
    children), each with the product that pins it as ``publisher/product``. A manifest delete must not
    take what customers pull (or are about to) from under them."""
    return _pinned(session, repository)[0]


def pinned_blobs(session: Session, repository: str) -> dict[str, str]:
    """The configs and layers of ``repository`` that the manifests ``pinned_manifests`` names reference,
    each with the product that pins it: unlinking one would break every customer's pull of the product
    (and let gc free its bytes) as surely as deleting the manifest."""
    return _pinned(session, repository)[1]


def _pinned(session: Session, repository: str) -> tuple[dict[str, str], dict[str, str]]:
    namespace = repository.split("/", 1)[0]
    rows = session.execute(
        select(ProductRevision.id, ProductRevision.pins, Product.slug)
        .join(Product, Product.id == ProductRevision.product_id)
        .join(Publisher, Publisher.id == Product.publisher_id)
        .join(Namespace, Namespace.id == Publisher.namespace_id)
        .where(
            Namespace.name == namespace,
            ProductRevision.state.in_([RevisionState.APPROVED.value, RevisionState.PUBLISHED.value]),
            ProductRevision.pins.is_not(None),
        )
    ).all()
    pinned: dict[str, str] = {}
    blobs: dict[str, str] = {}
    catalog = StoreCatalog(session)
    for revision_id, pins, slug in rows:
        for image, pin in (pins or {}).items():
            if pin.get("repository") != repository:
                continue
            live = catalog.revision(revision_id)
            manifests, layers = catalog.reachable(live, image)
            for digest in manifests:
                pinned.setdefault(digest, f"{namespace}/{slug}")
            for digest in layers:
                blobs.setdefault(digest, f"{namespace}/{slug}")
    return pinned, blobs
