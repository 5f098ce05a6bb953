"""The get-a-tier flow and "My subscriptions" in a real browser (Debian's chromium driven by Playwright):
a customer opens the get page (sent to sign in first, and back), accepts the licence, lands on My
subscriptions with the pull commands, and pulls with skopeo using exactly the command shown. Screenshots
in $DOCKYARD_TEST_ARTIFACTS/subscriptions (default: test-artifacts/)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.clients import require_tools
from tests.e2e.test_store_pulls import SLUG, put_on_store

require_tools("skopeo", "umoci")
pytestmark = [pytest.mark.e2e]

SCREENSHOTS = "subscriptions"


def test_get_a_free_tier_and_pull_with_the_command_shown(
    server, browser, screenshot, clients, images, tmp_path
):
    owner, customer = server.user("gina"), server.user("cora")
    server.org("gamma", owner)
    image, agent = images.image("gamma-server"), images.image("gamma-agent")
    clients.copy(image.oci, server.ref("gamma/db-server:16"), dest_creds=owner.creds)
    clients.copy(agent.oci, server.ref("gamma/db-agent:1.4"), dest_creds=owner.creds)
    pins = {
        "server": {"repository": "gamma/db-server", "tags": {"16": image.digest}},
        "agent": {"repository": "gamma/db-agent", "tags": {"1.4": agent.digest}},
    }
    put_on_store(server, "gamma", pins)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(f"{server.url}/products/gamma/{SLUG}/get?tier=Community")
    page.fill("#username", customer.username)
    page.fill("#password", customer.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/products/gamma/{SLUG}/get?tier=Community")
    expect(page.get_by_label("Email me about this product's security")).to_be_checked()
    screenshot(page, "get-free-tier")
    page.get_by_label("I accept the licence").check()
    page.get_by_role("button", name="Get Community").click()
    expect(page.locator(".flash").first).to_contain_text("Pull it with the commands below")
    screenshot(page, "subscriptions")
    command = page.locator("pre code", has_text="skopeo copy").first.inner_text()
    assert f"docker://{server.host}/store/gamma/{SLUG}/server:16" in command
    page.goto(f"{server.url}/products/gamma/{SLUG}/get?tier=Enterprise")
    expect(page.get_by_role("button", name="Subscribe for 49.00 USD per month")).to_be_disabled()
    screenshot(page, "paid-tier")
    # The command as shown, with the customer's credentials and a destination under this test's directory.
    argv = command.split()
    argv[-1] = f"oci:{tmp_path / 'pulled'}:16"
    clients.skopeo(*argv[1:2], "--src-creds", customer.creds, *argv[2:])
    assert (tmp_path / "pulled" / "index.json").exists()
