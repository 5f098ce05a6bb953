"""One test suite for the BlobDriver contract, run against every driver (LocalDriver, MemoryDriver)."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.storage.interfaces import BlobDriver
from dockyard.storage.local import LocalDriver
from dockyard.storage.memory import MemoryDriver

DRIVERS: dict[str, Callable[[Path], BlobDriver]] = {
    "local": lambda tmp: LocalDriver(tmp / "root"),
    "memory": lambda tmp: MemoryDriver(),
}


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> BlobDriver:
    return DRIVERS[request.param](tmp_path)


@pytest.fixture
def staging(tmp_path: Path) -> Callable[[bytes], Path]:
    """Write bytes to a fresh local file, as the BlobStore stages an upload before put_file."""
    counter = iter(range(1_000_000))

    def make(data: bytes) -> Path:
        path = tmp_path / "staging" / f"file-{next(counter)}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return path

    return make


# -- the interface --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_driver_satisfies_the_protocol(name: str, tmp_path: Path) -> None:
    assert isinstance(DRIVERS[name](tmp_path), BlobDriver)


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_driver_methods_have_the_protocol_signatures(name: str, tmp_path: Path) -> None:
    # runtime_checkable only checks that the names exist; compare the parameters too (like verifyClass).
    impl = DRIVERS[name](tmp_path)
    for method in ("put_file", "size", "open", "local_path", "delete", "list_keys"):
        wanted = inspect.signature(getattr(BlobDriver, method))
        got = inspect.signature(getattr(type(impl), method))
        assert list(got.parameters) == list(wanted.parameters), method
        for param in wanted.parameters.values():
            assert got.parameters[param.name].default == param.default, (method, param.name)


def test_a_class_missing_a_method_is_not_a_driver() -> None:
    class Incomplete:
        def put_file(self, key: str, source: Path) -> None: ...

    assert not isinstance(Incomplete(), BlobDriver)


# -- put_file / size / open -----------------------------------------------------------------------
def test_put_file_then_read_back(driver: BlobDriver, staging) -> None:
    source = staging(b"hello world")
    driver.put_file("blobs/sha256/ab/abc", source)
    assert driver.size("blobs/sha256/ab/abc") == 11
    with driver.open("blobs/sha256/ab/abc") as fh:
        assert fh.read() == b"hello world"


def test_put_file_takes_the_source_away(driver: BlobDriver, staging) -> None:
    # The staged file is moved (or consumed), never left behind to fill the upload directory.
    source = staging(b"data")
    driver.put_file("k/one", source)
    assert not source.exists()


def test_put_file_of_an_empty_file(driver: BlobDriver, staging) -> None:
    driver.put_file("k/empty", staging(b""))
    assert driver.size("k/empty") == 0
    with driver.open("k/empty") as fh:
        assert fh.read() == b""


def test_put_file_replaces_an_existing_key(driver: BlobDriver, staging) -> None:
    driver.put_file("k/x", staging(b"old contents"))
    driver.put_file("k/x", staging(b"new"))
    assert driver.size("k/x") == 3
    with driver.open("k/x") as fh:
        assert fh.read() == b"new"


def test_put_file_is_atomic_for_concurrent_readers(driver: BlobDriver, staging) -> None:
    """A reader sees one whole version of the key, never a mix or a truncated file."""
    size = 256 * 1024
    versions = {b"a" * size, b"b" * size}
    driver.put_file("k/atomic", staging(b"a" * size))
    sources = [staging((b"ab"[i % 2 : i % 2 + 1]) * size) for i in range(20)]
    stop = threading.Event()
    seen: list[bytes] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                with driver.open("k/atomic") as fh:
                    seen.append(fh.read())
                time.sleep(0)  # let the writer in
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for source in sources:
        driver.put_file("k/atomic", source)
        time.sleep(0.001)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert seen
    assert all(content in versions for content in seen)


def test_size_of_missing_key_is_none(driver: BlobDriver) -> None:
    assert driver.size("nothing/here") is None


def test_open_missing_key_raises_file_not_found(driver: BlobDriver) -> None:
    with pytest.raises(FileNotFoundError):
        driver.open("nothing/here")


def test_open_supports_seek(driver: BlobDriver, staging) -> None:
    driver.put_file("k/seek", staging(b"0123456789"))
    with driver.open("k/seek") as fh:
        fh.seek(4)
        assert fh.read(3) == b"456"


# -- local_path -----------------------------------------------------------------------------------
def test_local_path(driver: BlobDriver, staging) -> None:
    driver.put_file("k/local", staging(b"bytes"))
    path = driver.local_path("k/local")
    if isinstance(driver, MemoryDriver):
        assert path is None
    else:
        assert path is not None
        assert path.read_bytes() == b"bytes"


def test_local_path_of_local_driver_is_inside_the_root(tmp_path: Path) -> None:
    driver = LocalDriver(tmp_path / "root")
    path = driver.local_path("blobs/sha256/ab/abcd")
    assert path is not None
    assert path.resolve().is_relative_to((tmp_path / "root").resolve())


# -- delete ---------------------------------------------------------------------------------------
def test_delete(driver: BlobDriver, staging) -> None:
    driver.put_file("k/del", staging(b"x"))
    assert driver.delete("k/del") is True
    assert driver.size("k/del") is None
    with pytest.raises(FileNotFoundError):
        driver.open("k/del")
    assert driver.delete("k/del") is False


def test_delete_leaves_other_keys(driver: BlobDriver, staging) -> None:
    driver.put_file("k/a", staging(b"a"))
    driver.put_file("k/b", staging(b"b"))
    driver.delete("k/a")
    assert driver.size("k/b") == 1


# -- list_keys ------------------------------------------------------------------------------------
def test_list_keys_everything(driver: BlobDriver, staging) -> None:
    keys = ["blobs/sha256/aa/aa1", "blobs/sha256/bb/bb2", "other/file"]
    before = time.time()
    for key in keys:
        driver.put_file(key, staging(key.encode()))
    listed = dict(driver.list_keys())
    assert sorted(listed) == sorted(keys)
    for mtime in listed.values():
        assert isinstance(mtime, float)
        assert before - 5 <= mtime <= time.time() + 5


def test_list_keys_under_a_prefix(driver: BlobDriver, staging) -> None:
    for key in ["blobs/sha256/aa/aa1", "blobs/sha256/bb/bb2", "other/file", "blobsmith/x"]:
        driver.put_file(key, staging(b"."))
    assert sorted(k for k, _ in driver.list_keys("blobs")) == ["blobs/sha256/aa/aa1", "blobs/sha256/bb/bb2"]
    assert [k for k, _ in driver.list_keys("blobs/sha256/bb")] == ["blobs/sha256/bb/bb2"]
    assert list(driver.list_keys("missing")) == []


def test_list_keys_after_delete(driver: BlobDriver, staging) -> None:
    driver.put_file("k/a", staging(b"a"))
    driver.put_file("k/b", staging(b"b"))
    driver.delete("k/a")
    assert [k for k, _ in driver.list_keys("k")] == ["k/b"]


def test_list_keys_of_empty_driver(driver: BlobDriver) -> None:
    assert list(driver.list_keys()) == []


# -- keys that escape the store -------------------------------------------------------------------
BAD_KEYS = ["../x", "a/../../x", "/etc/passwd", "blobs/../../outside"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_rejected(driver: BlobDriver, staging, key: str, tmp_path: Path) -> None:
    source = staging(b"evil")
    with pytest.raises(ValueError):
        driver.put_file(key, source)
    with pytest.raises(ValueError):
        driver.size(key)
    with pytest.raises(ValueError):
        driver.open(key)
    with pytest.raises(ValueError):
        driver.delete(key)
    with pytest.raises(ValueError):
        driver.local_path(key)
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "outside").exists()


def test_bad_key_cannot_delete_outside_the_root(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    driver = LocalDriver(tmp_path / "root")
    with pytest.raises(ValueError):
        driver.delete("../victim")
    assert victim.read_bytes() == b"keep me"


def test_bad_prefix_is_rejected_by_list_keys(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"s")
    driver = LocalDriver(tmp_path / "root")
    with pytest.raises(ValueError):
        list(driver.list_keys("../"))
