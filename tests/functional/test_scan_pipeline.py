"""The scan pipeline over HTTP: a pushed manifest queues a scan job, the worker scans it (a real Debian
minbase image, an index with two platforms, a hostile layer), feed updates re-match without reading layers,
and the server runs the worker itself (in-process through the ASGI lifespan, and as a real granian server)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD, make_user
from tests.support.registry_client import (
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    RegistryClient,
    protocol_guard,
    sha256,
)
from tests.support.rootfs import cached_minbase_image, dpkg_query, extract, have
from tests.support.scanimages import (
    VULNDATA_DEBIAN,
    CountingOpens,
    config_blob,
    debian_layer,
    file_layer,
    osv_record,
    traversal_layer,
    write_feed,
)

from dockyard.config import Settings
from dockyard.db import make_engine, make_session_factory
from dockyard.events import Actor
from dockyard.jobs import Job, Worker
from dockyard.scanning.models import LayerIndex
from dockyard.scanning.reads import FindingView, ScanReads
from dockyard.scanning.services import ScanService
from dockyard.scanning.severity import classify
from dockyard.web.app import create_app
from dockyard.web.context import AppState

# Real records of flaws a bookworm minbase image has and Debian has not fixed (a rebuilt image keeps them).
KNOWN = {
    "CVE-2011-3374": "apt",
    "CVE-2005-2541": "tar",
    "CVE-2016-2781": "coreutils",
    "CVE-2023-45853": "zlib1g",
}
ZLIB = [("zlib1g", "1:1.2.13.dfsg-1", "zlib")]
STAFF = Actor(name="staff", kind="user")


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


@pytest.fixture
def reg(client, app_state) -> RegistryClient:
    with app_state.sessions.begin() as s:
        user = make_user(s).username
    return RegistryClient(client, user, PASSWORD)


@pytest.fixture
def worker(app, app_state: AppState) -> Worker:
    return Worker(app_state.sessions, app.state.jobs, bus=app_state.bus, services=app_state.services)


@pytest.fixture(scope="module")
def minbase(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory):
    if not have("umoci"):
        pytest.skip("umoci is not installed")
    cache = getattr(pytestconfig, "cache", None)
    return cached_minbase_image(
        cache.mkdir("dockyard-rootfs") if cache else tmp_path_factory.mktemp("rootfs")
    )


def service(state: AppState, session: Session) -> ScanService:
    return ScanService(session, state.blobs, state.bus, state.settings)


def push_image(reg: RegistryClient, name: str, tag: str, layers: list[bytes], arch: str = "amd64") -> str:
    manifest = reg.image_manifest(name, layers, config=config_blob(arch, len(layers)))
    r = reg.put_manifest(name, tag, manifest)
    assert r.status_code == 201, r.text
    return r.headers["docker-content-digest"]


def push_layout_image(reg: RegistryClient, name: str, tag: str, layout: Path, extra: list[bytes]) -> str:
    """Push an OCI layout's image blob by blob, with ``extra`` layers appended."""
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(layout, index["manifests"][0]["digest"]))
    for desc in [manifest["config"], *manifest["layers"]]:
        assert reg.push_blob(name, blob(layout, desc["digest"])) == desc["digest"]
    for layer in extra:
        digest = reg.push_blob(name, layer)
        manifest["layers"].append({"mediaType": OCI_LAYER, "digest": digest, "size": len(layer)})
    r = reg.put_manifest(name, tag, manifest)
    assert r.status_code == 201, r.text
    return r.headers["docker-content-digest"]


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def jobs(state: AppState, kind: str) -> list[Job]:
    with state.sessions() as s:
        return list(s.scalars(select(Job).where(Job.kind == kind).order_by(Job.id)))


def findings(state: AppState, digest: str, open_only: bool = True) -> dict[tuple[str, str], FindingView]:
    with state.sessions() as s:
        views = ScanReads(s).list_findings(digest=digest, state="open" if open_only else "all", limit=1000)
        return {(f.vulnerability, f.component): f for f in views}


def update_feed(state: AppState, *sources: Path) -> None:
    with state.sessions.begin() as s:
        service(state, s).update_vulndb(list(sources), STAFF)


