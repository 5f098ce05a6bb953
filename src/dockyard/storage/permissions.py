"""Keep the data directory private: 0700 directories and 0600 files, whatever the umask.

The data directory holds the database (password hashes, private manifests), the blobs of private
repositories, upload sessions and signing keys: nobody but the account dockyard runs as may read them.
Three layers make it so:

1. ``restrict_umask`` makes every file a dockyard process creates private, including ones made by code we
   do not own (SQLite, alembic, libraries); worker processes inherit the umask through fork/exec.
2. The code that creates the data directory, blob and upload files passes explicit modes, so they stay
   private when dockyard is used as a library under someone else's umask.
3. ``prepare_data_dir`` tightens what an older version left group/other-accessible, once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
# The group and other permission bits: any of them set makes a path readable or traversable by others.
OPEN_BITS = 0o077
# Small directories checked file by file at every start, whatever their own mode.
ALWAYS_CHECKED = ("keys",)


def restrict_umask() -> int:
    """Make files this process creates from now on private (0600/0700); returns the previous umask."""
    return os.umask(PRIVATE_UMASK)


def private_mkdir(path: Path) -> None:
    """``mkdir -p`` with mode 0700 at every level it creates (pathlib and os.makedirs give the parents the
    umask's default), and nothing to do when ``path`` exists: one syscall on the push path."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return
    except FileNotFoundError:
        private_mkdir(path.parent)
        with contextlib.suppress(FileExistsError):  # another thread or process made it meanwhile
            os.mkdir(path, DIR_MODE)


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (an existing file is left as it is)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def create_once(path: Path, make: Callable[[], bytes]) -> bytes:
    """The content of ``path``, a private file written once with ``make()``'s bytes when missing. Worker
    processes start together: link(2) publishes a complete file or fails when another process won, so they
    all end up with the same secret (a mismatch would make sessions and tokens a lottery between workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(make())
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink()
    return path.read_bytes()


def sqlite_files(database_url: str) -> list[Path]:
    """The database file of a SQLite URL and its companions (-wal, -shm, -journal); [] for other databases."""
    from sqlalchemy.engine import make_url  # not at import: every CLI command imports this module

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return []
    if url.database.startswith("file:"):  # a URI filename: not ours to guess at
        return []
    main = Path(url.database).resolve()
    return [main, *(main.with_name(main.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]


def prepare_data_dir(data_dir: Path, database_url: str, *, create: bool = True) -> int:
    """Create the data directory (0700) and the SQLite database under it (0600), and tighten the paths an
    older version left group/other-accessible; returns how many were tightened (logged when any).

    ``create=False`` (commands that need the data dir only for a SQLite database) creates nothing when
    the data dir is missing: there is nothing to tighten, and on PostgreSQL it is not needed at all.
    """
    data_dir = Path(data_dir).resolve()
    if not create and not data_dir.is_dir():
        return 0
    data_dir.parent.mkdir(parents=True, exist_ok=True)  # outside the data dir: not ours to restrict
    with contextlib.suppress(FileExistsError):
        os.mkdir(data_dir, DIR_MODE)
    database = [p for p in sqlite_files(database_url) if p.is_relative_to(data_dir)]
    if database:
        # SQLite creates the database 0644 & ~umask, and its -wal and -shm files with the database's own
        # mode (whatever the umask): a private database file makes all three private.
        private_mkdir(database[0].parent)
        create_private_file(database[0])
    tightened = tighten(data_dir, database)
    if tightened:
        # WARNING: the data was readable by other local users until now, which an operator should know.
        log.warning(
            "tightened permissions of %d paths under %s that other users could access "
            "(now 0700 directories, 0600 files)",
            tightened,
            data_dir,
        )
    return tightened


def tighten(data_dir: Path, files: list[Path]) -> int:
    """Remove group/other permissions from the data dir, ``files``, the entries directly in the data dir
    and the small ALWAYS_CHECKED directories, and from every path of a subtree whose root was too open.

    Walking millions of blob files at every start would take minutes, so a subtree (storage/, uploads/) is
    walked only when its root directory is group/other-accessible: every version before this one created
    the whole tree under one umask, so an open root is how an untightened tree looks. The root is tightened
    after its contents, so a start interrupted mid-walk walks it again next time. Since then the umask and
    explicit modes keep new paths private, and a private data directory keeps other users out of
    everything beneath it even if a stray path were open.
    """
    count = sum(_tighten_path(Path(f)) for f in files)
    try:
        entries = list(os.scandir(data_dir))
    except FileNotFoundError:
        return count
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode) and (info.st_mode & OPEN_BITS or entry.name in ALWAYS_CHECKED):
            count += _tighten_tree(Path(entry.path))
        elif not stat.S_ISDIR(info.st_mode):
            count += _tighten_path(Path(entry.path), info)
    return count + _tighten_path(data_dir)


def _tighten_tree(root: Path) -> int:
    count = 0
    # Bottom-up: a directory's contents before the directory itself, so the root is done last.
    for dirpath, _dirs, names in os.walk(root, topdown=False):
        for name in names:
            count += _tighten_path(Path(dirpath) / name)
        count += _tighten_path(Path(dirpath))
    return count


def _tighten_path(path: Path, info: os.stat_result | None = None) -> int:
    """Clear the group/other bits of ``path``: 1 when it changed, 0 when it was private or is gone."""
    try:
        info = info or os.lstat(path)
        # chmod(2) follows symbolic links, and what a link points at is not necessarily ours.
        if stat.S_ISLNK(info.st_mode) or not info.st_mode & OPEN_BITS:
            return 0
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~OPEN_BITS)
    except FileNotFoundError:
        return 0  # deleted meanwhile (gc, a finished upload)
    except PermissionError as exc:
        # Another owner's file (a restore run as root, say): say which, and go on with the rest.
        log.warning("cannot make %s private: %s", path, exc.strerror)
        return 0
    return 1
