"""scan verdicts say where their score came from: ``score_source`` (feed, NVD metric kind, CVSS version) and
``score_record`` (the record whose vector it is)

Existing verdicts get them at the next re-match (queued by the next feed update that changes anything, or by
``dockyard vulndb update``); until then the API gives null.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scan_package_vuln") as batch:
        batch.add_column(sa.Column("score_source", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("score_record", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scan_package_vuln") as batch:
        batch.drop_column("score_record")
        batch.drop_column("score_source")
