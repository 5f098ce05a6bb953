"""Engine and session factory, the declarative Base, and migrations on start."""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from dockyard.schema_head import head_revision

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The largest id an ``Integer`` primary key holds on every backend: 32 bits on PostgreSQL (SQLite's are 64),
# where a larger value in a query is an error of the database, not "no such row".
MAX_ID = 2**31 - 1


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    """Naive UTC now: both SQLite and PostgreSQL store it the same way."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets pulls read while a push writes; busy_timeout makes writers queue instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20)
        event.listen(engine, "connect", _sqlite_pragmas)

        # pysqlite's own transaction handling defers BEGIN; take the write lock up front instead so
        # two writers never deadlock on a lock upgrade.
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            write = conn.get_execution_options().get("sqlite_write", False)
            # Straight to the driver: this runs once per request, and exec_driver_sql's machinery costs
            # more than SQLite's BEGIN.
            conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    # psycopg prepares a statement once a connection has run it prepare_threshold (5) times: the hot
    # paths' statements are prepared on every pooled connection after a few requests.
    engine = create_engine(url, pool_size=20, max_overflow=20)
    _ping_when_idle(engine)
    return engine


PING_AFTER_IDLE = 5.0  # seconds a pooled connection may rest before it is checked at checkout


def _ping_when_idle(engine: Engine) -> None:
    """Check a connection at checkout only when it has rested in the pool for PING_AFTER_IDLE seconds.

    ``pool_pre_ping`` pings at every checkout: a round trip per request, as many as a manifest GET needs in
    all. A connection that answered a moment ago is alive unless the server restarted in that moment, and
    then the first statement fails as a disconnect, which invalidates the whole pool (one failed request,
    the same as a restart in the middle of a request). Connections that rested longer (a quiet server,
    connections cut by an idle timeout) are pinged as before, and replaced when the ping fails.
    """

    @event.listens_for(engine, "checkin")
    def _rested_from(_dbapi_conn: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("checked_in", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return  # a new connection, or one used a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool replaces this connection and checks out a new one.
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def finish(session: Session | None, *, commit: bool) -> list[Any]:
    """End a unit of work: commit (returning the events whose after-commit handlers are due) or roll back,
    then close. The one way requests, jobs and CLI commands end their transactions."""
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


def alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


def at_head(engine: Engine) -> bool:
    """Whether the schema is at the newest migration (False for an empty database)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as conn:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return False
    return current == head_revision()


def read_only_url(url: str) -> str:
    """The URL of the same SQLite database opened read-only (other databases: the URL itself; a read-only
    transaction is then the caller's business)."""
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return url
    path = url.split(":///", 1)[1]
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (the newest by default)."""
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to ``revision``."""
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def upsert(
    session: Any,
    table: Any,
    values: dict[str, Any] | list[dict[str, Any]],
    conflict: list[str],
    update: Iterable[str] = (),
    returning: Any = None,
) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING, or DO UPDATE SET the ``update`` columns to the new values.

    One statement instead of select-then-insert under a savepoint: no race, and half the round trips.
    The statement is built once per shape and runs on the session's connection, skipping the ORM layer:
    these run on the push path, where building and ORM-executing a statement cost more than SQLite.
    """
    connection = session.connection()
    statement = upsert_statement(connection.dialect.name, table, tuple(conflict), tuple(update), returning)
    return connection.execute(statement, values)


@functools.lru_cache(maxsize=256)
def upsert_statement(
    dialect: str, table: Any, conflict: tuple[str, ...], update: tuple[str, ...] = (), returning: Any = None
) -> Any:
    """The statement ``upsert`` runs, for the ``dialect``; built once per shape."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table)
    if update:
        statement = statement.on_conflict_do_update(
            index_elements=list(conflict), set_={name: statement.excluded[name] for name in update}
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(conflict))
    if returning is not None:
        statement = statement.returning(returning)
    return statement
