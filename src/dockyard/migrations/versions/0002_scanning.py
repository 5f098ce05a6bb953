"""scanning: vulnerability advisories, affected packages, feed state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 19:43:33.086089
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vuln_advisory",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("modified", sa.DateTime(), nullable=True),
        sa.Column("published", sa.DateTime(), nullable=True),
        sa.Column("withdrawn", sa.DateTime(), nullable=True),
        sa.Column("summary", sa.String(length=512), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("related", sa.JSON(), nullable=False),
        sa.Column("severity", sa.JSON(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("cvss_vector", sa.String(length=256), nullable=True),
        sa.Column("cvss_version", sa.String(length=4), nullable=True),
        sa.Column("score_from", sa.String(length=128), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("ingested_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vuln_advisory")),
    )
    with op.batch_alter_table("vuln_advisory", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vuln_advisory_source"), ["source"], unique=False)

    op.create_table(
        "vuln_feed_state",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("last_modified", sa.DateTime(), nullable=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_vuln_feed_state")),
    )
    op.create_table(
        "vuln_affected",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("advisory_id", sa.String(length=128), nullable=False),
        sa.Column("ecosystem", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("ranges", sa.JSON(), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["advisory_id"],
            ["vuln_advisory.id"],
            name=op.f("fk_vuln_affected_advisory_id_vuln_advisory"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vuln_affected")),
    )
    with op.batch_alter_table("vuln_affected", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vuln_affected_advisory_id"), ["advisory_id"], unique=False)
        # The matcher's lookup: every affected package of a batch of (ecosystem, name) pairs.
        batch_op.create_index("ix_vuln_affected_ecosystem_name", ["ecosystem", "name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("vuln_affected", schema=None) as batch_op:
        batch_op.drop_index("ix_vuln_affected_ecosystem_name")
        batch_op.drop_index(batch_op.f("ix_vuln_affected_advisory_id"))
    op.drop_table("vuln_affected")
    op.drop_table("vuln_feed_state")
    with op.batch_alter_table("vuln_advisory", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vuln_advisory_source"))
    op.drop_table("vuln_advisory")
