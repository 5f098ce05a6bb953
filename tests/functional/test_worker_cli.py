"""``dockyard worker --once`` against a real database of its own: it runs what is queued, and on a new
database its scheduler ingests DOCKYARD_VULNDB_SOURCES (a real PyPA feed subset) and runs the re-match."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.support.cli import PYPA, Cli, need_vulndata

from dockyard.accounts.jobs import PURGE_JOB as ACCOUNTS_PURGE_JOB
from dockyard.alerts.jobs import RUN_JOB as ALERTS_JOB
from dockyard.compliance.jobs import CHECK_JOB
from dockyard.db import make_engine, make_session_factory, migrate
from dockyard.email.jobs import PURGE_JOB as EMAIL_PURGE_JOB
from dockyard.jobs import DONE, PURGE_JOB, Job, enqueue
from dockyard.scanning.jobs import VULNDB_JOB
from dockyard.scanning.models import Advisory
from dockyard.scanning.services import REMATCH_JOB


@pytest.fixture
def cli(tmp_path: Path, empty_database_url: str) -> Cli:
    need_vulndata()
    # Not even migrated: `dockyard worker` on a new installation's database.
    return Cli(tmp_path / "data", empty_database_url, {"DOCKYARD_VULNDB_SOURCES": str(PYPA / "urllib3")})


def jobs(database_url: str) -> dict[str, list[str]]:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as s:
            found: dict[str, list[str]] = {}
            for job in s.scalars(select(Job).order_by(Job.id)):
                found.setdefault(job.kind, []).append(job.status)
            return found
    finally:
        engine.dispose()


def test_worker_once_runs_a_queued_job(cli: Cli) -> None:
    # Nothing scheduled but the purges, the compliance check and the watchers' alerts.
    cli.extra_env["DOCKYARD_VULNDB_INTERVAL"] = "0"
    engine = make_engine(cli.database_url)
    migrate(engine)
    with make_session_factory(engine).begin() as s:
        enqueue(s, REMATCH_JOB, {}, dedupe_key=REMATCH_JOB)
    engine.dispose()
    result = cli("worker", "--once")
    assert result.exit_code == 0, result.stderr
    assert "ran 6 jobs" in result.stderr
    assert jobs(cli.database_url) == {
        REMATCH_JOB: [DONE],
        PURGE_JOB: [DONE],
        ACCOUNTS_PURGE_JOB: [DONE],
        EMAIL_PURGE_JOB: [DONE],
        CHECK_JOB: [DONE],
        ALERTS_JOB: [DONE],
    }


def test_worker_once_on_a_new_database_fills_the_vulnerability_database(cli: Cli) -> None:
    result = cli("worker", "--once", "--threads", "2")
    assert result.exit_code == 0, result.stderr
    found = jobs(cli.database_url)
    assert found[VULNDB_JOB] == [DONE] and found[REMATCH_JOB] == [DONE]
    engine = make_engine(cli.database_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Advisory)) > 0
    finally:
        engine.dispose()
    # Run again: the feeds are fresh, nothing is due.
    result = cli("worker", "--once")
    assert "ran 0 jobs" in result.stderr
