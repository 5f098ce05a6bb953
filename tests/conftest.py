"""Shared fixtures: a database (SQLite by default, PostgreSQL with DOCKYARD_TEST_DATABASE_URL), savepoint
rollback for service tests, an in-process app for protocol tests, and a live server for real clients."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from dockyard.config import Settings
from dockyard.db import make_engine, make_session_factory, migrate
from dockyard.events import EventBus
from dockyard.models import metadata
from dockyard.registry.auth import TokenSigner
from dockyard.storage.blobstore import BlobStore
from dockyard.storage.local import LocalDriver
from dockyard.web.app import create_app
from dockyard.web.context import AppState

PG_URL = os.environ.get("DOCKYARD_TEST_DATABASE_URL", "")


def _as_admin(statement: str) -> None:
    """One statement on the PostgreSQL test server outside a transaction (CREATE and DROP DATABASE)."""
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(statement))
    finally:
        admin.dispose()


def _new_postgresql_database(label: str, template: str | None = None) -> str:
    """The URL of a new PostgreSQL database beside the test one (a copy of ``template``'s, if given)."""
    name = f"dockyard_{label}_{uuid.uuid4().hex[:8]}"
    _as_admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template.rsplit("/", 1)[1]}"' if template else ""))
    return PG_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    """Drop a PostgreSQL database made here (SQLite files go with their tests' directories)."""
    if PG_URL and url.startswith("postgresql"):
        _as_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _fresh_database_url(tmp: Path, label: str) -> str:
    """A new empty database: a SQLite file, or a new PostgreSQL database beside the test one."""
    if not PG_URL:
        return f"sqlite:///{tmp / (label + '.db')}"
    return _new_postgresql_database(label)


# The migrated template that new databases are copied from, made once per session (_migrated_database_url).
_template: dict[str, str] = {}


def _migrated_database_url(tmp: Path, label: str) -> str:
    """A new database already at the newest schema: a copy of a template migrated once per session.

    Migrating costs 1.2-2.4 s, and a run makes some eighty databases for live servers and CLI runs; each
    server would otherwise migrate its own. A SQLite copy is a file copy, a PostgreSQL one CREATE DATABASE
    ... TEMPLATE. What starts on an empty database: the CLI's first-use scans and ``dockyard worker``
    (``empty_database_url``), the servers of test_data_permissions and test_permissions (SQLite), and the
    migrations, step by step, in test_migrations."""
    if "url" not in _template:
        url = _fresh_database_url(Path(tempfile.mkdtemp(prefix="dockyard-template-")), "template")
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()  # no connection left: PostgreSQL copies only an unused template
        _template["url"] = url
    template = _template["url"]
    if not PG_URL:
        source = Path(template.split(":///", 1)[1])
        assert not source.with_name(source.name + "-wal").exists(), "the template's WAL was not checkpointed"
        target = tmp / (label + ".db")
        shutil.copyfile(source, target)
        return f"sqlite:///{target}"
    return _new_postgresql_database(label, template)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _fresh_database_url(tmp_path_factory.mktemp("db"), "tests")


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def db_session(engine: Engine) -> Iterator[Session]:
    """A session whose every change is rolled back after the test (services may commit savepoints)."""
    conn = engine.connect()
    outer = conn.begin()
    session = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        conn.close()


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return application_settings(tmp_path / "data", database_url)


def application_settings(data_dir: Path, database_url: str) -> Settings:
    """The settings of the in-process application the protocol tests call (as http://127.0.0.1:5999)."""
    return Settings(
        listen="127.0.0.1:5999", data_dir=data_dir, database_url=database_url, admin_password="admin-pass-1"
    )


def _truncate_all(engine: Engine) -> None:
    """Every table emptied, and on PostgreSQL every id sequence back at 1 (as SQLite's rowids start again).

    DELETE, not TRUNCATE: a test leaves a few rows, and PostgreSQL's TRUNCATE of the 48 tables (new files
    for each) took 0.1 s after every test, several minutes of the PostgreSQL run."""
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval(oid, 1, false) FROM pg_class WHERE relkind = 'S'"))


