"""Content digests as defined by the OCI image spec (``algorithm ":" encoded``)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from dockyard.oci.errors import OciSpecError

# Registered algorithms and the exact length of their lowercase hex encoding.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}

_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX = re.compile(r"[a-f0-9]+")


def _invalid(message: str, value: object) -> OciSpecError:
    return OciSpecError(message, code="DIGEST_INVALID", detail={"digest": value})


def parse_digest(value: str) -> tuple[str, str]:
    """Validate ``value`` and return its ``(algorithm, hex)`` parts; raise OciSpecError(DIGEST_INVALID)."""
    if not isinstance(value, str) or not _GRAMMAR.fullmatch(value):
        raise _invalid("invalid digest", value)
    algorithm, encoded = value.split(":", 1)
    length = ALGORITHMS.get(algorithm)
    if length is None:
        raise _invalid(f"unsupported digest algorithm {algorithm!r}", value)
    if len(encoded) != length or not _HEX.fullmatch(encoded):
        raise _invalid(f"invalid {algorithm} digest: expected {length} lowercase hex characters", value)
    return algorithm, encoded


def is_digest(value: str) -> bool:
    """Return True when ``value`` is a valid digest of a supported algorithm."""
    try:
        parse_digest(value)
    except OciSpecError:
        return False
    return True


def new_hasher(digest: str) -> Any:
    """Return a fresh hashlib object for the algorithm of ``digest`` (a bare algorithm name works too)."""
    algorithm = digest if digest in ALGORITHMS else parse_digest(digest)[0]
    return hashlib.new(algorithm)


def compute(data: bytes, algorithm: str = "sha256") -> str:
    """Return the digest string (``"sha256:<hex>"``) of ``data``."""
    if algorithm not in ALGORITHMS:
        raise _invalid(f"unsupported digest algorithm {algorithm!r}", algorithm)
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
