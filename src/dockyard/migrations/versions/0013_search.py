"""search: the listings' full-text index (FTS5 on SQLite, a tsvector column with a GIN index on PostgreSQL)

Neither is declared in the models (dockyard.store.search.outside_metadata keeps them out of Alembic's
comparison): the index is written by dockyard.store.search.SearchService, from the tokens of
dockyard.store.query, never by the database's own parser.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

from dockyard.store import search_cache
from dockyard.store.search import (
    BROWSE_INDEXES,
    CERTIFIED_INDEX,
    CERTIFIED_INDEX_SQL,
    VISIBLE_SQL,
    SearchService,
)

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # The 'ascii' tokenizer splits on ASCII punctuation and spaces only: the text it gets is already
        # our tokens, space-joined. Prefix indexes for search as you type.
        op.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS listing_fts USING fts5("
            "name, tags, publisher, short, category, long, tokenize='ascii', prefix='2 3')"
        )
        # A listing removed (unpublished, or its product deleted by a cascade) leaves the index with it.
        op.execute(
            "CREATE TRIGGER IF NOT EXISTS listing_fts_delete AFTER DELETE ON listing "
            "BEGIN DELETE FROM listing_fts WHERE rowid = old.id; END"
        )
        _reindex()
        ddl = search_cache.SQLITE_DDL
    else:
        op.execute("ALTER TABLE listing ADD COLUMN search_document tsvector")
        # fastupdate off: every search reads these, listings change rarely (a pending list of recent
        # entries, scanned by every query until a vacuum merges it, would cost each search more than it
        # saves a publish).
        op.execute(
            "CREATE INDEX ix_listing_search_document ON listing USING gin (search_document) "
            "WITH (fastupdate = off)"
        )
        # The name alone (class A): the name hits a relevance page is first taken from.
        op.execute("ALTER TABLE listing ADD COLUMN search_name tsvector")
        op.execute(
            "CREATE INDEX ix_listing_search_name ON listing USING gin (search_name) WITH (fastupdate = off)"
        )
        # Pairs of adjacent words (phrases, see dockyard.store.query): a column of their own, so that the
        # words' tsvector, which searches read row by row, stays small.
        op.execute("ALTER TABLE listing ADD COLUMN search_pairs tsvector")
        op.execute(
            "CREATE INDEX ix_listing_search_pairs ON listing USING gin (search_pairs) WITH (fastupdate = off)"
        )
        op.execute(CERTIFIED_INDEX_SQL)
        _reindex()
        ddl = search_cache.POSTGRES_DDL
    # Browsing (no words) pages through visible listings in these orders, from the index alone.
    for name, columns in BROWSE_INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON listing ({columns}) WHERE {VISIBLE_SQL}")
    # The listings' version, which the per-process cache of browsing figures is keyed by.
    for statement in ddl:
        op.execute(statement)


def _reindex() -> None:
    """Index the listings already there (written before this migration)."""
    session = Session(bind=op.get_bind())
    rows = session.execute(
        sa.text(
            "SELECT id, name, tags, publisher_name, short_description, category, long_description "
            "FROM listing"
        )
    ).all()
    SearchService(session).index_rows(
        [
            (
                r.id,
                {
                    "name": r.name,
                    "tags": " ".join(r.tags if isinstance(r.tags, list) else json.loads(r.tags or "[]")),
                    "publisher": r.publisher_name,
                    "short": r.short_description,
                    "category": r.category or "",
                    "long": r.long_description,
                },
            )
            for r in rows
        ]
    )
    session.flush()


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in search_cache.SQLITE_DROP if sqlite else search_cache.POSTGRES_DROP:
        op.execute(statement)
    for name in BROWSE_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    if sqlite:
        op.execute("DROP TRIGGER IF EXISTS listing_fts_delete")
        op.execute("DROP TABLE IF EXISTS listing_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_listing_search_document")
        op.execute("DROP INDEX IF EXISTS ix_listing_search_name")
        op.execute("DROP INDEX IF EXISTS ix_listing_search_pairs")
        op.execute(f"DROP INDEX IF EXISTS {CERTIFIED_INDEX}")
        op.execute("ALTER TABLE listing DROP COLUMN IF EXISTS search_pairs")
        op.execute("ALTER TABLE listing DROP COLUMN IF EXISTS search_name")
        op.execute("ALTER TABLE listing DROP COLUMN IF EXISTS search_document")
