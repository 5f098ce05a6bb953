"""In-memory blob driver for unit tests of code above the driver."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


class MemoryDriver:
    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, float]] = {}

    def put_file(self, key: str, source: Path) -> None:
        self._data[key] = (Path(source).read_bytes(), time.time())
        Path(source).unlink()

    def size(self, key: str) -> int | None:
        item = self._data.get(key)
        return None if item is None else len(item[0])

    def open(self, key: str) -> BinaryIO:
        if key not in self._data:
            raise FileNotFoundError(key)
        return io.BytesIO(self._data[key][0])

    def local_path(self, key: str) -> Path | None:
        return None

    def delete(self, key: str) -> bool:
        return self._data.pop(key, None) is not None

    def list_keys(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        for key, (_data, mtime) in list(self._data.items()):
            if key.startswith(prefix):
                yield key, mtime
