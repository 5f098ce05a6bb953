"""The compliance loop: clocks in step with live revisions, notices, hold, lift and revocation, extensions
and VEX statements.

``check(now)`` is the whole loop and is what the periodic job runs; it decides from stored times only, so a
check that runs late (a stopped server) decides what one on time would have, and running it twice changes
nothing. Every transition publishes an event (the audit row; mail and webhooks hang off it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard.accounts.models import Namespace
from dockyard.authz import Permission, Principal
from dockyard.compliance.clocks import CRITICAL, ClockBook, SyncResult, due_after
from dockyard.compliance.models import FindingClock
from dockyard.config import Settings
from dockyard.db import utcnow
from dockyard.errors import Conflict, Forbidden, Invalid, NotFound
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.publishing.models import Product, Publisher
from dockyard.store.models import Listing, ListingStatus

if TYPE_CHECKING:
    from dockyard.services import Services

REASON_MAX = 2000
# One extension gives at most this much more time (a clock can be extended again, each time audited): a
# deadline pushed to the year 9999 would be no deadline.
MAX_EXTENSION = dt.timedelta(days=90)
DIGEST_EVERY = dt.timedelta(hours=24)  # a publisher's digest of new Major and Minor findings: once a day


@dataclass
class CheckReport:
    synced: int = 0
    opened: int = 0
    resolved: int = 0
    notified: int = 0
    held: list[int] = field(default_factory=list)
    lifted: list[int] = field(default_factory=list)
    revoked: list[int] = field(default_factory=list)


def clock_view(clock: FindingClock) -> dict[str, Any]:
    """A clock as events and mails carry it."""
    return {
        "clock": clock.id,
        "vulnerability": clock.vuln_id,
        "image": clock.image,
        "digest": clock.digest,
        "platform": clock.platform,
        "component": clock.component,
        "severity": clock.severity,
        "due_at": clock.due_at.isoformat() + "Z" if clock.due_at else None,
    }


class ComplianceService:
    def __init__(self, session: Session, bus: EventBus, settings: Settings, services: Services) -> None:
        self.session = session
        self.bus = bus
        self.settings = settings
        self.services = services

    # -- the loop ------------------------------------------------------------------------------------------
    def check(self, now: dt.datetime | None = None) -> CheckReport:
        """Sync every live product's clocks, send the notices due, then hold, lift and revoke."""
        now = now or utcnow()
        report = CheckReport()
        with_clocks = select(FindingClock.product_id).where(FindingClock.resolved_at.is_(None))
        products = self.session.scalars(
            select(Product)
            .where((Product.live_revision_id.is_not(None)) | Product.id.in_(with_clocks))
            .order_by(Product.id)
        ).all()
        for product in products:
            result = self.sync_product(product, now)
            report.synced += 1
            report.opened += len(result.opened)
            report.resolved += len(result.resolved)
        report.notified = self.notify(now)
        self.transitions(now, report)
        return report

    def sync_product(self, product: Product, now: dt.datetime) -> SyncResult:
        """One product's clocks against its live revision (an event when anything changed)."""
        result = ClockBook(self.session).sync(product, now)
        if result:
            self._publish(
                EventTag.COMPLIANCE_FINDINGS,
                product,
                Actor.system(),
                {
                    "opened": [clock_view(c) for c in result.opened],
                    "resolved": [dict(clock_view(c), resolution=c.resolution) for c in result.resolved],
                    "restarted": [clock_view(c) for c in result.restarted],
                },
            )
        return result

    def after_publishing(self, product: Product, tag: EventTag, now: dt.datetime) -> None:
        """A revision went live or the product left the store: its clocks follow at once, a new Critical is
        told at once, and a fix lifts its hold. A revoked product comes back only this way: a new revision
        through full review (the fast path never takes a revoked one)."""
        self.sync_product(product, now)
        listing = self.session.scalar(select(Listing).where(Listing.product_id == product.id))
        if (
            tag == EventTag.PRODUCT_PUBLISH
            and listing is not None
            and listing.status == ListingStatus.REVOKED
        ):
            self._move(listing, ListingStatus.LISTED, now, "", [])
        self.notify(now)
        self.transitions(now)

    def notify(self, now: dt.datetime) -> int:
        """Start the clocks of findings not told yet: Critical ones by an email at once, the rest in the
        publisher's daily digest (at most one a day). Returns how many clocks were started."""
        rows = self.session.execute(
            select(FindingClock, Product)
            .join(Product, Product.id == FindingClock.product_id)
            .where(FindingClock.resolved_at.is_(None), FindingClock.notified_at.is_(None))
            .order_by(FindingClock.product_id, FindingClock.id)
        ).all()
        critical: dict[int, list[FindingClock]] = {}
        rest: dict[int, list[FindingClock]] = {}
        products: dict[int, Product] = {}
        for clock, product in rows:
            products[product.id] = product
            (critical if clock.severity == CRITICAL else rest).setdefault(product.id, []).append(clock)
        started = 0
        for product_id, clocks in critical.items():
            started += self._tell(products[product_id], clocks, "email", now)
        by_publisher: dict[int, list[int]] = {}
        for product_id in rest:
            by_publisher.setdefault(products[product_id].publisher_id, []).append(product_id)
        for publisher_id, product_ids in by_publisher.items():
            last = self.session.scalar(
                select(func.max(FindingClock.notified_at))
                .join(Product, Product.id == FindingClock.product_id)
                .where(Product.publisher_id == publisher_id, FindingClock.notified_via == "digest")
            )
            if last is not None and now - last < DIGEST_EVERY:
                continue
            for product_id in product_ids:
                started += self._tell(products[product_id], rest[product_id], "digest", now)
        return started

    def seen_on_dashboard(self, product: Product, now: dt.datetime | None = None) -> int:
        """The publisher's page showed the product's open findings: that is a notice too (whichever of it
        and the email comes first starts the clock)."""
        clocks = self.session.scalars(
            select(FindingClock).where(
                FindingClock.product_id == product.id,
                FindingClock.resolved_at.is_(None),
                FindingClock.notified_at.is_(None),
            )
        ).all()
        return self._tell(product, list(clocks), "dashboard", now or utcnow()) if clocks else 0

    def _tell(self, product: Product, clocks: list[FindingClock], via: str, now: dt.datetime) -> int:
        for clock in clocks:
            clock.notified_at, clock.notified_via = now, via
            clock.due_at = due_after(clock.severity, now)
        self.session.flush()
        self._publish(
            EventTag.COMPLIANCE_NOTICE,
            product,
            Actor.system(),
            {"via": via, "clocks": [clock_view(c) for c in clocks]},
        )
        return len(clocks)

    def transitions(self, now: dt.datetime, report: CheckReport | None = None) -> None:
        """Hold listed products with an overdue finding, lift holds with none left, revoke month-old holds."""
        report = report or CheckReport()
        overdue: dict[int, list[FindingClock]] = {}
        for clock in self.session.scalars(
            select(FindingClock)
            .where(FindingClock.resolved_at.is_(None), FindingClock.due_at <= now)
            .order_by(FindingClock.due_at, FindingClock.id)
        ):
            overdue.setdefault(clock.product_id, []).append(clock)
        listings = self.session.scalars(
            select(Listing).where(
                Listing.product_id.in_(sorted(overdue)) | (Listing.status == ListingStatus.ON_HOLD.value)
            )
        ).all()
        hold_for = dt.timedelta(days=self.settings.hold_max_days)
        for listing in listings:
            late = overdue.get(listing.product_id, [])
            if listing.status == ListingStatus.LISTED.value and late:
                self._move(listing, ListingStatus.ON_HOLD, late[0].due_at or now, hold_reason(late), late)
                report.held.append(listing.product_id)
            if listing.status == ListingStatus.ON_HOLD.value and not late:
                self._move(listing, ListingStatus.LISTED, now, "", [])
                report.lifted.append(listing.product_id)
            elif listing.status == ListingStatus.ON_HOLD.value:
                # (also just held: a check that runs a month late holds and revokes at once)
                held_since = listing.status_since or now
                if now - held_since >= hold_for:
                    reason = f"On hold for {self.settings.hold_max_days} days: " + hold_reason(late)
                    self._move(listing, ListingStatus.REVOKED, held_since + hold_for, reason, late)
                    report.revoked.append(listing.product_id)
                elif listing.status_reason != hold_reason(late):
                    listing.status_reason = hold_reason(late)

    def _move(
        self,
        listing: Listing,
        status: ListingStatus,
        since: dt.datetime,
        reason: str,
        late: list[FindingClock],
    ) -> None:
        previous = listing.status
        listing.status, listing.status_since, listing.status_reason = status.value, since, reason
        self.services.listings.set_certified(listing.product_id)  # badges are suspended while held
        self.session.flush()
        tag = {
            ListingStatus.ON_HOLD: EventTag.PRODUCT_HOLD,
            ListingStatus.LISTED: EventTag.PRODUCT_HOLD_LIFT,
            ListingStatus.REVOKED: EventTag.PRODUCT_REVOKE,
        }[status]
        product = self.session.get(Product, listing.product_id)
        assert product is not None
        self._publish(
            tag,
            product,
            Actor.system(),
            {
                "from": previous,
                "since": since.isoformat() + "Z",
                "reason": reason,
                "overdue": [clock_view(c) for c in late],
            },
        )

    # -- the store team ------------------------------------------------------------------------------------
    def extend(
        self, clock_id: int, until: dt.datetime, reason: str, principal: Principal, actor: Actor
    ) -> FindingClock:
        """Give a finding more time (store staff, with a reason); a hold it caused lifts at the next check."""
        self._require_staff(principal)
        clock = self.session.get(FindingClock, clock_id) if 1 <= clock_id <= 2**31 - 1 else None
        if clock is None:
            raise NotFound(f"clock {clock_id} not found")
        reason = _reason(reason)
        if clock.resolved_at is not None:
            raise Conflict("this finding is resolved already: there is nothing to extend")
        if clock.due_at is None:
            raise Conflict(f"a {clock.severity} finding has no due time to extend")
        if until > clock.due_at + MAX_EXTENSION:
            raise Invalid(
                f"an extension gives at most {MAX_EXTENSION.days} more days at a time",
                detail=[
                    {"field": "until", "message": f"At most {MAX_EXTENSION.days} days after the due time."}
                ],
            )
        if until <= clock.due_at:
            raise Invalid(
                "the new due time must be later than the current one",
                detail=[{"field": "until", "message": f"later than {clock.due_at.isoformat()}Z"}],
            )
        clock.extended_from = clock.extended_from or clock.due_at
        clock.due_at, clock.extension_reason = until, reason
        clock.extended_by, clock.extended_at = principal.name, utcnow()
        self.session.flush()
        product = self.session.get(Product, clock.product_id)
        assert product is not None
        self._publish(
            EventTag.COMPLIANCE_EXTEND,
            product,
            actor,
            dict(clock_view(clock), reason=reason, extended_from=clock.extended_from.isoformat() + "Z"),
        )
        self.transitions(utcnow())
        return clock

    def _require_staff(self, principal: Principal) -> None:
        from dockyard.authz import allowed

        if not allowed(principal, Permission.COMPLIANCE_MANAGE):
            raise Forbidden("only the store team extends due times and decides VEX statements")

    # -- helpers -------------------------------------------------------------------------------------------
    def org_of(self, product: Product) -> str:
        """The organisation (namespace) name of a product's publisher."""
        return (
            self.session.scalar(
                select(Namespace.name)
                .join(Publisher, Publisher.namespace_id == Namespace.id)
                .where(Publisher.id == product.publisher_id)
            )
            or ""
        )

    def _publish(self, tag: EventTag, product: Product, actor: Actor, data: dict[str, Any]) -> None:
        org = self.org_of(product)
        data = {
            "product": product.slug,
            "product_id": product.id,
            "publisher_id": product.publisher_id,
            **data,
        }
        self.bus.publish(self.session, Event(tag, actor, namespace=org, data=data))


