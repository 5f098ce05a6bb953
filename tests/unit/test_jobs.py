"""The database job queue: enqueued with the transaction that causes it, claimed once, run in a transaction of
its own with retries and backoff, after-commit subscribers, stale leases, and several workers at once.
Runs on SQLite and on PostgreSQL (jobs commit, so the tables are emptied after each test)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select, update

from dockyard.audit.models import AuditEvent
from dockyard.db import utcnow
from dockyard.errors import NotFound
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.jobs import Job, JobContext, JobRegistry, Worker, enqueue, purge_finished
from dockyard.web.context import AppState


@pytest.fixture
def state(app_state: AppState) -> AppState:
    return app_state


def add(state: AppState, kind: str, payload: dict[str, Any] | None = None, **kw: Any) -> int | None:
    with state.sessions.begin() as session:
        return enqueue(session, kind, payload, **kw)


def job(state: AppState, job_id: int) -> Job:
    with state.sessions() as session:
        found = session.get(Job, job_id)
        assert found is not None
        session.expunge(found)
        return found


def audit_count(state: AppState, tag: str = "gc:run") -> int:
    with state.sessions() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.tag == tag)) or 0


def test_a_job_exists_only_if_its_transaction_commits(state: AppState) -> None:
    with state.sessions() as session:
        enqueue(session, "t.noop")
        session.flush()
        session.rollback()
    assert add(state, "t.noop") is not None
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_a_queued_job_is_not_enqueued_twice(state: AppState) -> None:
    registry = JobRegistry()
    registry.job("t.noop")(lambda ctx, payload: None)
    with state.sessions.begin() as session:
        assert enqueue(session, "t.noop", dedupe_key="k") is not None
        assert enqueue(session, "t.noop", dedupe_key="k") is None  # in the same, uncommitted transaction
    assert add(state, "t.noop", dedupe_key="k") is None
    assert Worker(state.sessions, registry).run_until_idle() == 1
    assert add(state, "t.noop", dedupe_key="k") is not None  # the first one is done: a new one may come


def test_a_job_commits_its_work_and_then_runs_after_commit_subscribers(state: AppState) -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.after_commit(EventTag.GC_RUN, seen.append)
    registry = JobRegistry()

    @registry.job("t.publish")
    def publish(ctx: JobContext, payload: dict[str, Any]) -> None:
        bus.publish(ctx.session, Event(EventTag.GC_RUN, Actor.system(), data=payload))

    job_id = add(state, "t.publish", {"n": 1})
    assert Worker(state.sessions, registry, bus=bus).run_until_idle() == 1
    done = job(state, job_id)
    assert (done.status, done.attempts, done.error) == ("done", 1, None)
    assert done.started_at <= done.finished_at
    assert audit_count(state) == 1 and [e.data for e in seen] == [{"n": 1}]


def test_a_failing_job_is_rolled_back_and_retried_with_backoff_then_failed(state: AppState) -> None:
    bus = EventBus()
    registry = JobRegistry()
    marks: list[int] = []

    @registry.job("t.fail")
    def fail(ctx: JobContext, payload: dict[str, Any]) -> None:
        ctx.write(lambda s: marks.append(ctx.attempt))  # a side transaction commits whatever follows
        bus.publish(ctx.session, Event(EventTag.GC_RUN, Actor.system()))
        raise RuntimeError(f"boom {ctx.attempt} of {ctx.max_attempts}, final={ctx.final_attempt}")

    job_id = add(state, "t.fail", max_attempts=2)
    worker = Worker(state.sessions, registry, bus=bus)
    assert worker.run_until_idle() == 1  # the retry is not due yet
    first = job(state, job_id)
    assert (first.status, first.attempts) == ("queued", 1)
    assert "RuntimeError: boom 1 of 2, final=False" in first.error
    assert first.run_after > utcnow() + dt.timedelta(seconds=1)
    assert audit_count(state) == 0  # the job's own writes were rolled back
    with state.sessions.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(run_after=utcnow()))
    assert worker.run_until_idle() == 1
    last = job(state, job_id)
    assert (last.status, last.attempts) == ("failed", 2) and "final=True" in last.error
    assert marks == [1, 2] and audit_count(state) == 0


def test_a_domain_error_fails_the_job_without_retries(state: AppState) -> None:
    registry = JobRegistry()

    @registry.job("t.missing")
    def missing(ctx: JobContext, payload: dict[str, Any]) -> None:
        raise NotFound("the thing is gone")

    job_id = add(state, "t.missing")
    Worker(state.sessions, registry).run_until_idle()
    failed = job(state, job_id)
    assert (failed.status, failed.attempts) == ("failed", 1) and "the thing is gone" in failed.error


def test_a_job_left_running_by_a_dead_worker_is_run_again_after_its_lease(state: AppState) -> None:
    registry = JobRegistry()
    ran: list[str] = []
    registry.job("t.run")(lambda ctx, payload: ran.append(payload["name"]))
    stale, fresh = add(state, "t.run", {"name": "stale"}), add(state, "t.run", {"name": "fresh"})
    with state.sessions.begin() as session:
        for job_id, started in ((stale, utcnow() - dt.timedelta(hours=2)), (fresh, utcnow())):
            session.execute(
                update(Job).where(Job.id == job_id).values(status="running", started_at=started, attempts=1)
            )
    assert Worker(state.sessions, registry, lease=3600).run_until_idle() == 1
    assert ran == ["stale"]
    assert (job(state, stale).status, job(state, stale).attempts) == ("done", 2)
    assert job(state, fresh).status == "running"


def test_jobs_of_unknown_kinds_are_left_for_a_worker_that_knows_them(state: AppState) -> None:
    job_id = add(state, "t.elsewhere")
    registry = JobRegistry()
    registry.job("t.here")(lambda ctx, payload: None)
    assert Worker(state.sessions, registry).run_until_idle() == 0
    assert job(state, job_id).status == "queued"


def test_several_workers_run_every_job_exactly_once(state: AppState) -> None:
    registry = JobRegistry()
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    @registry.job("t.count")
    def count(ctx: JobContext, payload: dict[str, Any]) -> None:
        ctx.session.execute(select(func.count()).select_from(Job))  # take the write transaction
        time.sleep(0.005)
        with lock:
            runs[payload["i"]] += 1

    for i in range(40):
        add(state, "t.count", {"i": i})
    workers = [Worker(state.sessions, registry) for _ in range(4)]
    threads = [threading.Thread(target=w.run_until_idle) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert runs == dict.fromkeys(range(40), 1)
    with state.sessions() as session:
        assert set(session.scalars(select(Job.status))) == {"done"}
        if state.engine.dialect.name == "postgresql":  # SKIP LOCKED lets them share the work
            assert len(set(session.scalars(select(Job.worker)))) > 1


def test_a_worker_thread_runs_jobs_until_stopped(state: AppState) -> None:
    registry = JobRegistry()
    done = threading.Event()
    registry.job("t.signal")(lambda ctx, payload: done.set())
    worker = Worker(state.sessions, registry, poll=0.02)
    worker.start()
    try:
        add(state, "t.signal")
        assert done.wait(10)
    finally:
        worker.stop()
    assert worker._thread is None


def test_a_server_worker_waits_while_requests_are_being_served(state: AppState) -> None:
    registry = JobRegistry()
    ran_while: list[bool] = []
    done = threading.Event()
    serving = threading.Event()
    serving.set()

    def job(ctx: JobContext, payload: dict[str, Any]) -> None:
        ran_while.append(serving.is_set())
        done.set()

    registry.job("t.yield")(job)
    add(state, "t.yield")
    worker = Worker(state.sessions, registry, poll=0.02, defer_to=serving.is_set, max_defer=30)
    worker.start()
    try:
        assert not done.wait(0.5)  # the job is due, but requests are being served
        serving.clear()
        assert done.wait(10)
    finally:
        worker.stop()
    assert ran_while == [False]


def test_a_server_worker_defers_at_most_max_defer_so_jobs_run_under_constant_traffic(state: AppState) -> None:
    registry = JobRegistry()
    done = threading.Event()
    registry.job("t.signal")(lambda ctx, payload: done.set())
    add(state, "t.signal")
    asked = 0

    def always_busy() -> bool:
        nonlocal asked
        asked += 1
        return True

    worker = Worker(state.sessions, registry, poll=0.02, defer_to=always_busy, max_defer=0.2)
    worker.start()
    try:
        assert done.wait(10)
    finally:
        worker.stop()
    assert asked > 1  # it did wait, and then ran the job all the same


def test_finished_jobs_are_purged_after_a_while(state: AppState) -> None:
    registry = JobRegistry()
    registry.job("t.noop")(lambda ctx, payload: None)
    old, new = add(state, "t.noop"), add(state, "t.noop")
    Worker(state.sessions, registry).run_until_idle()
    waiting = add(state, "t.later", delay=3600)
    with state.sessions.begin() as session:
        session.execute(update(Job).where(Job.id == old).values(finished_at=utcnow() - dt.timedelta(days=30)))
    with state.sessions.begin() as session:
        assert purge_finished(session) == 1
    with state.sessions() as session:
        assert set(session.scalars(select(Job.id))) == {new, waiting}
