"""The matcher's three reads of the advisory tables, through a SQLAlchemy session or through Python's sqlite3.

The server, and ``dockyard scan`` on PostgreSQL or on a database it must first migrate or fill, read through
the session (``SessionReads``). ``dockyard scan`` on a SQLite file already at the newest revision and
holding advisories reads it with the sqlite3 module, read-only (``SqliteReads``): importing SQLAlchemy and
the models is 0.4-0.5 s of the command's start-up, which nothing hides when every layer is in the layer
cache. Both give the same rows (a test holds the matcher's findings through each equal on the real feeds).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class AdvisoryRow(NamedTuple):
    id: str
    aliases: list[str] | None
    related: list[str] | None
    summary: str | None
    score: float | None
    cvss_vector: str | None
    cvss_version: str | None
    score_from: str | None
    source: str


class AdvisoryReads(Protocol):
    def affected(self, ecosystem: str, names: Sequence[str]) -> Iterable[tuple[str, str, Any, Any]]:
        """(advisory id, package name, OSV ranges, versions) of every affected package named."""

    def advisories(self, ids: Sequence[str]) -> Iterable[AdvisoryRow]:
        """The live (not withdrawn) advisories of these ids."""

    def sources(self, ids: Sequence[str]) -> Iterable[tuple[str, str]]:
        """(id, feed) of these advisories, withdrawn or not."""


class SessionReads:
    def __init__(self, session: Session) -> None:
        from sqlalchemy import select

        from dockyard.scanning.models import Advisory, AffectedPackage

        self.session = session
        package = AffectedPackage
        self._affected = select(package.advisory_id, package.name, package.ranges, package.versions)
        self._advisories = select(*(getattr(Advisory, f) for f in AdvisoryRow._fields))
        self._sources = select(Advisory.id, Advisory.source)
        self._models = Advisory, AffectedPackage

    def affected(self, ecosystem: str, names: Sequence[str]) -> Iterable[tuple[str, str, Any, Any]]:
        _, affected = self._models
        statement = self._affected.where(affected.ecosystem == ecosystem, affected.name.in_(names))
        return [tuple(row) for row in self.session.execute(statement)]  # type: ignore[misc]

    def advisories(self, ids: Sequence[str]) -> Iterable[AdvisoryRow]:
        advisory, _ = self._models
        statement = self._advisories.where(advisory.id.in_(ids), advisory.withdrawn.is_(None))
        return [AdvisoryRow(*row) for row in self.session.execute(statement)]

    def sources(self, ids: Sequence[str]) -> Iterable[tuple[str, str]]:
        advisory, _ = self._models
        return [(i, s) for i, s in self.session.execute(self._sources.where(advisory.id.in_(ids)))]


def _json(value: str | None) -> Any:
    """A JSON column as SQLAlchemy stores it on SQLite: JSON text (``null`` for None), or SQL NULL."""
    return None if value is None else json.loads(value)


class SqliteReads:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def _rows(self, sql: str, head: Sequence[Any], ids: Sequence[str]) -> list[tuple[Any, ...]]:
        marks = ",".join("?" * len(ids))
        return self.connection.execute(sql.format(marks=marks), (*head, *ids)).fetchall()

    def affected(self, ecosystem: str, names: Sequence[str]) -> Iterable[tuple[str, str, Any, Any]]:
        sql = (
            "SELECT advisory_id, name, ranges, versions FROM vuln_affected"
            " WHERE ecosystem = ? AND name IN ({marks})"
        )
        return [(a, n, _json(r), _json(v)) for a, n, r, v in self._rows(sql, [ecosystem], names)]

    def advisories(self, ids: Sequence[str]) -> Iterable[AdvisoryRow]:
        sql = f"SELECT {', '.join(AdvisoryRow._fields)} FROM vuln_advisory"
        sql += " WHERE id IN ({marks}) AND withdrawn IS NULL"
        return [
            AdvisoryRow(i, _json(aliases), _json(related), *rest)
            for i, aliases, related, *rest in self._rows(sql, [], ids)
        ]

    def sources(self, ids: Sequence[str]) -> Iterable[tuple[str, str]]:
        sql = "SELECT id, source FROM vuln_advisory WHERE id IN ({marks})"
        return [(i, s) for i, s in self._rows(sql, [], ids)]


@contextmanager
def sqlite_reads(database_url: str, head: str) -> Iterator[SqliteReads | None]:
    """The advisory tables of the SQLite file ``database_url`` names, opened read-only, when its schema is
    at revision ``head`` and it holds a live advisory; None otherwise (another database, a file to migrate
    or fill first, one that cannot be opened): the caller then goes through SQLAlchemy."""
    prefix = "sqlite:///"
    path = database_url[len(prefix) :].split("?", 1)[0] if database_url.startswith(prefix) else ""
    if not path or path == ":memory:" or not Path(path).is_file():
        yield None
        return
    try:
        connection = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        yield None
        return
    with closing(connection):
        try:
            revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            live = (
                revision is not None
                and revision[0] == head
                and connection.execute(
                    "SELECT 1 FROM vuln_advisory WHERE withdrawn IS NULL LIMIT 1"
                ).fetchone()
            )
        except sqlite3.Error:  # no such table (an empty file), locked beyond the timeout, not a database
            live = None
        yield SqliteReads(connection) if live else None
