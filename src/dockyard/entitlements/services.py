"""Customers' entitlements: getting a free tier (the licence accepted), cancelling, revoking, listing; and
the one pull decision the registry's token endpoint asks for a store path (``pull_grant``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.accounts.services import AccountService
from dockyard.authz import Permission, Principal, Scope, StaffRole, allowed, require
from dockyard.db import MAX_ID, utcnow
from dockyard.entitlements.models import Entitlement, EntitlementKind, EntitlementStatus
from dockyard.entitlements.store import LiveRevision, StoreCache, StoreCatalog, TierFacts
from dockyard.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.publishing.models import Product, Publisher
from dockyard.store.models import Listing, ListingStatus

REASON_MAX = 2000
# The store team members who may pull any product (to check what customers get).
STORE_STAFF = frozenset({StaffRole.STORE_ADMIN, StaffRole.STORE_REVIEWER})


class PaymentUnavailable(Conflict):
    """A paid tier asked for: payment comes with the commerce work (409 in every envelope)."""

    code = "PAYMENT_UNAVAILABLE"


@dataclass(frozen=True)
class PulledImage:
    """An image an entitlement includes: its store name and the tags pinned for it."""

    image: str
    tags: list[str]


@dataclass(frozen=True)
class EntitlementInfo:
    id: int
    publisher: str
    product: str  # the slug
    product_name: str
    tier: str
    kind: str
    status: str
    free: bool
    license_url: str | None
    license_accepted_at: dt.datetime | None
    notify_security: bool
    since: dt.datetime
    ended_at: dt.datetime | None
    live: bool  # the product is on the store now
    images: list[PulledImage]


def _field(name: str, message: str) -> Invalid:
    return Invalid(message, detail=[{"field": name, "message": message}])


class EntitlementService:
    def __init__(self, session: Session, bus: EventBus, accounts: AccountService, cache: StoreCache) -> None:
        self.session = session
        self.bus = bus
        self.accounts = accounts
        self.catalog = StoreCatalog(session, cache)

    # -- customers -------------------------------------------------------------------------------------
    def tier_offer(self, publisher: str, product: str, tier: str) -> tuple[LiveRevision, TierFacts]:
        """The live revision of a product on the store and one of its tiers (NotFound otherwise)."""
        live = self.catalog.live(publisher, product)
        if live is None or self._withdrawn(live.product_id):
            raise NotFound(f"no product {publisher}/{product} on the store")
        facts = live.tier(tier)
        if facts is None:
            raise _field("tier", f"{publisher}/{product} has no tier named {tier!r}")
        return live, facts

    def get_tier(
        self,
        publisher: str,
        product: str,
        tier: str,
        principal: Principal,
        actor: Actor,
        *,
        accept_license: bool,
        notify_security: bool = True,
    ) -> Entitlement:
        """Get a free tier: the licence must be accepted (its link and the time are kept); the entitlement is
        active at once. Getting a tier again re-activates the same row. Paid tiers: PaymentUnavailable."""
        self._customer(principal)
        live, facts = self.tier_offer(publisher, product, tier)
        if not facts.free:
            raise PaymentUnavailable(
                f"{facts.name!r} is a paid tier: payment is not yet available on this store"
            )
        if not accept_license:
            raise _field("accept_license", "Accept the licence to get this tier.")
        now = utcnow()
        row = self.session.scalar(
            select(Entitlement).where(
                Entitlement.user_id == principal.user_id,
                Entitlement.product_id == live.product_id,
                Entitlement.tier == facts.name,
            )
        )
        if row is not None and row.status == EntitlementStatus.REVOKED.value:
            # A revocation (abuse, a chargeback) is the store's or the publisher's call: getting the tier
            # again must not undo it. Cancelled ones (the customer's own choice) are re-activated below.
            raise Forbidden("this entitlement was revoked: ask the publisher or the store team about it")
        reactivated = row is not None
        if row is None:
            row = Entitlement(user_id=principal.user_id, product_id=live.product_id, tier=facts.name)
            self.session.add(row)
        row.kind = EntitlementKind.FREE.value
        row.status = EntitlementStatus.ACTIVE.value
        row.license_url = live.license_url
        row.license_accepted_at = now
        row.revision_id = live.revision_id
        row.notify_security = notify_security
        row.ended_at = None
        row.ends_at = None
        self.session.flush()
        data = {
            "entitlement": row.id,
            "product": product,
            "tier": facts.name,
            "kind": row.kind,
            "license_url": live.license_url,
            "notify_security": notify_security,
            "reactivated": reactivated,
        }
        self.bus.publish(self.session, Event(EventTag.ENTITLEMENT_CREATE, actor, publisher, data=data))
        return row

    def cancel(self, entitlement_id: int, principal: Principal, actor: Actor) -> Entitlement:
        """Cancel one of one's own entitlements (pulls stop with the next token)."""
        self._customer(principal)
        row = self._row(entitlement_id)
        if row is None or row.user_id != principal.user_id:
            raise NotFound("no such entitlement")
        if row.status != EntitlementStatus.ACTIVE.value:
            raise Conflict(f"this entitlement is {row.status} already")
        row.status, row.ended_at = EntitlementStatus.CANCELLED.value, utcnow()
        publisher, product = self._names(row.product_id)
        self.bus.publish(
            self.session,
            Event(
                EventTag.ENTITLEMENT_CANCEL,
                actor,
                publisher,
                data={"entitlement": row.id, "product": product, "tier": row.tier},
            ),
        )
        return row

    def revoke(self, entitlement_id: int, principal: Principal, actor: Actor, reason: str) -> Entitlement:
        """Revoke a customer's entitlement (a store-admin, or the publisher's editors), with a reason."""
        row = self._row(entitlement_id)
        if row is None:
            raise NotFound("no such entitlement")
        publisher, product = self._names(row.product_id)
        if not self.may_revoke(principal, publisher):
            if principal.is_anonymous:
                raise Unauthenticated("authentication required")
            # A customer's entitlements are nobody else's business: as if it did not exist.
            raise NotFound("no such entitlement")
        reason = (reason or "").strip()
        if not reason:
            raise _field("reason", "Say why the entitlement is revoked.")
        if len(reason) > REASON_MAX:
            raise _field("reason", f"At most {REASON_MAX} characters.")
        if row.status == EntitlementStatus.REVOKED.value:
            raise Conflict("this entitlement is revoked already")
        row.status, row.ended_at = EntitlementStatus.REVOKED.value, utcnow()
        data = {"entitlement": row.id, "product": product, "tier": row.tier, "user": row.user_id}
        self.bus.publish(
            self.session,
            Event(EventTag.ENTITLEMENT_REVOKE, actor, publisher, data={**data, "reason": reason}),
        )
        return row

    def may_revoke(self, principal: Principal, publisher: str) -> bool:
        if allowed(principal, Permission.ENTITLEMENT_REVOKE):
            return True
        role = self.accounts.role_in(principal, publisher)
        return allowed(principal, Permission.PRODUCT_EDIT, namespace_role=role)

    def list_for(self, principal: Principal, *, include_ended: bool = True) -> list[EntitlementInfo]:
        """One's own entitlements, newest first, each with the images and tags it lets one pull."""
        self._customer(principal)
        query = select(Entitlement).where(Entitlement.user_id == principal.user_id)
        if not include_ended:
            query = query.where(Entitlement.status == EntitlementStatus.ACTIVE.value)
        newest = query.order_by(Entitlement.created_at.desc(), Entitlement.id.desc())
        rows = list(self.session.scalars(newest))
        return [self.info(row) for row in rows]

    def info(self, row: Entitlement) -> EntitlementInfo:
        product = self.session.get(Product, row.product_id)
        assert product is not None
        publisher, slug = self._names(row.product_id)
        live = self.catalog.revision(product.live_revision_id) if product.live_revision_id else None
        facts = live.tier(row.tier) if live else None
        images = []
        if live is not None and facts is not None:
            images = [
                PulledImage(image, sorted(live.pins[image].tags))
                for image in sorted(facts.images)
                if image in live.pins
            ]
        return EntitlementInfo(
            id=row.id,
            publisher=publisher,
            product=slug,
            product_name=live.name if live else slug,
            tier=row.tier,
            kind=row.kind,
            status=row.status,
            free=row.kind == EntitlementKind.FREE.value,
            license_url=row.license_url,
            license_accepted_at=row.license_accepted_at,
            notify_security=row.notify_security,
            since=row.license_accepted_at or row.created_at,
            ended_at=row.ended_at,
            live=live is not None,
            images=images,
        )

    # -- the registry ----------------------------------------------------------------------------------
    def pull_grant(self, principal: Principal, publisher: str, product: str, image: str) -> bool:
        """Whether ``principal`` may pull ``store/<publisher>/<product>/<image>``: an active entitlement to a
        tier that includes the image, a member of the publisher, the store team (reviewers, admins), or
        anyone when a free tier including it allows anonymous pulls. Members, staff and entitled customers
        are granted even while the product is off the store (the registry then answers 404)."""
        if Scope.PULL not in principal.scopes:
            return False
        ref = self.catalog.product_ref(publisher, product)
        if ref is None:
            return False
        if not principal.is_anonymous:
            if principal.staff & STORE_STAFF:
                return True
            if self.accounts.role_in(principal, publisher) is not None:
                return True
        live = self.catalog.revision(ref.live_revision_id) if ref.live_revision_id else None
        if live is None:
            return principal.kind == "user" and self._active(principal, ref.product_id, None)
        if image not in live.pins:
            return False
        tiers = live.tiers_with(image)
        if any(t.anonymous for t in tiers):
            return True
        if principal.kind != "user" or not tiers:
            return False
        return self._active(principal, ref.product_id, [t.name for t in tiers])

    def _active(self, principal: Principal, product_id: int, tiers: list[str] | None) -> bool:
        query = select(Entitlement.id).where(
            Entitlement.user_id == principal.user_id,
            Entitlement.product_id == product_id,
            Entitlement.status == EntitlementStatus.ACTIVE.value,
        )
        if tiers is not None:
            query = query.where(Entitlement.tier.in_(tiers))
        return self.session.scalar(query.limit(1)) is not None

    # -- helpers ---------------------------------------------------------------------------------------
    def _row(self, entitlement_id: int) -> Entitlement | None:
        # An id past the column's range is simply unknown (SQLite raises OverflowError on it).
        return self.session.get(Entitlement, entitlement_id) if 1 <= entitlement_id <= MAX_ID else None

    def _withdrawn(self, product_id: int) -> bool:
        """Whether the product's listing is revoked: withdrawn from the store, it offers nothing new."""
        status = self.session.scalar(select(Listing.status).where(Listing.product_id == product_id))
        return status == ListingStatus.REVOKED.value

    def _customer(self, principal: Principal) -> None:
        require(principal, Permission.ENTITLEMENT_MANAGE)
        if principal.kind != "user" or principal.user_id is None:
            raise Forbidden("only a user account may hold entitlements")

    def _names(self, product_id: int) -> tuple[str, str]:
        from dockyard.accounts.models import Namespace

        row = self.session.execute(
            select(Namespace.name, Product.slug)
            .join(Publisher, Publisher.namespace_id == Namespace.id)
            .join(Product, Product.publisher_id == Publisher.id)
            .where(Product.id == product_id)
        ).one()
        return str(row[0]), str(row[1])
