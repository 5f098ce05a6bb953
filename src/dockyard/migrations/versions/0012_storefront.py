"""storefront: listings (what search and the store pages read) with their platforms, product badges,
entitlements and download events

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 23:23:15.298064
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "product_badge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.Integer(), nullable=True),
        sa.Column("granted_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["granted_by"],
            ["user_account.id"],
            name=op.f("fk_product_badge_granted_by_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_product_badge_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_badge")),
        sa.UniqueConstraint("product_id", "kind", name=op.f("uq_product_badge_product_id")),
    )
    with op.batch_alter_table("product_badge", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_product_badge_product_id"), ["product_id"], unique=False)

    op.create_table(
        "entitlement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=60), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("license_url", sa.String(length=2048), nullable=True),
        sa.Column("license_accepted_at", sa.DateTime(), nullable=True),
        sa.Column("revision_id", sa.Integer(), nullable=True),
        sa.Column("notify_security", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("ends_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["product_id"], ["product.id"], name=op.f("fk_entitlement_product_id_product"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["product_revision.id"],
            name=op.f("fk_entitlement_revision_id_product_revision"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_entitlement_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entitlement")),
        sa.UniqueConstraint("user_id", "product_id", "tier", name=op.f("uq_entitlement_user_id")),
    )
    with op.batch_alter_table("entitlement", schema=None) as batch_op:
        batch_op.create_index("ix_entitlement_product_id_status", ["product_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_entitlement_user_id"), ["user_id"], unique=False)

    op.create_table(
        "listing",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("publisher_slug", sa.String(length=255), nullable=False),
        sa.Column("product_slug", sa.String(length=64), nullable=False),
        sa.Column("publisher_name", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("short_description", sa.String(length=1000), nullable=False),
        sa.Column("long_description", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("logo_id", sa.Integer(), nullable=True),
        sa.Column("free", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("certified", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("downloads", sa.Integer(), server_default="0", nullable=False),
        sa.Column("images", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), server_default="", nullable=False),
        sa.Column("status_since", sa.DateTime(), nullable=True),
        sa.Column("published_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["logo_id"],
            ["catalog_image.id"],
            name=op.f("fk_listing_logo_id_catalog_image"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["product.id"], name=op.f("fk_listing_product_id_product"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["publisher_id"],
            ["publisher.id"],
            name=op.f("fk_listing_publisher_id_publisher"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["product_revision.id"],
            name=op.f("fk_listing_revision_id_product_revision"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_listing")),
        sa.UniqueConstraint("product_id", name=op.f("uq_listing_product_id")),
        sa.UniqueConstraint("publisher_slug", "product_slug", name=op.f("uq_listing_publisher_slug")),
    )
    with op.batch_alter_table("listing", schema=None) as batch_op:
        batch_op.create_index("ix_listing_category", ["category"], unique=False)
        batch_op.create_index(batch_op.f("ix_listing_publisher_id"), ["publisher_id"], unique=False)
        batch_op.create_index("ix_listing_status_downloads", ["status", "downloads"], unique=False)
        batch_op.create_index("ix_listing_status_published_at", ["status", "published_at"], unique=False)

    op.create_table(
        "download_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("entitlement_id", sa.Integer(), nullable=True),
        sa.Column("tier", sa.String(length=60), nullable=True),
        sa.Column("paid", sa.Boolean(), nullable=False),
        sa.Column("image", sa.String(length=64), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=True),
        sa.Column("digest", sa.String(length=100), nullable=False),
        sa.Column("user_agent", sa.String(length=512), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entitlement_id"],
            ["entitlement.id"],
            name=op.f("fk_download_event_entitlement_id_entitlement"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name=op.f("fk_download_event_product_id_product"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["publisher_id"],
            ["publisher.id"],
            name=op.f("fk_download_event_publisher_id_publisher"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_download_event_user_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_download_event")),
    )
    with op.batch_alter_table("download_event", schema=None) as batch_op:
        batch_op.create_index("ix_download_event_product_id_at", ["product_id", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_download_event_publisher_id"), ["publisher_id"], unique=False)

    op.create_table(
        "listing_platform",
        sa.Column("listing_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["listing.id"],
            name=op.f("fk_listing_platform_listing_id_listing"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("listing_id", "platform", name=op.f("pk_listing_platform")),
    )
    with op.batch_alter_table("listing_platform", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_listing_platform_platform"), ["platform"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("listing_platform", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_listing_platform_platform"))

    op.drop_table("listing_platform")
    with op.batch_alter_table("download_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_download_event_publisher_id"))
        batch_op.drop_index("ix_download_event_product_id_at")

    op.drop_table("download_event")
    with op.batch_alter_table("listing", schema=None) as batch_op:
        batch_op.drop_index("ix_listing_status_published_at")
        batch_op.drop_index("ix_listing_status_downloads")
        batch_op.drop_index(batch_op.f("ix_listing_publisher_id"))
        batch_op.drop_index("ix_listing_category")

    op.drop_table("listing")
    with op.batch_alter_table("entitlement", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_entitlement_user_id"))
        batch_op.drop_index("ix_entitlement_product_id_status")

    op.drop_table("entitlement")
    with op.batch_alter_table("product_badge", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_product_badge_product_id"))

    op.drop_table("product_badge")
