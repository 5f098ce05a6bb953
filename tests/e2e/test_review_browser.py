"""The review pages in Debian's chromium (Playwright) against the app served in-process by uvicorn (the
stand-ins for the products and profile services are in this process): the reviewer's queue and review page,
the publisher's product page and dashboard, a full-page screenshot of each in
$DOCKYARD_TEST_ARTIFACTS/review (default test-artifacts/review)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from dockyard.web.context import AppState
from tests.support.factories import PASSWORD
from tests.support.pages import signed_in_page
from tests.support.review_world import build_world
from tests.support.smtpd import free_port

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


def test_review_pages_in_a_browser(
    app, app_state: AppState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, browser
) -> None:
    world = build_world(app_state, tmp_path / "feed")
    shots = Path(os.environ.get("DOCKYARD_TEST_ARTIFACTS") or REPO / "test-artifacts") / "review"
    shots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:

        def signed_in(role: str):
            return signed_in_page(browser, base, world.users[role], PASSWORD)

        owner, reviewer = signed_in("owner"), signed_in("reviewer")
        owner.goto(f"{base}/ui/orgs/{world.org}/products/{world.slug}/review")
        owner.get_by_role("button", name="Submit").click()
        owner.wait_for_load_state()
        assert "Submitted for review." in owner.content()
        reviewer.goto(f"{base}/ui/review")
        reviewer.screenshot(path=str(shots / "01-queue.png"), full_page=True)
        reviewer.locator(f'a[href="/ui/review/revisions/{world.revision}"]').click()
        reviewer.get_by_role("button", name="Claim").click()
        reviewer.wait_for_load_state()
        reviewer.fill("#body", "Their zlib is old; check before approving.")
        reviewer.check("text=Internal note (store team only")
        reviewer.get_by_role("button", name="Post message").click()
        reviewer.wait_for_load_state()
        reviewer.fill("#body", "Please shorten the short description.")
        reviewer.select_option("#anchor_kind", "field")
        reviewer.fill("#anchor", "short_description")
        reviewer.get_by_role("button", name="Post message").click()
        reviewer.wait_for_load_state()
        reviewer.get_by_role("button", name="Approve").click()  # no reason: refused beside the field
        reviewer.wait_for_load_state()
        assert reviewer.locator("#override-error").is_visible()
        reviewer.screenshot(path=str(shots / "02-review-page.png"), full_page=True)
        reviewer.fill("#comment", "Shorten the short description, please.")
        reviewer.get_by_role("button", name="Request changes").click()
        reviewer.wait_for_load_state()
        owner.goto(f"{base}/ui/orgs/{world.org}/products/{world.slug}/review")
        assert "zlib is old" not in owner.content()
        owner.screenshot(path=str(shots / "03-publisher-product.png"), full_page=True)
        owner.goto(f"{base}/ui/orgs/{world.org}/dashboard")
        owner.screenshot(path=str(shots / "04-publisher-dashboard.png"), full_page=True)
    finally:
        server.should_exit = True
        thread.join(10)
