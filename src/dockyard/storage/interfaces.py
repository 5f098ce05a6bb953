"""The small driver interface every blob backend implements.

Uploads are always staged on local disk by the BlobStore; a driver only has to take a verified file in
atomically, hand it back, list and delete. That keeps an object-store driver (S3) a few dozen lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable


@runtime_checkable
class BlobDriver(Protocol):
    def put_file(self, key: str, source: Path) -> None:
        """Move a complete, fsynced local file to ``key`` atomically (readers see all of it or nothing)."""

    def size(self, key: str) -> int | None:
        """Size in bytes of ``key``, or None when it does not exist."""

    def open(self, key: str) -> BinaryIO:
        """Open ``key`` for reading; raises FileNotFoundError."""

    def local_path(self, key: str) -> Path | None:
        """A local filesystem path for ``key`` when the driver has one (lets the server sendfile it)."""

    def delete(self, key: str) -> bool:
        """Delete ``key``; True when something was deleted."""

    def list_keys(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        """Yield (key, modification time as a UNIX timestamp) for every key under ``prefix``."""
