"""Content-addressed blob storage over a BlobDriver, with resumable uploads staged on local disk.

A blob becomes visible only after its bytes were hashed, matched to the digest, fsynced and moved into
place, and a stored blob is never replaced by a later upload of the same digest (content-addressed: it was
verified when it was written). Hash state of an upload in progress is kept in memory by the process that
received it; when it is missing or no longer describes the staged file exactly (a restart, another worker
wrote to it) the final PUT re-hashes the staged file from disk instead.

One request at a time writes to an upload session: an append or a commit holds an exclusive ``flock`` on
the staged file for its whole duration (which also holds off the server's other worker processes) and a
claim in this process. A second request meanwhile is refused with RANGE_INVALID (416), the answer the OCI
distribution spec gives a chunk that does not continue the upload where it stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import itertools
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
    # The staged file as it was when the state was stored (see _stamp), and the generation this process
    # wrote before changing it: the state is used only while both are still the same, so bytes another
    # request or worker process wrote since are never trusted.
    stamp: tuple[int, ...]
    generation: str


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class BlobStore:
    def __init__(self, driver: BlobDriver, upload_dir: Path) -> None:
        self.driver = driver
        self.upload_dir = Path(upload_dir)
        # Staged uploads become blobs by rename, mode and all: private from the start, whatever the umask.
        self.upload_dir.parent.mkdir(parents=True, exist_ok=True)
        private_mkdir(self.upload_dir)
        self._hash_states: dict[str, _HashState] = {}
        # Uploads a request of this process is appending to or committing, with that request's token.
        self._busy: dict[str, int] = {}
        self._tokens = itertools.count(1)
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
        # No hash state yet: an append at offset 0 hashes from the start whichever process receives it.

    def discard_upload(self, upload_id: str) -> None:
        """Forget an upload session and its staged bytes."""
        session_dir = self._session_dir(upload_id)
        with self._lock:
            self._hash_states.pop(upload_id, None)
            self._busy.pop(upload_id, None)  # a request still writing stores no hash state afterwards
        shutil.rmtree(session_dir, ignore_errors=True)

    def _claim(self, upload_id: str) -> int:
        """Mark an upload as written by one request of this process; a second one meanwhile is refused."""
        with self._lock:
            if upload_id in self._busy:
                raise RangeInvalid("another request is writing to this upload")
            token = next(self._tokens)
            self._busy[upload_id] = token
            return token

    def _holds(self, upload_id: str, token: int) -> bool:
        return self._busy.get(upload_id) == token  # callers hold self._lock

    def _release(self, upload_id: str, token: int) -> None:
        with self._lock:
            if self._holds(upload_id, token):
                del self._busy[upload_id]

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
        the network reads. While another request appends to or commits the upload (in this process or
        another), this one is refused with RangeInvalid.
        """
        path = self._upload_file(upload_id)
        if not path.exists():
            raise Invalid("upload unknown", code="BLOB_UPLOAD_UNKNOWN")
        token = self._claim(upload_id)
        try:
            # A few metadata syscalls, in the event loop: no await between taking the descriptor and the try
            # that closes it, so a cancelled request cannot leave the upload locked.
            lock_fd, before = _lock_upload(path)
            try:
                return await self._append_locked(
                    upload_id, token, path, before, offset, body, limit=limit, expected_length=expected_length
                )
            finally:
                os.close(lock_fd)  # releases the flock: only now may another request write
        finally:
            self._release(upload_id, token)

    async def _append_locked(
        self,
        upload_id: str,
        token: int,
        path: Path,
        before: os.stat_result,
        offset: int,
        body: AsyncIterator[bytes],
        *,
        limit: int | None,
        expected_length: int | None,
    ) -> int:
        # The hash state is taken, not shared: it comes back only from the request that extended it. It
        # is used only when it covers exactly the bytes on disk up to ``offset``, nothing more or less.
        with self._lock:
            state = self._hash_states.pop(upload_id, None)
        fh, previous, generation = await asyncio.to_thread(_open_at, path, offset, before)
        if offset == 0:
            hasher = hashlib.sha256()
        elif state is not None and state.offset == offset and _describes(state, before, previous):
            hasher = state.sha256
        else:
            hasher = None
        written = 0
        pending: asyncio.Future[Any] | None = None
        # Chunks are handed to the worker thread as they came (no copying into one buffer): hashlib and
        # write(2) take them directly, a block's worth at a time.
        buf: list[bytes] = []
        buffered = 0
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
            after = await asyncio.to_thread(_finish, fh, buf, hasher)
        except BaseException:
            if pending is not None:
                await asyncio.gather(pending, return_exceptions=True)
            fh.close()
            # Drop whatever part of this request reached the disk (still under the lock): the session keeps
            # its old size.
            await asyncio.to_thread(os.truncate, path, offset)
            raise
        fh.close()
        new_size = offset + written
        if hasher is not None and after.st_size == new_size:
            with self._lock:
                if self._holds(upload_id, token):  # not discarded meanwhile
                    self._hash_states[upload_id] = _HashState(new_size, hasher, _stamp(after), generation)
        return new_size

    def commit(self, upload_id: str, digest: str, size: int) -> None:
        """Verify the staged upload against ``digest`` and move it into the store (blocking).

        When the store holds that digest already, the stored blob is kept and the upload dropped.
        """
        algorithm, expected_hex = parse_digest(digest)
        path = self._upload_file(upload_id)
        if not path.exists():
            raise Invalid("upload unknown", code="BLOB_UPLOAD_UNKNOWN")
        token = self._claim(upload_id)
        try:
            lock_fd, st = _lock_upload(path)
            try:
                self._commit_locked(upload_id, path, lock_fd, st, algorithm, expected_hex, digest, size)
            finally:
                os.close(lock_fd)
        finally:
            self._release(upload_id, token)

    def _commit_locked(
        self,
        upload_id: str,
        path: Path,
        fd: int,
        st: os.stat_result,
        algorithm: str,
        expected_hex: str,
        digest: str,
        size: int,
    ) -> None:
        on_disk = st.st_size
        if on_disk < size:
            raise Invalid("upload is missing bytes", code="BLOB_UPLOAD_INVALID")
        with self._lock:
            state = self._hash_states.pop(upload_id, None)
        if on_disk > size:
            _new_generation(path)
            os.truncate(path, size)
            state = None
        # The streamed hash is trusted only for exactly the file on disk, as this process last wrote it.
        if (
            algorithm == "sha256"
            and state is not None
            and state.offset == size
            and _describes(state, st, _read_generation(path))
        ):
            actual = state.sha256.hexdigest()
        else:
            actual = _hash_file(path, algorithm)
        if actual != expected_hex:
            raise Invalid(
                "digest does not match content",
                code="DIGEST_INVALID",
                detail={"expected": digest, "actual": f"{algorithm}:{actual}"},
            )
        key = blob_key(digest)
        if not self._keep_stored(key, size):
            os.fsync(fd)
            self._put_new(key, path, size)
        shutil.rmtree(path.parent, ignore_errors=True)

    def _keep_stored(self, key: str, size: int) -> bool:
        """True when the store holds ``key`` already (with the verified size): that copy stays."""
        if self.driver.size(key) != size:
            return False  # absent, or not this digest's bytes (a verified upload has them): store ours
        local = self.driver.local_path(key)
        if local is not None:
            try:
                os.utime(local)  # a fresh push: gc's grace period for unreferenced blobs starts again
            except FileNotFoundError:
                return False  # removed meanwhile (gc)
        return True

    def _put_new(self, key: str, path: Path, size: int) -> None:
        """Move a verified upload into the store without replacing a blob another upload stored meanwhile."""
        put_new_file = getattr(self.driver, "put_new_file", None)
        if put_new_file is not None and self.driver.size(key) is None:
            if put_new_file(key, path):  # create-if-absent, atomically (LocalDriver: link(2))
                return
            if self._keep_stored(key, size):  # another upload of this digest was faster
                return
        # A driver without an atomic create-if-absent (the check before is the best it gets), or a stored
        # file of another size, damaged (it cannot hold this digest's bytes): the verified upload replaces it.
        self.driver.put_file(key, path)

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


