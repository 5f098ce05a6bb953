"""In-memory blob driver for unit tests of code above the driver."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _check(key: str) -> str:
    # The same keys as LocalDriver accepts, so tests over this fake catch what the real driver refuses.
    if key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"bad storage key {key!r}")
    return key


class MemoryDriver:
    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, float]] = {}

    def put_file(self, key: str, source: Path) -> None:
        self._data[_check(key)] = (Path(source).read_bytes(), time.time())
        Path(source).unlink()

    def size(self, key: str) -> int | None:
        item = self._data.get(_check(key))
        return None if item is None else len(item[0])

    def open(self, key: str) -> BinaryIO:
        item = self._data.get(_check(key))  # one lookup: a concurrent delete must not turn into KeyError
        if item is None:
            raise FileNotFoundError(key)
        return io.BytesIO(item[0])

    def local_path(self, key: str) -> Path | None:
        _check(key)
        return None

    def delete(self, key: str) -> bool:
        return self._data.pop(_check(key), None) is not None

    def list_keys(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        # "Under" a prefix means inside that directory, as on disk: "blobs" does not match "blobsmith/x".
        under = _check(prefix).rstrip("/") + "/" if prefix else ""
        for key, (_data, mtime) in list(self._data.items()):
            if key.startswith(under):
                yield key, mtime
