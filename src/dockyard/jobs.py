"""A job queue that needs no extra server: jobs are rows in the database.

A job is enqueued by adding its row in the transaction that caused it, so it exists only if that
transaction commits (a transactional outbox). Worker threads claim jobs (PostgreSQL: FOR UPDATE SKIP
LOCKED; SQLite: writers are serial) and run each in its own transaction, with retries and backoff.

A handler receives a ``JobContext``: ``ctx.session`` is the job's one write transaction, begun lazily at its
first query, so a handler can first do slow work (reading blobs, ``ctx.read`` for database reads) without
holding SQLite's single write lock. A job left ``running`` by a dead process is claimed again once its lease
has run out.

The scheduler is part of the worker loop, not a server of its own: a ``Scheduler`` (shared by the threads of
one process) runs its start hooks once, then about once a minute enqueues each ``Periodic`` kind that is due.
The job table is the last-run marker: a kind is due when no job of it was created within its interval (and
its own ``due`` check, if any, agrees), so many processes checking at once still add about one job.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from dockyard.db import Base, finish, utcnow
from dockyard.errors import DockyardError
from dockyard.events import EventBus

log = logging.getLogger("dockyard.jobs")
T = TypeVar("T")

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (
        Index("ix_job_status_run_after", "status", "run_after"),
        # Two equality columns, so the planner prefers it for the dedupe check on every push.
        Index("ix_job_dedupe_key_status", "dedupe_key", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Jobs with the same dedupe key that are still queued are not enqueued twice.
    dedupe_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)  # queued|running|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    run_after: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class JobContext:
    """What a handler gets: the job's write transaction (lazy), short side transactions, and its attempt."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        job: Job,
        services: Callable[[Session], Any] | None = None,
    ) -> None:
        self.sessions = sessions
        self._services_factory = services
        self.job_id = job.id
        self.kind = job.kind
        self.attempt = job.attempts
        self.max_attempts = job.max_attempts
        self._session: Session | None = None

    @property
    def final_attempt(self) -> bool:
        """True when a failure now will not be retried (handlers record permanent errors then)."""
        return self.attempt >= self.max_attempts

    @property
    def session(self) -> Session:
        """The job's transaction; on SQLite it takes the write lock at its first query."""
        if self._session is None:
            bind = self.sessions.kw["bind"].execution_options(sqlite_write=True)
            self._session = self.sessions(bind=bind)
        return self._session

    @property
    def services(self) -> Any:
        """The domain services on the job's transaction (dockyard.services.Services)."""
        if self._services_factory is None:
            raise RuntimeError("this worker was built without a services factory")
        return self._services_factory(self.session)

    def read(self, fn: Callable[[Session], T]) -> T:
        """Run read-only work in a short transaction of its own (outside the job's write transaction)."""
        with self.sessions() as session:
            try:
                return fn(session)
            finally:
                session.rollback()

    def write(self, fn: Callable[[Session], T]) -> T:
        """Run and commit ``fn`` in a short write transaction of its own (e.g. a progress mark)."""
        with _write_session(self.sessions) as session, session.begin():
            return fn(session)

    def rollback(self) -> None:
        """Abandon the job's transaction (before recording a failure with ``write``)."""
        self._finish(commit=False)

    def _finish(self, commit: bool) -> list[Any]:
        session, self._session = self._session, None
        return finish(session, commit=commit)


JobHandler = Callable[[JobContext, dict[str, Any]], None]


@dataclass
class JobRegistry:
    """Job kinds and their handlers; built once by the app and handed to workers."""

    handlers: dict[str, JobHandler] = field(default_factory=dict)
    periodic: list[Periodic] = field(default_factory=list)
    at_start: list[Callable[[Session], Any]] = field(default_factory=list)

    def job(self, kind: str) -> Callable[[JobHandler], JobHandler]:
        def register(fn: JobHandler) -> JobHandler:
            self.handlers[kind] = fn
            return fn

        return register

    def every(self, kind: str, interval: float, due: Callable[[Session], bool] | None = None) -> None:
        """Enqueue ``kind`` every ``interval`` seconds (0: never) when ``due``, if given, agrees."""
        self.periodic.append(Periodic(kind, interval, due))

    def on_start(self, hook: Callable[[Session], Any]) -> None:
        """Run ``hook(session)`` once, in a write transaction, when a process's workers start."""
        self.at_start.append(hook)

    def scheduler(self, sessions: sessionmaker[Session], *, check_every: float = 60) -> Scheduler:
        """The scheduler one process's workers share."""
        return Scheduler(sessions, self.periodic, self.at_start, check_every=check_every)


PURGE_JOB = "jobs.purge"


