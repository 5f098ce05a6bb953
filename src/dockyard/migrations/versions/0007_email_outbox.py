"""email outbox

One row per outgoing mail, written in the transaction that causes it and sent by the ``email.send`` job:
the rendered message, its status (queued, sent, failed), attempts and last error.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 05:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("from_address", sa.String(length=320), nullable=False),
        sa.Column("to_address", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_outbox")),
        sa.UniqueConstraint("message_id", name=op.f("uq_email_outbox_message_id")),
    )
    op.create_index(
        "ix_email_outbox_status_created_at", "email_outbox", ["status", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_email_outbox_status_created_at", table_name="email_outbox")
    op.drop_table("email_outbox")
