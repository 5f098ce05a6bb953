"""The login throttle: failed logins counted per account, per client address and per both.

Counted in the database, not in memory, so every server and worker process sees the same counts and a
restart forgets nothing. A throttled attempt is refused before its password is hashed, so it costs no
argon2 time, and it is refused the same way for names that exist and names that do not.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from dockyard.accounts.models import LoginFailure
from dockyard.db import utcnow
from dockyard.errors import TooManyRequests

WINDOW = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class Limits:
    """At most this many failures within WINDOW, then 429 until the oldest of them ages out."""

    per_account_and_address: int = 5  # one guesser at one account
    per_account: int = (
        20  # a guesser spread over many addresses (a lockout of the account too: see SECURITY.md)
    )
    per_address: int = 50  # one address guessing many accounts


DEFAULT_LIMITS = Limits()


def _address(ip: str | None) -> str:
    return (ip or "-")[:64]


class LoginThrottle:
    def __init__(self, session: Session, limits: Limits = DEFAULT_LIMITS) -> None:
        self.session = session
        self.limits = limits

    def check(self, username: str, ip: str | None) -> None:
        """Raise TooManyRequests while any of the limits is reached."""
        username, address = username[:64], _address(ip)
        now = utcnow()
        since = now - WINDOW
        conditions = (
            (
                self.limits.per_account_and_address,
                (LoginFailure.username == username, LoginFailure.ip == address),
            ),
            (self.limits.per_account, (LoginFailure.username == username,)),
            (self.limits.per_address, (LoginFailure.ip == address,)),
        )
        wait = 0.0
        for limit, where in conditions:
            # The limit-th most recent failure: once it leaves the window, fewer than `limit` remain.
            pivot = self.session.scalar(
                select(LoginFailure.occurred_at)
                .where(*where, LoginFailure.occurred_at > since)
                .order_by(LoginFailure.occurred_at.desc())
                .offset(limit - 1)
                .limit(1)
            )
            if pivot is not None:
                wait = max(wait, (pivot + WINDOW - now).total_seconds())
        if wait > 0:
            raise TooManyRequests(
                "too many failed logins: try again later",
                retry_after=int(wait) + 1,
                detail={"retry_after": int(wait) + 1},
            )

    def failed(self, username: str, ip: str | None) -> None:
        self.session.add(LoginFailure(username=username[:64], ip=_address(ip), occurred_at=utcnow()))
        self.session.flush()

    def succeeded(self, username: str, ip: str | None) -> None:
        """A right password from this address forgets its failures there (not those from elsewhere)."""
        self.session.execute(
            delete(LoginFailure).where(
                LoginFailure.username == username[:64], LoginFailure.ip == _address(ip)
            )
        )

    def purge(self) -> int:
        """Forget failures older than the window; returns how many."""
        result = self.session.execute(
            delete(LoginFailure).where(LoginFailure.occurred_at <= utcnow() - WINDOW)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def count(self, username: str) -> int:
        return int(
            self.session.scalar(select(func.count()).where(LoginFailure.username == username[:64])) or 0
        )