def register(registry: JobRegistry) -> None:
    """The queue's own housekeeping: delete finished jobs older than a week, once a day."""

    @registry.job(PURGE_JOB)
    def purge(ctx: JobContext, payload: dict[str, Any]) -> None:
        log.info("purged %s finished jobs", purge_finished(ctx.session))

    registry.every(PURGE_JOB, 86400)


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    dedupe_key: str | None = None,
    delay: float = 0,
    max_attempts: int = 5,
    check_queued: bool = True,
) -> int | None:
    """Add a job in the caller's transaction: its id, or None when an identical queued job exists already.

    ``check_queued=False``: the caller knows no job with this ``dedupe_key`` can be queued; the key is
    still stored, so later calls see this job.

    Core statements on the session's connection, not ``session.add``: every manifest push enqueues a
    scan, and the unit of work would cost more than the insert.
    """
    connection = session.connection()
    queued = check_queued and dedupe_key is not None
    if queued and connection.execute(_QUEUED_WITH_KEY, {"key": dedupe_key}).first():
        return None
    row = job_row(kind, payload, dedupe_key=dedupe_key, delay=delay, max_attempts=max_attempts)
    return int(connection.execute(_INSERT_JOB, row).inserted_primary_key[0])


def job_row(
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    dedupe_key: str | None = None,
    delay: float = 0,
    max_attempts: int = 5,
) -> dict[str, Any]:
    """The column values of a new queued job (``enqueue`` inserts them; a caller may insert them in a
    statement of its own, as scan queueing does on PostgreSQL, in the same transaction)."""
    now = utcnow()
    return {
        "kind": kind,
        "payload": payload or {},
        "dedupe_key": dedupe_key,
        "max_attempts": max_attempts,
        "status": QUEUED,
        "attempts": 0,
        "run_after": now + dt.timedelta(seconds=delay),
        "created_at": now,
    }


_QUEUED_WITH_KEY = (
    select(Job.__table__.c.id)
    .where(Job.__table__.c.dedupe_key == bindparam("key"), Job.__table__.c.status == QUEUED)
    .limit(1)
)
_INSERT_JOB = Job.__table__.insert()


