"""Catalogue assets (logo and screenshot renditions) in the blob store, by the SHA-256 of their bytes.

They go through the blob store's driver under ``assets/sha256/<hex>``, beside the registry's ``blobs/``
keys and never among them: the registry's garbage collection lists only ``blobs/`` and deletes the blob
files no database row knows, which every asset would be. An asset is content-addressed, so storing the
same bytes twice keeps the one copy.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from dockyard.errors import NotFound
from dockyard.storage.blobstore import BlobStore
from dockyard.storage.permissions import FILE_MODE

ASSET_PREFIX = "assets"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def asset_key(digest: str) -> str:
    """The driver key of an asset: ``assets/sha256/<hex>``."""
    if not _DIGEST.match(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return f"{ASSET_PREFIX}/sha256/{digest.split(':', 1)[1]}"


class AssetStore:
    def __init__(self, blobs: BlobStore) -> None:
        self.driver = blobs.driver
        # Staged beside the registry's uploads (the same filesystem as a local store, so the driver's
        # rename is atomic), as a file: upload sessions are directories, so gc never takes it for one.
        self.staging = Path(blobs.upload_dir)

    def put(self, data: bytes) -> str:
        """Store ``data`` (once) and return its digest, ``sha256:<hex>``."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        key = asset_key(digest)
        if self.driver.size(key) == len(data):
            return digest
        fd, name = tempfile.mkstemp(prefix=".asset-", dir=self.staging)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(name, FILE_MODE)
            self.driver.put_file(key, Path(name))
        finally:
            if os.path.exists(name):
                os.unlink(name)
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes of a stored asset (NotFound when it is not there)."""
        try:
            with self.driver.open(asset_key(digest)) as fh:
                return fh.read()
        except (FileNotFoundError, ValueError):
            raise NotFound("no such image") from None

    def exists(self, digest: str) -> bool:
        return self.driver.size(asset_key(digest)) is not None
