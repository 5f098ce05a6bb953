"""BlobStore: resumable streamed uploads, verification, content-addressed storage; over every driver."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import pytest

from dockyard.errors import Invalid, RangeInvalid, TooLarge
from dockyard.storage import blobstore
from dockyard.storage.blobstore import BlobStore, blob_key
from dockyard.storage.interfaces import BlobDriver
from dockyard.storage.local import LocalDriver
from dockyard.storage.memory import MemoryDriver

DRIVERS: dict[str, Callable[[Path], BlobDriver]] = {
    "local": lambda tmp: LocalDriver(tmp / "storage"),
    "memory": lambda tmp: MemoryDriver(),
}
MiB = 1024 * 1024


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> BlobDriver:
    return DRIVERS[request.param](tmp_path)


@pytest.fixture
def store(driver: BlobDriver, tmp_path: Path) -> BlobStore:
    return BlobStore(driver, tmp_path / "uploads")


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Shrink the write/hash block so small bodies cross many block boundaries."""
    monkeypatch.setattr(blobstore, "BLOCK", 1024)
    return 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(0)


def append(store: BlobStore, upload_id: str, offset: int, *chunks: bytes, **kw) -> int:
    return asyncio.run(store.append(upload_id, offset, _stream(chunks), **kw))


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def read(store: BlobStore, digest: str) -> bytes:
    with store.open(digest) as fh:
        return fh.read()


def new_upload(store: BlobStore, upload_id: str = "u1", owner: str = "org/app") -> str:
    store.start_upload(upload_id, owner)
    return upload_id


def count_rehashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = blobstore._hash_file

    def spy(path: Path, algorithm: str) -> str:
        calls.append(algorithm)
        return original(path, algorithm)

    monkeypatch.setattr(blobstore, "_hash_file", spy)
    return calls


# -- monolithic and streamed uploads --------------------------------------------------------------
def test_monolithic_upload_round_trip(store: BlobStore) -> None:
    data = b"hello blob"
    uid = new_upload(store)
    assert append(store, uid, 0, data, expected_length=len(data)) == len(data)
    store.commit(uid, sha256(data), len(data))
    assert store.size(sha256(data)) == len(data)
    assert read(store, sha256(data)) == data
    assert store.upload_size(uid) is None  # the staging directory is gone
    assert list(store.list_uploads()) == []


def test_streamed_append_in_blocks(store: BlobStore, small_blocks: int, monkeypatch) -> None:
    rehashes = count_rehashes(monkeypatch)
    data = bytes(range(256)) * 41  # 10 KiB: ten blocks and a tail
    uid = new_upload(store)
    assert append(store, uid, 0, *pieces(data, 333)) == len(data)
    assert store.upload_size(uid) == len(data)
    store.commit(uid, sha256(data), len(data))
    assert read(store, sha256(data)) == data
    assert rehashes == []  # the hash was computed while streaming, not by reading the file again


def test_chunked_upload_in_several_appends(store: BlobStore, small_blocks: int, monkeypatch) -> None:
    rehashes = count_rehashes(monkeypatch)
    data = bytes(range(256)) * 30
    uid = new_upload(store)
    offset = 0
    for chunk in pieces(data, 2000):
        offset = append(store, uid, offset, *pieces(chunk, 700), expected_length=len(chunk))
    assert offset == len(data)
    store.commit(uid, sha256(data), len(data))
    assert read(store, sha256(data)) == data
    assert rehashes == []


def test_empty_blob(store: BlobStore) -> None:
    uid = new_upload(store)
    assert append(store, uid, 0) == 0
    store.commit(uid, sha256(b""), 0)
    assert store.size(sha256(b"")) == 0
    assert read(store, sha256(b"")) == b""


def test_sha512_digest_is_verified_from_disk(store: BlobStore) -> None:
    data = b"sha512 content"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    uid = new_upload(store)
    append(store, uid, 0, data)
    store.commit(uid, digest, len(data))
    assert blob_key(digest).startswith("blobs/sha512/")
    assert read(store, digest) == data


def test_iter_range(store: BlobStore) -> None:
    data = bytes(range(100))
    uid = new_upload(store)
    append(store, uid, 0, data)
    store.commit(uid, sha256(data), len(data))
    assert b"".join(store.iter_range(sha256(data), 10, 19)) == data[10:20]
    assert b"".join(store.iter_range(sha256(data), 0, 99)) == data


