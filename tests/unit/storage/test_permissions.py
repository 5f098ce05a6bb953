"""Private modes in the data directory, whatever the umask: what creates files passes explicit modes, and
the start-up tightening walks only subtrees whose root is open (see storage/permissions.py)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dockyard.config import Settings
from dockyard.storage.blobstore import BlobStore
from dockyard.storage.local import LocalDriver
from dockyard.storage.permissions import prepare_data_dir, private_mkdir, sqlite_files, tighten


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    """The usual login umask, under which files used to come out world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def make_open(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(0o644)
    return path


def test_private_mkdir_makes_every_level_it_creates_0700(tmp_path: Path) -> None:
    private_mkdir(tmp_path / "a" / "b" / "c")
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3
    private_mkdir(tmp_path / "a" / "b" / "c")  # exists: nothing to do


def test_local_driver_stores_private_blobs_under_private_directories(tmp_path: Path) -> None:
    driver = LocalDriver(tmp_path / "root")
    staged = make_open(tmp_path / "staged")
    driver.put_file("blobs/sha256/ab/abcdef", staged)
    assert mode(tmp_path / "root" / "blobs" / "sha256" / "ab" / "abcdef") == 0o600
    for directory in ("", "blobs", "blobs/sha256", "blobs/sha256/ab"):
        assert mode(tmp_path / "root" / directory) == 0o700, directory


def test_uploads_are_private_from_the_start(tmp_path: Path) -> None:
    store = BlobStore(LocalDriver(tmp_path / "storage"), tmp_path / "uploads")
    store.start_upload("u1", "team/app")
    assert mode(tmp_path / "uploads") == 0o700
    assert mode(tmp_path / "uploads" / "u1") == 0o700
    assert mode(tmp_path / "uploads" / "u1" / "data") == 0o600
    assert mode(tmp_path / "uploads" / "u1" / "owner") == 0o600
    assert store.upload_owner("u1") == "team/app"

    async def body() -> AsyncIterator[bytes]:
        yield b"layer"

    asyncio.run(store.append("u1", 0, body()))
    digest = "sha256:" + hashlib.sha256(b"layer").hexdigest()
    store.commit("u1", digest, 5)
    assert mode(store.local_path(digest)) == 0o600


def test_prepare_data_dir_creates_a_private_dir_and_database(tmp_path: Path) -> None:
    data = tmp_path / "parent" / "var"
    assert prepare_data_dir(data, f"sqlite:///{data / 'dockyard.db'}") == 0
    assert mode(data) == 0o700
    assert mode(tmp_path / "parent") == 0o755  # outside the data dir: the umask's choice
    assert mode(data / "dockyard.db") == 0o600
    assert (data / "dockyard.db").stat().st_size == 0  # an empty file is an empty SQLite database


def test_a_database_outside_the_data_dir_is_left_alone(tmp_path: Path) -> None:
    outside = make_open(tmp_path / "elsewhere.db")
    prepare_data_dir(tmp_path / "var", f"sqlite:///{outside}")
    assert mode(outside) == 0o644
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == []


def test_without_create_a_missing_data_dir_stays_missing(tmp_path: Path) -> None:
    data = tmp_path / "var"
    assert prepare_data_dir(data, f"sqlite:///{data / 'dockyard.db'}", create=False) == 0
    assert not data.exists()


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("sqlite:////srv/var/d.db", ["d.db", "d.db-wal", "d.db-shm", "d.db-journal"]),
        ("sqlite://", []),
        ("sqlite:///:memory:", []),
        ("postgresql+psycopg://u:p@db/dockyard", []),
    ],
)
def test_sqlite_files(url: str, names: list[str]) -> None:
    assert [p.name for p in sqlite_files(url)] == names


