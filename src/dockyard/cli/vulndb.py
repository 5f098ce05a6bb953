"""``dockyard vulndb update|status``: fill the local vulnerability database and show what it holds.

``update`` reads each source (an osv.dev ``all.zip`` URL, a zip, a directory or a file) in a transaction of
its own; a URL is downloaded first, so the database's write lock is held only while records are written.
Two names are feeds of their own: ``nvd`` (NVD's CVE API 2.0, a severity source: incremental by last
modification, one transaction per page, resumable; DOCKYARD_NVD_API_KEY raises NVD's rate limit) and
``ghsa`` (GitHub's advisory database, OSV records with CVSS vectors for PyPI, npm, Go and Maven packages,
downloaded as the repository's archive).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import typer
from rich.table import Table
from rich.text import Text

from dockyard.cli.scan import (
    EXIT_ERROR,
    database,
    describe,
    err,
    fail,
    live_advisories,
    out,
    progress_display,
)
from dockyard.config import GHSA_ARCHIVE, GHSA_FEED, Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from dockyard.scanning.vulndb import IngestReport

vulndb_app = typer.Typer(help="Keep the local vulnerability database up to date.", no_args_is_help=True)

REMATCH_JOB = "scan.rematch_all"
NVD_CURSOR = "nvd:api"  # FeedState row of the NVD reader (scanning.nvd.CURSOR)
ERRORS_SHOWN = 5  # record errors listed per source; the rest are counted


@vulndb_app.command("update")
def vulndb_update(
    source: list[str] | None = typer.Option(
        None,
        "--source",
        "-s",
        help="a feed to read (URL, zip, directory or file); repeat for several (default: "
        "DOCKYARD_VULNDB_SOURCES)",
    ),
) -> None:
    """Ingest vulnerability feeds into the database, one transaction per source."""
    settings = Settings.from_env()
    sources = tuple(source or ()) or settings.vulndb_sources
    failed = 0
    queued = False
    try:
        with database(settings) as sessions:
            for src in sources:
                try:
                    ingest_report, rematch = update_one(sessions, src, settings)
                except Exception as exc:  # one unreadable feed must not stop the others
                    failed += 1
                    err.print(
                        Text("error: ", style="bold red") + Text(f"{src}: {_first_line(exc)}"), soft_wrap=True
                    )
                    continue
                queued = queued or rematch
                _print_report(ingest_report)
    except Exception as exc:  # the database itself: unreachable, unmigratable
        fail(describe(exc))
    if queued:
        out.print(f"queued a re-match of stored images ({REMATCH_JOB})")
    if failed:
        raise typer.Exit(EXIT_ERROR)


def _first_line(exc: Exception) -> str:
    text = describe(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def update_one(
    sessions: sessionmaker[Session], source: str, settings: Settings | None = None
) -> tuple[IngestReport, bool]:
    from dockyard.scanning.vulndb import ingest

    if source == "nvd":
        return update_nvd(sessions, settings.nvd_api_key if settings else None)
    feed = None
    if source == GHSA_FEED:
        # Its records keep the source their ids name (osv:GitHub), as in osv.dev's exports, which carry the
        # same GHSA records: one feed read after the other finds them unchanged rather than rewriting each.
        source = GHSA_ARCHIVE
    started = time.monotonic()
    with _fetched(source) as path, sessions() as session, progress_display() as progress:
        # A large feed takes a while to read after its download: say so rather than leave a finished bar.
        progress.add_task(f"reading {source}", total=None, streams=False)
        # The write lock up front (SQLite): a deferred BEGIN that upgrades later can deadlock with the server.
        session.connection(execution_options={"sqlite_write": True})
        ingest_report = ingest(session, path, feed=feed)
        ingest_report.source = source
        changed = ingest_report.added + ingest_report.updated + ingest_report.withdrawn
        rematch = bool(changed) and _enqueue_rematch(session)
        session.commit()
    ingest_report.seconds = time.monotonic() - started
    return ingest_report, rematch


def update_nvd(
    sessions: sessionmaker[Session], api_key: str | None, client: object = None
) -> tuple[IngestReport, bool]:
    """Read NVD's records modified since the last complete window (everything the first time), one page
    per transaction, so an interrupted run resumes where it stopped (``scanning.nvd.sync``)."""
    import httpx

    from dockyard.scanning.nvd import sync

    started = time.monotonic()
    rematch = False

    def transact(fn):  # type: ignore[no-untyped-def]
        with sessions() as session:
            session.connection(execution_options={"sqlite_write": True})
            result = fn(session)
            session.commit()
            return result

    http = client or httpx.Client(timeout=httpx.Timeout(60.0), follow_redirects=True)
    try:
        with progress_display() as progress:
            task = progress.add_task("nvd", total=None, streams=False)
            read = {"records": 0}

            def on_page(session: Session, page: IngestReport) -> None:
                nonlocal rematch
                changed = page.added + page.updated + page.withdrawn
                rematch = (bool(changed) and _enqueue_rematch(session)) or rematch
                read["records"] += page.records
                progress.update(task, description=f"nvd: {read['records']} records")

            total, _ = sync(transact, http, api_key=api_key, on_page=on_page)
    finally:
        if client is None:
            http.close()
    total.seconds = time.monotonic() - started
    return total, rematch


@contextmanager
def _fetched(source: str) -> Iterator[Path]:
    """A local path for ``source``: itself, or a download of a URL made before the transaction opens (a
    slow download must not hold the database's write lock)."""
    if not source.startswith(("http://", "https://")):
        yield Path(source)
        return
    import httpx

    suffix = Path(urlsplit(source).path).suffix or ".json"
    with tempfile.NamedTemporaryFile(prefix="dockyard-feed-", suffix=suffix) as tmp:
        with (
            httpx.Client(timeout=httpx.Timeout(60.0), follow_redirects=True) as client,
            client.stream("GET", source) as response,
            progress_display() as progress,
        ):
            response.raise_for_status()
            length = response.headers.get("Content-Length")
            task = progress.add_task(f"download {source}", total=int(length) if length else None)
            for chunk in response.iter_bytes(1 << 20):
                tmp.write(chunk)
                progress.advance(task, len(chunk))
            tmp.flush()
        yield Path(tmp.name)  # the download's bar is gone: reading the file has its own


def _enqueue_rematch(session: Session) -> bool:
    """Queue one re-match of stored images in this transaction, when the job queue is there.

    The table is checked before ``dockyard.jobs`` is imported: importing it adds its model to the metadata,
    which must not happen before a migration creates the table."""
    from sqlalchemy import inspect

    if not inspect(session.connection()).has_table("job"):
        return False
    try:
        from dockyard.jobs import enqueue
    except ImportError:
        return False
    enqueue(session, REMATCH_JOB, {}, dedupe_key=REMATCH_JOB)
    return True


def _print_report(r: IngestReport) -> None:
    line = (
        f"{r.source}: {r.records} records in {r.files} files: {r.added} added, {r.updated} updated, "
        f"{r.unchanged} unchanged, {r.withdrawn} withdrawn, {len(r.errors)} errors ({r.seconds:.1f}s)"
    )
    out.print(Text(line), soft_wrap=True)
    for where, message in r.errors[:ERRORS_SHOWN]:
        out.print(Text(f"  {where}: {message}", style="yellow"), soft_wrap=True)
    if len(r.errors) > ERRORS_SHOWN:
        out.print(Text(f"  ... and {len(r.errors) - ERRORS_SHOWN} more errors", style="yellow"))


@vulndb_app.command("status")
def vulndb_status(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List the feeds in the database: live advisories, newest record, last update."""
    from sqlalchemy import select

    from dockyard.scanning.models import FeedState

    settings = Settings.from_env()
    try:
        with database(settings) as sessions, sessions() as session:
            feeds = [
                {
                    "feed": f.source,
                    "advisories": f.records,
                    "last_modified": f.last_modified.isoformat(timespec="seconds")
                    if f.last_modified
                    else None,
                    "updated_at": f.updated_at.isoformat(timespec="seconds") if f.updated_at else None,
                }
                for f in session.scalars(select(FeedState).order_by(FeedState.source))
            ]
            total = live_advisories(session)
    except Exception as exc:
        fail(describe(exc))
    if as_json:
        typer.echo(json.dumps({"advisories": total, "feeds": feeds}, indent=2))
        return
    if not feeds:
        out.print("The vulnerability database is empty: run `dockyard vulndb update`.")
        return
    table = Table("feed", "advisories", "newest record", "updated (UTC)")
    for f in feeds:
        table.add_row(
            Text(f["feed"]), str(f["advisories"]), f["last_modified"] or "-", f["updated_at"] or "-"
        )
    out.print(table)
    out.print(f"{total} advisories in {len(feeds)} feed{'s' if len(feeds) != 1 else ''}")
