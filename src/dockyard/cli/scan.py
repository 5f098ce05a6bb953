"""``dockyard scan IMAGE``: scan an image on a publisher's own machine.

The image is read the way skopeo names it, its layers are indexed as they stream, and the components are
matched against the local vulnerability database (the configured one, filled by ``dockyard vulndb update``).
Results go to stdout (or ``--output``); progress and errors go to stderr. Exit codes: 0, 1 when findings
reach ``--fail-on``, 2 on any error (always one line on stderr, never a traceback).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, cast

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from dockyard.config import GHSA_FEED, NVD_FEED, Settings

# SQLAlchemy and the scanner are imported where they are used: `dockyard --help` imports this module.
if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from dockyard.scanning.detectors.base import Detector
    from dockyard.scanning.indexer import LayerFacts
    from dockyard.scanning.matcher import Finding, Matcher
    from dockyard.scanning.sources import ImageSource, LayerRef
    from dockyard.scanning.types import ImageIndex

out = Console()
err = Console(stderr=True)

EXIT_FINDINGS = 1
EXIT_ERROR = 2


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    CYCLONEDX = "cyclonedx"
    SPDX = "spdx"
    SARIF = "sarif"


class FailOn(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"


class Abort(Exception):
    """A failure the user can act on: printed as one line, exit code 2."""


def fail(message: str) -> NoReturn:
    # soft_wrap: the message stays one line whatever the terminal width; Text: no markup from image data.
    err.print(Text("error: ", style="bold red") + Text(" ".join(message.split())), soft_wrap=True)
    raise typer.Exit(EXIT_ERROR)


@contextmanager
def database(settings: Settings, *, read_only: bool = False) -> Iterator[sessionmaker[Session]]:
    """Sessions on the configured database, migrated to the newest schema first. ``read_only``: when the
    schema is already the newest, a SQLite database is opened read-only (mode=ro) and alembic is never
    imported; otherwise (a first run) it is migrated like any other."""
    from dockyard.db import at_head, make_engine, make_session_factory, migrate, read_only_url

    engine: Engine = make_engine(settings.database_url)
    try:
        if read_only and at_head(engine):
            engine.dispose()
            engine = make_engine(read_only_url(settings.database_url))
        else:
            migrate(engine)
        yield make_session_factory(engine)
    finally:
        engine.dispose()


class _Bytes(DownloadColumn):
    """Bytes read of bytes to read, for the tasks that stream something (not the matching step)."""

    def render(self, task: Task) -> Text:
        return super().render(task) if task.fields.get("streams", True) else Text("")


def progress_display() -> Progress:
    """A progress display on stderr; silent when stderr is not a terminal (CI logs, pipes)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        _Bytes(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


# ---- scanning -----------------------------------------------------------------------------------------


@dataclass
class Scanned:
    image: ImageSource
    index: ImageIndex
    findings: list[Finding]
    matched: bool = True  # False: no advisories to match against (an SBOM without findings)


class _Counted(io.RawIOBase):
    """A layer stream that reports how many bytes were read, for the progress bar."""

    def __init__(self, raw: BinaryIO, advance: Callable[[int], None]) -> None:
        self._raw, self._advance = raw, advance

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._advance(n)
        return n or 0


def scan(
    image: str = typer.Argument(
        ..., help="oci:DIR or oci:DIR:REF, oci-archive:FILE, docker-archive:FILE or docker://HOST/NAME:TAG"
    ),
    output_format: Format = typer.Option(Format.TABLE, "--format", "-f", help="how to print the results"),
    fail_on: FailOn | None = typer.Option(
        None, "--fail-on", help="exit with 1 when a finding is of this class or worse"
    ),
    creds: str | None = typer.Option(None, "--creds", help="USER:PASSWORD for the registry"),
    tls_verify: bool = typer.Option(
        True, "--tls-verify/--no-tls-verify", help="require https with a valid certificate"
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="write the results here, not stdout"),
    platform: str | None = typer.Option(
        None, "--platform", help="the platform of an index to scan: os/arch or os/arch/variant"
    ),
    skip_db_update: bool = typer.Option(
        False,
        "--skip-db-update",
        help="with an empty vulnerability database, do not fetch the configured feeds first",
    ),
) -> None:
    """Scan an image for known vulnerabilities in its OS and language packages.

    On first use (an empty vulnerability database) the configured feeds (DOCKYARD_VULNDB_SOURCES) are
    fetched first, unless --skip-db-update; when none can be read, the SBOM formats are still written."""
    try:
        settings = Settings.from_env()
    except ValueError as exc:  # a bad DOCKYARD_* value, named by the message: one line, like any error here
        fail(str(exc))
    try:
        results = _scan(settings, image, output_format, creds, tls_verify, platform, skip_db_update)
        _write(output_format, image, results, output)
    except typer.Exit:
        raise
    except Abort as exc:
        fail(str(exc))
    except Exception as exc:  # the CLI's contract: a message and exit 2, never a traceback
        fail(describe(exc))
    for r in results:
        if output_format is not Format.TABLE or output is not None:
            _summary(r, len(results) > 1)
    if fail_on is not None and any(_exceeds(r.findings, fail_on) for r in results):
        raise typer.Exit(EXIT_FINDINGS)


def describe(exc: Exception) -> str:
    from dockyard.errors import DockyardError

    if isinstance(exc, DockyardError):
        return exc.message
    if isinstance(exc, OSError):
        if not exc.strerror:
            return str(exc)
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return f"{exc.__class__.__name__}: {exc}"


def _exceeds(findings: Sequence[Finding], fail_on: FailOn) -> bool:
    from dockyard.scanning.report import exceeds

    return exceeds(findings, fail_on.value)


def _scan(
    settings: Settings,
    reference: str,
    output_format: Format,
    creds: str | None,
    tls_verify: bool,
    platform: str | None,
    skip_db_update: bool = False,
) -> list[Scanned]:
    # Only the indexer and the image sources before the layers are handed to worker processes: they are
    # forked from this process, and everything imported later (SQLAlchemy, the models, the matcher) is
    # imported here while they read.
    from dockyard.cli.layerpool import LayerPool, WorkerFailed
    from dockyard.scanning.indexer import default_detectors, merge
    from dockyard.scanning.layercache import LayerCache
    from dockyard.scanning.sources import open_image

    detectors = default_detectors()
    on_disk = LayerCache(settings.cache_dir, [d.name for d in detectors]) if settings.cache_dir else None
    with open_image(
        reference, creds=creds, tls_verify=tls_verify, environ=settings.registry_auth_env
    ) as found:
        images = _pick_platform(found, platform)
        if output_format in (Format.CYCLONEDX, Format.SPDX) and len(images) > 1:
            raise Abort(
                f"{reference} holds {len(images)} platforms ({_platforms(images)}); an SBOM describes "
                "one: choose it with --platform"
            )
        cache: dict[str, LayerFacts] = {}  # a layer shared by two platforms is read once
        unread: dict[str, LayerRef] = {}
        for layer in (layer for image in images for layer in image.layers):
            if layer.digest not in cache and layer.digest not in unread:
                known = on_disk.get(layer.digest) if on_disk else None
                if known is None:
                    unread[layer.digest] = layer
                else:
                    cache[layer.digest] = known

        def index(layer: LayerRef, advance: Callable[[int], None]) -> LayerFacts:
            facts = _read_layer(layer, advance, detectors)
            if on_disk:
                on_disk.put(facts)
            return facts

        # A registry's layers come through one HTTP client, which a forked process must not share.
        forked = list(unread.values()) if _forkable(reference) else []
        with (
            LayerPool(forked, index, _worker_message, _scan_workers(settings), warn=warn) as pool,
            _advisory_matcher(settings, output_format, skip_db_update) as (matcher, end_read),
        ):
            matching = matcher is not None
            if pool:
                _load_writer(output_format)  # while the workers read, not after them
                if matcher is not None:
                    matcher.warm_up()  # its statements compiled while the workers read
            with progress_display() as progress:
                results = []
                for image in images:
                    label = f"{image.platform or 'image'} " if len(images) > 1 else ""
                    facts = []
                    for i, layer in enumerate(image.layers, 1):
                        if layer.digest not in cache:
                            what = f"{label}layer {i}/{len(image.layers)} {layer.digest[7:19]}"
                            task: TaskID = progress.add_task(what, total=layer.size or None)
                            try:
                                if layer.digest in pool:
                                    known = pool.facts(layer.digest, lambda n, t=task: progress.advance(t, n))
                                else:
                                    known = index(layer, lambda n, t=task: progress.advance(t, n))
                            except WorkerFailed as exc:
                                raise Abort(str(exc)) from None
                            progress.update(task, completed=layer.size)
                            cache[layer.digest] = known
                        facts.append(cache[layer.digest])
                    index_ = merge(facts, image.platform)
                    task = progress.add_task(
                        f"{label}matching {len(index_.components)} components", total=None, streams=False
                    )
                    os_ecosystem = index_.os.osv_ecosystem if index_.os else None
                    findings = matcher.match(index_.components, os_ecosystem) if matcher is not None else []
                    end_read()  # end the read transaction; the matcher's caches stay
                    progress.update(task, total=1, completed=1)
                    results.append(Scanned(image, index_, findings, matching))
    return results


@contextmanager
def _advisory_matcher(
    settings: Settings, output_format: Format, skip_db_update: bool
) -> Iterator[tuple[Matcher | None, Callable[[], None]]]:
    """A matcher over the configured database, or None when it holds no advisories (the SBOM formats are
    then written without findings), and what ends its read transaction. A SQLite file at the newest
    revision that holds advisories is read with the sqlite3 module (no SQLAlchemy import: see
    advisory_reads); any other database, or one to migrate or fill first, through SQLAlchemy."""
    from dockyard.scanning.advisory_reads import sqlite_reads
    from dockyard.scanning.matcher import Matcher
    from dockyard.schema_head import head_revision

    with sqlite_reads(settings.database_url, head_revision()) as reads:
        if reads is not None:
            yield Matcher(reads=reads), lambda: None  # sqlite3 holds no transaction open between SELECTs
            return
    with database(settings, read_only=True) as sessions:
        matching = _advisories_ready(settings, sessions, output_format, skip_db_update)
        with sessions() as session:
            yield (Matcher(session) if matching else None), session.rollback


def _advisories_ready(
    settings: Settings, sessions: sessionmaker[Session], output_format: Format, skip_db_update: bool
) -> bool:
    """Whether there are advisories to match against: an empty database is filled from the configured feeds
    first (unless ``skip_db_update``); without advisories only the SBOM formats are written."""
    with sessions() as session:
        live = live_advisories(session)
    if not live and not skip_db_update:
        with database(settings) as writable:
            live = first_update(settings, writable)
    if not live:
        where = f"the vulnerability database ({_where(settings)}) holds no advisories"
        if output_format not in (Format.CYCLONEDX, Format.SPDX):
            raise Abort(f"{where}: run `dockyard vulndb update` first")
        warn(f"{where}: the SBOM lists components; findings are not included")
    return bool(live)


def _load_writer(output_format: Format) -> None:
    """Import what writing ``output_format`` takes (spdx-tools alone takes about 0.45 s)."""
    import importlib

    importlib.import_module("dockyard.scanning.report")
    if output_format in (Format.CYCLONEDX, Format.SPDX):
        importlib.import_module("dockyard.scanning.sbom")
    if output_format is Format.SPDX:  # sbom imports spdx-tools only where an SPDX document is built
        importlib.import_module("spdx_tools.spdx.model")
        importlib.import_module("spdx_tools.spdx.jsonschema.document_converter")


def _forkable(reference: str) -> bool:
    """Local images only: their layers are files each worker opens for itself."""
    return reference.partition(":")[0] in ("oci", "oci-archive", "docker-archive") and hasattr(os, "fork")


def _scan_workers(settings: Settings) -> int:
    """Worker processes for the layers (DOCKYARD_SCAN_WORKERS; by default one per usable CPU, at most 4);
    0: none."""
    from dockyard.cli.layerpool import default_workers

    return default_workers() if settings.scan_workers is None else settings.scan_workers


def _worker_message(exc: BaseException) -> str:
    """In a worker: the line the user would see had the layer been read in the scanning process."""
    return str(exc) if isinstance(exc, Abort) else describe(exc)  # type: ignore[arg-type]


def warn(message: str) -> None:
    err.print(Text("warning: ", style="bold yellow") + Text(" ".join(message.split())), soft_wrap=True)


def first_update(settings: Settings, sessions: sessionmaker[Session]) -> int:
    """Fill an empty database from the configured feeds, as Trivy does on first use (a progress bar per
    download; a feed that cannot be read is one warning line). Returns the live advisories then held."""
    from dockyard.cli.vulndb import update_one

    # NVD's API allows a few requests a minute (a full first read takes minutes) and GitHub's archive is
    # large and mostly in osv.dev's exports already: both are left to `dockyard vulndb update` and the
    # server's scheduled updates rather than a first scan.
    sources = tuple(s for s in settings.vulndb_sources if s not in (NVD_FEED, GHSA_FEED))
    err.print(
        Text(
            f"the vulnerability database is empty: fetching {len(sources)} feed"
            f"{'s' if len(sources) != 1 else ''} (skip with --skip-db-update)"
        ),
        soft_wrap=True,
    )
    for source in sources:
        try:
            update_one(sessions, source, settings)
        except Exception as exc:  # an unreachable feed: the others may still serve
            text = describe(exc).strip().splitlines()
            warn(f"{source}: {text[0] if text else exc.__class__.__name__}")
    with sessions() as session:
        return live_advisories(session)


def _where(settings: Settings) -> str:
    url = settings.database_url
    return url.split(":///", 1)[1] if url.startswith("sqlite:///") else url.split("@")[-1]


def live_advisories(session: Session) -> int:
    from sqlalchemy import func, select

    from dockyard.scanning.models import Advisory

    return int(session.scalar(select(func.count()).select_from(Advisory).where(Advisory.withdrawn.is_(None))))


def _platforms(images: Sequence[ImageSource]) -> str:
    return ", ".join(i.platform or "unknown" for i in images)


def _pick_platform(images: list[ImageSource], wanted: str | None) -> list[ImageSource]:
    if not images:
        raise Abort("the reference names no image to scan")
    if wanted is None:
        return images
    exact = [i for i in images if i.platform == wanted]
    loose = exact or [i for i in images if (i.platform or "").startswith(wanted.rstrip("/") + "/")]
    if len(loose) == 1 or exact:
        return loose[:1]
    if not loose:
        raise Abort(f"no platform {wanted} in the image (it has: {_platforms(images)})")
    raise Abort(f"--platform {wanted} is ambiguous: {_platforms(loose)}")


def _read_layer(layer: LayerRef, advance: Callable[[int], None], detectors: Sequence[Detector]) -> LayerFacts:
    from dockyard.scanning.indexer import index_layer
    from dockyard.scanning.types import UnsafeInput

    try:
        with layer.open() as raw:
            reader = _Counted(raw, advance)
            stream = cast(BinaryIO, reader)
            facts = index_layer(stream, layer.digest, detectors, media_type=layer.media_type, prefetch=True)
            while reader.read(1 << 20):  # the digest is checked at the last byte: read past the tar's end
                pass
    except UnsafeInput as exc:
        raise Abort(f"layer {layer.digest} cannot be scanned safely: {exc}") from exc
    return facts


# ---- output -----------------------------------------------------------------------------------------------


def _write(output_format: Format, reference: str, results: list[Scanned], output: Path | None) -> None:
    if output_format is Format.TABLE:
        if output is None:
            _tables(reference, results, out)
        else:
            with output.open("w", encoding="utf-8") as fh:
                _tables(reference, results, Console(file=fh, width=200, no_color=True, soft_wrap=False))
        return
    text = _render(output_format, reference, results)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")


def _tables(reference: str, results: list[Scanned], console: Console) -> None:
    from dockyard.scanning.report import as_table

    for r in results:
        if len(results) > 1:
            console.rule(Text(f"{reference} {r.image.platform or ''}"))
        as_table(r.findings, r.index, console=console)
        if r.index.warnings:
            console.print(Text(f"{len(r.index.warnings)} warnings: see --format json", style="dim"))


def _render(output_format: Format, reference: str, results: list[Scanned]) -> str:
    from dockyard.scanning import (
        report,
    )  # the SBOM libraries only for the SBOM formats: they are slow to import

    if output_format is Format.JSON:
        documents = []
        for r in results:
            document = json.loads(report.as_json(reference, r.index, r.findings))
            document["image"]["digest"] = r.image.manifest_digest
            documents.append(document)
        return json.dumps(documents[0] if len(documents) == 1 else documents, indent=2)
    if output_format is Format.SARIF:
        logs = [json.loads(report.as_sarif(_label(reference, r, results), r.findings)) for r in results]
        for log, r in zip(logs, results, strict=True):
            log["runs"][0]["properties"].update(platform=r.image.platform, digest=r.image.manifest_digest)
        logs[0]["runs"] = [run for log in logs for run in log["runs"]]
        return json.dumps(logs[0], indent=2)
    from dockyard.scanning import sbom

    (r,) = results
    name, registry = sbom_name(reference)
    if output_format is Format.CYCLONEDX:
        return sbom.cyclonedx_json(name, r.image.manifest_digest, r.index, r.findings, registry=registry)
    return sbom.spdx_json(name, r.image.manifest_digest, r.index, registry=registry)


def _label(reference: str, r: Scanned, results: list[Scanned]) -> str:
    return f"{reference} ({r.image.platform})" if len(results) > 1 and r.image.platform else reference


def sbom_name(reference: str) -> tuple[str, str | None]:
    """The image name (and registry) an SBOM gives the image: ``acme/app:1.0`` and ``host:5000`` for
    ``docker://host:5000/acme/app:1.0``; the archive's NAME:TAG, or the directory or file name (and its ref)
    for local images."""
    transport, _, rest = reference.partition(":")
    if transport == "docker":
        from dockyard.scanning.sources.registry import parse_docker_ref  # httpx: only for docker://

        ref = parse_docker_ref(rest)
        return ref.repository + (f":{ref.tag}" if ref.tag else ""), ref.registry
    path, _, name = rest.partition(":")
    if transport == "docker-archive" and name and not name.startswith("@"):
        return name, None  # NAME:TAG, as `docker save` recorded it
    base = Path(path).name.lower() or "image"
    for suffix in (".tar", ".tgz", ".gz"):
        base = base.removesuffix(suffix)
    return (f"{base}:{name}" if name and not name.startswith("@") else base), None


def _summary(r: Scanned, several: bool) -> None:
    from dockyard.scanning.report import summary_line

    prefix = f"{r.image.platform}: " if several and r.image.platform else ""
    # Without advisories "0 findings" would read as a clean image: say that nothing was matched.
    unmatched = f"{len(r.index.components)} components, not matched"
    line = summary_line(r.findings, r.index) if r.matched else unmatched
    err.print(Text(prefix + line), soft_wrap=True)
