"""The job scheduler's feed updates: ``vulndb.update`` is enqueued at first start (no advisories) and when the
feeds are older than DOCKYARD_VULNDB_INTERVAL, not while they are fresh; it ingests a real feed subset
(PyPA urllib3 records from shared/vulndata) and queues the re-match. Each test has a database of its own."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from tests.support.cli import PYPA, need_vulndata
from tests.support.vulndata import find_vulndata

from dockyard import jobs as job_queue
from dockyard.config import Settings
from dockyard.db import make_engine, make_session_factory, migrate, utcnow
from dockyard.events import EventBus
from dockyard.jobs import DONE, Job, JobRegistry, Worker
from dockyard.scanning import jobs as scanning_jobs
from dockyard.scanning.models import Advisory, FeedState
from dockyard.scanning.services import REMATCH_JOB
from dockyard.storage.blobstore import BlobStore
from dockyard.storage.local import LocalDriver

VULNDB = scanning_jobs.VULNDB_JOB
VULNDATA = find_vulndata()


@pytest.fixture
def sessions(fresh_database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(fresh_database_url)
    migrate(engine)
    yield make_session_factory(engine)
    engine.dispose()


def registry_for(tmp_path: Path, interval: int) -> JobRegistry:
    need_vulndata()
    settings = Settings(
        data_dir=tmp_path / "data", vulndb_sources=(str(PYPA / "urllib3"),), vulndb_interval=interval
    )
    registry = JobRegistry()
    job_queue.register(registry)
    blobs = BlobStore(LocalDriver(tmp_path / "storage"), tmp_path / "uploads")
    scanning_jobs.register(registry, blobs, EventBus(), settings)
    return registry


def jobs_of(sessions: sessionmaker[Session], kind: str) -> list[Job]:
    with sessions() as s:
        return list(s.scalars(select(Job).where(Job.kind == kind).order_by(Job.id)))


def age_everything(sessions: sessionmaker[Session], seconds: int, *, feeds: bool = True) -> None:
    """Pretend the last jobs (and, with ``feeds``, the last feed update) happened ``seconds`` ago."""
    then = utcnow() - dt.timedelta(seconds=seconds)
    with sessions.begin() as s:
        s.execute(update(Job).values(created_at=then, finished_at=then))
        if feeds:
            s.execute(update(FeedState).values(updated_at=then))


def test_first_start_ingests_the_feeds_and_queues_the_rematch(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    registry = registry_for(tmp_path, interval=3600)
    scheduler = registry.scheduler(sessions)
    assert VULNDB in scheduler.tick()  # an empty database: due at once
    assert scheduler.tick() == []  # already queued: not twice
    ran = Worker(sessions, registry).run_until_idle()
    assert ran >= 3  # vulndb.update, the re-match it queued, jobs.purge
    (update_job,) = jobs_of(sessions, VULNDB)
    assert update_job.status == DONE, update_job.error
    (rematch,) = jobs_of(sessions, REMATCH_JOB)
    assert rematch.status == DONE and rematch.created_at >= update_job.created_at
    files = len(list((PYPA / "urllib3").glob("*.yaml")))
    with sessions() as s:
        live = s.scalar(select(func.count()).select_from(Advisory).where(Advisory.withdrawn.is_(None)))
        assert 0 < live <= files
        assert s.scalar(select(func.count()).select_from(FeedState)) >= 1


def test_fresh_feeds_are_not_updated_and_stale_ones_are(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    registry = registry_for(tmp_path, interval=3600)
    registry.scheduler(sessions).tick()
    Worker(sessions, registry).run_until_idle()

    # Fresh: the feeds were read a moment ago (a new process checks too).
    assert VULNDB not in registry.scheduler(sessions).tick()
    # The last job is old but the feeds were updated recently (e.g. by `dockyard vulndb update`): not due.
    age_everything(sessions, 7200, feeds=False)
    assert VULNDB not in registry.scheduler(sessions).tick()
    # Both older than the interval: due, once.
    age_everything(sessions, 7200)
    assert VULNDB in registry.scheduler(sessions).tick()
    assert VULNDB not in registry.scheduler(sessions).tick()
    assert len(jobs_of(sessions, VULNDB)) == 2
    # An unchanged feed queues no re-match.
    Worker(sessions, registry).run_until_idle()
    assert [j.status for j in jobs_of(sessions, VULNDB)] == [DONE, DONE]
    assert len(jobs_of(sessions, REMATCH_JOB)) == 1


def test_an_interval_of_zero_schedules_no_update(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    registry = registry_for(tmp_path, interval=0)
    assert registry.scheduler(sessions).tick() == [job_queue.PURGE_JOB]  # the daily purge still runs
    assert jobs_of(sessions, VULNDB) == []


def test_the_purge_is_daily(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    registry = registry_for(tmp_path, interval=0)
    registry.scheduler(sessions).tick()
    Worker(sessions, registry).run_until_idle()
    assert registry.scheduler(sessions).tick() == []
    age_everything(sessions, 86400 + 60)
    assert registry.scheduler(sessions).tick() == [job_queue.PURGE_JOB]


def test_the_server_reads_nvd_a_budget_at_a_time_and_resumes_where_it_stopped(
    sessions: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_vulndata()
    records = [json.loads(p.read_text()) for p in sorted((VULNDATA / "nvd-sample").glob("CVE-*.json"))[:5]]
    asked: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url)
        params = request.url.params
        start = int(params["startIndex"])
        found = records
        if "lastModStartDate" in params:  # as NVD does: only what was modified in the window
            low, high = params["lastModStartDate"][:19], params["lastModEndDate"][:19]
            found = [r for r in records if low <= r["lastModified"][:19] <= high]
        page = found[start : start + 2]
        body = {"totalResults": len(found), "vulnerabilities": [{"cve": r} for r in page]}
        return httpx.Response(200, json=body)

    monkeypatch.setattr(
        scanning_jobs, "nvd_client", lambda: httpx.Client(transport=httpx.MockTransport(handler))
    )
    monkeypatch.setattr(scanning_jobs, "NVD_BUDGET", 0.0)  # one page a job
    monkeypatch.setattr(scanning_jobs, "NVD_PAUSE", 0.0)
    pauses: list[float] = []
    monkeypatch.setattr(scanning_jobs, "nvd_pause", pauses.append)  # NVD's rate, kept without waiting it out
    settings = Settings(data_dir=tmp_path / "data", vulndb_sources=("nvd",), vulndb_interval=3600)
    registry = JobRegistry()
    job_queue.register(registry)
    blobs = BlobStore(LocalDriver(tmp_path / "storage"), tmp_path / "uploads")
    scanning_jobs.register(registry, blobs, EventBus(), settings)

    assert VULNDB in registry.scheduler(sessions).tick()
    Worker(sessions, registry).run_until_idle()
    # The first full read, a page per job, each going on where the last stopped (not from the beginning).
    assert [int(u.params["startIndex"]) for u in asked] == [0, 2, 4]
    assert all("lastModStartDate" not in u.params for u in asked)
    assert [j.status for j in jobs_of(sessions, VULNDB)] == [DONE, DONE, DONE]
    with sessions() as s:
        ids = set(s.scalars(select(Advisory.id).where(Advisory.source == "nvd")))
        assert ids == {f"NVD-{r['id']}" for r in records}
        cursor = s.get(FeedState, "nvd:api")
        assert cursor.last_modified is not None and cursor.records == 0  # complete
    # The next update reads only what changed since (an incremental window).
    asked.clear()
    age_everything(sessions, 7200)
    assert VULNDB in registry.scheduler(sessions).tick()
    Worker(sessions, registry).run_until_idle()
    assert asked and asked[0].params["lastModStartDate"].startswith(
        cursor.last_modified.strftime("%Y-%m-%dT%H:%M:%S")
    )
