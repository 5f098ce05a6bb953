"""email tokens (verification and password-reset links); robots' last use; existing users verified

Sign-up on the pages creates users whose address is unconfirmed (``email_verified_at`` NULL) until they
open the link mailed to them. Every user made before this revision was made by an administrator, so they
count as verified (as admin-made users are from now on); the downgrade keeps those times.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_email_token_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_email_token_token_hash")),
    )
    op.create_index(op.f("ix_email_token_user_id"), "email_token", ["user_id"], unique=False)
    op.create_index(
        "ix_email_token_email_purpose_created_at",
        "email_token",
        ["email", "purpose", "created_at"],
        unique=False,
    )
    with op.batch_alter_table("robot", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(), nullable=True))
    op.execute(
        sa.text("UPDATE user_account SET email_verified_at = created_at WHERE email_verified_at IS NULL")
    )


def downgrade() -> None:
    with op.batch_alter_table("robot", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
    op.drop_index("ix_email_token_email_purpose_created_at", table_name="email_token")
    op.drop_index(op.f("ix_email_token_user_id"), table_name="email_token")
    op.drop_table("email_token")
