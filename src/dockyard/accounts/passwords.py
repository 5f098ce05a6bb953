"""Password and secret hashing: argon2id for passwords, SHA-256 for high-entropy generated secrets."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Callable
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from dockyard.errors import TooManyRequests

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
T = TypeVar("T")

# Longer passwords are refused: hashing megabytes per attempt is a lever for anyone who can reach a login.
MAX_PASSWORD_LENGTH = 1024

# Each argon2 hash takes 64 MiB and a core for ~0.2 s: at most this many run at once in a process, and a
# login that cannot start one within HASH_WAIT seconds is told to come back (429) instead of queueing
# without bound, so a flood of anonymous logins cannot take every thread and all the memory.
HASH_SLOTS = max(2, os.cpu_count() or 2)
HASH_WAIT = 5.0
_slots = threading.BoundedSemaphore(HASH_SLOTS)


def _bounded(work: Callable[[], T]) -> T:
    if not _slots.acquire(timeout=HASH_WAIT):
        raise TooManyRequests("too many logins in progress: try again in a moment", retry_after=2)
    try:
        return work()
    finally:
        _slots.release()


def hash_password(password: str) -> str:
    return _bounded(lambda: _hasher.hash(password))


def verify_password(stored: str, password: str) -> bool:
    if len(password) > MAX_PASSWORD_LENGTH:
        password = password[:MAX_PASSWORD_LENGTH] + "\0"  # never right, but the same work as any attempt

    def check() -> bool:
        try:
            return _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    return _bounded(check)


def new_secret(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    # Generated secrets carry >=128 bits of entropy, so a fast hash is enough and keeps logins cheap.
    return hashlib.sha256(secret.encode()).hexdigest()


def verify_secret(stored: str, secret: str) -> bool:
    return hmac.compare_digest(stored, hash_secret(secret))
