"""Mail of the compliance loop, queued through the outbox in the transaction of the event (the outbox sends
after commit): to the publisher (its verified company address and the organisation's owners and maintainers)
when findings are told (a Critical at once, the rest in a daily digest) and when the product is held,
lifted or revoked; to every customer who downloaded the product and asked for security notices when it is
held, lifted or revoked, saying which images and digests they pulled, what is wrong and what to do.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.accounts.models import User
from dockyard.alerts.notifications import muted
from dockyard.config import Settings
from dockyard.email.services import Mailer
from dockyard.entitlements.models import DownloadEvent, Entitlement, EntitlementStatus
from dockyard.events import Event, EventBus, EventTag
from dockyard.moderation.notifications import publisher_recipients
from dockyard.publishing.models import Product, Publisher

COMPLIANCE_PAGE = "/ui/orgs/{org}/products/{slug}/compliance"
STORE_PAGE = "/products/{org}/{slug}"
MAX_ITEMS = 30  # a mail lists this many findings or pulls; the page has them all


def subscribe(bus: EventBus, settings: Settings) -> None:
    mail = ComplianceMail(settings)
    bus.subscribe(EventTag.COMPLIANCE_NOTICE, mail.notice)
    for tag in (EventTag.PRODUCT_HOLD, EventTag.PRODUCT_HOLD_LIFT, EventTag.PRODUCT_REVOKE):
        bus.subscribe(tag, mail.transition)


def finding_line(clock: dict[str, Any]) -> str:
    due = f", fix by {clock['due_at'][:16].replace('T', ' ')} UTC" if clock.get("due_at") else ""
    platform = f" ({clock['platform']})" if clock.get("platform") else ""
    component = clock["component"].split("?", 1)[0]
    return (
        f"{clock['severity']}: {clock['vulnerability']} in {component}, image {clock['image']}{platform}{due}"
    )


class ComplianceMail:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _product(self, session: Session, event: Event) -> tuple[Product, str]:
        product = session.get(Product, event.data["product_id"])
        assert product is not None
        name = str(
            ((product.live_revision.manifest if product.live_revision else None) or {}).get("name") or ""
        )
        return product, name or product.slug

    def _publisher_to(
        self, session: Session, product: Product, org: str, via: str | None = None
    ) -> list[tuple[str, str]]:
        people = publisher_recipients(session, org)
        if via is not None:  # a notice: those who turned that mail off are not sent it (alerts preferences)
            off = muted(session, [u for u, _ in people], via)
            people = [(u, e) for u, e in people if u not in off]
        to = dict((e.lower(), (u, e)) for u, e in people)
        publisher = session.get(Publisher, product.publisher_id)
        if publisher is not None and publisher.email and publisher.email_verified_at is not None:
            to.setdefault(publisher.email.lower(), (publisher.legal_name or org, publisher.email))
        return sorted(to.values())

    def _queue(self, session: Session, to: list[tuple[str, str]], context: dict[str, Any]) -> None:
        mailer = Mailer(session, self.settings)
        for name, email in to:
            mailer.queue(email, "notice", dict(context, username=name))

    def notice(self, session: Session, event: Event) -> None:
        """Findings told by mail (a Critical at once, or the digest): the publisher, with each due time."""
        if event.data.get("via") == "dashboard":
            return
        org = event.namespace or ""
        product, name = self._product(session, event)
        clocks = event.data["clocks"]
        critical = [c for c in clocks if c["severity"] == "Critical"]
        if event.data["via"] == "email":
            subject = f"Critical security finding in {name}: fix within 72 hours"
            lead = (
                f"The scanner found {len(critical)} Critical finding(s) in the published images of {name}. "
                "Publish a fixed image within 72 hours of this mail, or the product goes on hold in the "
                "store (a warning label, its customers told, its badges suspended) and is revoked a month "
                "later."
            )
        else:
            subject = f"Security findings digest for {name}"
            lead = f"New findings in the published images of {name} since the last digest:"
        after = [
            "Push the fixed image to its staging repository and submit the product again: a revision that "
            "only changes digests and fixes findings is published at once. If a finding does not affect "
            "your product, file a VEX statement on the product's compliance page."
        ]
        self._queue(
            session,
            self._publisher_to(session, product, org, event.data["via"]),
            {
                "subject": subject,
                "paragraphs": [lead],
                "items": [finding_line(c) for c in clocks[:MAX_ITEMS]],
                "after": after,
                "url": self.settings.public_url + COMPLIANCE_PAGE.format(org=org, slug=product.slug),
                "url_label": "See the findings",
            },
        )

    def transition(self, session: Session, event: Event) -> None:
        org = event.namespace or ""
        product, name = self._product(session, event)
        overdue = event.data.get("overdue") or []
        if event.tag == EventTag.PRODUCT_HOLD:
            subject = f"{name} is on hold in the store: a security fix is overdue"
            publisher_lead = (
                f"{name} is on hold: {event.data['reason']} Its listing shows a warning label, its certified "
                f"badges are suspended and its customers are told. Unless fixed, it is revoked after "
                f"{self.settings.hold_max_days} days on hold."
            )
            customer_lead = (
                f"{name}, which you pulled from the store, is on hold: its publisher has not fixed known "
                "vulnerabilities within the store's deadline. Pulls keep working."
            )
            todo = (
                "What to do: check whether the findings below affect how you run it, watch for the "
                "publisher's fix (you will be told when the hold lifts), and contact the publisher's support "
                "if you need it sooner."
            )
        elif event.tag == EventTag.PRODUCT_HOLD_LIFT:
            subject = f"{name} is no longer on hold"
            publisher_lead = f"The hold on {name} is lifted: no overdue finding remains. Its badges are back."
            customer_lead = (
                f"The hold on {name} is lifted: its publisher fixed the overdue findings. Pull the current "
                "images to get the fix."
            )
            todo = ""
        else:
            subject = f"{name} was revoked from the store"
            publisher_lead = (
                f"{name} was revoked from the store after {self.settings.hold_max_days} days on hold: "
                f"{event.data['reason']} Only a new revision through full review brings it back."
            )
            customer_lead = (
                f"{name}, which you pulled from the store, was revoked: its publisher did not fix known "
                f"vulnerabilities. Its images keep pulling for {self.settings.revoked_pull_days} days, "
                "then stop."
            )
            todo = "What to do: move to another product or image before pulls stop."
        findings = [finding_line(c) for c in overdue[:MAX_ITEMS]]
        page = self.settings.public_url + STORE_PAGE.format(org=org, slug=product.slug)
        self._queue(
            session,
            self._publisher_to(session, product, org),
            {
                "subject": subject,
                "paragraphs": [publisher_lead],
                "items": findings,
                "url": self.settings.public_url + COMPLIANCE_PAGE.format(org=org, slug=product.slug),
                "url_label": "See the findings",
            },
        )
        mailer = Mailer(session, self.settings)
        for user, pulls in _customers_to_tell(session, product.id):
            items = [f"pulled {p}" for p in pulls[:MAX_ITEMS]] + findings
            mailer.queue(
                user.email or "",
                "notice",
                {
                    "subject": subject,
                    "username": user.username,
                    "paragraphs": [customer_lead],
                    "items": items,
                    "after": [todo] if todo else [],
                    "url": page,
                    "url_label": f"Open {name} in the store",
                },
            )


def _customers_to_tell(session: Session, product_id: int) -> list[tuple[User, list[str]]]:
    """Customers who downloaded the product and kept security notices on (an active entitlement), each with
    the image references they pulled (image:tag@digest, newest first)."""
    rows = session.execute(
        select(User, DownloadEvent.image, DownloadEvent.tag, DownloadEvent.digest)
        .join(DownloadEvent, DownloadEvent.user_id == User.id)
        .join(
            Entitlement,
            (Entitlement.user_id == User.id)
            & (Entitlement.product_id == product_id)
            & (Entitlement.status == EntitlementStatus.ACTIVE.value)
            & Entitlement.notify_security.is_(True),
        )
        .where(
            DownloadEvent.product_id == product_id,
            User.is_active.is_(True),
            User.email.is_not(None),
            User.email_verified_at.is_not(None),
        )
        .group_by(User.id, DownloadEvent.image, DownloadEvent.tag, DownloadEvent.digest)
        .order_by(User.id)
    ).all()
    found: dict[int, tuple[User, list[str]]] = {}
    for user, image, tag, digest in rows:
        entry = found.setdefault(user.id, (user, []))
        entry[1].append(f"{image}:{tag}@{digest}" if tag else f"{image}@{digest}")
    return list(found.values())
