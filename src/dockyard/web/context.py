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
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from dockyard.authz import ANONYMOUS, Principal
from dockyard.db import finish
from dockyard.errors import DockyardError, Invalid
from dockyard.events import Actor
from dockyard.runtime import Runtime

if TYPE_CHECKING:
    from dockyard.accounts.services import AccountService
    from dockyard.registry.services import RegistryService
    from dockyard.services import Services

log = logging.getLogger("dockyard.web")
T = TypeVar("T")


AppState = Runtime  # the server's name for the runtime it shares with every request


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
        self._services: Services | None = None

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

    @property
    def services(self) -> Services:
        """The domain services on this request's transaction (built on first use)."""
        if self._services is None or self._services.session is not self.session:
            self._services = self.state.services(self.session)
        return self._services

    def registry(self) -> RegistryService:
        return self.services.registry

    def accounts(self) -> AccountService:
        return self.services.accounts

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking database work in a worker thread, inside this request's transaction."""
        if self.write and not self._gated and self._sqlite():
            # Writers waiting for SQLite's lock inside worker threads can take every thread while the
            # lock's holder waits for one to commit (all stall until busy_timeout): wait here instead.
            # Held until the request's transaction ends, so stream bodies before the first run().
            await self.state.write_gate.acquire()
            self._gated = True
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def call(self, fn: Callable[[Services], T]) -> T:
        """Run ``fn(services)`` in a worker thread, inside this request's transaction."""
        return await self.run(lambda: fn(self.services))

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

    async def write_apart(self, fn: Callable[[Session], T]) -> T:
        """Run and commit ``fn`` in a short write transaction of its own, before the request's (e.g. the
        login throttle's reservation, which parallel requests must see at once). Only before this request
        has written anything: SQLite's write gate is taken for just this transaction. The after-commit
        handlers of events it published run with the request's, after the response is decided."""
        gate = self._sqlite() and not self._gated
        if gate:
            await self.state.write_gate.acquire()
        try:

            def work() -> tuple[T, list[Any]]:
                with self.state.sessions(bind=self.state.bind(write=True)) as session:
                    with session.begin():
                        result = fn(session)
                    return result, session.info.pop("after_commit", [])

            result, events = await asyncio.to_thread(work)
            self._committed_events += events
            return result
        finally:
            if gate:
                self.state.write_gate.release()

    def _sqlite(self) -> bool:
        return self.state.engine.dialect.name == "sqlite"

    def _release_gate(self) -> None:
        if self._gated:
            self._gated = False
            self.state.write_gate.release()

    def _finish(self, *, commit: bool) -> list[Any]:
        """Commit (returning the after-commit events) or roll back, then close; in a worker thread."""
        session, self._session = self._session, None
        return finish(session, commit=commit)


ErrorRenderer = Callable[[Request, DockyardError], Response]
View = Callable[[Request, RequestContext], Awaitable[Response]]


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CLIENT_CLOSED_REQUEST = 499


def refuse_nul(request: Request) -> None:
    """A NUL character in the path or the query is invalid input, in every protocol: no name, tag, digest,
    media type or cursor holds one, and PostgreSQL cannot even compare text with one (it was a 500 there,
    from wherever a path or query parameter reached a query)."""
    scope = request.scope
    if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
        # NAME_INVALID: a code every protocol has (the registry's for a bad name, the API's for one too).
        raise Invalid("NUL characters are not allowed in a URL", code="NAME_INVALID")


async def in_unit_of_work(
    state: AppState,
    request: Request,
    view: Callable[[RequestContext], Awaitable[Response]],
    render_error: ErrorRenderer,
    *,
    write: bool,
) -> Response:
    """Run a view in the request's unit of work: commit before the response goes out (or roll back), turn
    domain errors into the protocol's responses, then run after-commit handlers off the event loop. The
    one edge for Starlette views (``endpoint``) and the FastAPI API (``web.api.UnitOfWorkRoute``)."""
    ctx = RequestContext(state, request, write=write)
    request.state.ctx = ctx
    try:
        refuse_nul(request)
        response = await view(ctx)
        events = await ctx.finish(commit=True)
    except DockyardError as exc:
        # keep_writes: e.g. the audit row of a failed login is committed all the same
        events = await ctx.finish(commit=getattr(exc, "keep_writes", False))
        response = render_error(request, exc)
    except ClientDisconnect:
        # The client left mid-body (a cancelled push): its abort, not a server error. Nothing it sent is
        # kept; 499 (nginx's "client closed request") is what the access log and metrics see.
        await ctx.finish(commit=False)
        log.info("client disconnected: %s %s", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    except BaseException:
        await ctx.finish(commit=False)
        raise
    finally:
        ctx._release_gate()  # after the commit or rollback, whatever happened
    if events:
        # In a worker thread: after-commit handlers must never block the event loop (and never raise).
        await asyncio.to_thread(state.bus.run_after_commit, events)
    return response


def endpoint(
    render_error: ErrorRenderer, *, write_methods: frozenset[str] = WRITE_METHODS
) -> Callable[[View], Callable]:
    """Wrap a view in the request transaction and the protocol's error mapping."""

    def decorate(view: View) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(view)
        async def handler(request: Request) -> Response:
            return await in_unit_of_work(
                request.app.state.dockyard,
                request,
                lambda ctx: view(request, ctx),
                render_error,
                write=request.method in write_methods,
            )

        return handler

    return decorate
