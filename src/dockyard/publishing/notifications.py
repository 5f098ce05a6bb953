"""Mail about publisher profiles: the link that confirms a company email address.

Queued in the outbox in the transaction of the event that causes it, as accounts/notifications.py does:
the outbox's ``email.send`` job sends it only once that transaction has committed, so a refused change
mails nothing. Subscribed by the composition root (runtime.py).
"""

from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy.orm import Session

from dockyard.config import Settings
from dockyard.email.services import Mailer
from dockyard.events import Event, EventBus, EventTag

VERIFY_PATH = "/ui/publisher-email/verify"


def subscribe(bus: EventBus, settings: Settings) -> None:
    bus.subscribe(EventTag.PUBLISHER_EMAIL_VERIFY_REQUEST, PublisherMail(settings).confirmation_link)


class PublisherMail:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def confirmation_link(self, session: Session, event: Event) -> None:
        org = event.namespace or ""
        hours = int(event.private["hours"])
        url = f"{self.settings.public_url}{VERIFY_PATH}?{urlencode({'token': event.private['secret']})}"
        context = {
            "subject": f"Confirm the company email address of {org}",
            "paragraphs": [
                f"{event.actor.name} gave this address as the company email of the publisher {org} on "
                f"{self.settings.public_url}. Open the link below to confirm that it is yours; it works "
                f"once, for {hours} hours.",
                "If you do not know this organisation, ignore this message: nothing happens unless the link "
                "is opened.",
            ],
            "url": url,
            "url_label": "Confirm the company address",
        }
        Mailer(session, self.settings).queue(event.private["email"], "notice", context)
