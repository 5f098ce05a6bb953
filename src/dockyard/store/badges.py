"""Store badges (Certified Container, Certified Plugin, Certified Infrastructure, Official), granted and
withdrawn by a store-admin with a reason for now; the certification work will compute them later.

Each change is audited (BADGE_GRANT / BADGE_WITHDRAW, with the reason) and the listing's ``certified``
flag is recomputed in the same transaction, so search's certified filter follows at once.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.authz import Permission, Principal, require
from dockyard.db import utcnow
from dockyard.errors import Invalid, NotFound
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.storage.blobstore import BlobStore
from dockyard.store.listings import ListingService
from dockyard.store.models import BadgeKind, Listing, ProductBadge

REASON_MAX = 2000


def badge_kind(value: str) -> BadgeKind:
    """A badge kind from its name, or Invalid naming the field."""
    try:
        return BadgeKind(value)
    except ValueError:
        kinds = ", ".join(k.value for k in BadgeKind)
        raise Invalid(
            f"unknown badge {value[:40]!r}: one of {kinds}", detail=[{"field": "kind", "message": kinds}]
        ) from None


def _reason(value: str | None) -> str:
    reason = (value or "").strip()
    if not reason:
        message = "Give a reason: it is kept in the audit log."
        raise Invalid(message, detail=[{"field": "reason", "message": message}])
    if len(reason) > REASON_MAX:
        message = f"At most {REASON_MAX} characters."
        raise Invalid(message, detail=[{"field": "reason", "message": message}])
    return reason


class BadgeService:
    """Grants and withdraws a published product's badges."""

    def __init__(self, session: Session, bus: EventBus, blobs: BlobStore) -> None:
        self.session = session
        self.bus = bus
        self.blobs = blobs

    def badges(self, publisher: str, product: str) -> list[ProductBadge]:
        """The badges of a published product (NotFound when it is not in the store)."""
        listing = self._listing(publisher, product)
        return list(
            self.session.scalars(
                select(ProductBadge)
                .where(ProductBadge.product_id == listing.product_id)
                .order_by(ProductBadge.id)
            )
        )

    def grant(
        self, publisher: str, product: str, kind: str, reason: str | None, principal: Principal, actor: Actor
    ) -> ProductBadge:
        """Grant a badge to a published product (again: a new reason and date); store-admins only."""
        require(principal, Permission.BADGE_MANAGE)
        badge_kind_ = badge_kind(kind)
        why = _reason(reason)
        listing = self._listing(publisher, product)
        row = self._find(listing.product_id, badge_kind_)
        if row is None:
            row = ProductBadge(product_id=listing.product_id, kind=badge_kind_.value)
            self.session.add(row)
        row.reason, row.granted_by, row.granted_at = why, principal.user_id, utcnow()
        self.session.flush()
        self._changed(EventTag.BADGE_GRANT, listing, badge_kind_, why, actor)
        return row

    def withdraw(
        self, publisher: str, product: str, kind: str, reason: str | None, principal: Principal, actor: Actor
    ) -> None:
        """Withdraw a product's badge; NotFound when it does not have it. Store-admins only."""
        require(principal, Permission.BADGE_MANAGE)
        badge_kind_ = badge_kind(kind)
        why = _reason(reason)
        listing = self._listing(publisher, product)
        row = self._find(listing.product_id, badge_kind_)
        if row is None:
            raise NotFound(f"{product} has no {badge_kind_.value} badge")
        self.session.delete(row)
        self.session.flush()
        self._changed(EventTag.BADGE_WITHDRAW, listing, badge_kind_, why, actor)

    # -- parts ---------------------------------------------------------------------------------------------
    def _listing(self, publisher: str, product: str) -> Listing:
        listing = self.session.scalar(
            select(Listing).where(Listing.publisher_slug == publisher, Listing.product_slug == product)
        )
        if listing is None:
            raise NotFound("no such product in the store")
        return listing

    def _find(self, product_id: int, kind: BadgeKind) -> ProductBadge | None:
        return self.session.scalar(
            select(ProductBadge).where(ProductBadge.product_id == product_id, ProductBadge.kind == kind.value)
        )

    def _changed(self, tag: EventTag, listing: Listing, kind: BadgeKind, reason: str, actor: Actor) -> None:
        ListingService(self.session, self.blobs).set_certified(listing.product_id)
        self.bus.publish(
            self.session,
            Event(
                tag,
                actor,
                namespace=listing.publisher_slug,
                data={"product": listing.product_slug, "kind": kind.value, "reason": reason},
            ),
        )
