"""What users do for themselves, without an administrator: sign up, confirm an email address, change it,
and reset or change their password.

Links go out by email. Each is a random secret of 256 bits of which only the SHA-256 is stored
(``EmailToken``), with the address it was sent to: a link proves access to that address and no other. It
works once; confirmation links for 48 hours, password-reset links for one hour. The mail itself is not sent
here: each step publishes an event and ``accounts/notifications.py`` queues the mail in the same
transaction; the link's secret reaches it in the event's ``private`` part, never the audit row.

"Forgot your password" and "send the confirmation again" answer the same, in the same time, whatever was
typed: the request only enqueues the ``accounts.mail_link`` job (one insert, whether or not an account
matches), and the job looks the account up and mails it, at most ``LINKS_PER_HOUR`` links per address and
purpose, so the forms cannot flood someone's inbox.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.accounts.models import EmailToken, TokenPurpose, User
from dockyard.accounts.passwords import MAX_PASSWORD_LENGTH, hash_secret, new_secret
from dockyard.accounts.services import (
    MIN_PASSWORD_LENGTH,
    NAME_RE,
    RESERVED_NAMES,
    TOKEN_PREFIX,
    AccountService,
)
from dockyard.db import utcnow
from dockyard.errors import Conflict, Forbidden, Invalid, TooManyRequests
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.jobs import enqueue

log = logging.getLogger("dockyard.accounts")

LINK_TTL = {TokenPurpose.VERIFY: dt.timedelta(hours=48), TokenPurpose.RESET: dt.timedelta(hours=1)}
LINKS_PER_HOUR = 3  # per address and purpose
LINK_JOB = "accounts.mail_link"
# Spent and expired links are kept this long, so that opening one again says what happened to it.
KEEP_SPENT_LINKS = dt.timedelta(days=7)
MAX_EMAIL_LENGTH = 254  # RFC 5321's longest forward path, less its angle brackets

# Lowercase (addresses are stored lowercased), dot-atoms only: what every mail server takes.
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
EMAIL_RE = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[a-z]{{2,63}}$")


class LinkInvalid(Invalid):
    """A link that is unknown, used or expired (the page offers to send a new one)."""

    code = "LINK_INVALID"


@dataclass(frozen=True)
class Link:
    """What a valid link is for: shown before it is used."""

    purpose: str
    username: str
    email: str
    expires_at: dt.datetime


def normalise_email(email: str) -> str:
    return email.strip().lower()


def username_problem(username: str) -> str | None:
    if not (2 <= len(username) <= 64) or not NAME_RE.match(username):
        return "Use 2 to 64 lowercase letters and digits, with single . _ or - between them."
    if username in RESERVED_NAMES:
        return "This username is reserved. Choose another."
    return None


def email_problem(email: str) -> str | None:
    if len(email) > MAX_EMAIL_LENGTH or not EMAIL_RE.match(normalise_email(email)):
        return "Enter an email address such as name@example.com."
    return None


def password_problem(password: str) -> str | None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if password.startswith(TOKEN_PREFIX):
        return f"A password cannot start with {TOKEN_PREFIX} (access tokens do)."
    return None


def signup_problems(username: str, email: str, password: str) -> dict[str, str]:
    """Every field of a sign-up that is wrong, with what to do about it (empty when all are right)."""
    found = {
        "username": username_problem(username),
        "email": email_problem(email),
        "password": password_problem(password),
    }
    return {field: problem for field, problem in found.items() if problem}


def _invalid(field: str, message: str) -> Invalid:
    return Invalid(message, detail={"field": field})


class SelfService:
    def __init__(
        self, session: Session, bus: EventBus, accounts: AccountService, *, signup_open: bool = True
    ) -> None:
        self.session = session
        self.bus = bus
        self.accounts = accounts
        self.signup_open = signup_open

    # -- sign-up and confirmation ------------------------------------------------------------------------
    def sign_up(self, username: str, email: str, password: str, *, actor: Actor) -> User:
        """Create an account awaiting confirmation and mail a confirmation link to its address."""
        if not self.signup_open:
            raise Forbidden("Sign-up is closed here: ask an administrator for an account.")
        problems = signup_problems(username, email, password)
        if problems:
            field, message = next(iter(problems.items()))
            raise Invalid(message, detail={"field": field, "fields": problems})
        email = normalise_email(email)
        if self._email_taken(email):
            raise Conflict(
                "An account already uses this email address. If it is yours, reset its password.",
                detail={"field": "email"},
            )
        try:
            user = self.accounts.create_user(
                username, password, email=email, email_verified=False, actor=actor
            )
        except (Conflict, IntegrityError) as exc:  # IntegrityError: a sign-up for the name at the same time
            raise Conflict("This username is taken. Choose another.", detail={"field": "username"}) from exc
        self._mail_link(user, TokenPurpose.VERIFY, email, actor)
        return user

    def verify_email(self, secret: str, *, actor: Actor) -> User:
        """Confirm the address a verification link was sent to; it becomes the account's address."""
        token = self._live_token(TokenPurpose.VERIFY, secret)
        user = self.session.get(User, token.user_id)
        assert user is not None  # the foreign key cascades
        if self._email_taken(token.email, but=user.id):
            raise Conflict("Another account confirmed this address first.", detail={"field": "email"})
        previous = user.email
        now = utcnow()
        user.email, user.email_verified_at = token.email, now
        # Every confirmation link of the account is spent with this one (a newer address was asked for,
        # or this one is confirmed now).
        self._spend(user.id, TokenPurpose.VERIFY, now)
        data = {"email": token.email} | ({"previous": previous} if previous != token.email else {})
        actor = dataclasses.replace(actor, user_id=user.id, name=user.username, kind="user")
        self.bus.publish(
            self.session, Event(EventTag.USER_EMAIL_VERIFY, actor, namespace=user.username, data=data)
        )
        return user

    def request_email_change(self, username: str, email: str, *, actor: Actor) -> None:
        """Mail a confirmation link to a new address for the account (and tell the old address); the address
        changes only once the link is opened."""
        if email_problem(email):
            raise _invalid("email", email_problem(email) or "")
        email = normalise_email(email)
        user = self.accounts.get_user(username)
        if email == (user.email or "").lower() and user.email_verified_at is not None:
            raise _invalid("email", "This is already your email address.")
        if self._email_taken(email, but=user.id):
            raise Conflict("Another account uses this email address.", detail={"field": "email"})
        if self._recently_sent(email, TokenPurpose.VERIFY) >= LINKS_PER_HOUR:
            raise TooManyRequests(
                "Several links went to this address in the last hour: try again later.", retry_after=3600
            )
        # Only the latest address asked for can be confirmed.
        self.session.execute(
            delete(EmailToken).where(
                EmailToken.user_id == user.id,
                EmailToken.purpose == TokenPurpose.VERIFY.value,
                EmailToken.used_at.is_(None),
                EmailToken.email != email,
            )
        )
        self.bus.publish(
            self.session,
            Event(
                EventTag.USER_EMAIL_CHANGE_REQUEST,
                actor,
                namespace=username,
                data={"old": user.email, "new": email},
            ),
        )
        self._mail_link(user, TokenPurpose.VERIFY, email, actor)

    # -- passwords ---------------------------------------------------------------------------------------
    def reset_password(self, secret: str, password: str, *, actor: Actor) -> User:
        """Set a new password with a reset link. The link proves the address, so an unconfirmed one is
        confirmed too; every other reset link of the account stops working."""
        token = self._live_token(TokenPurpose.RESET, secret)
        user = self.session.get(User, token.user_id)
        assert user is not None
        if (user.email or "").lower() != token.email or not user.is_active:
            raise LinkInvalid("This link was sent to an address the account no longer uses.")
        problem = password_problem(password)
        if problem:
            raise _invalid("password", problem)
        now = utcnow()
        if user.email_verified_at is None:
            user.email_verified_at = now
        self._spend(user.id, TokenPurpose.RESET, now)
        actor = dataclasses.replace(actor, user_id=user.id, name=user.username, kind="user")
        self.accounts.set_password(user.username, password, via="reset", actor=actor)
        return user

    def change_password(self, username: str, password: str, *, actor: Actor) -> None:
        """Set a new password for a signed-in user (who has given the current one); reset links sent
        before stop working."""
        problem = password_problem(password)
        if problem:
            raise _invalid("new_password", problem)
        user = self.accounts.get_user(username)
        self.accounts.set_password(username, password, via="account", actor=actor)
        self._spend(user.id, TokenPurpose.RESET, utcnow())

    # -- links -------------------------------------------------------------------------------------------
    def request_link(self, purpose: str, identifier: str, *, actor: Actor) -> None:
        """Ask for a reset (or confirmation) link for the account a username or address names: only the
        ``accounts.mail_link`` job is added, whatever was typed (see the module's docstring)."""
        purpose = TokenPurpose(purpose).value
        payload = {"purpose": purpose, "identifier": identifier.strip()[:MAX_EMAIL_LENGTH], "ip": actor.ip}
        enqueue(self.session, LINK_JOB, payload, check_queued=False, max_attempts=3)

    def send_link(self, purpose: str, identifier: str, *, actor: Actor) -> int:
        """Mail a link to each active account ``identifier`` names (by username or address; confirmation
        links only to accounts awaiting one) unless its address had LINKS_PER_HOUR of them in the last hour.
        Returns how many went."""
        kind = TokenPurpose(purpose)
        wanted = identifier.strip().lower()
        by = func.lower(User.email) if "@" in wanted else User.username
        query = select(User).where(by == wanted, User.is_active.is_(True)).order_by(User.id).limit(10)
        sent = 0
        for user in self.session.scalars(query):
            if not user.email or (kind is TokenPurpose.VERIFY and user.email_verified_at is not None):
                continue
            email = user.email.lower()
            if self._recently_sent(email, kind) >= LINKS_PER_HOUR:
                log.info("no %s link for %s: %s sent in the last hour", kind, user.username, LINKS_PER_HOUR)
                continue
            self._mail_link(user, kind, email, actor)
            sent += 1
        return sent

    def check_link(self, purpose: str, secret: str) -> Link:
        """What a link is for, while it is valid (LinkInvalid once unknown, used or expired)."""
        token = self._live_token(TokenPurpose(purpose), secret)
        user = self.session.get(User, token.user_id)
        assert user is not None
        return Link(token.purpose, user.username, token.email, token.expires_at)

    def _mail_link(self, user: User, purpose: TokenPurpose, email: str, actor: Actor) -> None:
        secret = new_secret(32)
        now = utcnow()
        ttl = LINK_TTL[purpose]
        self.session.add(
            EmailToken(
                user_id=user.id,
                purpose=purpose.value,
                email=email,
                token_hash=hash_secret(secret),
                created_at=now,
                expires_at=now + ttl,
            )
        )
        self.session.flush()
        tag = (
            EventTag.USER_EMAIL_VERIFY_REQUEST
            if purpose is TokenPurpose.VERIFY
            else EventTag.USER_PASSWORD_RESET_REQUEST
        )
        hours = int(ttl.total_seconds() // 3600)
        self.bus.publish(
            self.session,
            Event(
                tag,
                actor,
                namespace=user.username,
                data={"email": email},
                private={"secret": secret, "email": email, "hours": hours},
            ),
        )

    def _live_token(self, purpose: TokenPurpose, secret: str) -> EmailToken:
        token = None
        if secret and len(secret) <= 128:
            token = self.session.scalar(
                select(EmailToken).where(
                    EmailToken.token_hash == hash_secret(secret), EmailToken.purpose == purpose.value
                )
            )
        if token is None:
            raise LinkInvalid("This link is not valid: it may be incomplete, or a newer link replaced it.")
        if token.used_at is not None:
            raise LinkInvalid("This link was used already: each link works once.")
        if token.expires_at <= utcnow():
            raise LinkInvalid("This link has expired.")
        return token

    def _spend(self, user_id: int, purpose: TokenPurpose, now: dt.datetime) -> None:
        self.session.execute(
            update(EmailToken)
            .where(
                EmailToken.user_id == user_id,
                EmailToken.purpose == purpose.value,
                EmailToken.used_at.is_(None),
            )
            .values(used_at=now)
        )

    def _recently_sent(self, email: str, purpose: TokenPurpose) -> int:
        since = utcnow() - dt.timedelta(hours=1)
        query = select(func.count()).where(
            EmailToken.email == email,
            EmailToken.purpose == purpose.value,
            EmailToken.created_at > since,
        )
        return int(self.session.scalar(query) or 0)

    def _email_taken(self, email: str, *, but: int | None = None) -> bool:
        query = select(User.id).where(func.lower(User.email) == email)
        if but is not None:
            query = query.where(User.id != but)
        return self.session.scalar(query.limit(1)) is not None


def purge_links(session: Session) -> int:
    """Forget links spent or expired more than KEEP_SPENT_LINKS ago; returns how many."""
    before = utcnow() - KEEP_SPENT_LINKS
    result = session.execute(
        delete(EmailToken).where(or_(EmailToken.expires_at <= before, EmailToken.used_at <= before))
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