@pytest.fixture
def app_state(settings: Settings, engine: Engine) -> Iterator[AppState]:
    """Application state on the shared test database; the tables are emptied after the test."""
    yield from application_state(settings, engine)


def application_state(settings: Settings, engine: Engine) -> Iterator[AppState]:
    """An ``AppState`` for ``settings`` on ``engine``, whose tables are emptied when it is done with."""
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    state = AppState(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        blobs=BlobStore(LocalDriver(data / "storage"), data / "uploads"),
        bus=EventBus(),
        signer=TokenSigner.from_dir(data / "keys", issuer=settings.public_url, service="dockyard", ttl=300),
    )
    try:
        yield state
    finally:
        _truncate_all(engine)


@pytest.fixture
def app(settings: Settings, app_state: AppState):
    return create_app(settings, state=app_state)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1:5999") as c:
        yield c


@pytest.fixture
def fresh_database_url(tmp_path: Path) -> str:
    """A database of its own at the newest schema, holding nothing (for live servers and CLI runs)."""
    return _migrated_database_url(tmp_path, "own")


@pytest.fixture
def empty_database_url(tmp_path: Path) -> str:
    """An empty database of its own, not even migrated (for migration tests and first starts)."""
    return _fresh_database_url(tmp_path, "empty")


@pytest.fixture
def live_server(tmp_path: Path, fresh_database_url: str) -> Iterator:
    """A dockyard server process on a free loopback port with its own data and database."""
    from tests.support.live import LiveServer

    server = LiveServer(tmp_path / "live-data", fresh_database_url).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def module_live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A live server shared by the tests of one module (for set-ups too slow to repeat per test)."""
    from tests.support.live import LiveServer

    tmp = tmp_path_factory.mktemp("live")
    server = LiveServer(tmp / "live-data", _migrated_database_url(tmp, "live")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with the cheapest parameters in-process: still argon2id, but logins stop dominating the
    suite's time (live servers in subprocesses keep the real parameters)."""
    from argon2 import PasswordHasher

    from dockyard.accounts import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


