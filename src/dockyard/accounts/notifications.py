"""Mail about accounts, queued in the transaction of the event that causes it (so a failed action mails
nothing): confirmation and password-reset links, "your password was changed", and a word to the old
address when a new one is asked for. Subscribed by the composition root (runtime.py), so the pages, the
API, the CLI and jobs all mail the same way.

Links are absolute (the mail is read elsewhere), built on DOCKYARD_PUBLIC_URL and the paths below, which
the pages' routes are declared with.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.accounts.models import User
from dockyard.config import Settings
from dockyard.db import utcnow
from dockyard.email.services import Mailer
from dockyard.events import Event, EventBus, EventTag

VERIFY_PATH = "/ui/verify-email"
RESET_PATH = "/ui/password/reset"
FORGOT_PATH = "/ui/password/forgot"
ACCOUNT_PATH = "/ui/account"

HOW_CHANGED = {
    "reset": "with a password-reset link",
    "account": "on the account settings page",
    "admin": "by an administrator",
}


def subscribe(bus: EventBus, settings: Settings) -> None:
    mail = AccountMail(settings)
    bus.subscribe(EventTag.USER_EMAIL_VERIFY_REQUEST, mail.confirmation_link)
    bus.subscribe(EventTag.USER_PASSWORD_RESET_REQUEST, mail.reset_link)
    bus.subscribe(EventTag.USER_EMAIL_CHANGE_REQUEST, mail.email_change_notice)
    bus.subscribe(EventTag.USER_PASSWORD_CHANGE, mail.password_change_notice)


def _hours(count: int) -> str:
    return "an hour" if count == 1 else f"{count} hours"


class AccountMail:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def url(self, path: str, **query: str) -> str:
        return f"{self.settings.public_url}{path}" + (f"?{urlencode(query)}" if query else "")

    def _queue(self, session: Session, to: str, template: str, context: dict[str, Any]) -> None:
        Mailer(session, self.settings).queue(to, template, context)

    def confirmation_link(self, session: Session, event: Event) -> None:
        secret = event.private["secret"]
        context = {
            "username": event.namespace,
            "url": self.url(VERIFY_PATH, token=secret),
            "expires": _hours(event.private["hours"]),
        }
        self._queue(session, event.private["email"], "verify_email", context)

    def reset_link(self, session: Session, event: Event) -> None:
        context = {
            "username": event.namespace,
            "url": self.url(RESET_PATH, token=event.private["secret"]),
            "expires": _hours(event.private["hours"]),
        }
        self._queue(session, event.private["email"], "password_reset", context)

    def email_change_notice(self, session: Session, event: Event) -> None:
        old, new = event.data.get("old"), event.data["new"]
        user = session.scalar(select(User).where(User.username == event.namespace))
        if not old or user is None or user.email_verified_at is None or old.lower() == new:
            return
        context = {
            "subject": f"Your {event.namespace} account's email address is being changed",
            "username": event.namespace,
            "paragraphs": [
                f"Someone signed in to your account {event.namespace} asked to use {new} as its email "
                "address instead of this one. Nothing changes until the link sent there is opened.",
                "If this was not you, change your password now: whoever asked knows it.",
            ],
            "url": self.url(ACCOUNT_PATH),
            "url_label": "Review your account",
        }
        self._queue(session, old, "notice", context)

    def password_change_notice(self, session: Session, event: Event) -> None:
        user = session.scalar(select(User).where(User.username == event.namespace))
        if user is None or not user.email or user.email_verified_at is None:
            return  # an unconfirmed address may be someone else's
        how = HOW_CHANGED.get(str(event.data.get("via")), "")
        where = f" from {event.actor.ip}" if event.actor.ip and event.data.get("via") != "admin" else ""
        context = {
            "subject": "Your password was changed",
            "username": user.username,
            "paragraphs": [
                f"The password of your account {user.username} was changed {how} on "
                f"{utcnow():%Y-%m-%d %H:%M} UTC{where}. Every browser session of the account was signed out; "
                "access tokens and robot accounts keep working.",
                "If this was not you, reset your password now and review your access tokens.",
            ],
            "url": self.url(FORGOT_PATH),
            "url_label": "Reset your password",
        }
        self._queue(session, user.email, "notice", context)
