"""Password and secret hashing: argon2id for passwords, SHA-256 for high-entropy generated secrets."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def new_secret(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    # Generated secrets carry >=128 bits of entropy, so a fast hash is enough and keeps logins cheap.
    return hashlib.sha256(secret.encode()).hexdigest()


def verify_secret(stored: str, secret: str) -> bool:
    return hmac.compare_digest(stored, hash_secret(secret))
