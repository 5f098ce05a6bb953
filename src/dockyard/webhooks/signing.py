"""Webhook signatures, and the sealing of endpoint secrets at rest.

Every request dockyard sends carries ``Dockyard-Signature: t=<unix seconds>,v1=<hex>``, where the hex is
HMAC-SHA256, keyed with the endpoint's secret, of ``f"{t}.{raw body}"``. ``verify_signature`` is what a
receiver runs (it needs nothing else from dockyard: copy this function if you do not use Python): the time
is part of what is signed, so a request captured and replayed later than ``tolerance`` seconds is refused,
and the comparison takes the same time whatever the bytes (``hmac.compare_digest``).

Secrets must be kept to sign, so they cannot be stored as hashes: they are sealed with AES-256-GCM under a
key kept in DATA_DIR/keys/webhook-secrets (made once, mode 0600, beside the token-signing key). A copy of
the database alone does not give them away.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SIGNATURE_HEADER = "Dockyard-Signature"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300


def new_secret() -> str:
    """A new endpoint secret: 256 random bits, prefixed so that it is recognisable in a leak scan."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` keyed with ``secret``."""
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Dockyard-Signature`` header value for ``body`` sent at ``timestamp`` (now by default)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={signature(secret, t, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (the ``Dockyard-Signature`` value) signs ``body`` (the raw bytes received, before
    any JSON parsing) with ``secret``, at a time no more than ``tolerance`` seconds from ``now``.

    False for a malformed header, a wrong signature, or a timestamp too old (a replay) or too far ahead.
    Any of several ``v1=`` values may match (room for signing with two secrets at once)."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if not value.isascii() or not value.isdigit():
                return False
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    # Every candidate compared, each in constant time: no early exit that times which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    return matched


# -- secrets at rest ---------------------------------------------------------------------------------------
KEY_FILE = "webhook-secrets"
_AAD = b"dockyard webhook secret v1"


class SecretBox:
    """Seals and opens endpoint secrets with AES-256-GCM (a fresh 96-bit nonce each time)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a webhook secret key is 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, secret: str) -> str:
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, secret.encode(), _AAD)
        return "v1:" + base64.urlsafe_b64encode(sealed).decode()

    def open(self, sealed: str) -> str:
        version, _, data = sealed.partition(":")
        if version != "v1":
            raise ValueError("unknown sealed-secret format")
        raw = base64.urlsafe_b64decode(data.encode())
        return self._aead.decrypt(raw[:12], raw[12:], _AAD).decode()


@cache
def secret_box(key_dir: Path) -> SecretBox:
    """The box of this data directory, its key made on first use (the same in every worker process)."""
    from dockyard.storage.permissions import create_once

    return SecretBox(create_once(Path(key_dir) / KEY_FILE, lambda: os.urandom(32)))