# -- resuming ------------------------------------------------------------------------------------
def test_resume_after_restart_rehashes_from_disk(
    driver: BlobDriver, tmp_path: Path, small_blocks: int, monkeypatch
) -> None:
    rehashes = count_rehashes(monkeypatch)
    data = bytes(range(256)) * 20
    first = BlobStore(driver, tmp_path / "uploads")
    uid = new_upload(first)
    half = append(first, uid, 0, data[:3000])
    # A restart: a new process, a new BlobStore over the same directories, no hash state in memory.
    second = BlobStore(driver, tmp_path / "uploads")
    assert second.upload_size(uid) == half
    assert second.upload_owner(uid) == "org/app"
    assert append(second, uid, half, data[half:]) == len(data)
    second.commit(uid, sha256(data), len(data))
    assert rehashes == ["sha256"]
    assert read(second, sha256(data)) == data


def test_hash_state_of_another_worker_is_not_trusted(driver: BlobDriver, tmp_path: Path) -> None:
    """Two workers share the upload directory: a stale in-memory hash must never be used."""
    data = b"a" * 1000 + b"b" * 1000 + b"c" * 1000
    one = BlobStore(driver, tmp_path / "uploads")
    two = BlobStore(driver, tmp_path / "uploads")
    uid = new_upload(one)
    append(one, uid, 0, data[:1000])  # worker one holds a hash state at offset 1000
    append(two, uid, 1000, data[1000:2000])  # worker two appends without it
    append(one, uid, 2000, data[2000:])  # back on worker one, whose state is now stale
    one.commit(uid, sha256(data), len(data))
    assert read(one, sha256(data)) == data


def test_rewriting_from_an_earlier_offset_discards_the_tail(store: BlobStore) -> None:
    uid = new_upload(store)
    append(store, uid, 0, b"0123456789")
    # Bytes past the offset (left by a request that died) are cut off before writing.
    assert append(store, uid, 4, b"xy") == 6
    store.commit(uid, sha256(b"0123xy"), 6)
    assert read(store, sha256(b"0123xy")) == b"0123xy"


def test_append_at_an_offset_past_the_end_is_a_range_error(store: BlobStore) -> None:
    uid = new_upload(store)
    append(store, uid, 0, b"12345")
    with pytest.raises(RangeInvalid):
        append(store, uid, 6, b"more")
    assert store.upload_size(uid) == 5
    append(store, uid, 5, b"6")
    store.commit(uid, sha256(b"123456"), 6)


def test_append_to_unknown_upload(store: BlobStore) -> None:
    with pytest.raises(Invalid) as info:
        append(store, "0f3c5a56-0000-4000-8000-000000000000", 0, b"x")
    assert info.value.code == "BLOB_UPLOAD_UNKNOWN"


# -- verification --------------------------------------------------------------------------------
@pytest.mark.parametrize("restart", [False, True], ids=["hash-state", "rehash"])
def test_commit_with_wrong_digest_stores_nothing(driver: BlobDriver, tmp_path: Path, restart: bool) -> None:
    data = b"the real content"
    store = BlobStore(driver, tmp_path / "uploads")
    uid = new_upload(store)
    append(store, uid, 0, data)
    if restart:
        store = BlobStore(driver, tmp_path / "uploads")
    wrong = sha256(b"something else")
    with pytest.raises(Invalid) as info:
        store.commit(uid, wrong, len(data))
    assert info.value.code == "DIGEST_INVALID"
    assert info.value.detail == {"expected": wrong, "actual": sha256(data)}
    assert store.size(wrong) is None
    assert store.size(sha256(data)) is None
    assert list(store.list_blobs()) == []
    assert list(driver.list_keys()) == []
    # The staged bytes are intact: the right digest still commits (the view discards the session instead).
    store.commit(uid, sha256(data), len(data))
    assert read(store, sha256(data)) == data


def test_commit_with_missing_bytes(store: BlobStore) -> None:
    uid = new_upload(store)
    append(store, uid, 0, b"abc")
    with pytest.raises(Invalid) as info:
        store.commit(uid, sha256(b"abcd"), 4)
    assert info.value.code == "BLOB_UPLOAD_INVALID"
    assert store.size(sha256(b"abcd")) is None


def test_commit_of_unknown_upload(store: BlobStore) -> None:
    with pytest.raises(Invalid) as info:
        store.commit("nope", sha256(b""), 0)
    assert info.value.code == "BLOB_UPLOAD_UNKNOWN"


