"""publishing: publisher profiles, catalogue images, products, revisions, their transitions and review thread

The publisher's logo and a product's live and working revisions point at tables created after theirs: those
three foreign keys are added once every table exists (PostgreSQL checks a key's target when it is made).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 20:18:57.691413
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "publisher",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("legal_name", sa.String(length=200), nullable=True),
        sa.Column("website", sa.String(length=2048), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("email_verified_at", sa.DateTime(), nullable=True),
        sa.Column("logo_id", sa.Integer(), nullable=True),
        sa.Column("story", sa.Text(), server_default="", nullable=False),
        sa.Column("agreement_version", sa.String(length=32), nullable=True),
        sa.Column("agreement_accepted_by", sa.Integer(), nullable=True),
        sa.Column("agreement_accepted_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agreement_accepted_by"],
            ["user_account.id"],
            name=op.f("fk_publisher_agreement_accepted_by_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespace.id"],
            name=op.f("fk_publisher_namespace_id_namespace"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publisher")),
        sa.UniqueConstraint("namespace_id", name=op.f("uq_publisher_namespace_id")),
    )
    op.create_table(
        "catalog_image",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("renditions", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["user_account.id"],
            name=op.f("fk_catalog_image_created_by_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["publisher_id"],
            ["publisher.id"],
            name=op.f("fk_catalog_image_publisher_id_publisher"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_image")),
    )
    with op.batch_alter_table("catalog_image", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_catalog_image_publisher_id"), ["publisher_id"], unique=False)

    op.create_table(
        "product",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("live_revision_id", sa.Integer(), nullable=True),
        sa.Column("working_revision_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("published_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["user_account.id"],
            name=op.f("fk_product_created_by_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["publisher_id"],
            ["publisher.id"],
            name=op.f("fk_product_publisher_id_publisher"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product")),
        sa.UniqueConstraint("publisher_id", "slug", name=op.f("uq_product_publisher_id")),
    )
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_product_publisher_id"), ["publisher_id"], unique=False)

    op.create_table(
        "publisher_email_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["publisher_id"],
            ["publisher.id"],
            name=op.f("fk_publisher_email_token_publisher_id_publisher"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publisher_email_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_publisher_email_token_token_hash")),
    )
    with op.batch_alter_table("publisher_email_token", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_publisher_email_token_publisher_id"), ["publisher_id"], unique=False
        )

    op.create_table(
        "product_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("pins", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("override_reason", sa.Text(), nullable=True),
        sa.Column("published_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["claimed_by"],
            ["user_account.id"],
            name=op.f("fk_product_revision_claimed_by_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["user_account.id"],
            name=op.f("fk_product_revision_created_by_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"],
            ["user_account.id"],
            name=op.f("fk_product_revision_decided_by_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_product_revision_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_revision")),
        sa.UniqueConstraint("product_id", "number", name=op.f("uq_product_revision_product_id")),
    )
    with op.batch_alter_table("product_revision", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_product_revision_product_id"), ["product_id"], unique=False)
        batch_op.create_index(
            "ix_product_revision_state_submitted_at", ["state", "submitted_at"], unique=False
        )

    op.create_table(
        "review_comment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("author_name", sa.String(length=255), nullable=False),
        sa.Column("from_store", sa.Boolean(), nullable=False),
        sa.Column("internal", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("anchor_kind", sa.String(length=16), nullable=False),
        sa.Column("anchor", sa.String(length=512), server_default="", nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["user_account.id"],
            name=op.f("fk_review_comment_author_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["review_comment.id"],
            name=op.f("fk_review_comment_parent_id_review_comment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_review_comment_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["product_revision.id"],
            name=op.f("fk_review_comment_revision_id_product_revision"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_comment")),
    )
    with op.batch_alter_table("review_comment", schema=None) as batch_op:
        batch_op.create_index(
            "ix_review_comment_product_id_created_at", ["product_id", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_review_comment_revision_id"), ["revision_id"], unique=False)

    op.create_table(
        "revision_transition",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("from_state", sa.String(length=24), nullable=False),
        sa.Column("to_state", sa.String(length=24), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_name", sa.String(length=255), nullable=False),
        sa.Column("comment", sa.Text(), server_default="", nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["user_account.id"],
            name=op.f("fk_revision_transition_actor_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["product_revision.id"],
            name=op.f("fk_revision_transition_revision_id_product_revision"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revision_transition")),
    )
    with op.batch_alter_table("revision_transition", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revision_transition_revision_id"), ["revision_id"], unique=False)

    with op.batch_alter_table("publisher", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_publisher_logo_id_catalog_image"),
            "catalog_image",
            ["logo_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_product_live_revision_id_product_revision"),
            "product_revision",
            ["live_revision_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_product_working_revision_id_product_revision"),
            "product_revision",
            ["working_revision_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_product_working_revision_id_product_revision"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_product_live_revision_id_product_revision"), type_="foreignkey"
        )
    with op.batch_alter_table("publisher", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_publisher_logo_id_catalog_image"), type_="foreignkey")
    with op.batch_alter_table("revision_transition", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revision_transition_revision_id"))

    op.drop_table("revision_transition")
    with op.batch_alter_table("review_comment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_comment_revision_id"))
        batch_op.drop_index("ix_review_comment_product_id_created_at")

    op.drop_table("review_comment")
    with op.batch_alter_table("product_revision", schema=None) as batch_op:
        batch_op.drop_index("ix_product_revision_state_submitted_at")
        batch_op.drop_index(batch_op.f("ix_product_revision_product_id"))

    op.drop_table("product_revision")
    with op.batch_alter_table("publisher_email_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_publisher_email_token_publisher_id"))

    op.drop_table("publisher_email_token")
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_product_publisher_id"))

    op.drop_table("product")
    with op.batch_alter_table("catalog_image", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_image_publisher_id"))

    op.drop_table("catalog_image")
    op.drop_table("publisher")
