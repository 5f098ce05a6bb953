"""store-team roles replace is_admin; email verification time; login attempts counted while pending

Administrators become store-admins; the store team's other roles (store-reviewer, store-support,
finance) are granted with `dockyard staff grant` or the API.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_grant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("granted_at", sa.DateTime(), nullable=False),
        sa.Column("granted_by", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_staff_grant_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_grant")),
        sa.UniqueConstraint("user_id", "role", name=op.f("uq_staff_grant_user_id")),
    )
    op.create_index(op.f("ix_staff_grant_user_id"), "staff_grant", ["user_id"], unique=False)
    op.execute(
        sa.text(
            "INSERT INTO staff_grant (user_id, role, granted_at, granted_by) "
            "SELECT id, 'store-admin', CURRENT_TIMESTAMP, 'migration 0008' FROM user_account WHERE is_admin"
        )
    )
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_column("is_admin")
        batch_op.add_column(sa.Column("email_verified_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("login_failure", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("login_failure", schema=None) as batch_op:
        batch_op.drop_column("pending")
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_column("email_verified_at")
        batch_op.add_column(sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(
        sa.text(
            "UPDATE user_account SET is_admin = EXISTS (SELECT 1 FROM staff_grant g "
            "WHERE g.user_id = user_account.id AND g.role = 'store-admin')"
        )
    )
    op.drop_index(op.f("ix_staff_grant_user_id"), table_name="staff_grant")
    op.drop_table("staff_grant")
