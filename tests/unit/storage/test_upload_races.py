"""Requests racing on one upload session: a blob once stored never changes, and a digest only ever names
bytes that hash to it.

The attack these tests replay (found on a running server): while PATCH A streams the real bytes of
someone else's layer into an upload, PATCH B starts at the offset reached so far and holds; A finishes and
stores its hash state; B then writes garbage over part of A's bytes; the final PUT trusted A's hash and
moved the corrupted file over the stored blob of that digest, for every repository linking it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from dockyard.errors import DockyardError, Invalid, RangeInvalid
from dockyard.storage import blobstore
from dockyard.storage.blobstore import BlobStore, blob_key
from dockyard.storage.interfaces import BlobDriver
from dockyard.storage.local import LocalDriver
from dockyard.storage.memory import MemoryDriver

DRIVERS: dict[str, Callable[[Path], BlobDriver]] = {
    "local": lambda tmp: LocalDriver(tmp / "storage"),
    "memory": lambda tmp: MemoryDriver(),
}
# The write/hash block, shrunk so small bodies cross several block boundaries (a block larger than
# Python's file buffer, so that a handed-over block is on disk, as a real 4 MiB block is).
BLOCK = 16 * 1024


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blobstore, "BLOCK", BLOCK)


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> BlobDriver:
    return DRIVERS[request.param](tmp_path)


@pytest.fixture
def store(driver: BlobDriver, tmp_path: Path) -> BlobStore:
    return BlobStore(driver, tmp_path / "uploads")


@pytest.fixture
def rehashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Re-reads of a staged file at commit (the streamed hash was not usable)."""
    calls: list[str] = []
    original = blobstore._hash_file

    def spy(path: Path, algorithm: str) -> str:
        calls.append(algorithm)
        return original(path, algorithm)

    monkeypatch.setattr(blobstore, "_hash_file", spy)
    return calls


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def _stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(0)


def append(store: BlobStore, upload_id: str, offset: int, *chunks: bytes) -> int:
    return asyncio.run(store.append(upload_id, offset, _stream(*chunks)))


def read(store: BlobStore, digest: str) -> bytes:
    with store.open(digest) as fh:
        return fh.read()


def store_blob(store: BlobStore, data: bytes, upload_id: str = "victim") -> str:
    store.start_upload(upload_id, "alice/app")
    append(store, upload_id, 0, *pieces(data, 500))
    store.commit(upload_id, sha256(data), len(data))
    return sha256(data)


def identity(store: BlobStore, digest: str) -> tuple[int, int] | None:
    """(device, inode) of a stored blob's file, for a driver that keeps files."""
    path = store.local_path(digest)
    if path is None:
        return None
    st = path.stat()
    return st.st_dev, st.st_ino


def staged(store: BlobStore, upload_id: str) -> Path:
    return store.upload_dir / upload_id / "data"


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


class Paused:
    """A request body that sends ``head``, waits until the test resumes it, then sends ``tail``."""

    def __init__(self, head: bytes, tail: bytes, piece: int = 1000) -> None:
        self.head, self.tail, self.piece = head, tail, piece
        self.started = asyncio.Event()
        self.resume = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started.set()
        for chunk in pieces(self.head, self.piece):
            yield chunk
            await asyncio.sleep(0)
        await self.resume.wait()
        for chunk in pieces(self.tail, self.piece):
            yield chunk
            await asyncio.sleep(0)


async def first_of(event: asyncio.Event, task: asyncio.Task) -> None:
    """Until ``event`` is set or ``task`` has finished (a refused request never reads its body)."""
    waiter = asyncio.ensure_future(event.wait())
    await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()


