"""Counting what a piece of work sends to the database, from SQLAlchemy's events.

Every statement is counted (``before_cursor_execute``), and so is transaction control that reaches the
server: on SQLite the BEGIN that ``dockyard.db`` issues when a transaction begins and the COMMIT or ROLLBACK
at its end; on PostgreSQL the BEGIN that psycopg sends ahead of a transaction's first statement (none in
autocommit), the COMMIT or ROLLBACK it sends only when a transaction is open, and pool pings. On PostgreSQL
each of these is one network round trip (psycopg's executemany pipelines its rows: one statement here),
which the server's own statement log confirms (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


class RoundTrips:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgresql = engine.dialect.name == "postgresql"
        self.sent: list[str] = []

    def __len__(self) -> int:
        return len(self.sent)

    def __str__(self) -> str:
        return "\n".join(f"  {n + 1:2}. {s}" for n, s in enumerate(self.sent))

    def clear(self) -> None:
        self.sent.clear()

    # -- listeners ------------------------------------------------------------------------------------
    def _in_transaction(self, dbapi_connection: Any) -> bool:
        from psycopg.pq import TransactionStatus

        return dbapi_connection.info.transaction_status != TransactionStatus.IDLE

    def _statement(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if self.postgresql:
            dbapi_connection = conn.connection.dbapi_connection
            if not dbapi_connection.autocommit and not self._in_transaction(dbapi_connection):
                self.sent.append("BEGIN")  # psycopg opens the transaction ahead of this statement
        self.sent.append(" ".join(statement.split())[:120])

    def _begin(self, _conn: Any) -> None:
        if not self.postgresql:
            self.sent.append("BEGIN")  # dockyard.db's begin listener, straight to the driver

    def _end(self, word: str) -> Any:
        def listener(conn: Any) -> None:
            if not self.postgresql or self._in_transaction(conn.connection.dbapi_connection):
                self.sent.append(word)

        return listener

    def _reset(self, dbapi_connection: Any, _record: Any, _state: Any = None) -> None:
        if self.postgresql and self._in_transaction(dbapi_connection):
            self.sent.append("ROLLBACK (pool reset)")

    @contextmanager
    def counting(self, monkeypatch: Any) -> Iterator[RoundTrips]:
        """Count while the block runs."""
        dialect = self.engine.dialect
        ping = dialect.do_ping

        def counted_ping(dbapi_connection: Any) -> bool:
            self.sent.append("ping")
            return ping(dbapi_connection)

        monkeypatch.setattr(dialect, "do_ping", counted_ping)
        commit, rollback = self._end("COMMIT"), self._end("ROLLBACK")
        listeners = [
            (self.engine, "before_cursor_execute", self._statement),
            (self.engine, "begin", self._begin),
            (self.engine, "commit", commit),
            (self.engine, "rollback", rollback),
            (self.engine.pool, "reset", self._reset),
        ]
        for target, name, fn in listeners:
            event.listen(target, name, fn)
        try:
            yield self
        finally:
            for target, name, fn in listeners:
                event.remove(target, name, fn)