# -- failed and aborted bodies ---------------------------------------------------------------------
def test_truncated_body_leaves_the_staged_size_unchanged(store: BlobStore, small_blocks: int) -> None:
    first = b"A" * 2500
    second = bytes(range(256)) * 20
    uid = new_upload(store)
    append(store, uid, 0, first)
    # The client promised more than it sent; several blocks reached the disk before the body ended.
    with pytest.raises(Invalid) as info:
        append(store, uid, len(first), *pieces(second[:4000], 500), expected_length=len(second))
    assert info.value.code == "BLOB_UPLOAD_INVALID"
    assert store.upload_size(uid) == len(first)
    # The retry of the whole chunk succeeds and the digest covers exactly the bytes sent.
    append(store, uid, len(first), *pieces(second, 500), expected_length=len(second))
    store.commit(uid, sha256(first + second), len(first) + len(second))
    assert read(store, sha256(first + second)) == first + second


def test_body_longer_than_announced_is_rejected(store: BlobStore) -> None:
    uid = new_upload(store)
    with pytest.raises(Invalid):
        append(store, uid, 0, b"12345678", expected_length=4)
    assert store.upload_size(uid) == 0


def test_body_over_the_limit_is_rejected(store: BlobStore, small_blocks: int) -> None:
    uid = new_upload(store)
    append(store, uid, 0, b"x" * 100)
    with pytest.raises(TooLarge):
        append(store, uid, 100, *pieces(b"y" * 5000, 512), limit=3000)
    assert store.upload_size(uid) == 100


async def _failing(chunks: list[bytes], exc: BaseException) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(0)
    raise exc


def test_exception_mid_stream_keeps_the_old_size(store: BlobStore, small_blocks: int, monkeypatch) -> None:
    first = b"first chunk " * 100
    rest = bytes(range(256)) * 16
    uid = new_upload(store)
    append(store, uid, 0, first)
    with pytest.raises(ConnectionResetError):
        asyncio.run(store.append(uid, len(first), _failing(pieces(rest, 700), ConnectionResetError())))
    assert store.upload_size(uid) == len(first)
    # The hash state must not have swallowed the aborted bytes: resuming gives the right digest.
    append(store, uid, len(first), rest)
    store.commit(uid, sha256(first + rest), len(first) + len(rest))
    assert read(store, sha256(first + rest)) == first + rest


def test_cancelled_append_keeps_the_old_size(store: BlobStore, small_blocks: int) -> None:
    """A client that disconnects mid-body cancels the request task."""
    uid = new_upload(store)
    append(store, uid, 0, b"kept")

    async def scenario() -> None:
        sent = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            for chunk in pieces(b"z" * 8000, 1000):
                yield chunk
            sent.set()
            await asyncio.Event().wait()  # the client stalls, then goes away
            yield b"never"

        task = asyncio.ensure_future(store.append(uid, 4, body()))
        await sent.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert store.upload_size(uid) == 4
    append(store, uid, 4, b"-tail")
    store.commit(uid, sha256(b"kept-tail"), 9)


# -- concurrency and deduplication ----------------------------------------------------------------
def test_concurrent_commits_of_the_same_digest(store: BlobStore, driver: BlobDriver) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    digest = sha256(data)
    uploads = [new_upload(store, f"up{i}") for i in range(8)]
    for uid in uploads:
        append(store, uid, 0, *pieces(data, 64 * 1024))
    barrier = threading.Barrier(len(uploads))
    errors: list[BaseException] = []

    def commit(uid: str) -> None:
        try:
            barrier.wait()
            store.commit(uid, digest, len(data))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(uid,)) for uid in uploads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert read(store, digest) == data
    assert [key for key, _ in driver.list_keys()] == [blob_key(digest)]
    assert list(store.list_uploads()) == []


def test_concurrent_uploads_of_the_same_content_in_threads(store: BlobStore) -> None:
    """Whole uploads (append + commit) racing each other, while readers keep reading the blob."""
    data = b"shared layer " * 50_000
    digest = sha256(data)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def upload(i: int) -> None:
        try:
            uid = new_upload(store, f"t{i}")
            barrier.wait()
            append(store, uid, 0, *pieces(data, 100_000))
            store.commit(uid, digest, len(data))
            assert read(store, digest) == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [d for d, _ in store.list_blobs()] == [digest]


def test_a_blob_is_stored_once(store: BlobStore, driver: BlobDriver) -> None:
    data = b"same bytes"
    for i in range(3):
        uid = new_upload(store, f"n{i}", owner=f"org/repo{i}")
        append(store, uid, 0, data)
        store.commit(uid, sha256(data), len(data))
    assert [key for key, _ in driver.list_keys()] == [blob_key(sha256(data))]
    assert [digest for digest, _ in store.list_blobs()] == [sha256(data)]
    hexpart = hashlib.sha256(data).hexdigest()
    assert blob_key(sha256(data)) == f"blobs/sha256/{hexpart[:2]}/{hexpart}"


