"""The unit of work: one transaction per request, job or CLI command, committed at the edge or rolled back
whole, and after-commit handlers run only once the transaction has committed.

``db.finish`` is the one way a unit of work ends; the edges are ``web.context.in_unit_of_work`` (Starlette
views through ``endpoint``, the JSON API through ``UnitOfWorkRoute``), ``jobs.Worker`` and
``runtime.Runtime.unit_of_work`` (the CLI's ``act``). One scenario runs through each edge: create a user
(a user row, a namespace, an audit row, a USER_CREATE event with an after-commit handler), then end in
one of four ways. Every edge must give it the same shape:

- it returns: everything is committed; the handler runs once, and sees the user committed;
- a domain error: nothing is kept (no user, no namespace, no audit row); the handler never runs;
- any other exception: the same;
- a domain error with ``keep_writes`` (a failed login keeps its audit row): committed, handler run.

And a failing after-commit handler never undoes nor fails what committed, and does not stop the others.
Runs on SQLite and PostgreSQL (the scenarios commit: the tables are emptied after each test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi import APIRouter
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD, unique

from dockyard.accounts.models import Namespace, User
from dockyard.audit.models import AuditEvent
from dockyard.cli.main import act
from dockyard.config import Settings
from dockyard.db import finish
from dockyard.errors import Conflict, LoginFailed
from dockyard.events import Actor, Event, EventTag
from dockyard.jobs import FAILED, QUEUED, Job, JobRegistry, Worker, enqueue
from dockyard.services import Services
from dockyard.web.api import Ctx, UnitOfWorkRoute, create_api
from dockyard.web.context import AppState, RequestContext, endpoint
from dockyard.web.errors import api_error_response


# -- db.finish ---------------------------------------------------------------------------------------------
def users_named(engine: Engine, name: str) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(User).where(User.username == name)) or 0


def new_user(name: str) -> User:
    return User(username=name, password_hash="x")


def test_finish_commits_and_hands_back_the_events_due_after_commit(engine: Engine) -> None:
    session = Session(engine)
    name = unique("fin")
    session.add(new_user(name))
    event = Event(EventTag.USER_CREATE, Actor.system(), namespace=name)
    session.info["after_commit"] = [event]
    try:
        assert finish(session, commit=True) == [event]
        assert users_named(engine, name) == 1
        assert "after_commit" not in session.info  # handed back once, not again
        assert not session.in_transaction()  # closed
    finally:
        with engine.begin() as conn:
            conn.execute(User.__table__.delete().where(User.username == name))


def test_finish_without_commit_rolls_back_and_drops_the_events(engine: Engine) -> None:
    session = Session(engine)
    name = unique("fin")
    session.add(new_user(name))
    session.flush()  # written to the transaction
    session.info["after_commit"] = [Event(EventTag.USER_CREATE, Actor.system())]
    assert finish(session, commit=False) == []
    assert users_named(engine, name) == 0
    assert not session.in_transaction()


def test_a_commit_that_fails_leaves_nothing_half_written(engine: Engine) -> None:
    session = Session(engine)
    name, twin = unique("fin"), unique("fin")
    # The second row breaks the unique constraint only at the commit's flush: the first must not stay.
    session.add_all([new_user(twin), new_user(name), new_user(name)])
    session.info["after_commit"] = [Event(EventTag.USER_CREATE, Actor.system())]
    with pytest.raises(IntegrityError):
        finish(session, commit=True)
    assert not session.in_transaction()
    assert users_named(engine, name) == users_named(engine, twin) == 0


def test_finish_of_no_session_is_nothing() -> None:
    assert finish(None, commit=True) == [] and finish(None, commit=False) == []


# -- one scenario, every edge ------------------------------------------------------------------------------
class Crash(Exception):
    """Not a domain error: a bug, a lost connection."""


OUTCOMES = ("returns", "domain error", "crash", "keep writes")
# Whether the scenario's writes are committed (and its after-commit handler run), per outcome.
COMMITTED = {"returns": True, "domain error": False, "crash": False, "keep writes": True}


@dataclass
class Seen:
    """What the after-commit handlers saw: (username, whether the user was committed when it ran)."""

    engine: Engine
    calls: list[tuple[str, bool]] = field(default_factory=list)
    fail_first: bool = False

    def handler(self, event: Event) -> None:
        self.calls.append((str(event.namespace), users_named(self.engine, str(event.namespace)) == 1))

    def failing(self, event: Event) -> None:
        raise RuntimeError("a notifier that fails")


def scenario(services: Services, name: str, outcome: str, seen: Seen) -> str:
    """Create a user, then end as ``outcome`` says. Handlers are wired on the runtime's own bus here: the
    CLI builds its runtime in ``act``."""
    bus = services.runtime.bus
    if seen.fail_first:
        bus.after_commit(EventTag.USER_CREATE, seen.failing)
    bus.after_commit(EventTag.USER_CREATE, seen.handler)
    services.accounts.create_user(name, PASSWORD, actor=Actor.system())
    services.session.flush()
    if outcome == "domain error":
        raise Conflict("refused after writing")
    if outcome == "crash":
        raise Crash("failed after writing")
    if outcome == "keep writes":
        raise LoginFailed("refused, but what was written stays")
    return name


def through_starlette(state: AppState, run: Callable[[Services], str], outcome: str) -> Any:
    @endpoint(api_error_response)
    async def view(request: Request, ctx: RequestContext) -> Response:
        return JSONResponse({"name": await ctx.call(run)})

    app = Starlette(routes=[Route("/do", view, methods=["POST"])])
    app.state.dockyard = state
    with TestClient(app, raise_server_exceptions=False) as client:
        return client.post("/do").status_code


def through_the_api(state: AppState, run: Callable[[Services], str], outcome: str) -> Any:
    router = APIRouter(route_class=UnitOfWorkRoute)

    @router.post("/do")
    async def do(ctx: Ctx) -> dict[str, str]:
        return {"name": await ctx.call(run)}

    with TestClient(create_api(state, [router]), raise_server_exceptions=False) as client:
        return client.post("/do").status_code


def through_a_job(state: AppState, run: Callable[[Services], str], outcome: str) -> Any:
    registry = JobRegistry()
    registry.job("t.scenario")(lambda ctx, payload: run(ctx.services))
    with state.sessions.begin() as session:
        job_id = enqueue(session, "t.scenario")
    assert Worker(state.sessions, registry, bus=state.bus, services=state.services).run_one()
    with state.sessions() as session:
        return session.get(Job, job_id).status  # type: ignore[union-attr]


def through_the_cli(state: AppState, run: Callable[[Services], str], outcome: str, settings: Settings) -> Any:
    try:
        act(lambda services, actor: run(services), settings)
    except typer.Exit as exc:
        return f"exit {exc.exit_code}"
    except Crash:
        return "raised"
    return "exit 0"


EDGES = ("starlette view", "api route", "job", "cli")
# What each edge answers, per outcome: an HTTP status, a job's status, the CLI's exit.
ANSWERS = {
    "starlette view": {"returns": 200, "domain error": 409, "crash": 500, "keep writes": 401},
    "api route": {"returns": 200, "domain error": 409, "crash": 500, "keep writes": 401},
    "job": {"returns": "done", "domain error": FAILED, "crash": QUEUED, "keep writes": FAILED},
    "cli": {"returns": "exit 0", "domain error": "exit 1", "crash": "raised", "keep writes": "exit 1"},
}


def run_edge(edge: str, state: AppState, settings: Settings, outcome: str, seen: Seen) -> tuple[str, Any]:
    name = unique("uow")

    def run(services: Services) -> str:
        return scenario(services, name, outcome, seen)

    if edge == "starlette view":
        return name, through_starlette(state, run, outcome)
    if edge == "api route":
        return name, through_the_api(state, run, outcome)
    if edge == "job":
        return name, through_a_job(state, run, outcome)
    return name, through_the_cli(state, run, outcome, settings)


def kept(engine: Engine, name: str) -> tuple[int, int, int]:
    """(users, namespaces, audit rows of its creation) named ``name``."""
    with Session(engine) as s:
        return (
            s.scalar(select(func.count()).select_from(User).where(User.username == name)) or 0,
            s.scalar(select(func.count()).select_from(Namespace).where(Namespace.name == name)) or 0,
            s.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.tag == EventTag.USER_CREATE.value, AuditEvent.namespace == name)
            )
            or 0,
        )


@pytest.fixture
def cli_settings(settings: Settings, tmp_path: Path) -> Settings:
    """The CLI builds its own runtime (``act``): on the test database, with a data dir of its own."""
    from dataclasses import replace

    return replace(settings, data_dir=tmp_path / "cli-data")


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("edge", EDGES)
def test_every_edge_commits_or_rolls_back_the_same_way(
    edge: str, outcome: str, app_state: AppState, engine: Engine, cli_settings: Settings
) -> None:
    seen = Seen(engine)
    name, answer = run_edge(edge, app_state, cli_settings, outcome, seen)
    assert answer == ANSWERS[edge][outcome]
    if COMMITTED[outcome]:
        assert kept(engine, name) == (1, 1, 1)
        # Run once, after the commit: the user was there for it to see.
        assert seen.calls == [(name, True)]
    else:
        assert kept(engine, name) == (0, 0, 0)  # nothing half-written
        assert seen.calls == []  # never after a rollback


@pytest.mark.parametrize("edge", EDGES)
def test_a_failing_after_commit_handler_undoes_nothing(
    edge: str, app_state: AppState, engine: Engine, cli_settings: Settings
) -> None:
    seen = Seen(engine, fail_first=True)
    name, answer = run_edge(edge, app_state, cli_settings, "returns", seen)
    assert answer == ANSWERS[edge]["returns"]  # the action succeeded, and says so
    assert kept(engine, name) == (1, 1, 1)
    assert seen.calls == [(name, True)]  # the next handler ran all the same


def test_every_outcome_and_edge_is_in_the_tables() -> None:
    assert set(COMMITTED) == set(OUTCOMES)
    assert all(set(ANSWERS[edge]) == set(OUTCOMES) for edge in EDGES) and set(ANSWERS) == set(EDGES)
