"""The account flow in a real browser (Debian's chromium driven by Playwright) against a live server whose
mail goes to a real SMTP server on loopback (aiosmtpd): sign up, follow the confirmation link from the
mail, sign in, create an organisation and a robot (its secret shown once), sign out, reset the password
through the mailed link, sign in with the new one.

Each step leaves a full-page screenshot in $DOCKYARD_TEST_ARTIFACTS/account-flow (default:
test-artifacts/ at the repository's root), to look at what users see."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.support.live import LiveServer
from tests.support.smtpd import Collector, smtp_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOTS = "account-flow"
PASSWORD = "ada-first-password-1"
NEW_PASSWORD = "ada-second-password-2"


def mailed_link(collector: Collector, count: int, path: str) -> str:
    """The link to ``path`` in the ``count``-th mail received (waiting for it)."""
    message = collector.wait(count, timeout=60)[count - 1].message
    text = message.get_body(("plain",)).get_content()
    found = re.search(rf"http://\S+{re.escape(path)}\?token=[A-Za-z0-9_-]+", text)
    assert found, text
    return found.group(0)


def test_sign_up_confirm_organise_and_reset_in_a_browser(
    tmp_path: Path, fresh_database_url: str, browser, screenshot
) -> None:
    with smtp_server() as smtp:
        env = {"DOCKYARD_SMTP_URL": smtp.url(query="timeout=5"), "DOCKYARD_JOB_WORKERS": "1"}
        live = LiveServer(tmp_path / "live-data", fresh_database_url, extra_env=env).start()
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})

            # Sign up: a mistake first, shown beside its field, then the right form.
            page.goto(f"{live.url}/")
            screenshot(page, "start-page")
            page.get_by_role("link", name="Create account").click()
            page.fill("#username", "Ada Lovelace")
            page.fill("#email", "ada@example.org")
            page.fill("#password", PASSWORD)
            page.fill("#confirm", PASSWORD)
            page.get_by_role("button", name="Create account").click()
            assert page.locator("#username-error").is_visible()
            assert page.evaluate("document.activeElement.id") == "username"  # focus on the mistake
            screenshot(page, "sign-up-with-a-mistake")
            page.fill("#username", "ada")
            page.fill("#password", PASSWORD)
            page.fill("#confirm", PASSWORD)
            page.get_by_role("button", name="Create account").click()
            page.wait_for_url("**/ui/verify-email/resend")
            assert "ada@example.org" in page.inner_text("main")
            screenshot(page, "check-your-email")

            # Not before the address is confirmed.
            page.goto(f"{live.url}/ui/login")
            page.fill("#username", "ada")
            page.fill("#password", PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            assert page.locator("#login-unverified").is_visible()
            screenshot(page, "sign-in-before-confirming")

            # The confirmation link, from the mail the SMTP server received.
            link = mailed_link(smtp.collector, 1, "/ui/verify-email")
            assert smtp.collector.received[0].recipients == ["ada@example.org"]
            page.goto(link)
            screenshot(page, "confirm-email")
            page.get_by_role("button", name="Confirm email address").click()
            page.wait_for_url("**/ui/login")
            assert "is confirmed" in page.inner_text("main")
            screenshot(page, "confirmed-sign-in")
            page.fill("#username", "ada")
            page.fill("#password", PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/ui/")
            screenshot(page, "signed-in")

            # An organisation and a robot for its CI: the secret is shown once.
            page.get_by_role("link", name="Organisations").click()
            screenshot(page, "no-organisations")
            page.fill("#name", "analytical-engines")
            page.get_by_role("button", name="Create organisation").click()
            page.wait_for_url("**/ui/orgs/analytical-engines")
            screenshot(page, "organisation-created")
            page.fill("#robot-name", "ci")
            page.select_option("#robot-role", "maintainer")
            page.get_by_role("button", name="Create robot").click()
            box = page.locator("#new-robot")
            assert box.is_visible()
            secret = box.locator("pre code").first.inner_text().strip()
            assert "podman login" in box.inner_text()
            screenshot(page, "robot-secret-shown-once")
            token = httpx.get(
                f"{live.url}/token",
                params={"service": "dockyard"},
                auth=("analytical-engines+ci", secret),
                timeout=30,
            )
            assert token.status_code == 200, token.text
            page.goto(f"{live.url}/ui/orgs/analytical-engines")
            assert secret not in page.content()
            screenshot(page, "organisation-with-robot")

            # The account page, and a personal access token (shown once too).
            page.get_by_role("link", name="ada", exact=True).click()
            screenshot(page, "account-settings")
            page.fill("#token_name", "laptop")
            page.get_by_role("button", name="Create token").click()
            assert page.locator("#new-token").is_visible()
            screenshot(page, "token-secret-shown-once")

            # Sign out, forget the password, reset it through the mailed link.
            page.get_by_role("button", name="Sign out", exact=True).click()
            page.wait_for_url("**/ui/login")
            page.get_by_role("link", name="Forgot your password?").click()
            page.fill("#identifier", "ada@example.org")
            screenshot(page, "forgot-password")
            page.get_by_role("button", name="Send reset link").click()
            assert "Check your email" in page.inner_text("main")
            screenshot(page, "reset-link-sent")
            link = mailed_link(smtp.collector, 2, "/ui/password/reset")
            page.goto(link)
            screenshot(page, "choose-a-new-password")
            page.fill("#password", NEW_PASSWORD)
            page.fill("#confirm", NEW_PASSWORD)
            page.get_by_role("button", name="Change password").click()
            page.wait_for_url("**/ui/login")
            assert "Your password is changed" in page.inner_text("main")
            screenshot(page, "password-changed")
            page.fill("#username", "ada")
            page.fill("#password", NEW_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/ui/")
            screenshot(page, "signed-in-with-the-new-password")

            # The notice of the change went out too.
            notice = smtp.collector.wait(3, timeout=60)[2].message
            assert notice["Subject"] == "Your password was changed"
        finally:
            live.stop()