async def interleave(
    a_store: BlobStore, b_store: BlobStore, upload_id: str, real: bytes, garbage: bytes
) -> tuple[object, object]:
    """The attack's interleaving; returns what append A and append B returned or raised."""
    cut = 4 * BLOCK + 100
    a_body = Paused(real[:cut], real[cut:])
    a = asyncio.ensure_future(a_store.append(upload_id, 0, a_body.__aiter__()))
    # A pauses with four blocks of the real bytes sent, two of them (at least) on disk.
    await until(lambda: (b_store.upload_size(upload_id) or 0) >= 2 * BLOCK)
    # B starts where the upload stands (what the PATCH view reads from disk) and holds its body.
    offset = b_store.upload_size(upload_id)
    assert offset is not None and offset + len(garbage) < len(real)
    b_body = Paused(b"", garbage, piece=len(garbage))
    b = asyncio.ensure_future(b_store.append(upload_id, offset, b_body.__aiter__()))
    await first_of(b_body.started, b)
    await asyncio.sleep(0.02)  # B, if it was let in, has opened the file and waits for its body
    a_body.resume.set()
    (a_result,) = await asyncio.gather(a, return_exceptions=True)
    b_body.resume.set()
    (b_result,) = await asyncio.gather(b, return_exceptions=True)
    return a_result, b_result


def commit_whatever_is_staged(store: BlobStore, upload_id: str, digest: str) -> DockyardError | None:
    """The attacker's final ``PUT ?digest=`` with an empty body: commit what the upload holds."""
    size = store.upload_size(upload_id)
    assert size is not None
    try:
        store.commit(upload_id, digest, size)
    except DockyardError as exc:
        return exc
    return None


# -- the attack ---------------------------------------------------------------------------------------
def test_a_second_patch_during_a_first_cannot_overwrite_a_stored_blob(store: BlobStore, rehashes) -> None:
    real = os.urandom(6 * BLOCK)  # alice's layer: its bytes are no secret (a public base image, say)
    digest = store_blob(store, real)
    before = identity(store, digest)
    store.start_upload("attack", "bob/x")

    a_result, b_result = asyncio.run(interleave(store, store, "attack", real, b"\xff" * BLOCK))

    assert isinstance(b_result, RangeInvalid), b_result  # a concurrent chunk is refused, the OCI way
    assert a_result == len(real)
    refused = commit_whatever_is_staged(store, "attack", digest)
    assert refused is None  # the upload holds alice's bytes, A's streamed hash says so: nothing to refuse
    assert rehashes == []  # ...and it was trusted, no re-read of the staged file
    assert read(store, digest) == real
    assert identity(store, digest) == before  # the stored blob was kept, not replaced by the upload
    assert store.upload_size("attack") is None


def test_two_workers_cannot_interleave_on_one_upload(driver: BlobDriver, tmp_path: Path) -> None:
    """PATCH A and PATCH B land in two worker processes (two BlobStores over one upload directory, each
    with its own in-memory state): the lock on the staged file refuses B all the same."""
    one = BlobStore(driver, tmp_path / "uploads")
    two = BlobStore(driver, tmp_path / "uploads")
    real = os.urandom(6 * BLOCK)
    digest = store_blob(one, real)
    before = identity(one, digest)
    one.start_upload("attack", "bob/x")

    a_result, b_result = asyncio.run(interleave(one, two, "attack", real, b"\xff" * BLOCK))

    assert isinstance(b_result, RangeInvalid), b_result
    assert a_result == len(real)
    # The PUT reaches worker two, which has no hash state: it verifies from disk, and keeps the stored file.
    assert commit_whatever_is_staged(two, "attack", digest) is None
    assert read(one, digest) == real
    assert identity(one, digest) == before