def hold_reason(late: list[FindingClock]) -> str:
    """The warning label's words: how many vulnerabilities of which class are overdue (one vulnerability
    is one line however many packages, images and platforms carry it), and the first few."""
    if not late:
        return ""
    by_class: dict[str, set[str]] = {}
    for clock in late:
        by_class.setdefault(clock.severity, set()).add(clock.vuln_id)
    counts = ", ".join(f"{len(ids)} {severity}" for severity, ids in sorted(by_class.items()))
    vulns = sorted({c.vuln_id for c in late})
    noun = "vulnerability" if len(vulns) == 1 else "vulnerabilities"
    first = min(c.due_at for c in late if c.due_at is not None)
    more = ", ..." if len(vulns) > 5 else ""
    return (
        f"Security fix overdue since {first:%Y-%m-%d %H:%M} UTC: {counts} {noun} past the fix time "
        f"({', '.join(vulns[:5])}{more})."
    )


def _reason(value: str | None) -> str:
    value = (value or "").strip()
    if not value:
        raise Invalid("say why", detail=[{"field": "reason", "message": "Say why."}])
    if len(value) > REASON_MAX or "\x00" in value:
        raise Invalid(
            f"at most {REASON_MAX} characters, no NUL",
            detail=[{"field": "reason", "message": f"At most {REASON_MAX} characters."}],
        )
    return value
