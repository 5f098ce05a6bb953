"""credential generations, token scopes, server-side browser sessions, login failures

Refresh tokens and browser sessions are bound to the user's credential generation (a password change or
"sign out everywhere" moves it on); personal access tokens get scopes (existing ones keep registry use,
pull and push, but lose account management through the API, which a leaked token could turn into a
permanent credential); browser sessions live on the server so logout ends them; failed logins are
counted for the login throttle.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 05:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("credential_generation", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("access_token", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scopes", sa.String(length=64), nullable=False, server_default="pull,push")
        )
    op.create_table(
        "browser_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_browser_session_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_browser_session")),
    )
    op.create_index(op.f("ix_browser_session_user_id"), "browser_session", ["user_id"], unique=False)
    op.create_index(op.f("ix_browser_session_expires_at"), "browser_session", ["expires_at"], unique=False)
    op.create_table(
        "login_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failure")),
    )
    op.create_index(
        "ix_login_failure_username_at", "login_failure", ["username", "occurred_at"], unique=False
    )
    op.create_index("ix_login_failure_ip_at", "login_failure", ["ip", "occurred_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_login_failure_ip_at", table_name="login_failure")
    op.drop_index("ix_login_failure_username_at", table_name="login_failure")
    op.drop_table("login_failure")
    op.drop_index(op.f("ix_browser_session_expires_at"), table_name="browser_session")
    op.drop_index(op.f("ix_browser_session_user_id"), table_name="browser_session")
    op.drop_table("browser_session")
    with op.batch_alter_table("access_token", schema=None) as batch_op:
        batch_op.drop_column("scopes")
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_column("credential_generation")
