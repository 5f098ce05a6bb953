"""The registry browser in a real browser (Debian's chromium driven by Playwright) against a live server: sign
in, go from the dashboard to a namespace, a repository (filtering its tags as one types), a manifest and its
scan report, then delete a tag through its confirmation page. Every step is saved as a full-page screenshot
under $DOCKYARD_TEST_ARTIFACTS (default: test-artifacts/ at the repository's root), for people to look at."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.browse_world import push_world
from tests.support.scanimages import osv_record, write_feed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
MINOR = "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"
PASSWORD = "browser-pass-e2e-1"
SCREENSHOTS = "registry-browser"


def wait_for_scans(http: httpx.Client, repo: str, tags: list[str], auth: tuple[str, str]) -> None:
    deadline = time.monotonic() + 90
    pending = list(tags)
    while pending and time.monotonic() < deadline:
        r = http.get(f"/api/v1/repositories/{repo}/scans/{pending[0]}", auth=auth)
        if r.status_code == 200 and r.json()["status"] in ("done", "error", "skipped"):
            pending.pop(0)
        else:
            time.sleep(0.2)
    assert not pending, f"scans of {pending} did not finish"


def test_browse_from_the_dashboard_to_a_scan_and_delete_a_tag(
    live_server, browser, screenshot, tmp_path: Path
) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    feed = write_feed(
        tmp_path / "feed",
        osv_record("CVE-2031-1111", "zlib", vector=CRITICAL),
        osv_record("CVE-2031-2222", "foo", vector=MINOR, fixed="1.0-2"),
    )
    live_server.dockyard("vulndb", "update", "--source", str(feed))
    admin, owner = ("admin", live_server.admin_password), ("pub", PASSWORD)
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        r = http.post("/api/v1/users", json={"username": "pub", "password": PASSWORD}, auth=admin)
        assert r.status_code == 201, r.text
        assert http.post("/api/v1/orgs", json={"name": "acme"}, auth=owner).status_code == 201
        pushed = push_world(http, *owner, "acme")
        wait_for_scans(http, pushed.repo, ["v1", "v2", "multi"], owner)

    page = browser.new_page(viewport={"width": 1280, "height": 860})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{live_server.url}/ui/login")
    page.fill("#username", "pub")
    page.fill("#password", PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_url("**/ui/")
    assert "acme" in page.inner_text(".namespace-cards") and "owner" in page.inner_text(".namespace-cards")
    screenshot(page, "dashboard")

    page.click(".namespace-cards >> text=acme")
    page.wait_for_selector("#repositories")
    assert page.locator("#repositories tbody tr").count() == 2
    screenshot(page, "namespace")

    page.click("#repositories >> text=app")
    page.wait_for_selector("#tags")
    assert page.locator("#tags tbody tr").count() == 3
    assert "1 Critical" in page.inner_text("#tags tr[data-tag=v1]")
    screenshot(page, "repository")

    # The filter swaps just the list (htmx), and the address follows.
    page.fill("#tag-filter", "mul")
    expect(page.locator("#tags tbody tr")).to_have_count(1)  # (no wait_for_function: the CSP forbids eval)
    assert "q=mul" in page.url and "linux/arm64/v8" in page.inner_text("#tags")
    assert "1 tag matching" in page.inner_text("#tag-status")
    screenshot(page, "repository-filtered")
    page.fill("#tag-filter", "")
    expect(page.locator("#tags tbody tr")).to_have_count(3)

    page.click("#tags >> text=v1")
    page.wait_for_selector("#layers")
    assert pushed.v1 in page.inner_text("main")
    assert "application/vnd.example.sbom.v1+json" in page.inner_text("#referrers")
    screenshot(page, "manifest")

    page.click("text=Scan report")
    page.wait_for_selector("#findings")
    assert "CVE-2031-1111" in page.inner_text("#findings")
    screenshot(page, "scan")

    page.goto(f"{live_server.url}/ui/repositories/{pushed.repo}/-/manifests/{pushed.index}")
    page.wait_for_selector("#platforms")
    screenshot(page, "index")

    page.goto(f"{live_server.url}/ui/repositories/{pushed.repo}")
    page.click("#tags tr[data-tag=v2] >> text=Delete")
    page.wait_for_selector(".confirm-card")
    assert "Delete tag v2?" in page.inner_text("h1")
    screenshot(page, "delete-tag-confirm")
    page.click(".confirm-card button.danger")
    page.wait_for_selector(".flash.success")
    assert "Tag v2 was deleted" in page.inner_text(".flash.success")
    assert page.locator("#tags tbody tr").count() == 2
    screenshot(page, "tag-deleted")

    page.goto(f"{live_server.url}/ui/repositories/{pushed.repo}/-/manifests/{pushed.v1}/delete")
    assert "1 referrer" in page.inner_text(".confirm-card")
    screenshot(page, "delete-manifest-confirm")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/ui/repositories/{pushed.repo}")
    screenshot(page, "repository-narrow")
    page.goto(f"{live_server.url}/ui/repositories/{pushed.repo}/-/manifests/{pushed.v1}")
    screenshot(page, "manifest-narrow")

    # Someone signed out sees the public repository, without scan results or changes.
    anonymous = browser.new_page(viewport={"width": 1280, "height": 860})
    anonymous.goto(f"{live_server.url}/ui/namespaces/acme")
    assert anonymous.locator("#repositories tbody tr").count() == 1
    anonymous.click("#repositories >> text=public-tools")
    anonymous.wait_for_selector("#tags")
    assert "Vulnerabilities" not in anonymous.inner_text("main")
    assert "Delete" not in anonymous.inner_text("main")
    screenshot(anonymous, "public-repository-anonymous")
    assert not errors, errors
