"""The data directory of a real server is private whatever umask it was started under: 0700 directories,
0600 files (database, -wal/-shm, blobs, uploads, keys), and an older, world-readable one is tightened once.

The servers start under umask 022 (the usual login default, under which this used to leave everything
readable by every local user).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from tests.support.live import LiveServer
from tests.support.registry_client import RegistryClient

from dockyard.db import make_engine, migrate
from dockyard.delivery.urls import BlobUrlSigner
from dockyard.registry.auth import TokenSigner

pytestmark = pytest.mark.slow

TIGHTENED = "tightened permissions of"


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run with ``mask`` as this process's umask: children started meanwhile inherit it."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def start(server: LiveServer) -> LiveServer:
    with umask(0o022):
        return server.start()


def log_of(server: LiveServer) -> str:
    return (server.data_dir.parent / f"server-{server.port}.log").read_text()


def every_path(root: Path) -> list[Path]:
    return [root, *sorted(root.rglob("*"))]


def open_paths(root: Path) -> dict[str, str]:
    """Paths under ``root`` (itself included) that group or other users can access, with their modes."""
    return {
        str(p.relative_to(root)): oct(stat.S_IMODE(p.lstat().st_mode))
        for p in every_path(root)
        if stat.S_IMODE(p.lstat().st_mode) & 0o077
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def process_group_umasks(leader: int) -> dict[int, str]:
    """The umask of every process in the server's process group (the main process and its workers)."""
    umasks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != leader:  # pgrp: LiveServer starts the server in a session of its own
                continue
            status = (entry / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
        for line in status.splitlines():
            if line.startswith("Umask:"):
                umasks[int(entry.name)] = line.split()[1]
    return umasks


def private_sqlite_url(data_dir: Path) -> str:
    # The default place, under the data dir (the live_server fixture keeps its database beside it).
    return f"sqlite:///{data_dir / 'dockyard.db'}"


def test_a_server_started_under_umask_022_keeps_its_data_private(tmp_path: Path) -> None:
    data = tmp_path / "live-data"
    # Two worker processes: what they create must be private too (they inherit the server's umask).
    server = LiveServer(data, private_sqlite_url(data), extra_env={"DOCKYARD_WORKERS": "2"})
    start(server)
    try:
        with httpx.Client(base_url=server.url, timeout=30, follow_redirects=True) as http:
            reg = RegistryClient(http, "admin", server.admin_password)
            layer = os.urandom(64 * 1024)
            digest = reg.push_blob("admin/secret", layer)
            reg.push_image("admin/secret", "v1", [layer])
            # An upload left open: its staged file and owner record sit under uploads/.
            r = reg.request("POST", "/v2/admin/secret/blobs/uploads/", "admin/secret")
            assert r.status_code == 202, r.text
            r = reg.request("PATCH", r.headers["location"], "admin/secret", content=b"partial")
            assert r.status_code == 202, r.text
            assert reg.pull_blob("admin/secret", digest).content == layer

        umasks = process_group_umasks(server.process.pid)
        assert len(umasks) >= 3, umasks  # the main process and its two workers
        assert set(umasks.values()) == {"0077"}, umasks

        assert mode(data) == 0o700
        database = data / "dockyard.db"
        # WAL mode: -wal and -shm exist while the server runs.
        for path in (database, database.with_name("dockyard.db-wal"), database.with_name("dockyard.db-shm")):
            assert path.exists(), path
            assert mode(path) == 0o600, path
        blob = data / "storage" / "blobs" / "sha256" / digest[7:9] / digest[7:]
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest[7:]
        assert mode(blob) == 0o600
        keys = sorted((data / "keys").iterdir())
        assert {k.name for k in keys} >= {"token-signing-key.pem", "blob-url-secret"}
        assert all(mode(k) == 0o600 for k in keys), [(k.name, oct(mode(k))) for k in keys]
        staged = list((data / "uploads").glob("*/*"))
        assert {p.name for p in staged} == {"data", "owner", "generation"}
        for path in every_path(data):
            assert mode(path) == (0o700 if path.is_dir() else 0o600), (path, oct(mode(path)))
        assert open_paths(data) == {}
    finally:
        server.stop()


def world_readable_data_dir(data: Path) -> int:
    """A data dir as earlier versions left it under umask 022: 0755 directories, 0644 files, a real
    database and keys, a blob and an upload in progress. Returns how many paths are open."""
    with umask(0o022):
        data.mkdir()
        engine = make_engine(private_sqlite_url(data))
        migrate(engine)
        engine.dispose()
        TokenSigner.from_dir(data / "keys", issuer="http://x", service="dockyard", ttl=300)
        BlobUrlSigner.from_dir(data / "keys")
        content = b"a private layer"
        hexdigest = hashlib.sha256(content).hexdigest()
        blob_dir = data / "storage" / "blobs" / "sha256" / hexdigest[:2]
        blob_dir.mkdir(parents=True)
        (blob_dir / hexdigest).write_bytes(content)
        upload = data / "uploads" / "0b5e3c1e-1d7a-4a44-9a0e-4d3b8b0f0a11"
        upload.mkdir(parents=True)
        (upload / "data").write_bytes(b"half a layer")
        (upload / "owner").write_text("admin/secret")
        # SQLite's companions, as a server killed mid-write leaves them (a clean close deletes them).
        for suffix in ("-wal", "-shm"):
            (data / f"dockyard.db{suffix}").write_bytes(b"")
    for path in every_path(data):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return len(every_path(data))


def test_an_existing_world_readable_data_dir_is_tightened_at_start(tmp_path: Path) -> None:
    data = tmp_path / "live-data"
    opened = world_readable_data_dir(data)
    assert len(open_paths(data)) == opened
    server = LiveServer(data, private_sqlite_url(data))
    start(server)
    try:
        assert open_paths(data) == {}
        assert mode(data) == 0o700
        for path in every_path(data):
            assert mode(path) == (0o700 if path.is_dir() else 0o600), (path, oct(mode(path)))
        lines = [line for line in log_of(server).splitlines() if TIGHTENED in line]
        assert lines == [
            f"{TIGHTENED} {opened} paths under {data} that other users could access "
            "(now 0700 directories, 0600 files)"
        ], log_of(server)
    finally:
        server.stop()

    # A one-time migration: the next start finds nothing to tighten and says nothing.
    start(server)
    server.stop()
    assert sum(TIGHTENED in line for line in log_of(server).splitlines()) == 1
