"""``dockyard vulndb update|status`` on real feed subsets (PyPA and Debian OSV records from shared/vulndata),
each test against a database of its own."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, inspect, select, text
from tests.support.cli import DEBIAN, PYPA, Cli, need_vulndata

from dockyard.scanning.models import Advisory

DEBIAN_FILES = (
    "CVE/2023/CVE-2023-4911.json",
    "DSA/2023/DSA-5514-1.json",
    "CVE/2023/CVE-2023-38545.json",
    "DSA/2023/DSA-5523-1.json",
    "CVE/2023/CVE-2023-45853.json",
)


@pytest.fixture
def cli(tmp_path: Path, fresh_database_url: str) -> Cli:
    need_vulndata()
    return Cli(tmp_path / "data", fresh_database_url)


def live_records(directory: Path) -> int:
    """PYSEC records in a directory that are not withdrawn (what the feed should count)."""
    docs = [yaml.safe_load(p.read_text()) for p in directory.glob("*.yaml")]
    return sum(1 for d in docs if not d.get("withdrawn"))


def summary_of(stdout: str, source: Path | str) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith(f"{source}: ")]
    return line


def test_update_from_real_feeds_then_status(cli: Cli) -> None:
    sources = [PYPA / "urllib3", PYPA / "django", *(DEBIAN / f for f in DEBIAN_FILES)]
    result = cli("vulndb", "update", *(arg for s in sources for arg in ("--source", s)))
    assert result.exit_code == 0, result.stderr
    for directory in (PYPA / "urllib3", PYPA / "django"):
        files = len(list(directory.glob("*.yaml")))
        line = summary_of(result.stdout, directory)
        assert f": {files} records in {files} files: {files} added, 0 updated, 0 unchanged" in line
        assert line.endswith("s)") and ", 0 errors (" in line
    for name in DEBIAN_FILES:
        assert ": 1 records in 1 files: 1 added" in summary_of(result.stdout, DEBIAN / name)
    engine = create_engine(cli.database_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                select(Advisory.aliases).where(Advisory.id == "PYSEC-2021-108")
            ).scalar_one()
            assert "CVE-2021-33503" in stored
            queue = inspect(conn).has_table("job")
    finally:
        engine.dispose()
    # Something changed: a re-match of stored images is queued, once the schema has a job queue.
    assert ("queued a re-match of stored images (scan.rematch_all)" in result.stdout) == queue

    status = cli("vulndb", "status", "--json")
    assert status.exit_code == 0
    doc = json.loads(status.stdout)
    feeds = {f["feed"]: f for f in doc["feeds"]}
    pypi = live_records(PYPA / "urllib3") + live_records(PYPA / "django")
    assert feeds["osv:PyPI"]["advisories"] == pypi
    assert feeds["osv:PyPI"]["last_modified"].startswith("20")
    assert sum(f["advisories"] for f in feeds.values()) == doc["advisories"] == pypi + len(DEBIAN_FILES)
    assert any(name.startswith("osv:") and "Debian" in name for name in feeds if name != "osv:PyPI")

    table = cli("vulndb", "status")
    assert (
        "osv:PyPI" in table.stdout and f"{doc['advisories']} advisories in {len(feeds)} feeds" in table.stdout
    )

    again = cli("vulndb", "update", "--source", PYPA / "urllib3")
    files = len(list((PYPA / "urllib3").glob("*.yaml")))
    assert f"0 added, 0 updated, {files} unchanged, 0 withdrawn" in summary_of(again.stdout, PYPA / "urllib3")


def test_configured_sources_are_the_default(cli: Cli) -> None:
    cli.extra_env["DOCKYARD_VULNDB_SOURCES"] = f"{PYPA / 'urllib3'}, {DEBIAN / DEBIAN_FILES[0]}"
    result = cli("vulndb", "update")
    assert result.exit_code == 0, result.stderr
    assert summary_of(result.stdout, PYPA / "urllib3") and summary_of(result.stdout, DEBIAN / DEBIAN_FILES[0])
    assert (
        json.loads(cli("vulndb", "status", "--json").stdout)["advisories"]
        == live_records(PYPA / "urllib3") + 1
    )


def test_an_unreadable_source_is_reported_and_the_others_are_still_read(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-feed"
    result = cli("vulndb", "update", "--source", missing, "--source", PYPA / "urllib3")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: {missing}: no feed at {missing}"]
    assert summary_of(result.stdout, PYPA / "urllib3")
    assert json.loads(cli("vulndb", "status", "--json").stdout)["advisories"] == live_records(
        PYPA / "urllib3"
    )


def test_record_errors_are_listed_and_do_not_fail_the_update(cli: Cli, tmp_path: Path) -> None:
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "good.yaml").write_bytes((PYPA / "urllib3" / "PYSEC-2021-108.yaml").read_bytes())
    (feed / "broken.json").write_text('{"id": "BAD-1", "affected": [{"package": 7}]}')
    result = cli("vulndb", "update", "--source", feed)
    assert result.exit_code == 0
    line = summary_of(result.stdout, feed)
    assert "2 records in 2 files: 1 added" in line and "1 errors" in line
    assert "  broken.json: affected.package must be an object" in result.stdout


def test_status_of_an_empty_database(cli: Cli) -> None:
    result = cli("vulndb", "status")
    assert result.exit_code == 0
    assert "empty: run `dockyard vulndb update`" in result.stdout
    assert json.loads(cli("vulndb", "status", "--json").stdout) == {"advisories": 0, "feeds": []}


@pytest.mark.skipif(importlib.util.find_spec("dockyard.jobs") is None, reason="no job queue yet")
def test_an_update_that_changes_something_queues_one_rematch(cli: Cli) -> None:
    """Run in subprocesses: creating the job table imports its model, which must stay out of this process's
    metadata until a migration owns the table."""
    env = {k: v for k, v in {**os.environ, **cli.env()}.items() if v is not None}
    exe = Path(sys.executable).with_name("dockyard")

    def dockyard(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(exe), *map(str, args)], env=env, capture_output=True, text=True, timeout=300, check=True
        )

    dockyard("migrate")
    create = (
        "import sys; from dockyard.db import make_engine; from dockyard.jobs import Job; "
        "e = make_engine(sys.argv[1]); Job.__table__.create(e, checkfirst=True); e.dispose()"
    )
    subprocess.run([sys.executable, "-c", create, cli.database_url], check=True, timeout=60)

    first = dockyard("vulndb", "update", "--source", PYPA / "urllib3")
    assert "queued a re-match of stored images (scan.rematch_all)" in first.stdout
    unchanged = dockyard("vulndb", "update", "--source", PYPA / "urllib3")
    assert "queued" not in unchanged.stdout
    more = dockyard("vulndb", "update", "--source", DEBIAN / DEBIAN_FILES[0])
    assert "queued a re-match" in more.stdout  # still queued: the dedupe key keeps it to one job

    engine = create_engine(cli.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT kind, dedupe_key, status FROM job")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("scan.rematch_all", "scan.rematch_all", "queued")]
