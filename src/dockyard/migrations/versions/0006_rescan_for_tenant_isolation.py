"""rescan every image once, now that the scanner reads only blobs linked to the image's repository

Before this version a manifest could name another tenant's layer under a look-alike media type
("...tar+gzip+foreign") and its scan listed that private layer's packages. Marking every finished scan as
made by no indexer format (0) makes the server's start hook (``enqueue_stale``) queue each for a rescan:
the layer facts cache is keyed by layer digest and stays valid, so this costs a re-match per image, and a
scan that read a layer its repository does not hold ends in error and forgets its components.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("UPDATE scan_image SET format = 0 WHERE format IS NOT NULL"))


def downgrade() -> None:
    pass  # the rescans it asked for are harmless; nothing to undo
