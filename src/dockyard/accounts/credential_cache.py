"""Passwords verified moments ago, so a client's repeated logins do not each pay for argon2.

A docker push or pull asks ``/token`` for every operation, and a script with Basic credentials on ``/v2``
logs in on every request: with argon2id (64 MiB, ~0.2 s of a core per check) eight busy clients spend
most of the server's CPU re-proving the same password. After a password has been verified, this process
remembers that (username, password) was right for the user row as it was then, for at most TTL seconds.

What is held, per entry, is no secret: the key is an HMAC-SHA256 of (username, password) under a random key
made when the process starts and never stored; the value is the user's id, credential generation and a
SHA-256 of the stored password hash as they were at the check, and the moment the entry expires.

Memory is never trusted on its own: a remembered password is good only if the user row read *now* still has
the same id, generation and password hash and is active (``Authentication.recall_password``: one indexed
query, which the login reads anyway). A password change or "sign out everywhere" (both move the generation
on), a deactivated account, a new hash written by any other path, in this process or another, refuse the
entry at once. Only right passwords are remembered: a wrong one is checked with argon2 every time and
counts toward the login throttle. Access tokens and robot secrets are not kept here: they are checked with
SHA-256 and one indexed query already, and are re-checked against their rows (revoked, expired, deleted) on
every use. SECURITY.md has the threat model.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# Long enough for a burst (a push's parallel token requests, a CI job's back-to-back commands, a script's
# Basic requests) to pay argon2 once; short enough that no entry outlives a minute whatever the traffic
# (expiry counts from the argon2 check, not from the last use), which bounds how long a fast-hash verifier of
# a password sits in memory. It does not bound revocation: every use is confirmed against the database.
TTL = 60.0
# Entries are only made by right passwords, so this bounds memory (about 200 bytes an entry) rather than
# an attacker's reach; past it the entry verified longest ago (the next to expire) goes.
MAX_ENTRIES = 4096


@dataclass(frozen=True)
class Remembered:
    """The user row, as the argon2 check saw it, that a remembered password was right for."""

    user_id: int
    generation: int
    stored_hash: bytes  # SHA-256 of the argon2 hash string: a new password, however set, changes it
    expires: float

    def still_holds(self, user_id: int, generation: int, password_hash: str, is_active: bool) -> bool:
        """Whether the row read now is the row that was checked (and the account still active)."""
        return (
            is_active
            and user_id == self.user_id
            and generation == self.generation
            and hmac.compare_digest(_fingerprint(password_hash), self.stored_hash)
        )


def _fingerprint(password_hash: str) -> bytes:
    return hashlib.sha256(password_hash.encode()).digest()


class VerifiedPasswords:
    """A bounded map HMAC(username, password) -> Remembered, with a fixed time to live.

    Kept in the order of the argon2 checks, which with one TTL is the order of expiry: expired entries are
    dropped from the front by every call, and when full the least recently verified entry goes. One per
    process (the ``Runtime`` holds it); thread-safe, since logins are checked in worker threads.
    """

    def __init__(
        self,
        ttl: float = TTL,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)  # never leaves this process: entries mean nothing elsewhere
        self._entries: OrderedDict[bytes, Remembered] = OrderedDict()
        self._lock = threading.Lock()

    def _slot(self, username: str, password: str) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (username, password):
            raw = part.encode("utf-8", "surrogatepass")
            mac.update(len(raw).to_bytes(8, "big"))  # length-prefixed: ("ab", "c") is not ("a", "bc")
            mac.update(raw)
        return mac.digest()

    def remember(
        self, username: str, password: str, *, user_id: int, generation: int, password_hash: str
    ) -> None:
        """Note that ``password`` was just verified (with argon2) for this user row."""
        if self.ttl <= 0 or self.max_entries <= 0:
            return
        entry = Remembered(user_id, generation, _fingerprint(password_hash), self._clock() + self.ttl)
        slot = self._slot(username, password)
        with self._lock:
            self._entries[slot] = entry
            self._entries.move_to_end(slot)
            self._drop_expired()
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def recall(self, username: str, password: str) -> Remembered | None:
        """The row ``password`` was verified for within the TTL, or None. The caller must still compare
        it with the row as it is now (``Remembered.still_holds``)."""
        if not self._entries:
            return None
        slot = self._slot(username, password)
        with self._lock:
            self._drop_expired()
            return self._entries.get(slot)

    def _drop_expired(self) -> None:
        # The caller holds the lock. Oldest first: stop at the first entry still alive.
        now = self._clock()
        while self._entries:
            slot, entry = next(iter(self._entries.items()))
            if entry.expires > now:
                return
            del self._entries[slot]

    def forget(self, username: str, password: str) -> None:
        """Drop an entry the database no longer backs (changed password, deactivated account...)."""
        slot = self._slot(username, password)
        with self._lock:
            self._entries.pop(slot, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
