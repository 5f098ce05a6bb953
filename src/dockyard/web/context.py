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
from starlette.requests import Request
from starlette.responses import Response

from dockyard.accounts.services import AccountService
from dockyard.authz import ANONYMOUS, Principal
from dockyard.config import Settings
from dockyard.errors import DockyardError
from dockyard.events import Actor, EventBus
from dockyard.registry.auth import TokenSigner
from dockyard.registry.pulls import PullRecorder
from dockyard.registry.services import RegistryService
from dockyard.storage.blob_urls import BlobUrlSigner
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


class RequestContext:
    def __init__(self, state: AppState, request: Request, *, write: bool) -> None:
        self.state = state
        self.request = request
        self.write = write
        self._session: Session | None = None
        self.principal: Principal = ANONYMOUS
        self.claims: dict[str, Any] | None = None
        self._gated = False

    @property
    def session(self) -> Session:
        if self._session is None:
            # SQLite: a writing request takes the write lock when its transaction begins, not halfway.
            # The transaction begins lazily, at the first query, which runs in a worker thread (ctx.run):
            # waiting for the lock on the event loop would stall every request, the lock's holder too.
            bind = self.state.engine.execution_options(sqlite_write=self.write)
            self._session = self.state.sessions(bind=bind)
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

    def _commit(self) -> list[Any]:
        if self._session is None:
            return []
        events = self._session.info.pop("after_commit", [])
        self._session.commit()
        return events

    def _close(self, rollback: bool) -> None:
        if self._session is not None:
            if rollback:
                self._session.rollback()
            self._session.close()
            self._session = None


ErrorRenderer = Callable[[Request, DockyardError], Response]
View = Callable[[Request, RequestContext], Awaitable[Response]]


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


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
                events = await asyncio.to_thread(ctx._commit)
            except DockyardError as exc:
                if getattr(exc, "keep_writes", False):  # e.g. the audit row of a failed login
                    await asyncio.to_thread(ctx._commit)
                await asyncio.to_thread(ctx._close, True)
                return render_error(request, exc)
            except BaseException:
                await asyncio.to_thread(ctx._close, True)
                raise
            finally:
                ctx._release_gate()  # after the commit or rollback, whatever happened
            await asyncio.to_thread(ctx._close, False)
            if events:
                try:
                    state.bus.run_after_commit(events)
                except Exception:  # the request succeeded; a failing notifier must not undo that
                    log.exception("after-commit handler failed")
            return response

        return handler

    return decorate
