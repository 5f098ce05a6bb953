"""Mail about reviews, queued through the outbox in the transaction of the move that causes it (a refused
move mails nothing; the outbox sends after commit): to the publisher organisation's owners and maintainers
when changes are requested, or the revision is approved, rejected or published; to every store reviewer
when a revision is submitted or resubmitted. Only verified addresses are mailed. Each mail links to the
page of the review (absolute, on DOCKYARD_PUBLIC_URL). Comments of the thread are never mailed, so an
internal note cannot be; a move's own comment is the publisher's to read and is quoted.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.accounts.models import Membership, Namespace, Role, StaffGrant, User
from dockyard.authz import StaffRole
from dockyard.config import Settings
from dockyard.email.services import Mailer
from dockyard.events import Event, EventBus, EventTag
from dockyard.publishing.models import ProductRevision

PUBLISHER_PAGE = "/ui/orgs/{org}/products/{slug}/review"
REVIEW_PAGE = "/ui/review/revisions/{id}"

TO_PUBLISHER = {
    EventTag.REVISION_REQUEST_CHANGES: ("Changes requested", "The store team asked for changes to {what}."),
    EventTag.REVISION_APPROVE: (
        "Approved",
        "The store team approved {what}. A store-admin publishes it next.",
    ),
    EventTag.REVISION_REJECT: ("Rejected", "The store team rejected {what}."),
    EventTag.PRODUCT_PUBLISH: ("Published", "{what} is live in the store."),
}
TO_REVIEWERS = {
    EventTag.REVISION_SUBMIT: ("Submitted for review", "{org} submitted {what} for review."),
    EventTag.REVISION_RESUBMIT: ("Resubmitted for review", "{org} resubmitted {what} after changes."),
}


def subscribe(bus: EventBus, settings: Settings) -> None:
    mail = ReviewMail(settings)
    for tag in TO_PUBLISHER:
        bus.subscribe(tag, mail.to_publisher)
    for tag in TO_REVIEWERS:
        bus.subscribe(tag, mail.to_reviewers)


def publisher_recipients(session: Session, org: str) -> list[tuple[str, str]]:
    """(username, verified email) of the organisation's owners and maintainers."""
    rows = session.execute(
        select(User.username, User.email)
        .join(Membership, Membership.user_id == User.id)
        .join(Namespace, Namespace.id == Membership.namespace_id)
        .where(
            Namespace.name == org,
            Membership.role.in_([Role.OWNER.value, Role.MAINTAINER.value]),
            User.is_active.is_(True),
            User.email.is_not(None),
            User.email_verified_at.is_not(None),
        )
        .order_by(User.username)
    )
    return [(u, e) for u, e in rows if e]


def reviewer_recipients(session: Session) -> list[tuple[str, str]]:
    """(username, verified email) of every store reviewer."""
    rows = session.execute(
        select(User.username, User.email)
        .join(StaffGrant, StaffGrant.user_id == User.id)
        .where(
            StaffGrant.role == StaffRole.STORE_REVIEWER.value,
            User.is_active.is_(True),
            User.email.is_not(None),
            User.email_verified_at.is_not(None),
        )
        .order_by(User.username)
    )
    return [(u, e) for u, e in rows if e]


class ReviewMail:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _what(self, session: Session, event: Event) -> tuple[str, str]:
        revision = session.get(ProductRevision, event.data["revision"])
        name = str((revision.manifest or {}).get("name") if revision else "") or event.data["product"]
        return name, f"{name} (revision {event.data['number']})"

    def _send(
        self, session: Session, to: list[tuple[str, str]], subject: str, paragraphs: list[str], url: str
    ) -> None:
        mailer = Mailer(session, self.settings)
        for username, email in to:
            context = {
                "subject": subject,
                "username": username,
                "paragraphs": paragraphs,
                "url": url,
                "url_label": "Open the review",
            }
            mailer.queue(email, "notice", context)

    def to_publisher(self, session: Session, event: Event) -> None:
        org, slug = event.namespace or "", event.data["product"]
        title, sentence = TO_PUBLISHER[event.tag]
        name, what = self._what(session, event)
        paragraphs = [sentence.format(what=what, org=org)]
        if event.data.get("comment"):
            paragraphs.append(f"Their comment: {event.data['comment']}")
        if event.data.get("override_reason"):
            paragraphs.append(
                f"Approved despite {len(event.data.get('critical', []))} open Critical finding(s): "
                f"{event.data['override_reason']}"
            )
        url = self.settings.public_url + PUBLISHER_PAGE.format(org=org, slug=slug)
        self._send(session, publisher_recipients(session, org), f"{title}: {name}", paragraphs, url)

    def to_reviewers(self, session: Session, event: Event) -> None:
        org = event.namespace or ""
        title, sentence = TO_REVIEWERS[event.tag]
        _name, what = self._what(session, event)
        paragraphs = [sentence.format(what=what, org=org)]
        if event.data.get("comment"):
            paragraphs.append(f"Their note: {event.data['comment']}")
        url = self.settings.public_url + REVIEW_PAGE.format(id=event.data["revision"])
        self._send(
            session, reviewer_recipients(session), f"{title}: {org}/{event.data['product']}", paragraphs, url
        )
