"""The ``dockyard`` command run in-process (typer's CliRunner) on a data directory and database of a test's
own, with none of the caller's DOCKYARD_* or registry-credential variables leaking in."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from dockyard.cli.main import app
from dockyard.config import REGISTRY_AUTH_VARIABLES
from tests.support.vulndata import find_vulndata

VULNDATA = find_vulndata()
PYPA = VULNDATA / "pypa-advisory-database" / "vulns"
DEBIAN = VULNDATA / "debian-osv"


def need_vulndata() -> None:
    if not VULNDATA.is_dir():
        pytest.skip(f"no vulnerability data at {VULNDATA}")


@dataclass
class Cli:
    data_dir: Path
    database_url: str
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str | None]:
        """The environment the command sees: ours, with the caller's settings and credentials removed."""
        env: dict[str, str | None] = {
            k: None for k in os.environ if k.startswith("DOCKYARD_") or k in REGISTRY_AUTH_VARIABLES
        }
        env.update(
            DOCKYARD_DATA_DIR=str(self.data_dir),
            DOCKYARD_DATABASE_URL=self.database_url,
            HOME=str(self.data_dir / "home"),  # no auth file of the user running the tests
        )
        env.update(self.extra_env)
        return env

    def __call__(self, *args: str | Path) -> Result:
        result = CliRunner().invoke(app, [str(a) for a in args], env=self.env())
        # Exit codes arrive as SystemExit; anything else escaped the command's own error handling.
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert "Traceback" not in result.stdout + result.stderr
        return result


def one_line_error(result: Result) -> str:
    """The command failed with exit code 2 and said why in exactly one line on stderr, nothing on stdout."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def child_processes() -> set[int]:
    """This process's children, zombies included (those waitpid has not reaped): `dockyard scan` must leave
    none of its layer workers behind."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # it exited while we looked
            continue
        if int(fields[1]) == os.getpid():
            found.add(int(stat.parent.name))
    return found
