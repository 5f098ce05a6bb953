"""The product editor in a real browser (Debian's chromium driven by Playwright) against a live server: a
publisher with two pushed images creates a product, meets the field errors, fixes them, sees the live
character counter and the submit checklist, and finds the product in the list. A screenshot per step in
$DOCKYARD_TEST_ARTIFACTS/product-editor (default: test-artifacts/)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.support.live import LiveServer
from tests.support.registry_client import RegistryClient

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "publisher-pass-1"


def artifacts() -> Path:
    root = Path(os.environ.get("DOCKYARD_TEST_ARTIFACTS") or REPO / "test-artifacts")
    directory = root / "product-editor"
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.png"):
        old.unlink()
    return directory


def test_create_a_product_in_the_editor(tmp_path: Path, fresh_database_url: str, browser) -> None:
    shots = artifacts()
    step = iter(range(1, 100))
    live = LiveServer(tmp_path / "live-data", fresh_database_url).start()
    try:
        live.dockyard("user", "create", "ada", "--password", PASSWORD)
        live.dockyard("org", "create", "acme", "ada")
        with httpx.Client(base_url=live.url, follow_redirects=True) as http:
            registry = RegistryClient(http, "ada", PASSWORD)
            registry.push_image("acme/db-server", "16", [b"server layer"])
            registry.push_image("acme/db-agent", "1.4", [b"agent layer"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})

        def shot(name: str) -> None:
            page.screenshot(path=str(shots / f"{next(step):02d}-{name}.png"), full_page=True)

        page.goto(f"{live.url}/ui/login?next=/ui/orgs/acme/products")
        page.fill("#username", "ada")
        page.fill("#password", PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/ui/orgs/acme/products")
        shot("empty-list")
        page.get_by_role("link", name="New product").first.click()
        page.fill("#f-name", "Acme Database")
        page.fill("#f-slug", "acme-db")
        page.fill("#f-short_description", "x" * 150)
        assert page.inner_text("#short-count") == "150/140"  # the live counter
        page.select_option("#f-category", "Database")
        page.fill("#f-tags", "sql, database")
        page.fill("#f-long_description", "# Acme DB\n\nA **fast** database. <script>alert(1)</script>")
        page.fill("#f-install", "```sh\ndocker run acme/db\n```")
        page.check("input[name=compatibility][value=enterprise]")
        page.fill("[name='images[0].name']", "server")
        page.select_option("[name='images[0].repository']", "acme/db-server")
        page.fill("[name='images[0].tags']", "16")
        page.fill("[name='images[1].name']", "agent")
        page.select_option("[name='images[1].repository']", "acme/db-agent")
        page.fill("[name='images[1].tags']", "1.4, 2.0")
        page.fill("[name='tiers[0].name']", "Community")
        page.fill("[name='tiers[0].images']", "server")
        page.fill("[name='tiers[1].name']", "Enterprise")
        page.fill("[name='tiers[1].images']", "server, agent")
        page.check("input[name='tiers[1].price'][value=paid]")
        page.fill("[name='tiers[1].price.amount']", "4900")
        page.fill("[name='tiers[1].price.currency']", "USX")
        shot("filled-in")
        page.get_by_role("button", name="Preview the Markdown").click()
        assert page.locator(".markdown-preview strong").first.inner_text() == "fast"
        shot("preview")
        page.get_by_role("button", name="Create draft").click()
        assert page.inner_text("#f-short_description-error") == "at most 140 characters (150 given)"
        assert page.inner_text("[id='f-tiers[1].price.currency-error']") == "'USX' is not an ISO 4217 code"
        shot("field-errors")
        page.fill("#f-short_description", "A fast SQL database for containers.")
        page.fill("[name='tiers[1].price.currency']", "USD")
        page.get_by_role("button", name="Create draft").click()
        page.wait_for_url("**/ui/orgs/acme/products/acme-db/edit")
        assert "to fix before submitting" in page.inner_text(".flash")
        assert page.inner_text("[id='f-images[1].tags[1]-error']") == "'acme/db-agent' has no tag '2.0'"
        shot("saved-with-checklist")
        page.goto(f"{live.url}/ui/orgs/acme/products")
        assert "Acme Database" in page.inner_text("table")
        shot("list")
    finally:
        live.stop()
