"""Local-filesystem blob driver: the default."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dockyard.storage.permissions import FILE_MODE, private_mkdir


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalDriver:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # Blobs of private repositories live here: 0700 directories and 0600 files whatever the umask
        # (the root's parents are not ours to restrict).
        self.root.parent.mkdir(parents=True, exist_ok=True)
        private_mkdir(self.root)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad storage key {key!r}")
        return self.root / key

    def put_file(self, key: str, source: Path) -> None:
        target = self._path(key)
        private_mkdir(target.parent)
        # The staged file keeps its mode through the rename: make it private before it is visible.
        os.chmod(source, FILE_MODE)
        # rename(2) is atomic: a concurrent reader sees the old file, the new one, or nothing.
        os.replace(source, target)
        fsync_dir(target.parent)

    def put_new_file(self, key: str, source: Path) -> bool:
        """``put_file`` that never replaces: when ``key`` exists it stays as it is, ``source`` is left where
        it was and the answer is False. A content-addressed blob, once stored, is the one that stays.

        Not part of the BlobDriver interface: the BlobStore uses it when a driver has it.
        """
        target = self._path(key)
        private_mkdir(target.parent)
        os.chmod(source, FILE_MODE)
        try:
            # link(2) fails when the target exists, atomically: no window between a check and a rename.
            os.link(source, target)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
            # A filesystem without hard links: check, then rename (atomic for readers, as put_file).
            if target.exists():
                return False
            os.replace(source, target)
        else:
            os.unlink(source)
        fsync_dir(target.parent)
        return True

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def list_keys(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                full = Path(dirpath) / name
                try:
                    mtime = full.stat().st_mtime
                except FileNotFoundError:
                    continue
                yield str(full.relative_to(self.root)), mtime
