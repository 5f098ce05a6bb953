"""Fixtures for end-to-end tests with real clients: one live server per test module (tests in a module use
their own repositories, so they do not interfere), images built once per session, isolated clients, and a
real browser (Debian's chromium driven by Playwright) with numbered full-page screenshots."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from dockyard.audit.models import AuditEvent
from tests.conftest import _migrated_database_url, drop_database
from tests.e2e.clients import Account, Clients
from tests.support.images import ImageCache
from tests.support.live import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

PASSWORD_SUFFIX = "-pass-e2e-1"


@dataclass
class E2EServer:
    """A live dockyard plus the account shorthands the tests need (JSON API; the CLI where it matters)."""

    live: LiveServer

    @property
    def host(self) -> str:
        return self.live.host

    @property
    def url(self) -> str:
        return self.live.url

    @property
    def admin(self) -> Account:
        return Account("admin", self.live.admin_password)

    def ref(self, name: str) -> str:
        """``docker://HOST/NAME`` (NAME may carry ``:tag`` or ``@digest``)."""
        return f"docker://{self.host}/{name}"

    def api(self, method: str, path: str, auth: Account, body: dict | None = None) -> dict:
        r = httpx.request(
            method, f"{self.url}/api/v1{path}", json=body, auth=(auth.username, auth.password), timeout=60
        )
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else {}

    def user(self, username: str) -> Account:
        """A new user (and personal namespace) with a password and an access token."""
        password = username + PASSWORD_SUFFIX
        self.api("POST", "/users", self.admin, {"username": username, "password": password})
        token = self.api("POST", "/tokens", Account(username, password), {"name": "e2e"})["token"]
        return Account(username, password, token)

    def org(self, name: str, owner: Account, **members: str) -> None:
        """Create organisation ``name`` owned by ``owner``; ``members`` maps usernames to roles."""
        self.api("POST", "/orgs", owner, {"name": name})
        for username, role in members.items():
            self.api("PUT", f"/orgs/{name}/members/{username}", owner, {"role": role})

    def get_manifest(self, name: str, reference: str, account: Account) -> httpx.Response:
        """GET a manifest directly (token flow by hand) to see what the registry serves."""
        token = httpx.get(
            f"{self.url}/token",
            params={"service": "dockyard", "scope": f"repository:{name}:pull"},
            auth=(account.username, account.token or account.password),
            timeout=60,
        ).json()["token"]
        return httpx.get(
            f"{self.url}/v2/{name}/manifests/{reference}",
            headers={"Authorization": f"Bearer {token}", "Accept": "*/*"},
            timeout=60,
        )

    def delivered(self, at_least: float = 0) -> float:
        """Blob bytes the delivery server has sent (every blob GET redirects there, LiveServer's port);
        waits a moment for ``at_least``, since a transfer is counted just after its last byte."""
        deadline = time.monotonic() + 5
        while True:
            text = httpx.get(f"{self.url}/metrics", timeout=60).text
            sent = next(
                (
                    sample.value
                    for family in text_string_to_metric_families(text)
                    for sample in family.samples
                    if sample.name == "dockyard_blob_delivery_sent_bytes_total"
                ),
                0.0,
            )
            if sent >= at_least or time.monotonic() > deadline:
                return sent
            time.sleep(0.05)

    def robot(self, org: str, name: str, role: str) -> Account:
        """``dockyard robot create``: the robot's login is ``org+name``."""
        out = json.loads(self.live.dockyard("robot", "create", org, name, "--role", role).stdout)
        return Account(out["username"], out["secret"])

    def set_public(self, repository: str, public: bool = True) -> None:
        """``dockyard repo visibility``."""
        self.live.dockyard("repo", "visibility", repository, "--public" if public else "--private")

    def audit(self, tag: str, repository: str | None = None) -> list[AuditEvent]:
        """Audit events the server recorded with ``tag`` (for ``repository``), oldest first."""
        engine = create_engine(self.live.database_url)
        try:
            query = select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.id)
            if repository is not None:
                query = query.where(AuditEvent.repository == repository)
            with Session(engine) as session:
                events = list(session.scalars(query))
                session.expunge_all()
                return events
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> ImageCache:
    """Images built once per session; the Debian base layer starts downloading at once."""
    cache = ImageCache(tmp_path_factory.mktemp("images"))
    if shutil.which("mmdebstrap"):
        cache.prefetch_debian()
    return cache


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EServer]:
    """A dockyard process shared by one test module, with its own data dir and database."""
    tmp = tmp_path_factory.mktemp("e2e-server")
    database_url = _migrated_database_url(tmp, "e2e")
    live = LiveServer(tmp / "live-data", database_url).start()
    try:
        yield E2EServer(live)
    finally:
        live.stop()
        drop_database(database_url)


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[Clients]:
    """skopeo and podman with their own HOME, auth file, containers config and storage."""
    c = Clients(tmp_path / "clients")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def oci_dir(tmp_path: Path) -> Callable[[str], Path]:
    """A fresh OCI layout path under the test's directory (``skopeo copy ... oci:PATH:REF``)."""

    def make(name: str) -> Path:
        (tmp_path / "oci").mkdir(exist_ok=True)
        return tmp_path / "oci" / name

    return make


REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="package")
def _chromium() -> Iterator[dict[str, Any]]:
    """Playwright and one chromium for the tests of this package (starting them took 2-2.5 s per test).
    Package scope, not session: Playwright's sync API keeps its event loop on the main thread while it
    runs, so it must be gone before the tests elsewhere that run event loops of their own (and no test here
    may start a second one)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        held: dict[str, Any] = {"playwright": p, "executable": chromium, "browser": None}
        try:
            yield held
        finally:
            if held["browser"] is not None and held["browser"].is_connected():
                held["browser"].close()


@pytest.fixture
def browser(_chromium: dict[str, Any]) -> Iterator[Browser]:
    """Debian's chromium driven by Playwright (``executable_path``: Playwright's own builds are not
    installed); the test is skipped where chromium or Playwright is missing. The package's one chromium,
    started again if an earlier test brought it down; every context a test opened is closed after it (they
    share no cookies or storage while open)."""
    launched = _chromium["browser"]
    if launched is None or not launched.is_connected():
        launched = _chromium["playwright"].chromium.launch(
            executable_path=_chromium["executable"], args=CHROMIUM_ARGS
        )
        _chromium["browser"] = launched
    try:
        yield launched
    finally:
        for context in list(launched.contexts):
            context.close()


def artifacts_dir(name: str) -> Path:
    """``$DOCKYARD_TEST_ARTIFACTS/NAME`` (default: test-artifacts/ at the repository's root), made."""
    directory = Path(os.environ.get("DOCKYARD_TEST_ARTIFACTS") or REPO / "test-artifacts") / name
    directory.mkdir(parents=True, exist_ok=True)
    return directory


class Screenshots:
    """``screenshot(page, name)``: a full-page PNG ``NN-name.png`` in ``artifacts_dir(folder)``, numbered in
    the order taken, for people to look at what users see. The first one empties the folder of an earlier
    run's PNGs (not before: a skipped test leaves them), so that what is there is what one run saw."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.taken = 0

    def __call__(self, page: Page, name: str) -> Path:
        directory = artifacts_dir(self.folder)
        if not self.taken:
            for old in directory.glob("*.png"):
                old.unlink()
        self.taken += 1
        path = directory / f"{self.taken:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="module")
def screenshot(request: pytest.FixtureRequest) -> Screenshots:
    """Screenshots of one test module, under ``artifacts_dir(SCREENSHOTS)`` where the module sets
    ``SCREENSHOTS``, else its name without ``test_`` (``test_publish_browser`` -> ``publish-browser``);
    numbered across the module's tests."""
    module = request.module
    default = module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    return Screenshots(getattr(module, "SCREENSHOTS", default))