def test_a_pushed_image_is_scanned_by_a_job_and_rematched_after_feed_updates(
    reg: RegistryClient, app_state: AppState, worker: Worker, minbase, tmp_path: Path
) -> None:
    tar, image = minbase
    base = image.layers[0].digest
    update_feed(app_state, *(next(VULNDATA_DEBIAN.rglob(f"{cve}.json")) for cve in KNOWN))
    assert worker.run_until_idle() == 1  # the re-match after the update: no image yet
    opens = CountingOpens(app_state.blobs)

    name = f"{reg.username}/debian"
    digest = push_layout_image(reg, name, "bookworm", image.layout, [])
    (queued,) = jobs(app_state, "scan.manifest")
    assert (queued.status, queued.payload["digest"], queued.payload["repository"]) == ("queued", digest, name)
    with app_state.sessions() as s:
        assert service(app_state, s).image_report(name, "bookworm").status == "queued"
    started = time.monotonic()
    assert worker.run_until_idle() == 1
    print(f"minbase pushed over HTTP, scanned by the job: {time.monotonic() - started:.2f}s")
    assert opens.counts[base] == 1

    with app_state.sessions() as s:
        scans = service(app_state, s)
        report = scans.image_report(name, "bookworm")
        components = scans.components(digest)
    assert (report.status, report.os["ecosystem"], report.platform) == ("done", "Debian:12", "linux/amd64")
    if have("dpkg-query"):
        root = extract(tar, tmp_path / "root", "./var/lib/dpkg")
        assert sorted(f"{c.name} {c.version}" for c in components) == sorted(dpkg_query(root))
    found = {(f.vulnerability, f.component): f for f in report.findings}
    for cve, package in KNOWN.items():
        f = found[(cve, package)]
        assert f.layer == base and f.fixed_version is None and f.installed
        assert f.severity == classify(f.score).value and (f.score is None) == (f.vector is None)
    assert (found[("CVE-2011-3374", "apt")].score, found[("CVE-2023-45853", "zlib1g")].severity) == (
        3.7,
        "Critical",
    )
    assert {f.vulnerability for f in report.findings} == set(KNOWN)  # only what was ingested
    assert sum(report.counts.values()) == len(report.findings)

    # A second image on the same base layer: the base is not read again.
    other = f"{reg.username}/app"
    second = push_layout_image(reg, other, "v1", image.layout, [file_layer("srv/app/hello.txt", "hi")])
    assert worker.run_until_idle() == 1
    assert opens.counts[base] == 1
    with app_state.sessions() as s:
        assert ScanReads(s).get_scan(second).status == "done"
        assert len(s.scalars(select(LayerIndex.digest)).all()) == 2
    assert set(findings(app_state, second)) == set(findings(app_state, digest))

    # The feed learns of a new flaw in apt, then withdraws it: no layer is read.
    reads = sum(opens.counts.values())
    feed = tmp_path / "feed"
    update_feed(app_state, write_feed(feed, osv_record("CVE-2031-4242", "apt")))
    assert [j.status for j in jobs(app_state, "scan.rematch_all")] == ["done", "queued"]
    assert worker.run_until_idle() == 1
    for d in (digest, second):
        new = findings(app_state, d)[("CVE-2031-4242", "apt")]
        assert (
            new.first_seen_at > found[("CVE-2011-3374", "apt")].first_seen_at and new.severity == "Critical"
        )
    later = dt.datetime(2030, 6, 1)
    update_feed(
        app_state, write_feed(feed, osv_record("CVE-2031-4242", "apt", modified=later, withdrawn=later))
    )
    assert worker.run_until_idle() == 1
    for d in (digest, second):
        gone = findings(app_state, d, open_only=False)[("CVE-2031-4242", "apt")]
        assert gone.resolved_at is not None and gone.resolved_at > gone.first_seen_at
        assert ("CVE-2031-4242", "apt") not in findings(app_state, d)
    assert sum(opens.counts.values()) == reads


def test_an_index_pushed_over_http_scans_both_platforms(
    reg: RegistryClient, app_state: AppState, worker: Worker
) -> None:
    update_feed(app_state, next(VULNDATA_DEBIAN.rglob("CVE-2023-45853.json")))
    assert worker.run_until_idle() == 1
    name = f"{reg.username}/multi"
    amd64 = push_image(reg, name, "amd64", [debian_layer(ZLIB, "amd64")], "amd64")
    arm64 = push_image(reg, name, "arm64", [debian_layer([*ZLIB, ("apt", "2.6.1", None)], "arm64")], "arm64")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d, "size": size(reg, name, d), "platform": p}
            for d, p in (
                (amd64, {"os": "linux", "architecture": "amd64"}),
                (arm64, {"os": "linux", "architecture": "arm64"}),
            )
        ],
    }
    r = reg.put_manifest(name, "latest", index, OCI_INDEX)
    assert r.status_code == 201, r.text
    assert len(jobs(app_state, "scan.manifest")) == 3
    assert worker.run_until_idle() == 3
    with app_state.sessions() as s:
        report = service(app_state, s).image_report(name, "latest")
    assert (report.kind, report.status) == ("index", "done")
    assert [(p.digest, p.platform, p.status) for p in report.platforms] == [
        (amd64, "linux/amd64", "done"),
        (arm64, "linux/arm64", "done"),
    ]
    assert {(f.image_digest, f.vulnerability, f.component) for f in report.findings} == {
        (amd64, "CVE-2023-45853", "zlib1g"),
        (arm64, "CVE-2023-45853", "zlib1g"),
    }
    assert report.counts == {"Critical": 1, "Major": 0, "Minor": 0, "Unscored": 0}  # one flaw, two platforms


