"""jobs and scan results: the job queue, layer facts, image scans, packages, verdicts, components, findings

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 20:50:11.874392
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The job queue: a transactional outbox that workers claim from.
    op.create_table(
        "job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("worker", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job")),
    )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_dedupe_key"), ["dedupe_key"], unique=False)
        # Claiming: the due jobs of a status, oldest first.
        batch_op.create_index("ix_job_status_run_after", ["status", "run_after"], unique=False)

    # One row per manifest digest (images are content-addressed), with its cached counts per class.
    op.create_table(
        "scan_image",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("format", sa.Integer(), nullable=True),
        sa.Column("platform", sa.String(length=64), nullable=True),
        sa.Column("os_id", sa.String(length=64), nullable=True),
        sa.Column("os_version", sa.String(length=64), nullable=True),
        sa.Column("os_pretty_name", sa.String(length=255), nullable=True),
        sa.Column("os_ecosystem", sa.String(length=64), nullable=True),
        sa.Column("layers", sa.JSON(), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("indexed_at", sa.DateTime(), nullable=True),
        sa.Column("matched_at", sa.DateTime(), nullable=True),
        sa.Column("critical", sa.Integer(), nullable=False),
        sa.Column("major", sa.Integer(), nullable=False),
        sa.Column("minor", sa.Integer(), nullable=False),
        sa.Column("unscored", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_image")),
        sa.UniqueConstraint("digest", name=op.f("uq_scan_image_digest")),
    )
    # Facts of a layer, indexed once for every image that shares it.
    op.create_table(
        "scan_layer",
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("facts", sa.Text(), nullable=True),
        sa.Column("indexed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_scan_layer")),
    )
    # Distinct (ecosystem, name, version) keys: matched once, whatever the number of images holding them.
    op.create_table(
        "scan_package",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ecosystem", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("component_ecosystem", sa.String(length=16), nullable=False),
        sa.Column("matched_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_package")),
        sa.UniqueConstraint("ecosystem", "name", "version", name=op.f("uq_scan_package_ecosystem")),
    )
    op.create_table(
        "scan_component",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("component_key", sa.String(length=1024), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("ecosystem", sa.String(length=16), nullable=False),
        sa.Column("purl", sa.String(length=1024), nullable=False),
        sa.Column("source_name", sa.String(length=512), nullable=True),
        sa.Column("source_version", sa.String(length=255), nullable=True),
        sa.Column("arch", sa.String(length=32), nullable=True),
        sa.Column("layer_digest", sa.String(length=160), nullable=True),
        sa.Column("path", sa.String(length=1024), nullable=True),
        sa.Column("package_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["scan_image.id"],
            name=op.f("fk_scan_component_image_id_scan_image"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["package_id"], ["scan_package.id"], name=op.f("fk_scan_component_package_id_scan_package")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_component")),
        sa.UniqueConstraint("image_id", "component_key", name=op.f("uq_scan_component_image_id")),
    )
    with op.batch_alter_table("scan_component", schema=None) as batch_op:
        # A changed verdict fans out to the images holding its package through this index.
        batch_op.create_index(batch_op.f("ix_scan_component_package_id"), ["package_id"], unique=False)

    op.create_table(
        "scan_finding",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("vuln_id", sa.String(length=128), nullable=False),
        sa.Column("component_key", sa.String(length=1024), nullable=False),
        sa.Column("package_id", sa.Integer(), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("override_severity", sa.String(length=16), nullable=True),
        sa.Column("override_reason", sa.Text(), nullable=True),
        sa.Column("override_by", sa.String(length=255), nullable=True),
        sa.Column("override_at", sa.DateTime(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("reopened_at", sa.DateTime(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["scan_image.id"],
            name=op.f("fk_scan_finding_image_id_scan_image"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_finding")),
        sa.UniqueConstraint("image_id", "vuln_id", "component_key", name=op.f("uq_scan_finding_image_id")),
    )
    with op.batch_alter_table("scan_finding", schema=None) as batch_op:
        # A re-match resolves, rescores and reopens findings by (package, vulnerability).
        batch_op.create_index("ix_scan_finding_package_vuln", ["package_id", "vuln_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_scan_finding_vuln_id"), ["vuln_id"], unique=False)

    op.create_table(
        "scan_image_child",
        sa.Column("index_id", sa.Integer(), nullable=False),
        sa.Column("child_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["child_id"],
            ["scan_image.id"],
            name=op.f("fk_scan_image_child_child_id_scan_image"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["index_id"],
            ["scan_image.id"],
            name=op.f("fk_scan_image_child_index_id_scan_image"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("index_id", "child_id", name=op.f("pk_scan_image_child")),
    )
    with op.batch_alter_table("scan_image_child", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scan_image_child_child_id"), ["child_id"], unique=False)

    op.create_table(
        "scan_package_vuln",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.Integer(), nullable=False),
        sa.Column("vuln_id", sa.String(length=128), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("fixed_version", sa.String(length=255), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("vector", sa.String(length=256), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.String(length=512), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["package_id"],
            ["scan_package.id"],
            name=op.f("fk_scan_package_vuln_package_id_scan_package"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_package_vuln")),
        sa.UniqueConstraint("package_id", "vuln_id", name=op.f("uq_scan_package_vuln_package_id")),
    )
    with op.batch_alter_table("scan_package_vuln", schema=None) as batch_op:
        # The verdicts a re-match wrote: the ones whose findings it inserts.
        batch_op.create_index(batch_op.f("ix_scan_package_vuln_generation"), ["generation"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scan_package_vuln", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scan_package_vuln_generation"))

    op.drop_table("scan_package_vuln")
    with op.batch_alter_table("scan_image_child", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scan_image_child_child_id"))

    op.drop_table("scan_image_child")
    with op.batch_alter_table("scan_finding", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scan_finding_vuln_id"))
        batch_op.drop_index("ix_scan_finding_package_vuln")

    op.drop_table("scan_finding")
    with op.batch_alter_table("scan_component", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scan_component_package_id"))

    op.drop_table("scan_component")
    op.drop_table("scan_package")
    op.drop_table("scan_layer")
    op.drop_table("scan_image")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index("ix_job_status_run_after")
        batch_op.drop_index(batch_op.f("ix_job_dedupe_key"))

    op.drop_table("job")