def _drop_template() -> None:
    """The migrated template goes (the databases copied from it go with their tests' directories)."""
    url = _template.pop("url", None)
    if url is None:
        return
    if not PG_URL:
        shutil.rmtree(Path(url.split(":///", 1)[1]).parent, ignore_errors=True)
        return
    drop_database(url)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under `make test` the real vulnerability data must be there: skipping its tests would hide that."""
    from tests.support.vulndata import VULNDATA

    if os.environ.get("DOCKYARD_REQUIRE_VULNDATA") == "1" and not VULNDATA.is_dir():
        pytest.exit(f"no vulnerability data at {VULNDATA} (set DOCKYARD_VULNDATA)", returncode=4)


# The fixtures through which a test reaches a database: the test database, or a fresh one for a server (the
# module's live server; and in tests/e2e ``server``, whose database is made without a fixture: other
# modules' ``server`` fixtures reach one through these, or none, as the blob delivery server's tests). A
# module that makes its own with _migrated_database_url is marked ``database``.
DATABASE_FIXTURES = frozenset(
    {"database_url", "fresh_database_url", "empty_database_url", "module_live_server"}
)
E2E_SERVER = "server"


# Tests in a real browser (the ``browser`` fixture, or a ``*_browser.py`` module that starts its own) check
# what the pages show and how they behave there; what they read and write underneath is tested on both
# databases by the page tests (tests/functional), so they run on SQLite only.
SQLITE_ONLY_FIXTURES = frozenset({"browser"})


def _in_a_browser(item: pytest.Item, fixtures: set[str]) -> bool:
    return (
        bool(SQLITE_ONLY_FIXTURES & fixtures)
        or item.path.name.endswith("_browser.py")
        or item.get_closest_marker("sqlite_only") is not None
    )


# Under `make test` the two runs go side by side (DOCKYARD_TEST_PAIRED=1), and the tests that reach no
# database, which run once, are shared out between them so that both end at about the same time: those
# under these directories run in the PostgreSQL run (they touch no database, so where they run changes
# nothing they test), the rest in the SQLite run. Run alone, the SQLite run has them all.
ONCE_IN_THE_POSTGRESQL_RUN = ("tests/unit/",)


def _reaches_a_database(item: pytest.Item) -> bool:
    fixtures = set(getattr(item, "fixturenames", ()))
    e2e_server = E2E_SERVER in fixtures and item.path.parent.name == "e2e"
    return bool(DATABASE_FIXTURES & fixtures) or e2e_server or item.get_closest_marker("database") is not None


def _once_in_the_postgresql_run(item: pytest.Item, root: Path) -> bool:
    if os.environ.get("DOCKYARD_TEST_PAIRED") != "1" or _reaches_a_database(item):
        return False
    if _in_a_browser(item, set(getattr(item, "fixturenames", ()))):
        return False
    where = item.path.relative_to(root).as_posix()
    return where.startswith(ONCE_IN_THE_POSTGRESQL_RUN)


def _deselect(config: pytest.Config, items: list[pytest.Item], drop: Callable[[pytest.Item], bool]) -> None:
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (dropped if drop(item) else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL (the run beside SQLite's under `make test`), deselect the tests that reach no database
    through any fixture: they run on SQLite and would only repeat themselves (but see
    ONCE_IN_THE_POSTGRESQL_RUN); and the browser tests (see SQLITE_ONLY_FIXTURES). A test that starts
    servers or CLI commands on a database of its own making keeps running on SQLite only, as it did.
    `DOCKYARD_PG_ALL_TESTS=1` runs everything on PostgreSQL too."""
    root = config.rootpath
    if not PG_URL:
        # On SQLite, deselect what only PostgreSQL can show (races between concurrent writers, pooled
        # sockets): SQLite runs one writer at a time and has no sockets; the PostgreSQL run is where they go.
        _deselect(
            config,
            items,
            lambda item: (
                item.get_closest_marker("postgresql_only") is not None
                or _once_in_the_postgresql_run(item, root)
            ),
        )
        return
    if os.environ.get("DOCKYARD_PG_ALL_TESTS") == "1":
        return
    _deselect(
        config,
        items,
        lambda item: (
            not _once_in_the_postgresql_run(item, root)
            and not (
                _reaches_a_database(item) and not _in_a_browser(item, set(getattr(item, "fixturenames", ())))
            )
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "postgresql_only: what only PostgreSQL can show (concurrent writers, pooled sockets); deselected on "
        "SQLite",
    )


# Under `make test` (DOCKYARD_REQUIRE_SYSTEM_DEPS=1) everything a test needs is installed (make system-deps,
# the offline vulnerability data, the npm and PyPI registries), so a skip means something is missing that the
# run should have had: it fails instead, with the skip's reason. Tests that belong to one database are
# deselected on the other (markers postgresql_only and sqlite_only), never skipped.
def _required() -> bool:
    return os.environ.get("DOCKYARD_REQUIRE_SYSTEM_DEPS") == "1"


def _as_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"skipped under DOCKYARD_REQUIRE_SYSTEM_DEPS=1 (make test), where nothing may skip: {reason}"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if _required() and report.skipped and not hasattr(report, "wasxfail"):
        _as_failure(report)


_SKIPPED_MODULES: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if _required() and report.skipped:  # a module that skipped itself (a missing client): the run fails
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        _SKIPPED_MODULES.append(f"{report.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _SKIPPED_MODULES:
        terminalreporter.write_line(f"FAILED (skipped under DOCKYARD_REQUIRE_SYSTEM_DEPS=1) {line}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    try:
        _drop_template()
    finally:
        if _SKIPPED_MODULES and exitstatus == 0:
            session.exitstatus = 1