@pytest.mark.parametrize("same_worker", [True, False], ids=["one-worker", "two-workers"])
def test_a_digest_cannot_be_poisoned_before_its_owner_pushes(
    driver: BlobDriver, tmp_path: Path, same_worker: bool
) -> None:
    one = BlobStore(driver, tmp_path / "uploads")
    two = one if same_worker else BlobStore(driver, tmp_path / "uploads")
    real = os.urandom(6 * BLOCK)
    digest = sha256(real)
    one.start_upload("attack", "bob/x")

    asyncio.run(interleave(one, two, "attack", real, b"\xff" * BLOCK))
    refused = commit_whatever_is_staged(one, "attack", digest)

    # Either nothing is stored under the digest, or what is stored hashes to it.
    if refused is not None:
        assert isinstance(refused, Invalid) and refused.code == "DIGEST_INVALID", refused
        assert one.size(digest) is None
    else:
        assert sha256(read(one, digest)) == digest
    # The owner's push then stores (or finds) the real bytes.
    store_blob(one, real, "owner")
    assert read(one, digest) == real


def test_a_commit_during_an_append_is_refused(store: BlobStore, rehashes) -> None:
    data = os.urandom(6 * BLOCK)
    store.start_upload("u", "bob/x")

    async def scenario() -> None:
        body = Paused(data[: 3 * BLOCK], data[3 * BLOCK :])
        task = asyncio.ensure_future(store.append("u", 0, body.__aiter__()))
        await until(lambda: (store.upload_size("u") or 0) >= BLOCK)
        partial = store.upload_size("u")
        with pytest.raises(RangeInvalid):
            await asyncio.to_thread(store.commit, "u", sha256(data[:partial]), partial)
        body.resume.set()
        assert await task == len(data)

    asyncio.run(scenario())
    assert store.size(sha256(data)) is None
    store.commit("u", sha256(data), len(data))
    assert read(store, sha256(data)) == data
    assert rehashes == []


# -- hash state: used only when it is the current one and covers exactly the bytes on disk -----------
def test_a_tail_rewritten_by_another_worker_is_not_covered_by_a_stale_hash(
    driver: BlobDriver, tmp_path: Path
) -> None:
    """Worker one streamed the whole blob and holds its hash; worker two (a PATCH that read the size
    before one finished) rewrites the last bytes, same length, within the same clock tick: size and times
    of the staged file tell nothing, the commit on worker one must still not trust its hash."""
    one = BlobStore(driver, tmp_path / "uploads")
    two = BlobStore(driver, tmp_path / "uploads")
    real = os.urandom(3 * BLOCK)
    one.start_upload("u", "bob/x")
    append(one, "u", 0, *pieces(real, 500))
    path = staged(one, "u")
    times = path.stat()
    append(two, "u", len(real) - 16, b"\xff" * 16)
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))  # as if in the same tick
    with pytest.raises(Invalid) as info:
        one.commit("u", sha256(real), len(real))
    assert info.value.code == "DIGEST_INVALID"
    assert one.size(sha256(real)) is None