def test_delete(store: BlobStore) -> None:
    uid = new_upload(store)
    append(store, uid, 0, b"gone soon")
    store.commit(uid, sha256(b"gone soon"), 9)
    assert store.delete(sha256(b"gone soon")) is True
    assert store.size(sha256(b"gone soon")) is None
    assert store.delete(sha256(b"gone soon")) is False


# -- memory use ------------------------------------------------------------------------------------
async def _generated(total: int, chunk: int, hasher) -> AsyncIterator[bytes]:
    pattern = bytes(range(256)) * (chunk // 256)
    sent = 0
    n = 0
    while sent < total:
        block = n.to_bytes(8, "big") + pattern[8 : min(chunk, total - sent)]
        hasher.update(block)
        sent += len(block)
        n += 1
        yield block


@pytest.mark.parametrize("restart", [False, True], ids=["hash-state", "rehash"])
def test_large_body_is_streamed_not_buffered(tmp_path: Path, restart: bool) -> None:
    total = 50 * MiB
    driver = LocalDriver(tmp_path / "storage")  # MemoryDriver keeps blobs in memory by design
    store = BlobStore(driver, tmp_path / "uploads")
    uid = new_upload(store)
    hasher = hashlib.sha256()
    tracemalloc.start()
    try:
        size = asyncio.run(store.append(uid, 0, _generated(total, 64 * 1024, hasher), expected_length=total))
        if restart:
            store = BlobStore(driver, tmp_path / "uploads")
        digest = "sha256:" + hasher.hexdigest()
        store.commit(uid, digest, size)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == total
    assert store.size(digest) == total
    assert peak < 20 * MiB, f"peak {peak / MiB:.1f} MiB"


# -- upload sessions -------------------------------------------------------------------------------
def test_upload_session_bookkeeping(store: BlobStore) -> None:
    uid = new_upload(store, "abc-123", owner="org/app")
    assert store.upload_owner("abc-123") == "org/app"
    assert store.upload_size("abc-123") == 0
    assert [u for u, _ in store.list_uploads()] == ["abc-123"]
    store.touch_upload(uid)
    store.discard_upload(uid)
    assert store.upload_size(uid) is None
    assert store.upload_owner(uid) is None
    assert list(store.list_uploads()) == []
    store.discard_upload(uid)  # twice is fine


@pytest.mark.parametrize("upload_id", ["../x", "a/b", "", ".."])
def test_bad_upload_ids_are_rejected(store: BlobStore, upload_id: str) -> None:
    with pytest.raises(Invalid):
        store.start_upload(upload_id, "org/app")
    with pytest.raises(Invalid):
        append(store, upload_id, 0, b"x")
    with pytest.raises(Invalid):
        store.commit(upload_id, sha256(b"x"), 1)


@pytest.mark.parametrize("upload_id", ["..", "../victim", "../victim/inner"])
def test_discarding_a_bad_upload_id_touches_nothing_outside(tmp_path: Path, upload_id: str) -> None:
    store = BlobStore(MemoryDriver(), tmp_path / "uploads")
    victim = tmp_path / "victim"
    (victim / "inner").mkdir(parents=True)
    (victim / "inner" / "file").write_bytes(b"keep")
    (victim / "owner").write_text("x")
    with pytest.raises(Invalid):
        store.discard_upload(upload_id)
    assert (victim / "inner" / "file").read_bytes() == b"keep"
    assert (tmp_path / "uploads").is_dir()
    assert store.upload_owner(upload_id) is None


def test_listing_uploads_survives_one_finishing_meanwhile(store: BlobStore, monkeypatch) -> None:
    """gc and the open-uploads gauge list sessions while uploads commit and remove their directories."""
    new_upload(store, "stays")
    new_upload(store, "goes")
    real_scandir = blobstore.os.scandir

    def scandir(path):
        entries = list(real_scandir(path))
        if Path(path) == store.upload_dir:
            monkeypatch.setattr(blobstore.os, "scandir", real_scandir)
            store.discard_upload("goes")  # finished between the listing and the stat
        return iter(entries)

    monkeypatch.setattr(blobstore.os, "scandir", scandir)
    assert [u for u, _ in store.list_uploads()] == ["stays"]
