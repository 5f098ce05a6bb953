"""The login throttle: failed logins counted per account, per client address and per both.

Counted in the database, not in memory, so every server and worker process sees the same counts and a
restart forgets nothing. A throttled attempt is refused before its password is hashed, so it costs no
argon2 time, and it is refused the same way for names that exist and names that do not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select, text, update
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


# A reservation is "in flight" while its password is hashed; at most this many per account and address.
# Parallel guesses thus get at most MAX_IN_FLIGHT evaluations past a limit, not hundreds, while a
# client's burst of right logins (parallel pushes each asking /token) is not refused.
MAX_IN_FLIGHT = 32
PENDING_FOR = dt.timedelta(seconds=60)


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _address(ip: str | None) -> str:
    return (ip or "-")[:64]


class LoginThrottle:
    def __init__(self, session: Session, limits: Limits = DEFAULT_LIMITS) -> None:
        self.session = session
        self.limits = limits

    def reserve(self, username: str, ip: str | None) -> int:
        """Count an attempt before it is checked: TooManyRequests (nothing counted) while a limit is
        reached, else a failure row that a successful login deletes again. The caller commits it at once,
        in a transaction of its own, before the password is hashed; the database serialises reservations
        (SQLite: its one writer; PostgreSQL: transaction-scoped advisory locks on the account and the
        address), so N parallel guesses cannot all see a count below the limit."""
        self._serialise(username, ip)
        self.check(username, ip)
        in_flight = self.session.scalar(
            select(func.count()).where(
                LoginFailure.username == username[:64],
                LoginFailure.ip == _address(ip),
                LoginFailure.pending.is_(True),
                LoginFailure.occurred_at > utcnow() - PENDING_FOR,
            )
        )
        if (in_flight or 0) >= MAX_IN_FLIGHT:
            raise TooManyRequests("too many logins in progress: try again in a moment", retry_after=1)
        row = LoginFailure(username=username[:64], ip=_address(ip), occurred_at=utcnow(), pending=True)
        self.session.add(row)
        self.session.flush()
        return row.id

    def finish(self, reservation: int, username: str, ip: str | None, *, ok: bool) -> None:
        """The reserved attempt was checked: a right one forgets this address's failures for the
        account, a wrong one counts as a failure."""
        if ok:
            self.succeeded(username, ip)
        else:
            self.settle(reservation)

    def settle(self, reservation: int) -> None:
        """The reserved attempt failed: it now counts as a failure."""
        self.session.execute(update(LoginFailure).where(LoginFailure.id == reservation).values(pending=False))

    def _serialise(self, username: str, ip: str | None) -> None:
        if self.session.get_bind().dialect.name != "postgresql":
            return
        keys = sorted({_lock_key("login:user:" + username[:64]), _lock_key("login:ip:" + _address(ip))})
        for key in keys:  # always in the same order: two reservations never wait on each other in a cycle
            self.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

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
        # Attempts still being checked do not count yet (a burst of right logins, e.g. a client's parallel
        # pushes, must not lock itself out); ones pending for long are crashed checks: they do.
        counted = or_(LoginFailure.pending.is_(False), LoginFailure.occurred_at <= now - PENDING_FOR)
        # Nearly every login is of an account with no recent failure from an address with none: one query
        # says so (every login pays for this check, a remembered password too); the limits are looked at
        # one by one only when there is something to count.
        recent = self.session.scalar(
            select(LoginFailure.id)
            .where(
                or_(LoginFailure.username == username, LoginFailure.ip == address),
                counted,
                LoginFailure.occurred_at > since,
            )
            .limit(1)
        )
        if recent is None:
            return
        wait = 0.0
        for limit, where in conditions:
            # The limit-th most recent failure: once it leaves the window, fewer than `limit` remain.
            pivot = self.session.scalar(
                select(LoginFailure.occurred_at)
                .where(*where, counted, LoginFailure.occurred_at > since)
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
