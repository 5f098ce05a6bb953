"""The scan page in a real browser (Debian's chromium driven by Playwright) against a live server: log in,
open the scan of a pushed image the server's own job worker scanned, see the findings, filter by class."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.registry_client import RegistryClient
from tests.support.scanimages import config_blob, debian_layer, osv_record, write_feed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
MINOR = "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"
PASSWORD = "browser-pass-e2e-1"


def wait_for_done(http: httpx.Client, path: str, auth: tuple[str, str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        r = http.get(path, auth=auth)
        body = r.json()
        if r.status_code == 200 and body["status"] in ("done", "error", "skipped"):
            return body
        time.sleep(0.2)
    return body


def test_a_member_logs_in_sees_findings_and_filters_them(live_server, browser, tmp_path: Path) -> None:
    feed = write_feed(
        tmp_path / "feed",
        osv_record("CVE-2031-1111", "zlib", vector=CRITICAL),
        osv_record("CVE-2031-2222", "foo", vector=MINOR, fixed="1.0-2"),
    )
    live_server.dockyard("vulndb", "update", "--source", str(feed))

    admin = ("admin", live_server.admin_password)
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        r = http.post("/api/v1/users", json={"username": "pub", "password": PASSWORD}, auth=admin)
        assert r.status_code == 201, r.text
        assert http.post("/api/v1/orgs", json={"name": "acme"}, auth=("pub", PASSWORD)).status_code == 201
        reg = RegistryClient(http, "pub", PASSWORD)
        layers = [debian_layer([("zlib1g", "1:1.2.13.dfsg-1", "zlib"), ("libfoo1", "1.0-1", "foo")])]
        manifest = reg.image_manifest("acme/web", layers, config=config_blob("amd64", 1))
        assert reg.put_manifest("acme/web", "v1", manifest).status_code == 201
        report = wait_for_done(http, "/api/v1/repositories/acme/web/scans/v1", ("pub", PASSWORD))
    assert report.get("status") == "done", report
    assert report["counts"]["Critical"] == 1 and report["counts"]["Minor"] == 1

    page = browser.new_page()
    page.goto(f"{live_server.url}/ui/repositories/acme/web/-/scans/v1")
    assert "/ui/login" in page.url  # not logged in yet
    page.fill("#username", "pub")
    page.fill("#password", PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_selector("#findings")
    assert page.url.endswith("/ui/repositories/acme/web/-/scans/v1")
    rows = page.locator("#findings tbody tr")
    assert rows.count() == 2
    text = page.inner_text("#findings")
    assert "CVE-2031-1111" in text and "CVE-2031-2222" in text and "zlib1g" in text
    assert "Critical: 1" in page.inner_text("#counts")

    with page.expect_navigation():
        page.select_option("#severity", "Minor")
    assert "severity=Minor" in page.url
    text = page.inner_text("#findings")
    assert "CVE-2031-2222" in text and "CVE-2031-1111" not in text
    assert page.locator("#findings tbody tr").count() == 1

    with page.expect_navigation():
        page.click("text=Sign out")
    page.goto(f"{live_server.url}/ui/repositories/acme/web/-/scans/v1")
    assert "/ui/login" in page.url
