"""A customer's whole way through the store, in a real browser (Debian's chromium driven by Playwright),
on the demo store (`dockyard demo`) of a live server whose mail goes to a real SMTP server on loopback:
sign up and confirm the address, search with the certified-only filter off and on, open a product and
find every item of its manifest on the page, get its free tier, and pull the image with skopeo using the
command the subscriptions page shows. axe-core checks the home, search, product and subscriptions pages.

Screenshots of each step in $DOCKYARD_TEST_ARTIFACTS/customer-journey (default: test-artifacts/)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from dockyard.demo.catalog import PRODUCTS
from dockyard.demo.seed import PASSWORD as DEMO_PASSWORD
from dockyard.demo.seed import manifest
from tests.e2e.clients import Clients, require_tools
from tests.support.axe import assert_accessible
from tests.support.live import LiveServer
from tests.support.smtpd import smtp_server

require_tools("skopeo")
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOTS = "customer-journey"
PASSWORD = "dana-first-password-1"
# Certified, with a free tier, two images, screenshots, support and SLA: every manifest item is there.
PRODUCT = next(p for p in PRODUCTS if p.slug == "tidepool-db")


def mailed_link(collector, path: str, to: str) -> str:
    """The link to ``path`` in the first mail to ``to`` (the demo's own mail to its reviewers goes by)."""
    deadline = time.monotonic() + 60
    while not (mails := [r for r in collector.received if to in r.recipients]):
        assert time.monotonic() < deadline, f"no mail to {to}"
        time.sleep(0.1)
    text = mails[0].message.get_body(("plain",)).get_content()
    found = re.search(rf"http://\S+{re.escape(path)}\?token=[A-Za-z0-9_-]+", text)
    assert found, text
    return found.group(0)


def result_names(page) -> list[str]:
    return page.locator(".result-list .result-name").all_inner_texts()


def test_a_customer_finds_gets_and_pulls_a_product(
    tmp_path: Path, fresh_database_url: str, browser, screenshot
) -> None:
    with smtp_server() as smtp:
        env = {"DOCKYARD_SMTP_URL": smtp.url(query="timeout=5"), "DOCKYARD_JOB_WORKERS": "1"}
        live = LiveServer(tmp_path / "live-data", fresh_database_url, extra_env=env).start()
        try:
            seeded = live.dockyard("demo")
            assert "21 on the store" in seeded.stdout, seeded.stdout
            # bypass_csp: axe-core is injected as a script the page's policy would refuse.
            context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
            page = context.new_page()

            # The home page: categories with counts, certified products, newest, most downloaded.
            page.goto(f"{live.url}/")
            expect(page.get_by_role("heading", name="Certified products")).to_be_visible()
            expect(page.get_by_role("heading", name="Most downloaded")).to_be_visible()
            screenshot(page, "home")
            assert_accessible(page, "home")

            # Sign up, confirm the address from the mail, sign in.
            page.get_by_role("link", name="Create account").first.click()
            page.fill("#username", "dana")
            page.fill("#email", "dana@example.org")
            page.fill("#password", PASSWORD)
            page.fill("#confirm", PASSWORD)
            page.get_by_role("button", name="Create account").click()
            page.wait_for_url("**/ui/verify-email/resend")
            page.goto(mailed_link(smtp.collector, "/ui/verify-email", "dana@example.org"))
            page.get_by_role("button", name="Confirm email address").click()
            page.wait_for_url("**/ui/login")
            page.fill("#username", "dana")
            page.fill("#password", PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(re.compile(r".*/(ui/)?$"))
            screenshot(page, "signed-in")

            # Search from the top bar; then only certified products.
            page.goto(f"{live.url}/")
            box = page.get_by_role("searchbox").first
            box.fill("database")
            box.press("Enter")
            page.wait_for_url("**/search?**")
            everything = result_names(page)
            assert PRODUCT.name in everything and "Chronos TSDB" in everything, everything
            screenshot(page, "search")
            assert_accessible(page, "search")
            page.get_by_role("link", name=re.compile("Certified only")).click()
            page.wait_for_url("**certified=1**")
            certified = result_names(page)
            assert certified and set(certified) < set(everything), (certified, everything)
            assert "Chronos TSDB" not in certified and PRODUCT.name in certified
            assert page.locator(".result-list .result-card").count() == len(certified)
            for card in page.locator(".result-list .result-card").all():
                expect(card.locator(".badge.ok")).to_have_text("Certified")
            screenshot(page, "search-certified-only")

            # The product page: every item of the manifest.
            page.get_by_role("link", name=PRODUCT.name).first.click()
            page.wait_for_url(f"**/products/{PRODUCT.org}/{PRODUCT.slug}")
            data = manifest(PRODUCT, 0, [])
            main = page.locator("main")
            expect(page.get_by_role("heading", level=1)).to_have_text(PRODUCT.name)
            expect(main.locator(".product-head img").first).to_be_visible()  # the logo
            expect(main).to_contain_text(PRODUCT.short)
            expect(main).to_contain_text(PRODUCT.category)
            for tag in PRODUCT.tags:
                expect(main.locator(".tag-list")).to_contain_text(tag)
            expect(main.locator("#overview")).to_contain_text("Features")  # the long description, rendered
            expect(main.locator("#screenshots .gallery img")).to_have_count(2)
            expect(main.locator("#support")).to_contain_text(data["support"]["email"])
            expect(main.locator("#support")).to_contain_text(data["support"]["sla"]["hours"])
            expect(main.locator(f'a[href="{data["support"]["url"]}"]').first).to_be_visible()
            for tier in data["tiers"]:
                expect(main.locator("#tiers")).to_contain_text(tier["name"])
            expect(main.locator("#tiers")).to_contain_text("Free")
            expect(main.locator("#tiers")).to_contain_text("$49.00 / month")
            expect(main.locator("#install")).to_contain_text(f"docker run -d --name {PRODUCT.slug}")
            expect(main.locator(f'a[href="{data["license_url"]}"]').first).to_be_visible()
            expect(main.locator(".store-badge").first).to_be_visible()
            for image in PRODUCT.images:
                expect(main.locator("#images")).to_contain_text(f"store/{PRODUCT.org}/{PRODUCT.slug}/{image}")
            assert f"{PRODUCT.org}/{PRODUCT.slug}-server" not in page.content()  # never the staging path
            screenshot(page, "product")
            assert_accessible(page, "product")

            # Get the free tier: accept the licence; the subscriptions page shows the commands.
            page.locator("#tiers").get_by_role("link", name="Get").first.click()
            page.get_by_label("I accept the licence").check()
            page.get_by_role("button", name="Get Community").click()
            page.wait_for_url("**/ui/subscriptions#entitlement-*")
            expect(page.locator("main")).to_contain_text(PRODUCT.name)
            screenshot(page, "subscriptions")
            assert_accessible(page, "subscriptions")
            command = page.locator("pre code", has_text="skopeo copy").first.inner_text()

            # The pull, with the command as shown (the customer's credentials, a destination of ours).
            shown = re.search(
                rf"docker://{re.escape(live.host)}/store/{PRODUCT.org}/{PRODUCT.slug}/server:\S+", command
            )
            assert shown, command
            reference = shown.group(0)
            argv = command.split()
            argv[-1] = f"oci:{tmp_path / 'pulled'}:pulled"
            clients = Clients(tmp_path / "clients")
            clients.skopeo(*argv[1:2], "--src-creds", f"dana:{PASSWORD}", *argv[2:])
            index = json.loads((tmp_path / "pulled" / "index.json").read_text())
            assert index["manifests"], index
            # Alice (a demo customer entitled to it) may look at it too; Carol (entitled to others) may not.
            alice = clients.skopeo(
                "inspect", "--tls-verify=false", "--creds", f"alice:{DEMO_PASSWORD}", reference, check=False
            )
            assert alice.returncode == 0, alice.stderr
            other = clients.skopeo(
                "inspect", "--tls-verify=false", "--creds", f"carol:{DEMO_PASSWORD}", reference, check=False
            )
            assert other.returncode != 0
        finally:
            live.stop()