def test_an_open_data_dir_is_tightened_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "var"
    paths = [
        make_open(data / "dockyard.db"),
        make_open(data / "dockyard.db-wal"),
        make_open(data / "keys" / "token-signing-key.pem"),
        make_open(data / "storage" / "blobs" / "sha256" / "ab" / "abcd"),
        make_open(data / "uploads" / "u1" / "data"),
    ]
    directories = [data, data / "keys", *(data / "storage").rglob("*"), data / "storage", data / "uploads"]
    directories += [data / "uploads" / "u1"]
    directories = [d for d in directories if d.is_dir()]
    for d in directories:
        d.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="dockyard.storage.permissions"):
        count = prepare_data_dir(data, f"sqlite:///{data / 'dockyard.db'}")
    assert count == len(paths) + len(directories)
    assert [r.getMessage() for r in caplog.records] == [
        f"tightened permissions of {count} paths under {data} that other users could access "
        "(now 0700 directories, 0600 files)"
    ]
    assert all(mode(p) == 0o600 for p in paths)
    assert all(mode(d) == 0o700 for d in directories)
    caplog.clear()
    assert prepare_data_dir(data, f"sqlite:///{data / 'dockyard.db'}") == 0
    assert caplog.records == []


def test_a_private_subtree_root_is_not_walked_but_keys_always_are(tmp_path: Path) -> None:
    # The design: a tree whose root is private was created (or already tightened) by this version, so
    # millions of blobs are not stat'ed at every start. keys/ is small and checked every time.
    data = tmp_path / "var"
    blob = make_open(data / "storage" / "blobs" / "sha256" / "ab" / "abcd")
    key = make_open(data / "keys" / "token-signing-key.pem")
    for d in (data, data / "storage", data / "keys"):
        d.chmod(0o700)
    assert tighten(data, []) == 1
    assert mode(key) == 0o600
    assert mode(blob) == 0o644


def test_an_interrupted_tightening_is_resumed(tmp_path: Path) -> None:
    # The root of a subtree is tightened after everything in it: while it is open, the walk is not done.
    data = tmp_path / "var"
    data.mkdir(mode=0o700)
    storage = data / "storage"
    blobs = [make_open(storage / "blobs" / f"b{i}") for i in range(3)]
    storage.chmod(0o755)
    blobs[0].chmod(0o600)  # as if the last start stopped after the first blob
    assert tighten(data, []) == len(blobs) - 1 + 2  # two blobs, blobs/ (0755) and storage/
    assert all(mode(b) == 0o600 for b in blobs)


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = make_open(tmp_path / "outside")
    data = tmp_path / "var"
    data.mkdir(mode=0o755)
    (data / "link").symlink_to(outside)
    (data / "storage").mkdir(mode=0o755)
    (data / "storage" / "link").symlink_to(outside)
    assert tighten(data, [data / "link"]) == 2  # storage/ and the data dir
    assert mode(outside) == 0o644


def test_build_state_makes_the_data_dir_private(tmp_path: Path) -> None:
    from dockyard.web.app import build_state

    data = tmp_path / "var"
    settings = Settings(data_dir=data, database_url=f"sqlite:///{data / 'dockyard.db'}")
    state = build_state(settings)
    try:
        with state.engine.connect():  # WAL mode: -wal and -shm exist while a connection is open
            for path in [data, *data.rglob("*")]:
                assert mode(path) == (0o700 if path.is_dir() else 0o600), path
            assert (data / "dockyard.db-wal").exists()
    finally:
        state.engine.dispose()


def _create_in_child(path: str, start: float) -> bytes:
    import time

    from dockyard.storage.permissions import create_once

    time.sleep(max(0.0, start - time.time()))  # all children at once, as worker processes start
    return create_once(Path(path), lambda: os.urandom(32))


def test_secrets_created_by_processes_starting_together_are_one(tmp_path: Path) -> None:
    """Two server workers on a fresh data dir once raced on a shared temporary name (one crashed with
    FileNotFoundError, or each kept its own session secret): every process must get the same bytes."""
    import multiprocessing
    import time

    from dockyard.storage.permissions import FILE_MODE

    target = tmp_path / "keys" / "secret"
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        start = time.time() + 1.5
        results = pool.starmap(_create_in_child, [(str(target), start)] * 16)
    assert len(set(results)) == 1 and len(results[0]) == 32
    assert target.read_bytes() == results[0]
    assert target.stat().st_mode & 0o777 == FILE_MODE
    assert [p.name for p in target.parent.iterdir()] == ["secret"]  # no temporary file left behind
