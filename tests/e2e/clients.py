"""Registry clients (skopeo, podman) run as subprocesses with configuration and state kept under a test's
own directory, so neither the host's credentials nor its container storage are read or written.

skopeo and podman honour HOME, DOCKER_CONFIG, REGISTRY_AUTH_FILE, CONTAINERS_CONF and
CONTAINERS_STORAGE_CONF, but as root containers/image also keeps a blob-location cache in
/var/lib/containers/cache and podman a few files under /run whatever the environment says. Where we may
(root, util-linux ``unshare``), each command runs in a private mount namespace with those directories
bind-mounted from the test's directory.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

# Host paths containers/image and podman use no matter what the environment says (when run as root).
HOST_STATE_DIRS = ("/var/lib/containers", "/run/containers", "/run/libpod")
_BIND_SCRIPT = f"""
set -e
state="$1"; shift
for dir in {" ".join(HOST_STATE_DIRS)}; do
    if [ -d "$dir" ]; then
        private="$state$(echo "$dir" | tr / _)"
        mkdir -p "$private"
        mount --bind "$private" "$dir"
    fi
done
exec "$@"
"""


@functools.cache
def can_isolate_host_state() -> bool:
    """True when commands can run in a private mount namespace (root with ``unshare``)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs none /mnt"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


class ClientError(AssertionError):
    pass


def require_tools(*tools: str) -> None:
    """Skip the calling module when a client is not installed."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}", allow_module_level=True)


@dataclass(frozen=True)
class Account:
    username: str
    password: str
    token: str | None = None  # a personal access token: clients log in with it (no argon2 per login)

    @property
    def creds(self) -> str:
        """``user:secret`` for ``--creds``: the access token when there is one, else the password."""
        return f"{self.username}:{self.token or self.password}"

    @property
    def password_creds(self) -> str:
        return f"{self.username}:{self.password}"


class Clients:
    """skopeo and podman with a private HOME, auth file, containers config and storage under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.auth_file = root / "auth.json"
        self.docker_config = root / "docker"
        self.storage = root / "storage"
        # podman refuses a runroot longer than 50 characters: pytest's tmp paths are longer.
        self.runroot = Path(tempfile.mkdtemp(prefix="dockyard-e2e-", dir="/tmp"))
        self.host_state = root / "host-state"
        for d in (self.home, self.docker_config, self.storage, self.runroot, self.host_state):
            d.mkdir(parents=True, exist_ok=True)
        (root / "xdg-runtime").mkdir(mode=0o700, exist_ok=True)
        self.auth_file.write_text('{"auths": {}}')  # podman refuses a REGISTRY_AUTH_FILE that is missing
        (self.docker_config / "config.json").write_text('{"auths": {}}')
        (root / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{self.storage}"\nrunroot = "{self.runroot}"\n'
        )
        (root / "containers.conf").write_text(
            "[engine]\n"
            'events_logger = "file"\n'
            f'events_logfile_path = "{root / "events.log"}"\n'
            'cgroup_manager = "cgroupfs"\n'
            f'tmp_dir = "{root / "libpod-tmp"}"\n'
        )
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(root / "xdg-runtime"),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "DOCKER_CONFIG": str(self.docker_config),
            "REGISTRY_AUTH_FILE": str(self.auth_file),
            "CONTAINERS_CONF": str(root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
            "TMPDIR": str(root),
        }

    def close(self) -> None:
        shutil.rmtree(self.runroot, ignore_errors=True)

    # -- running ----------------------------------------------------------------------------------
    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 180, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if can_isolate_host_state():
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _BIND_SCRIPT]
            command += ["sh", str(self.host_state / "bind"), *argv]
        result = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout, input=stdin
        )
        if check and result.returncode != 0:
            raise ClientError(
                f"{' '.join(argv)} exited with {result.returncode}\n"
                f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
            )
        return result

    def skopeo(self, *args: str, check: bool = True, debug: bool = False) -> subprocess.CompletedProcess[str]:
        return self.run(["skopeo", *(["--debug"] if debug else []), *args], check=check)

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        base = [
            "podman",
            "--storage-driver",
            "vfs",
            "--root",
            str(self.storage),
            "--runroot",
            str(self.runroot),
        ]
        return self.run([*base, *args], check=check)

    # -- skopeo shorthands --------------------------------------------------------------------------
    @staticmethod
    def creds_args(prefix: str, creds: str | None) -> list[str]:
        """``--{prefix}creds u:p`` or ``--{prefix}no-creds`` (anonymous)."""
        return [f"--{prefix}creds", creds] if creds else [f"--{prefix}no-creds"]

    def copy(
        self,
        src: str,
        dest: str,
        *,
        src_creds: str | None = None,
        dest_creds: str | None = None,
        flags: Sequence[str] = (),
        **kw,
    ) -> subprocess.CompletedProcess[str]:
        """``skopeo copy`` with TLS off and credentials on whichever side is a registry."""
        args = ["copy"]
        if src.startswith("docker://"):
            args += ["--src-tls-verify=false", *self.creds_args("src-", src_creds)]
        if dest.startswith("docker://"):
            args += ["--dest-tls-verify=false", *self.creds_args("dest-", dest_creds)]
        return self.skopeo(*args, *flags, src, dest, **kw)

    def inspect(
        self,
        ref: str,
        creds: str | None,
        *,
        raw: bool = False,
        check: bool = True,
        global_flags: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """``skopeo [global_flags] inspect`` of a registry image, with TLS off."""
        args = ["inspect", "--tls-verify=false", *self.creds_args("", creds), *(["--raw"] if raw else [])]
        return self.run(["skopeo", *global_flags, *args, ref], check=check)

    def inspect_json(self, ref: str, creds: str | None, **kw) -> dict:
        return json.loads(self.inspect(ref, creds, **kw).stdout)
