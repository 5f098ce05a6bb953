"""The per-process cache of browsing figures: the total and facet counts of a search without words.

Browsing (an empty query, filters or not) would count every visible listing for its facets on each request;
those figures change only when listings do. The database keeps a version of the listings
(``search_version``, one row, migration 0013): triggers on ``listing`` (rows added or removed, or a change
of a column a filter or facet reads: status, category, publisher, free, certified; not downloads) and on
``listing_platform`` set it to a new random number, in the writing transaction. So the version moves with
every writer (publishing, badges, compliance, bulk imports, a cleared table), commits or rolls back with
it, and a version seen once never names other data (random, not a counter a rollback could repeat).

Each process keeps the figures it computed, keyed by the database, that version and the filters; a request
reads the version (one row by its key) and uses the figures only when they were computed at that version.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

VERSION_TABLE = "search_version"
ENTRIES = 256  # filter combinations kept per process (least recently used goes first)

_lock = threading.Lock()
_entries: OrderedDict[tuple[Any, ...], Any] = OrderedDict()


def version(session: Session) -> int | None:
    """The listings' version (None: the table is missing, so nothing is cached)."""
    return session.scalar(text(f"SELECT version FROM {VERSION_TABLE} WHERE id = 1"))


def _key(session: Session, version: int | None, key: tuple[Any, ...]) -> tuple[Any, ...]:
    bind = session.get_bind()
    return (str(getattr(bind, "engine", bind).url), version, key)


def get(session: Session, version: int | None, key: tuple[Any, ...]) -> Any:
    """The figures computed at this version for this key, or None."""
    if version is None:
        return None
    full = _key(session, version, key)
    with _lock:
        value = _entries.get(full)
        if value is not None:
            _entries.move_to_end(full)
        return value


def put(session: Session, version: int | None, key: tuple[Any, ...], value: Any) -> None:
    """Keep figures computed at a version (entries of older versions age out)."""
    if version is None:
        return
    with _lock:
        _entries[_key(session, version, key)] = value
        while len(_entries) > ENTRIES:
            _entries.popitem(last=False)


def clear() -> None:
    """Forget every figure (tests)."""
    with _lock:
        _entries.clear()


# -- the version and its triggers (migration 0013) -------------------------------------------------------
FACET_COLUMNS = "status, category, publisher_slug, publisher_name, free, certified"

SQLITE_DDL = [
    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
    f"INSERT OR IGNORE INTO {VERSION_TABLE} (id, version) VALUES (1, abs(random()))",
    *[
        f"CREATE TRIGGER IF NOT EXISTS search_version_{name} AFTER {event} ON {table} "
        f"BEGIN UPDATE {VERSION_TABLE} SET version = abs(random()) WHERE id = 1; END"
        for name, event, table in [
            ("listing_insert", "INSERT", "listing"),
            ("listing_delete", "DELETE", "listing"),
            ("listing_update", f"UPDATE OF {FACET_COLUMNS}", "listing"),
            ("platform_insert", "INSERT", "listing_platform"),
            ("platform_delete", "DELETE", "listing_platform"),
            ("platform_update", "UPDATE", "listing_platform"),
        ]
    ],
]
SQLITE_DROP = [
    *[
        f"DROP TRIGGER IF EXISTS search_version_{name}"
        for name in (
            "listing_insert",
            "listing_delete",
            "listing_update",
            "platform_insert",
            "platform_delete",
            "platform_update",
        )
    ],
    f"DROP TABLE IF EXISTS {VERSION_TABLE}",
]

POSTGRES_DDL = [
    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
    f"INSERT INTO {VERSION_TABLE} (id, version) VALUES (1, (random() * 9e18)::bigint) ON CONFLICT DO NOTHING",
    "CREATE OR REPLACE FUNCTION search_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    f"UPDATE {VERSION_TABLE} SET version = (random() * 9e18)::bigint WHERE id = 1; RETURN NULL; END $$",
    # Statement triggers: one bump per statement, however many rows (bulk imports, TRUNCATE included).
    "CREATE TRIGGER search_version_listing AFTER INSERT OR DELETE OR TRUNCATE OR "
    f"UPDATE OF {FACET_COLUMNS} ON listing FOR EACH STATEMENT EXECUTE FUNCTION search_version_bump()",
    "CREATE TRIGGER search_version_platform AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE "
    "ON listing_platform FOR EACH STATEMENT EXECUTE FUNCTION search_version_bump()",
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS search_version_listing ON listing",
    "DROP TRIGGER IF EXISTS search_version_platform ON listing_platform",
    "DROP FUNCTION IF EXISTS search_version_bump()",
    f"DROP TABLE IF EXISTS {VERSION_TABLE}",
]
