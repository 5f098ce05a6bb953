"""Signed, expiring blob URLs: what the registry hands out instead of a blob, and what delivery checks.

HMAC-SHA256 over (digest, expiry) with a secret kept in DATA_DIR/keys/blob-url-secret, the same in every
worker process; the URL is the credential, like an object store's presigned URL. It lives beside the server
(``server.py``) because the two halves of one contract do: the path and query written here are the ones the
server routes and verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode

SECRET_FILE = "blob-url-secret"
URL_TTL = 300  # seconds a redirect stays valid: long enough to follow, too short to pass around
_EXPIRES = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


class BlobUrlSigner:
    """HMAC-SHA256 over (digest, expiry) with a secret kept in DATA_DIR/keys; shared by every worker."""

    def __init__(self, secret: bytes, base_url: str = "", ttl: int = URL_TTL) -> None:
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl

    @classmethod
    def from_dir(cls, key_dir: Path, base_url: str = "", ttl: int = URL_TTL) -> BlobUrlSigner:
        """Load the secret from ``key_dir``, creating it (0600) on first use."""
        return cls(_load_or_create_secret(key_dir / SECRET_FILE), base_url, ttl)

    def _mac(self, digest: str, expires: int) -> str:
        message = f"dockyard-blob-url\n{digest}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def query(self, digest: str, now: float | None = None) -> str:
        """``expires=...&signature=...`` granting GET of ``digest`` for ``ttl`` seconds."""
        expires = int(time.time() if now is None else now) + self.ttl
        return urlencode({"expires": expires, "signature": self._mac(digest, expires)})

    def url(self, digest: str, now: float | None = None) -> str:
        """The signed delivery URL of ``digest``."""
        return f"{self.base_url}/blobs/{digest}?{self.query(digest, now)}"

    def verify(self, digest: str, expires: str, signature: str, now: float | None = None) -> bool:
        """True when ``signature`` is ours for (digest, expires) and ``expires`` has not passed."""
        if not _EXPIRES.fullmatch(expires) or not _SIGNATURE.fullmatch(signature):
            return False
        valid = hmac.compare_digest(self._mac(digest, int(expires)), signature)
        return valid and int(expires) >= (time.time() if now is None else now)


def _load_or_create_secret(path: Path) -> bytes:
    from dockyard.storage.permissions import create_once

    secret = create_once(path, lambda: secrets.token_hex(32).encode()).decode().strip()
    if len(secret) < 32:
        raise ValueError(f"{path}: blob URL secret is too short")
    return secret.encode()
