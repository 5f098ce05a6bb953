"""Content-addressed blob storage over a BlobDriver, with resumable uploads staged on local disk.

A blob becomes visible only after its bytes were hashed, matched to the digest, fsynced and renamed into
place. Hash state of an upload in progress is kept in memory by the process that received it; when it is
missing (a restart, another worker) the final PUT re-hashes the staged file from disk instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dockyard.errors import Invalid, RangeInvalid, TooLarge
from dockyard.spec import parse_digest
from dockyard.storage.interfaces import BlobDriver
from dockyard.storage.permissions import FILE_MODE, create_private_file, private_mkdir

BLOCK = 4 * 1024 * 1024  # hashlib and write(2) are fastest with MiB-sized blocks


def blob_key(digest: str) -> str:
    algorithm, hexpart = parse_digest(digest)
    return f"blobs/{algorithm}/{hexpart[:2]}/{hexpart}"


@dataclass
class _HashState:
    offset: int
    sha256: Any


class BlobStore:
    def __init__(self, driver: BlobDriver, upload_dir: Path) -> None:
        self.driver = driver
        self.upload_dir = Path(upload_dir)
        # Staged uploads become blobs by rename, mode and all: private from the start, whatever the umask.
        self.upload_dir.parent.mkdir(parents=True, exist_ok=True)
        private_mkdir(self.upload_dir)
        self._hash_states: dict[str, _HashState] = {}
        self._lock = threading.Lock()

    # -- reading -------------------------------------------------------------------------------
    def size(self, digest: str) -> int | None:
        """Size of a stored blob, None when absent."""
        return self.driver.size(blob_key(digest))

    def local_path(self, digest: str) -> Path | None:
        """Local path of a stored blob when the driver keeps blobs on this machine."""
        return self.driver.local_path(blob_key(digest))

    def open(self, digest: str) -> BinaryIO:
        """Open a stored blob for reading."""
        return self.driver.open(blob_key(digest))

    def iter_range(self, digest: str, start: int, end: int) -> Iterator[bytes]:
        """Yield bytes [start, end] (inclusive) of a stored blob."""
        with self.open(digest) as fh:
            fh.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = fh.read(min(BLOCK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk

    def delete(self, digest: str) -> bool:
        """Remove a blob's bytes (the caller has already removed every reference to it)."""
        return self.driver.delete(blob_key(digest))

    def list_blobs(self) -> Iterator[tuple[str, float]]:
        """Yield (digest, mtime) of every stored blob."""
        for key, mtime in self.driver.list_keys("blobs"):
            parts = key.split("/")
            if len(parts) == 4:
                yield f"{parts[1]}:{parts[3]}", mtime

    # -- uploads -------------------------------------------------------------------------------
    def _upload_file(self, upload_id: str) -> Path:
        if not upload_id.replace("-", "").isalnum():
            raise Invalid("bad upload id", code="BLOB_UPLOAD_INVALID")
        return self.upload_dir / upload_id / "data"

    def _session_dir(self, upload_id: str) -> Path:
        # Any single entry of upload_dir (gc passes the names it listed), never a path out of it.
        if upload_id in ("", ".", "..") or "/" in upload_id or "\0" in upload_id:
            raise Invalid("bad upload id", code="BLOB_UPLOAD_INVALID")
        return self.upload_dir / upload_id

    def start_upload(self, upload_id: str, owner: str) -> None:
        """Create the staging file of a new upload session belonging to repository ``owner``."""
        path = self._upload_file(upload_id)
        private_mkdir(path.parent)
        owner_fd = os.open(path.parent / "owner", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(owner_fd, "w") as fh:
            fh.write(owner)
        create_private_file(path)
        with self._lock:
            self._hash_states[upload_id] = _HashState(0, hashlib.sha256())

    def discard_upload(self, upload_id: str) -> None:
        """Forget an upload session and its staged bytes."""
        session_dir = self._session_dir(upload_id)
        with self._lock:
            self._hash_states.pop(upload_id, None)
        shutil.rmtree(session_dir, ignore_errors=True)

    def list_uploads(self) -> Iterator[tuple[str, float]]:
        """Yield (upload id, time of its last activity) of every staged upload directory."""
        if not self.upload_dir.exists():
            return
        for entry in os.scandir(self.upload_dir):
            try:
                if not entry.is_dir():
                    continue
                mtime = entry.stat().st_mtime
            except FileNotFoundError:
                continue  # the upload finished (committed or discarded) while we listed
            # Appending writes the data file, not the directory: a session busy receiving chunks is not idle.
            with contextlib.suppress(FileNotFoundError):
                mtime = max(mtime, os.stat(os.path.join(entry.path, "data")).st_mtime)
            yield entry.name, mtime

    async def append(
        self,
        upload_id: str,
        offset: int,
        body: AsyncIterator[bytes],
        *,
        limit: int | None = None,
        expected_length: int | None = None,
    ) -> int:
        """Append a streamed body to an upload at ``offset``; returns the new size.

        Bytes past ``offset`` left by a request that died mid-way are cut off first, so the session's
        recorded size is always the truth. Writing and hashing run in a worker thread, one block behind
        the network reads.
        """
        path = self._upload_file(upload_id)
        if not path.exists():
            raise Invalid("upload unknown", code="BLOB_UPLOAD_UNKNOWN")
        with self._lock:
            state = self._hash_states.get(upload_id)
            if state is not None and state.offset != offset:
                state = None
                self._hash_states.pop(upload_id, None)
        fh = await asyncio.to_thread(_open_at, path, offset)
        written = 0
        pending: asyncio.Future[Any] | None = None
        # Chunks are handed to the worker thread as they came (no copying into one buffer): hashlib and
        # write(2) take them directly, a block's worth at a time.
        buf: list[bytes] = []
        buffered = 0
        hasher = state.sha256 if state else None
        try:
            async for chunk in body:
                if not chunk:
                    continue
                written += len(chunk)
                if limit is not None and written > limit:
                    raise TooLarge("body too large")
                buf.append(chunk)
                buffered += len(chunk)
                if buffered >= BLOCK:
                    block, buf, buffered = buf, [], 0
                    if pending is not None:
                        await pending
                    pending = _hash_and_write(fh, block, hasher)
            if pending is not None:
                await pending
                pending = None
            if expected_length is not None and written != expected_length:
                raise Invalid(
                    f"body ended after {written} of {expected_length} bytes", code="BLOB_UPLOAD_INVALID"
                )
            await asyncio.to_thread(_finish, fh, buf, hasher)
        except BaseException:
            if pending is not None:
                await asyncio.gather(pending, return_exceptions=True)
            fh.close()
            with self._lock:
                self._hash_states.pop(upload_id, None)
            # Drop whatever part of this request reached the disk: the session keeps its old size.
            await asyncio.to_thread(os.truncate, path, offset)
            raise
        fh.close()
        new_size = offset + written
        if hasher is not None:
            with self._lock:
                self._hash_states[upload_id] = _HashState(new_size, hasher)
        return new_size

    def commit(self, upload_id: str, digest: str, size: int) -> None:
        """Verify the staged upload against ``digest`` and move it into the store (blocking)."""
        algorithm, expected_hex = parse_digest(digest)
        path = self._upload_file(upload_id)
        if not path.exists():
            raise Invalid("upload unknown", code="BLOB_UPLOAD_UNKNOWN")
        on_disk = path.stat().st_size
        if on_disk < size:
            raise Invalid("upload is missing bytes", code="BLOB_UPLOAD_INVALID")
        if on_disk > size:
            os.truncate(path, size)
        with self._lock:
            state = self._hash_states.pop(upload_id, None)
        if algorithm == "sha256" and state is not None and state.offset == size:
            actual = state.sha256.hexdigest()
        else:
            actual = _hash_file(path, algorithm)
        if actual != expected_hex:
            raise Invalid(
                "digest does not match content",
                code="DIGEST_INVALID",
                detail={"expected": digest, "actual": f"{algorithm}:{actual}"},
            )
        with path.open("rb+") as fh:
            os.fsync(fh.fileno())
        self.driver.put_file(blob_key(digest), path)
        shutil.rmtree(path.parent, ignore_errors=True)

    def upload_owner(self, upload_id: str) -> str | None:
        """The repository an upload session was opened for."""
        try:
            return (self._session_dir(upload_id) / "owner").read_text()
        except (Invalid, FileNotFoundError, NotADirectoryError):
            return None

    def upload_size(self, upload_id: str) -> int | None:
        """Bytes staged on disk for an upload, None when unknown."""
        try:
            return self._upload_file(upload_id).stat().st_size
        except FileNotFoundError:
            return None

    def touch_upload(self, upload_id: str) -> None:
        """Mark an upload as recently active (gc expires idle ones)."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self._session_dir(upload_id), (time.time(), time.time()))


def _open_at(path: Path, offset: int) -> BinaryIO:
    fh = path.open("r+b")
    size = os.fstat(fh.fileno()).st_size
    if size < offset:
        fh.close()
        raise RangeInvalid(f"upload has {size} bytes, not {offset}")
    fh.truncate(offset)
    fh.seek(offset)
    return fh


def _hash_and_write(fh: BinaryIO, chunks: list[bytes], hasher: Any) -> asyncio.Future[Any]:
    """Hash and write one block in two worker threads at once (both release the GIL on big buffers):
    a block then costs the slower of the two, not their sum."""
    writing = asyncio.to_thread(fh.writelines, chunks)
    if hasher is None:
        return asyncio.ensure_future(writing)
    return asyncio.gather(writing, asyncio.to_thread(_hash_chunks, hasher, chunks))


def _hash_chunks(hasher: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)


def _write_block(fh: BinaryIO, chunks: list[bytes], hasher: Any) -> None:
    if hasher is not None:
        for chunk in chunks:
            hasher.update(chunk)
    fh.writelines(chunks)


def _finish(fh: BinaryIO, tail: list[bytes], hasher: Any) -> None:
    if tail:
        _write_block(fh, tail, hasher)
    fh.flush()
    os.fsync(fh.fileno())


def _hash_file(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            hasher.update(block)
    return hasher.hexdigest()
