"""The edge: one request, one database transaction, one place where errors become responses.

Views receive a RequestContext. Database work runs in worker threads on the request's session; the
transaction is opened lazily (so a blob upload streams its body before touching the database), committed
by the edge, and only then are after-commit subscribers (email, jobs) run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from dockyard.accounts.services import AccountService
from dockyard.authz import ANONYMOUS, Principal
from dockyard.config import Settings
from dockyard.delivery.urls import BlobUrlSigner
from dockyard.errors import DockyardError
from dockyard.events import Actor, EventBus
from dockyard.registry.auth import TokenSigner
from dockyard.registry.pulls import PullRecorder
from dockyard.registry.services import RegistryService
from dockyard.storage.blobstore import BlobStore

log = logging.getLogger("dockyard.web")
T = TypeVar("T")


@dataclass
class AppState:
    """Everything create_app builds once and every request shares."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    bus: EventBus
    signer: TokenSigner
    pull_recorder: PullRecorder | None = None
    # Signs blob redirects while this process's blob delivery server runs (None: blobs are sent inline).
    blob_urls: BlobUrlSigner | None = None
    # SQLite allows one writer: this process's writing requests queue here, holding no worker thread.
    write_gate: asyncio.Lock = field(default_factory=asyncio.Lock)
    _binds: dict[bool, Engine] = field(default_factory=dict, repr=False)

    def bind(self, *, write: bool) -> Engine:
        """The engine for a reading or a writing request (SQLite: BEGIN or BEGIN IMMEDIATE), made once."""
        engine = self._binds.get(write)
        if engine is None:
            engine = self._binds[write] = self.engine.execution_options(sqlite_write=write)
        return engine


class RequestContext:
    def __init__(self, state: AppState, request: Request, *, write: bool) -> None:
        self.state = state
        self.request = request
        self.write = write
        self._session: Session | None = None
        self.principal: Principal = ANONYMOUS
        self.claims: dict[str, Any] | None = None
        self._gated = False
        self._committed_events: list[Any] = []

    @property
    def session(self) -> Session:
        if self._session is None:
            # SQLite: a writing request takes the write lock when its transaction begins, not halfway.
            # The transaction begins lazily, at the first query, which runs in a worker thread (ctx.run):
            # waiting for the lock on the event loop would stall every request, the lock's holder too.
            self._session = self.state.sessions(bind=self.state.bind(write=self.write))
        return self._session

    @property
    def actor(self) -> Actor:
        client = self.request.client
        p = self.principal
        return Actor(
            user_id=p.user_id,
            name=p.name,
            ip=client.host if client else None,
            user_agent=self.request.headers.get("user-agent"),
            kind=p.kind,
        )

    def registry(self) -> RegistryService:
        return RegistryService(
            self.session, self.state.blobs, self.state.bus, self.state.settings, self.state.pull_recorder
        )

    def accounts(self) -> AccountService:
        return AccountService(self.session, self.state.bus)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking database work in a worker thread, inside this request's transaction."""
        if self.write and not self._gated and self._sqlite():
            # Writers waiting for SQLite's lock inside worker threads can take every thread while the
            # lock's holder waits for one to commit (all stall until busy_timeout): wait here instead.
            # Held until the request's transaction ends, so stream bodies before the first run().
            await self.state.write_gate.acquire()
            self._gated = True
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def transact(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in this request's transaction and end it, committing, in one worker-thread call.

        For views whose database work is one step (the registry's hot paths): one thread hop instead of
        three, and SQLite's write gate is held only for that hop. A later ``run`` opens a new transaction.
        """
        if self.write and not self._gated and self._sqlite():
            await self.state.write_gate.acquire()
            self._gated = True

        def work() -> T:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._committed_events += self._finish(commit=getattr(exc, "keep_writes", False))
                raise
            self._committed_events += self._finish(commit=True)
            return result

        try:
            return await asyncio.to_thread(work)
        finally:
            self._release_gate()

    async def finish(self, *, commit: bool) -> list[Any]:
        """End the request's transaction (commit or roll back) and close its session; no hop if none."""
        events = self._committed_events
        self._committed_events = []
        if self._session is not None:
            events += await asyncio.to_thread(self._finish, commit=commit)
        return events

    async def io(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking file work (the blob store) in a worker thread; no database, no write gate."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def read(self, fn: Callable[[Session], T]) -> T:
        """Run read-only work in a short transaction of its own, outside this request's (write) one.

        Slow checks (argon2 password hashes) go here so they never hold SQLite's single write lock.
        """

        def work() -> T:
            with self.state.sessions() as session:
                try:
                    return fn(session)
                finally:
                    session.rollback()

        return await asyncio.to_thread(work)

    def _sqlite(self) -> bool:
        return self.state.engine.dialect.name == "sqlite"

    def _release_gate(self) -> None:
        if self._gated:
            self._gated = False
            self.state.write_gate.release()

    def _finish(self, *, commit: bool) -> list[Any]:
        """Commit (returning the after-commit events) or roll back, then close; in a worker thread."""
        session, self._session = self._session, None
        if session is None:
            return []
        try:
            if not commit:
                session.rollback()
                return []
            events = session.info.pop("after_commit", [])
            session.commit()
            return events
        finally:
            session.close()  # also rolls back whatever a failed commit left


ErrorRenderer = Callable[[Request, DockyardError], Response]
View = Callable[[Request, RequestContext], Awaitable[Response]]


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CLIENT_CLOSED_REQUEST = 499


def endpoint(
    render_error: ErrorRenderer, *, write_methods: frozenset[str] = WRITE_METHODS
) -> Callable[[View], Callable]:
    """Wrap a view in the request transaction and the protocol's error mapping."""

    def decorate(view: View) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(view)
        async def handler(request: Request) -> Response:
            state: AppState = request.app.state.dockyard
            is_write = request.method in write_methods
            ctx = RequestContext(state, request, write=is_write)
            try:
                response = await view(request, ctx)
                events = await ctx.finish(commit=True)
            except DockyardError as exc:
                # keep_writes: e.g. the audit row of a failed login is committed all the same
                events = await ctx.finish(commit=getattr(exc, "keep_writes", False))
                response = render_error(request, exc)
            except ClientDisconnect:
                # The client left mid-body (a cancelled push): its abort, not a server error. Nothing it
                # sent is kept; 499 (nginx's "client closed request") is what the access log and metrics see.
                await ctx.finish(commit=False)
                log.info("client disconnected: %s %s", request.method, request.url.path)
                return Response(status_code=CLIENT_CLOSED_REQUEST)
            except BaseException:
                await ctx.finish(commit=False)
                raise
            finally:
                ctx._release_gate()  # after the commit or rollback, whatever happened
            if events:
                try:
                    state.bus.run_after_commit(events)
                except Exception:  # the request succeeded; a failing notifier must not undo that
                    log.exception("after-commit handler failed")
            return response

        return handler

    return decorate
