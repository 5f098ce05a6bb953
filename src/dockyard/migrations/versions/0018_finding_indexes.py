"""scan_finding: drop the indexes by (package, vulnerability) and by vulnerability

A fleet's first match writes millions of findings in image order; these two indexes took them in random
order and cost more than half of its time. A re-match now reaches a verdict's findings through the
components holding its package (``ix_scan_component_package_id``) and the unique (image, vulnerability,
component) key, which also serves every read (by image, or by image and vulnerability).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 06:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_scan_finding_vuln_id", table_name="scan_finding")
    op.drop_index("ix_scan_finding_package_vuln", table_name="scan_finding")


def downgrade() -> None:
    op.create_index("ix_scan_finding_package_vuln", "scan_finding", ["package_id", "vuln_id"], unique=False)
    op.create_index("ix_scan_finding_vuln_id", "scan_finding", ["vuln_id"], unique=False)