def purge_finished(session: Session, older_than: dt.timedelta = dt.timedelta(days=7)) -> int:
    """Delete jobs that finished (done or failed) longer ago than ``older_than``; returns how many."""
    result = session.execute(
        delete(Job).where(Job.status.in_((DONE, FAILED)), Job.finished_at < utcnow() - older_than)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass
class Periodic:
    """Enqueue ``kind`` every ``interval`` seconds; ``due(session)``, if given, must also say yes."""

    kind: str
    interval: float
    due: Callable[[Session], bool] | None = None
    payload: dict[str, Any] = field(default_factory=dict)


class Scheduler:
    """Periodic jobs and start hooks, run from the worker loop (``maybe_tick``) of one process."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        periodic: list[Periodic] | None = None,
        at_start: list[Callable[[Session], Any]] | None = None,
        *,
        check_every: float = 60,
        first_delay: float = 5,
    ) -> None:
        self.sessions = sessions
        self.periodic = list(periodic or [])
        self.at_start = list(at_start or [])
        self.check_every = check_every
        self._lock = threading.Lock()
        self._started = False
        # The first check waits a little: a process starting up has its own writes to make first.
        self._next = time.monotonic() + first_delay

    def due(self, session: Session, entry: Periodic) -> bool:
        if entry.interval <= 0:
            return False
        since = utcnow() - dt.timedelta(seconds=entry.interval)
        recent = session.scalar(
            select(Job.id)
            .where(Job.kind == entry.kind, or_(Job.created_at > since, Job.status.in_((QUEUED, RUNNING))))
            .limit(1)
        )
        return recent is None and (entry.due is None or bool(entry.due(session)))

    def tick(self) -> list[str]:
        """Run the start hooks (the first time) and enqueue the due periodic kinds; returns those kinds."""
        enqueued: list[str] = []
        with _write_session(self.sessions) as session, session.begin():
            if not self._started:
                for hook in self.at_start:
                    hook(session)
                self._started = True
            for entry in self.periodic:
                if self.due(session, entry) and enqueue(
                    session, entry.kind, entry.payload, dedupe_key=f"periodic:{entry.kind}"
                ):
                    enqueued.append(entry.kind)
        for kind in enqueued:
            log.info("scheduled %s", kind)
        return enqueued

    def maybe_tick(self) -> None:
        """``tick`` when ``check_every`` seconds have passed since the last one (any thread may call it)."""
        if time.monotonic() < self._next or not self._lock.acquire(blocking=False):
            return
        try:
            if time.monotonic() >= self._next:
                self._next = time.monotonic() + self.check_every
                self.tick()
        except Exception:  # the database briefly unavailable: try again at the next check
            log.exception("job scheduler error")
        finally:
            self._lock.release()


def _write_session(sessions: sessionmaker[Session]) -> Session:
    return sessions(bind=sessions.kw["bind"].execution_options(sqlite_write=True))


class Worker:
    """Claims and runs jobs; run it in a thread (the server does) or in the foreground (the CLI, tests)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: JobRegistry,
        *,
        bus: EventBus | None = None,
        poll: float = 0.5,
        lease: float = 3600,
        scheduler: Scheduler | None = None,
        defer_to: Callable[[], bool] | None = None,
        max_defer: float = 1.0,
        services: Callable[[Session], Any] | None = None,
    ) -> None:
        self.sessions = sessions
        self.services = services  # builds a job's services on its session (Runtime.services)
        # In the server: a job waits while the process is serving requests (defer_to() is True), but never
        # longer than max_defer, so a backlog still drains under constant traffic.
        self.defer_to = defer_to
        self.max_defer = max_defer
        self.registry = registry
        self.bus = bus  # runs the after-commit subscribers of the events a job published
        self.poll = poll
        self.scheduler = scheduler  # periodic jobs and start hooks, checked from the loop
        self.lease = dt.timedelta(seconds=lease)  # a job running longer than this is presumed dead
        self.name = f"worker-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _claimable(self) -> Any:
        now = utcnow()
        return and_(
            Job.kind.in_(list(self.registry.handlers)),
            or_(
                and_(Job.status == QUEUED, Job.run_after <= now),
                and_(Job.status == RUNNING, Job.started_at < now - self.lease),
            ),
        )

    def claim(self) -> Job | None:
        """Mark the next due job running and return it (detached), or None."""
        if not self.registry.handlers:
            return None
        sqlite = self.sessions.kw["bind"].dialect.name == "sqlite"
        if sqlite:
            # Polling must not take SQLite's write lock every time: look first, lock only when there is work.
            with self.sessions() as session:
                found = session.scalar(select(Job.id).where(self._claimable()).limit(1))
                session.rollback()
            if found is None:
                return None
        with _write_session(self.sessions) as session, session.begin():
            query = select(Job).where(self._claimable()).order_by(Job.run_after, Job.id).limit(1)
            if not sqlite:
                query = query.with_for_update(skip_locked=True)
            job = session.scalar(query)
            if job is None:
                return None
            job.status, job.started_at, job.worker = RUNNING, utcnow(), self.name
            job.attempts += 1
            session.flush()
            session.expunge(job)
            return job

    def run_one(self) -> bool:
        """Run the next due job, if any; True when one ran."""
        job = self.claim()
        if job is None:
            return False
        handler = self.registry.handlers[job.kind]
        ctx = JobContext(self.sessions, job, self.services)
        error: str | None = None
        permanent = False
        events: list[Any] = []
        try:
            handler(ctx, dict(job.payload))
            events = ctx._finish(commit=True)
        except Exception as exc:  # a failing job is recorded and retried, never kills the worker
            # Rolled back, unless the error keeps what was written (as at every edge: a failed login's
            # audit row); the job has failed all the same.
            events = ctx._finish(commit=getattr(exc, "keep_writes", False))
            error = traceback.format_exc(limit=20)
            permanent = isinstance(exc, DockyardError)  # a domain refusal will not change on a retry
            log.exception("job %s #%s failed (attempt %s)", job.kind, job.id, job.attempts)
        with _write_session(self.sessions) as session, session.begin():
            values: dict[str, Any] = {"finished_at": utcnow(), "error": error}
            if error is None:
                values["status"] = DONE
            elif permanent or job.attempts >= job.max_attempts:
                values["status"] = FAILED
            else:
                values["status"] = QUEUED
                values["run_after"] = utcnow() + dt.timedelta(seconds=min(2**job.attempts, 300))
            session.execute(update(Job).where(Job.id == job.id).values(**values))
        if events and self.bus is not None:
            self.bus.run_after_commit(events)  # logs, never raises, a failing handler
        return True

    def run_until_idle(self, limit: int = 10_000) -> int:
        """Run due jobs until none is left (tests and the CLI); returns how many ran."""
        count = 0
        while count < limit and self.run_one():
            count += 1
        return count

    def start(self) -> None:
        """Run jobs in a daemon thread until ``stop``."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Ask the thread to stop and wait for the job it is running (at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _wait_for_quiet(self) -> None:
        """Let requests go first: wait, at most max_defer seconds, while defer_to() says requests run."""
        if self.defer_to is None:
            return
        deadline = time.monotonic() + self.max_defer
        while self.defer_to() and time.monotonic() < deadline and not self._stop.is_set():
            self._stop.wait(0.01)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.scheduler is not None:
                self.scheduler.maybe_tick()
            self._wait_for_quiet()
            try:
                ran = self.run_one()
            except Exception:  # database briefly unavailable: back off, keep the thread alive
                log.exception("job worker error")
                ran = False
            if not ran:
                self._stop.wait(self.poll)
            else:
                time.sleep(0)