def size(reg: RegistryClient, name: str, digest: str) -> int:
    return len(reg.get_manifest(name, digest).content)


def test_a_hostile_layer_fails_its_scan_and_nothing_else(
    reg: RegistryClient, client: TestClient, app_state: AppState, worker: Worker
) -> None:
    name = f"{reg.username}/bad"
    digest = push_image(reg, name, "v1", [debian_layer(ZLIB), traversal_layer()])
    assert worker.run_until_idle() == 1
    with app_state.sessions() as s:
        scan = ScanReads(s).get_scan(digest)
        assert scan.status == "error" and "traversal" in scan.error
    assert [j.status for j in jobs(app_state, "scan.manifest")] == ["done"]  # a result, not a failed job
    assert client.get("/healthz").status_code == 200
    good = push_image(reg, name, "v2", [debian_layer(ZLIB)])
    assert worker.run_until_idle() == 1
    with app_state.sessions() as s:
        assert ScanReads(s).get_scan(good).status == "done"


def test_a_scan_that_keeps_failing_says_so_when_its_job_gives_up(
    reg: RegistryClient, app_state: AppState, worker: Worker
) -> None:
    name = f"{reg.username}/lost"
    layer = debian_layer(ZLIB)
    digest = push_image(reg, name, "v1", [layer])
    app_state.blobs.delete(sha256(layer))  # the bytes are gone (a broken disk, a bad restore)
    with app_state.sessions.begin() as s:
        s.execute(update(Job).values(max_attempts=2))
    assert worker.run_until_idle() == 1
    (job,) = jobs(app_state, "scan.manifest")
    assert (job.status, job.attempts) == ("queued", 1) and "FileNotFoundError" in job.error  # retried later
    with app_state.sessions.begin() as s:
        s.execute(update(Job).values(run_after=dt.datetime(2000, 1, 1)))
    assert worker.run_until_idle() == 1
    (job,) = jobs(app_state, "scan.manifest")
    assert (job.status, job.attempts) == ("failed", 2)
    with app_state.sessions() as s:
        scan = ScanReads(s).get_scan(digest)
        assert scan.status == "error" and scan.error.startswith("scan failed: FileNotFoundError")


def test_the_app_runs_its_job_worker_when_settings_ask(settings: Settings, app_state: AppState) -> None:
    app = create_app(dataclasses.replace(settings, job_workers=1), state=app_state)
    with TestClient(app, base_url="http://127.0.0.1:5999") as client:
        assert len(app.state.workers) == 1
        with app_state.sessions.begin() as s:
            user = make_user(s).username
        reg = RegistryClient(client, user, PASSWORD)
        digest = push_image(reg, f"{user}/auto", "v1", [debian_layer(ZLIB)])
        assert wait_for_scan(lambda: scan_status(app_state.sessions, digest)) == "done"
    assert app.state.workers[0]._thread is None  # stopped with the lifespan


@pytest.mark.slow
def test_a_live_server_scans_what_is_pushed(live_server) -> None:
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        reg = RegistryClient(http, "admin", live_server.admin_password)
        digest = push_image(reg, "admin/auto", "v1", [debian_layer(ZLIB)])
        engine = make_engine(live_server.database_url)
        try:
            sessions = make_session_factory(engine)
            assert wait_for_scan(lambda: scan_status(sessions, digest)) == "done"
        finally:
            engine.dispose()


def scan_status(sessions: Any, digest: str) -> str | None:
    with sessions() as s:
        scan = ScanReads(s).get_scan(digest)
        return scan.status if scan else None


def wait_for_scan(status: Any, timeout: float = 30) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = status()
        if current in ("done", "error", "skipped"):
            return current
        time.sleep(0.05)
    return status()
