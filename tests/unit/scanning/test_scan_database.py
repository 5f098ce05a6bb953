"""``dockyard scan`` opens a migrated database read-only and without alembic; a new one is migrated."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from dockyard.cli.scan import database
from dockyard.config import Settings
from dockyard.db import alembic_config, at_head, head_revision, make_engine, migrate


def test_head_revision_is_alembics_head() -> None:
    assert head_revision() == ScriptDirectory.from_config(alembic_config(None)).get_current_head()


def test_a_migrated_sqlite_database_is_opened_read_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    settings = Settings.from_env({"DOCKYARD_DATABASE_URL": url, "DOCKYARD_DATA_DIR": str(tmp_path)})
    engine = make_engine(url)
    assert not at_head(engine)
    with database(settings, read_only=True) as sessions, sessions() as session:  # new: migrated
        session.execute(text("SELECT count(*) FROM vuln_advisory"))
    assert at_head(engine)
    engine.dispose()
    with database(settings, read_only=True) as sessions, sessions() as session:
        assert session.execute(text("SELECT count(*) FROM vuln_advisory")).scalar() == 0
        with pytest.raises(OperationalError, match="readonly"):
            session.execute(text("DELETE FROM vuln_advisory"))
    with database(settings) as sessions, sessions() as session:  # the default stays writable
        session.execute(text("DELETE FROM vuln_advisory"))


def test_migrate_then_at_head(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'y.db'}")
    migrate(engine)
    assert at_head(engine)
    engine.dispose()
