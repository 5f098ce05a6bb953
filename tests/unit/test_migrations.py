"""Migrations: upgrade an empty database to head, downgrade to base and back, step by step, and no drift
between the migrations and the models. Runs on SQLite, and on PostgreSQL with DOCKYARD_TEST_DATABASE_URL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from dockyard.db import alembic_config, downgrade, make_engine, migrate
from dockyard.models import metadata
from dockyard.store.search import outside_metadata


@pytest.fixture
def engine(empty_database_url: str) -> Iterator[Engine]:
    engine = make_engine(empty_database_url)
    yield engine
    engine.dispose()


def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(None))


def revision_of(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def tables(engine: Engine) -> set[str]:
    # The search index's FTS5 tables (SQLite) are the migrations' own, not the models'.
    names = set(inspect(engine).get_table_names()) - {"alembic_version"}
    return {name for name in names if outside_metadata(name, "table", {})}


def drift(engine: Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "render_as_batch": True,
                "target_metadata": metadata,
                "include_name": outside_metadata,
            },
        )
        return compare_metadata(context, metadata)


def test_there_is_one_head() -> None:
    assert len(scripts().get_heads()) == 1


def test_every_revision_has_a_downgrade() -> None:
    for script in scripts().walk_revisions():
        assert hasattr(script.module, "downgrade"), script.revision


def test_upgrade_an_empty_database_to_head(engine: Engine) -> None:
    assert tables(engine) == set()
    migrate(engine)
    assert revision_of(engine) == scripts().get_current_head()
    assert tables(engine) == set(metadata.tables)
    migrate(engine)  # idempotent: a restart migrates again
    assert revision_of(engine) == scripts().get_current_head()


def test_downgrade_to_base_and_up_again(engine: Engine) -> None:
    migrate(engine)
    downgrade(engine, "base")
    assert tables(engine) == set()
    assert revision_of(engine) is None
    migrate(engine)
    assert tables(engine) == set(metadata.tables)
    assert drift(engine) == []


def test_each_revision_downgrades_and_upgrades_on_its_own(engine: Engine) -> None:
    """Walk the history one step at a time: every downgrade undoes exactly its upgrade."""
    revisions = [s.revision for s in reversed(list(scripts().walk_revisions()))]
    seen: dict[str | None, set[str]] = {None: set()}
    for revision in revisions:
        migrate(engine, revision)
        seen[revision] = tables(engine)
    for previous, revision in reversed(list(zip([None, *revisions], revisions, strict=False))):
        downgrade(engine, previous or "base")
        assert tables(engine) == seen[previous], f"downgrade from {revision}"
        migrate(engine, revision)
        assert tables(engine) == seen[revision], f"upgrade to {revision}"
        downgrade(engine, previous or "base")


def test_the_migrations_match_the_models(engine: Engine) -> None:
    migrate(engine)
    assert drift(engine) == []


def test_the_schema_works_after_the_round_trip(engine: Engine) -> None:
    """Constraints survive downgrade/upgrade (SQLite batch mode rebuilds tables)."""
    migrate(engine)
    downgrade(engine, "base")
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO namespace (name, kind, created_at) VALUES ('ns', 'org', CURRENT_TIMESTAMP)")
        )
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text("INSERT INTO namespace (name, kind, created_at) VALUES ('ns', 'org', CURRENT_TIMESTAMP)")
        )


def test_0006_marks_every_finished_scan_for_a_rescan(engine: Engine) -> None:
    """Scans made before the scanner checked blob links are rescanned once (the start hook picks them up)."""
    from sqlalchemy.orm import Session

    from dockyard.events import EventBus
    from dockyard.scanning.services import ScanService

    migrate(engine, "0005")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO scan_image (digest, kind, status, format, layers, warnings, created_at, "
                "critical, major, minor, unscored) VALUES "
                "('sha256:' || :a, 'image', 'done', 1, '[]', '[]', CURRENT_TIMESTAMP, 0, 0, 0, 0), "
                "('sha256:' || :b, 'image', 'queued', NULL, '[]', '[]', CURRENT_TIMESTAMP, 0, 0, 0, 0)"
            ),
            {"a": "a" * 64, "b": "b" * 64},
        )
    migrate(engine)
    with engine.connect() as conn:
        formats = dict(conn.execute(text("SELECT status, format FROM scan_image")).all())
    assert formats == {"done": 0, "queued": None}
    with Session(engine) as session:
        assert ScanService(session, None, EventBus(), None).enqueue_stale() == 1  # type: ignore[arg-type]
        session.rollback()


def test_0020_drops_the_findings_image_key_and_keeps_what_references_findings(engine: Engine) -> None:
    """Findings lose the foreign key to their image (a fleet's first match checked it for every row);
    nothing that references a finding is touched (a rebuilt SQLite table would cascade its DROP to them),
    and going down puts the key back after deleting the findings it would refuse."""
    from dockyard.scanning.models import ImageScan, ScanFinding

    before = scripts().get_revision("0020").down_revision
    assert isinstance(before, str)
    migrate(engine, before)
    images, findings = ImageScan.__table__, ScanFinding.__table__
    finding = {"vuln_id": "CVE-2024-1", "component_key": "deb:zlib1g", "severity": "Major"}
    with engine.begin() as conn:
        image_id = conn.execute(
            images.insert()
            .values(digest="sha256:" + "a" * 64, kind="image", status="done")
            .returning(images.c.id)
        ).scalar_one()
        finding_id = conn.execute(
            findings.insert().values(image_id=image_id, **finding).returning(findings.c.id)
        ).scalar_one()
        # A table referencing findings as compliance_clock and alert_item do, with a row to lose.
        conn.execute(
            text(
                "CREATE TABLE probe_child (id INTEGER PRIMARY KEY, finding_id INTEGER NOT NULL "
                "REFERENCES scan_finding (id) ON DELETE CASCADE)"
            )
        )
        conn.execute(text("INSERT INTO probe_child (id, finding_id) VALUES (1, :f)"), {"f": finding_id})
    orphan = {**finding, "image_id": image_id + 1000, "vuln_id": "CVE-2024-2"}

    migrate(engine)
    with engine.begin() as conn:
        conn.execute(findings.insert().values(**orphan))  # no image checked any more
        assert conn.execute(text("SELECT finding_id FROM probe_child")).scalars().all() == [finding_id]
        if engine.dialect.name == "sqlite":
            assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
    assert not [fk for fk in inspect(engine).get_foreign_keys("scan_finding") if fk["referred_table"]]

    downgrade(engine, before)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM scan_finding")).scalar_one() == 1  # the orphan went
        assert conn.execute(text("SELECT finding_id FROM probe_child")).scalars().all() == [finding_id]
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(findings.insert().values(**orphan))
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE probe_child"))


def test_a_process_brings_an_older_schema_to_head_when_it_starts(tmp_path, empty_database_url: str) -> None:
    """``build_runtime`` (every server and command) migrates only when the schema is not at head: one at an
    older revision is brought up, one at head is left as it is."""
    from dockyard.config import Settings
    from dockyard.db import at_head
    from dockyard.runtime import build_runtime

    older = make_engine(empty_database_url)
    migrate(older, "0019")
    assert not at_head(older)
    older.dispose()
    settings = Settings(data_dir=tmp_path / "data", database_url=empty_database_url)
    for _start in range(2):
        runtime = build_runtime(settings)
        try:
            assert at_head(runtime.engine)
            assert revision_of(runtime.engine) == scripts().get_current_head()
        finally:
            runtime.engine.dispose()
