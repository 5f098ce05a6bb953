"""A real dockyard server in a subprocess, for real clients (skopeo, podman, oras) and crash tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ADMIN_PASSWORD = "admin-pass-live-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    data_dir: Path
    database_url: str
    port: int = field(default_factory=free_port)
    # The blob delivery server's own free port: every blob GET redirects there (DOCKYARD_BLOB_LISTEN).
    blob_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    admin_password: str = ADMIN_PASSWORD
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self.blob_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        env.update(
            DOCKYARD_LISTEN=self.host,
            DOCKYARD_BLOB_LISTEN=f"127.0.0.1:{self.blob_port}",
            DOCKYARD_DATA_DIR=str(self.data_dir),
            DOCKYARD_DATABASE_URL=self.database_url,
            DOCKYARD_ADMIN_PASSWORD=self.admin_password,
            DOCKYARD_LOG_LEVEL="WARNING",
            DOCKYARD_VULNDB_INTERVAL="0",  # no scheduled feed downloads in tests
        )
        env.update(self.extra_env)  # may override the above (DOCKYARD_BLOB_LISTEN=off)
        return env

    def dockyard(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a ``dockyard`` CLI command against this server's data."""
        exe = Path(sys.executable).with_name("dockyard")
        return subprocess.run(
            [str(exe), *args], env=self.env(), capture_output=True, text=True, check=check, timeout=120
        )

    def start(self) -> LiveServer:
        exe = Path(sys.executable).with_name("dockyard")
        log = (self.data_dir.parent / f"server-{self.port}.log").open("ab")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(exe), "serve"], env=self.env(), stdout=log, stderr=log, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockyard exited with {self.process.returncode}; see {log.name}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("dockyard did not become healthy in 60 s")

    def kill9(self) -> None:
        """SIGKILL the whole server process group, as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()
