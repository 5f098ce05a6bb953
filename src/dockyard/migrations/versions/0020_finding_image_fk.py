"""scan_finding: drop the foreign key of image_id

Every finding inserted checked its image: on PostgreSQL a trigger and a row lock per row, about a third of
a 10,000-image fleet's first match (1.8 million findings); on SQLite a lookup per row. Findings are only
written for an image's components, which reference the image, and ``ScanService.prune``, the one place
that deletes images, now deletes their findings first.

On SQLite the table is not rebuilt (batch mode): dropping the old table under ``foreign_keys=ON``, which a
migration's transaction cannot turn off, would cascade to the fix clocks and alert items that reference
findings. The constraint is taken out of (or, going down, put back into) the table's stored definition
instead: the procedure SQLite documents for such changes, which leave the file's content as it is
(writable_schema, the schema's text, the schema version, all in this transaction).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 13:00:00
"""

from __future__ import annotations

import re
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

FK = "fk_scan_finding_image_id_scan_image"
CONSTRAINT = f"CONSTRAINT {FK} FOREIGN KEY(image_id) REFERENCES scan_image (id) ON DELETE CASCADE"
_SQLITE_FK = re.compile(
    rf",\s*CONSTRAINT\s+\"?{FK}\"?\s+FOREIGN\s+KEY\s*\(\s*\"?image_id\"?\s*\)\s*"
    r"REFERENCES\s+\"?scan_image\"?\s*\(\s*\"?id\"?\s*\)(\s*ON\s+DELETE\s+CASCADE)?",
    re.IGNORECASE,
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(FK, "scan_finding", type_="foreignkey")
        return

    def without(sql: str) -> str:
        stripped, found = _SQLITE_FK.subn("", sql)
        if found != 1:
            raise RuntimeError(f"migration 0020: expected {FK} once in scan_finding's definition")
        return stripped

    _rewrite_sqlite_definition(without)


def downgrade() -> None:
    # Findings of images deleted meanwhile would violate the key: they go first.
    op.execute("DELETE FROM scan_finding WHERE image_id NOT IN (SELECT id FROM scan_image)")
    if op.get_bind().dialect.name != "sqlite":
        op.create_foreign_key(FK, "scan_finding", "scan_image", ["image_id"], ["id"], ondelete="CASCADE")
        return

    def with_it(sql: str) -> str:
        body, close = sql.rstrip().rsplit(")", 1)
        return f"{body.rstrip()}, \n\t{CONSTRAINT}\n){close}"

    _rewrite_sqlite_definition(with_it)


def _rewrite_sqlite_definition(change: Callable[[str], str]) -> None:
    bind = op.get_bind()
    query = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'scan_finding'"
    sql = change(bind.exec_driver_sql(query).scalar_one())
    version = int(bind.exec_driver_sql("PRAGMA schema_version").scalar_one())
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.execute(
            sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'scan_finding'"),
            {"sql": sql},
        )
        bind.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")
