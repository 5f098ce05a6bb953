"""The newest migration's revision, read without importing SQLAlchemy or alembic: ``dockyard scan`` checks
a SQLite database against it before deciding how to read it."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def head_revision() -> str:
    """The newest migration, read from the version files without importing alembic (which costs a
    command-line tool like ``dockyard scan`` a noticeable part of its start-up)."""
    import re

    revisions, parents = set(), set()
    for path in (Path(__file__).parent / "migrations" / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        found = re.search(r'^revision\b[^=]*=\s*["\']([^"\']+)["\']', text, re.M)
        down = re.search(r'^down_revision\b[^=]*=\s*["\']([^"\']+)["\']', text, re.M)
        if found:
            revisions.add(found.group(1))
        if down:
            parents.add(down.group(1))
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()