def test_a_hash_state_is_not_stored_back_for_a_discarded_upload(store: BlobStore) -> None:
    store.start_upload("u", "bob/x")

    async def scenario() -> None:
        body = Paused(b"x" * 2 * BLOCK, b"y" * 2 * BLOCK)
        task = asyncio.ensure_future(store.append("u", 0, body.__aiter__()))
        await until(lambda: (store.upload_size("u") or 0) >= BLOCK // 2)
        store.discard_upload("u")
        body.resume.set()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert store.upload_size("u") is None
    assert "u" not in store._hash_states


def test_an_upload_whose_file_is_also_a_stored_blob_takes_no_more_bytes(store: BlobStore) -> None:
    """A crash between linking a committed upload into the store and unlinking its staging name leaves a
    session whose file is the blob: appending to it would write into the blob."""
    data = b"committed bytes"
    store.start_upload("u", "bob/x")
    append(store, "u", 0, data)
    elsewhere = store.upload_dir.parent / "blob-link"
    os.link(staged(store, "u"), elsewhere)
    with pytest.raises(Invalid) as info:
        append(store, "u", len(data), b"more")
    assert info.value.code == "BLOB_UPLOAD_UNKNOWN"
    with pytest.raises(Invalid):
        store.commit("u", sha256(data), len(data))
    assert elsewhere.read_bytes() == data


# -- a stored blob is never replaced --------------------------------------------------------------------
def test_an_upload_of_a_stored_digest_keeps_the_stored_file(store: BlobStore, rehashes) -> None:
    data = os.urandom(3 * BLOCK)
    digest = store_blob(store, data)
    before = identity(store, digest)
    store_blob(store, data, "again")
    assert read(store, digest) == data
    assert identity(store, digest) == before
    assert list(store.list_uploads()) == []
    assert rehashes == []


def test_an_upload_of_a_stored_digest_is_still_verified(store: BlobStore) -> None:
    """Keeping the stored copy does not skip the check: else knowing a digest would be enough to link it."""
    data = b"the real content"
    digest = store_blob(store, data)
    store.start_upload("u", "bob/x")
    append(store, "u", 0, b"something else!")
    with pytest.raises(Invalid) as info:
        store.commit("u", digest, 15)
    assert info.value.code == "DIGEST_INVALID"
    assert read(store, digest) == data


def test_keeping_a_stored_blob_restarts_its_gc_grace_period(tmp_path: Path) -> None:
    store = BlobStore(LocalDriver(tmp_path / "storage"), tmp_path / "uploads")
    data = b"pushed again"
    digest = store_blob(store, data)
    path = store.local_path(digest)
    assert path is not None
    long_ago = time.time() - 86400
    os.utime(path, (long_ago, long_ago))
    store_blob(store, data, "again")
    assert path.stat().st_mtime > time.time() - 60


def test_a_damaged_stored_file_is_replaced_by_verified_bytes(tmp_path: Path) -> None:
    """A stored file of another size cannot hold the digest's bytes: a verified upload replaces it."""
    store = BlobStore(LocalDriver(tmp_path / "storage"), tmp_path / "uploads")
    data = b"the real content"
    digest = store_blob(store, data)
    path = store.local_path(digest)
    assert path is not None
    path.write_bytes(b"damaged")
    store_blob(store, data, "repair")
    assert read(store, digest) == data


def test_concurrent_commits_of_one_digest_keep_the_first_file(tmp_path: Path) -> None:
    """Two uploads of one digest verified at once: the second finds the first stored and keeps it."""
    driver = LocalDriver(tmp_path / "storage")
    store = BlobStore(driver, tmp_path / "uploads")
    data = os.urandom(2 * BLOCK)
    digest = sha256(data)
    for uid in ("first", "second"):
        store.start_upload(uid, "org/app")
        append(store, uid, 0, data)
    real_put_new = driver.put_new_file
    seen: list[bool] = []
    raced: list[str] = []

    def put_new_file(key: str, source: Path) -> bool:
        if not raced:  # the other commit wins the race between the existence check and the move
            raced.append("second")
            store.commit("second", digest, len(data))
        seen.append(real_put_new(key, source))
        return seen[-1]

    driver.put_new_file = put_new_file  # type: ignore[method-assign]
    path = driver.local_path(blob_key(digest))
    store.commit("first", digest, len(data))
    assert seen == [True, False]
    assert path is not None and path.read_bytes() == data
    assert list(store.list_uploads()) == []


# -- LocalDriver.put_new_file ---------------------------------------------------------------------------
def test_local_put_new_file_never_replaces(tmp_path: Path) -> None:
    driver = LocalDriver(tmp_path / "root")
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    assert driver.put_new_file("blobs/sha256/ab/abc", first) is True
    assert not first.exists()
    assert driver.put_new_file("blobs/sha256/ab/abc", second) is False
    assert second.read_bytes() == b"second"  # left where it was
    with driver.open("blobs/sha256/ab/abc") as fh:
        assert fh.read() == b"first"
    path = driver.local_path("blobs/sha256/ab/abc")
    assert path is not None and path.stat().st_nlink == 1
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