def _lock_upload(path: Path) -> tuple[int, os.stat_result]:
    """Open the staged file of an upload and take its exclusive lock without waiting: a descriptor of its
    own, so the lock lasts past closing the file written through (and the truncation of a failed append).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Invalid("upload unknown", code="BLOB_UPLOAD_UNKNOWN") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RangeInvalid("another request is writing to this upload") from None
        st = os.fstat(fd)
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        # Committed (the file may be a stored blob now) or discarded between the open and the lock.
        if st.st_nlink != 1 or current is None or (current.st_dev, current.st_ino) != (st.st_dev, st.st_ino):
            raise Invalid("upload unknown", code="BLOB_UPLOAD_UNKNOWN")
        return fd, st
    except BaseException:
        os.close(fd)
        raise


def _open_at(path: Path, offset: int, locked: os.stat_result) -> tuple[BinaryIO, str | None, str]:
    """Open the (locked) staged file for writing at ``offset``; also returns the upload's generation before
    and the new one, written before the file changes."""
    fh = path.open("r+b")
    try:
        st = os.fstat(fh.fileno())
        if (st.st_dev, st.st_ino) != (locked.st_dev, locked.st_ino):
            raise Invalid("upload unknown", code="BLOB_UPLOAD_UNKNOWN")
        if st.st_size < offset:
            raise RangeInvalid(f"upload has {st.st_size} bytes, not {offset}")
        previous = _read_generation(path)
        generation = _new_generation(path)
        fh.truncate(offset)
        fh.seek(offset)
    except BaseException:
        fh.close()
        raise
    return fh, previous, generation


def _generation_file(path: Path) -> Path:
    return path.parent / "generation"


def _read_generation(path: Path) -> str | None:
    try:
        return _generation_file(path).read_text()
    except FileNotFoundError:
        return None


def _new_generation(path: Path) -> str:
    """Record, before the staged file changes, that it does: a fresh random generation any process reads.

    Times and sizes alone cannot tell: a rewrite of the tail by another worker within one clock tick of
    the last write leaves the size, mtime and ctime as they were.
    """
    generation = os.urandom(16).hex()
    fd = os.open(_generation_file(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        os.write(fd, generation.encode())
    finally:
        os.close(fd)
    return generation


def _describes(state: _HashState, st: os.stat_result, generation: str | None) -> bool:
    """Whether a hash state covers exactly the staged file ``st`` (of that ``generation``)."""
    return state.stamp == _stamp(st) and state.generation == generation


def _hash_and_write(fh: BinaryIO, chunks: list[bytes], hasher: Any) -> asyncio.Future[Any]:
    """Hash and write one block in two worker threads at once (both release the GIL on big buffers):
    a block then costs the slower of the two, not their sum."""
    writing = asyncio.to_thread(_write_through, fh, chunks)
    if hasher is None:
        return asyncio.ensure_future(writing)
    return asyncio.gather(writing, asyncio.to_thread(_hash_chunks, hasher, chunks))


def _write_through(fh: BinaryIO, chunks: list[bytes]) -> None:
    # Flushed per block: a small last chunk would otherwise wait in the file object's buffer, and the
    # upload's status (the staged file's size) would lag behind the block that was written.
    fh.writelines(chunks)
    fh.flush()


def _hash_chunks(hasher: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)


def _write_block(fh: BinaryIO, chunks: list[bytes], hasher: Any) -> None:
    if hasher is not None:
        for chunk in chunks:
            hasher.update(chunk)
    fh.writelines(chunks)


def _finish(fh: BinaryIO, tail: list[bytes], hasher: Any) -> os.stat_result:
    if tail:
        _write_block(fh, tail, hasher)
    fh.flush()
    os.fsync(fh.fileno())
    return os.fstat(fh.fileno())


def _hash_file(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            hasher.update(block)
    return hasher.hexdigest()
