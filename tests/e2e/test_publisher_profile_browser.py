"""The publisher profile in a real browser (Debian's chromium driven by Playwright) against a live server
whose mail goes to aiosmtpd on loopback: an owner opens the profile from the organisation page, makes
mistakes (shown beside their fields), uploads a logo (previewed before it is sent), accepts the agreement,
confirms the company address through the mailed link, and sees the profile complete.

Each step leaves a full-page screenshot in $DOCKYARD_TEST_ARTIFACTS/publisher-profile (default:
test-artifacts/ at the repository's root)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.test_account_flow_browser import mailed_link
from tests.support.live import LiveServer
from tests.support.pictures import picture
from tests.support.smtpd import smtp_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


SCREENSHOTS = "publisher-profile"


def test_an_owner_completes_the_publisher_profile(
    tmp_path: Path, fresh_database_url: str, browser, screenshot
) -> None:
    small, logo = tmp_path / "small.png", tmp_path / "logo.png"
    small.write_bytes(picture(511, 511))
    logo.write_bytes(picture(640, 640, mode="RGBA"))

    with smtp_server() as smtp:
        env = {"DOCKYARD_SMTP_URL": smtp.url(query="timeout=5"), "DOCKYARD_JOB_WORKERS": "1"}
        live = LiveServer(tmp_path / "live-data", fresh_database_url, extra_env=env).start()
        try:
            admin = ("admin", live.admin_password)
            r = httpx.post(f"{live.url}/api/v1/orgs", json={"name": "acme"}, auth=admin)
            assert r.status_code == 201, r.text
            page = browser.new_page(viewport={"width": 1280, "height": 800})

            def shot(name: str) -> None:
                screenshot(page, name)

            page.goto(f"{live.url}/ui/login")
            page.fill("#username", "admin")
            page.fill("#password", live.admin_password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/ui/")
            page.goto(f"{live.url}/ui/orgs/acme")
            shot("organisation-page")
            page.get_by_role("link", name="Publisher profile").click()
            page.wait_for_url("**/ui/orgs/acme/publisher")
            assert "7 things are missing" in page.inner_text("main")
            shot("empty-profile")

            # Mistakes, each shown beside its field.
            page.fill("#legal_name", "Acme Software Ltd")
            page.fill("#website", "acme.example")
            page.fill("#phone", "020 7946 0958")
            page.fill("#email", "store@acme.example")
            page.set_input_files("#logo", str(small))
            page.get_by_role("button", name="Save profile").click()
            for field in ("website", "phone", "logo"):
                assert page.locator(f"#{field}-error").is_visible(), field
            assert "it is 511x511" in page.inner_text("#logo-error")
            shot("profile-with-mistakes")

            # Right this time: the chosen logo is previewed before it is sent.
            page.fill("#website", "https://acme.example")
            page.fill("#phone", "+44 20 7946 0958")
            page.fill("#story", "# Acme\n\nWe make **fast SQL databases** for containers since 2009.")
            page.set_input_files("#logo", str(logo))
            # (no wait_for_function: the CSP forbids eval)
            expect(page.locator("#logo-preview")).to_have_attribute("src", re.compile(r"^data:image/"))
            page.check("#accept_agreement")
            shot("profile-filled-in")
            page.get_by_role("button", name="Save profile").click()
            page.wait_for_url("**/ui/orgs/acme/publisher")
            main = page.inner_text("main")
            assert "A confirmation link is on its way to store@acme.example" in main
            assert "1 thing is missing" in main
            shot("profile-saved-email-unconfirmed")

            link = mailed_link(smtp.collector, 1, "/ui/publisher-email/verify")
            assert smtp.collector.received[0].recipients == ["store@acme.example"]
            page.goto(link)
            shot("confirm-company-email")
            page.get_by_role("button", name="Confirm company address").click()
            assert "is now the confirmed company email address" in page.inner_text("main")
            shot("company-email-confirmed")
            page.goto(link)
            assert "used already" in page.inner_text("main")
            shot("link-used")

            page.goto(f"{live.url}/ui/orgs/acme/publisher")
            assert "Nothing is missing" in page.inner_text("main")
            shot("profile-complete")
        finally:
            live.stop()
