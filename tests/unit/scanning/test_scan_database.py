"""``dockyard scan`` opens a migrated database read-only and without alembic; a new one is migrated."""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from tests.support.vulndata import find_vulndata

from dockyard.cli.scan import database
from dockyard.config import Settings
from dockyard.db import alembic_config, at_head, head_revision, make_engine, migrate, utcnow
from dockyard.scanning.advisory_reads import sqlite_reads
from dockyard.scanning.matcher import Matcher
from dockyard.scanning.models import Advisory
from dockyard.scanning.types import Component, OSInfo
from dockyard.scanning.vulndb import ingest


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


# ---- the matcher's reads through sqlite3 ------------------------------------------------------------------


def _settings(url: str, tmp_path: Path) -> Settings:
    return Settings.from_env({"DOCKYARD_DATABASE_URL": url, "DOCKYARD_DATA_DIR": str(tmp_path)})


def test_sqlite_reads_open_only_a_migrated_database_with_advisories(tmp_path: Path) -> None:
    """Anything else (no file, an empty file, an older schema, no live advisory, another database) goes
    through SQLAlchemy, which migrates or fills it; what is opened is opened read-only."""
    path = tmp_path / "v.db"
    url = f"sqlite:///{path}"
    head = head_revision()
    for other in (url, "sqlite:///:memory:", "postgresql+psycopg://x@127.0.0.1:1/x"):
        with sqlite_reads(other, head) as reads:
            assert reads is None
    assert not path.exists()  # not created by looking
    path.write_bytes(b"")
    with sqlite_reads(url, head) as reads:
        assert reads is None  # no tables
    engine = make_engine(url)
    migrate(engine)
    with sqlite_reads(url, head) as reads:
        assert reads is None  # no advisories
    advisories = Advisory.__table__
    with engine.begin() as conn:
        conn.execute(
            advisories.insert().values(id="CVE-2024-1", source="osv:Debian", digest="x", withdrawn=utcnow())
        )
    with sqlite_reads(url, head) as reads:
        assert reads is None  # withdrawn only
    with engine.begin() as conn:
        conn.execute(advisories.update().values(withdrawn=None))
    with sqlite_reads(url, "0001") as reads:
        assert reads is None  # not at the newest revision
    with sqlite_reads(url, head) as reads:
        assert reads is not None
        assert [row.id for row in reads.advisories(["CVE-2024-1", "CVE-2024-2"])] == ["CVE-2024-1"]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reads.connection.execute("DELETE FROM vuln_advisory")
    engine.dispose()


def test_the_matcher_finds_the_same_through_sqlite3_as_through_sqlalchemy(tmp_path: Path) -> None:
    """On the real feeds (Debian, Alpine, PyPA, the Node.js WG's npm and core advisories, the NVD sample
    lending scores): the same findings, scores, score sources and fixes either way."""
    from tests.unit.scanning.test_matcher import DEBIAN_12, _image, _known_versions, apk, lang

    vulndata = find_vulndata()
    if not (vulndata / "debian-osv").is_dir():
        pytest.skip(f"no vulnerability data at {vulndata}")
    url = f"sqlite:///{tmp_path / 'feeds.db'}"
    engine = make_engine(url)
    migrate(engine)
    feeds = tmp_path / "feeds"
    for package in ("urllib3", "django", "jinja2"):
        shutil.copytree(vulndata / "pypa-advisory-database/vulns" / package, feeds / "pypa" / package)
    shutil.copytree(vulndata / "nodejs-security-wg", feeds / "nodejs-security-wg")
    shutil.copyfile(vulndata / "alpine-secdb/3.19/main.json", feeds / "alpine-main.json")
    with Session(engine) as session, session.begin():
        for source in (vulndata / "debian-osv", vulndata / "nvd-sample", feeds):
            assert ingest(session, source).errors == []
    with Session(engine) as session:
        debian = _image(_known_versions(session), random.Random(5), pool=6)
    debian += [
        lang("npm", "lodash", "4.17.4"),
        lang("PyPI", "django", "3.2"),
        lang("PyPI", "urllib3", "1.26.4"),
    ]
    node = Component("node", "16.0.0", "Node.js", "pkg:generic/node@16.0.0", "sha256:app", "usr/bin/node")
    debian.append(node)
    alpine = [apk("openssl", "3.1.4-r0", "openssl"), apk("busybox", "1.36.1-r15", "busybox")]
    alpine_319 = OSInfo("alpine", "3.19.1").osv_ecosystem
    with Session(engine) as session, sqlite_reads(url, head_revision()) as reads:
        assert reads is not None
        through_session, through_sqlite3 = Matcher(session), Matcher(reads=reads)
        for image, ecosystem in ((debian, DEBIAN_12), (alpine, alpine_319)):
            expected = through_session.match(image, ecosystem)
            assert expected and through_sqlite3.match(image, ecosystem) == expected
        found = through_session.match(debian, DEBIAN_12)
        assert any(f.score_record and f.score_record != f.id for f in found), "a score lent by another record"
        assert any(f.component is node for f in found), "the Node.js runtime matched against core advisories"
    engine.dispose()
