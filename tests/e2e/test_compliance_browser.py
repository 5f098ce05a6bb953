"""The compliance pages in Debian's chromium (Playwright) against the app served in-process: a held
product's security page as its maintainer sees it (an overdue Critical, a pending VEX statement, the form),
the store team's overview with its extension and decision forms, and the store's product page with the hold
label and suspended badges; axe-core finds no serious or critical violation. Screenshots land in
$DOCKYARD_TEST_ARTIFACTS/compliance (default test-artifacts/compliance)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from dockyard.compliance.models import FindingClock, VexStatement
from dockyard.db import utcnow
from dockyard.store.models import ProductBadge
from dockyard.web.context import AppState
from tests.support.axe import assert_accessible
from tests.support.factories import PASSWORD
from tests.support.pages import signed_in_page
from tests.support.review_world import CVE
from tests.support.smtpd import free_port
from tests.support.store_world import published_world

pytestmark = [pytest.mark.e2e]

SCREENSHOTS = "compliance"


def held_world(state: AppState, feed: Path) -> Any:
    """The world's product with its Critical clock told 80 hours ago (so 8 hours overdue), checked: held;
    certified before, so its badge shows suspended; one VEX statement waiting."""
    world = published_world(state, feed)
    with state.sessions.begin() as s:
        clock = s.scalar(select(FindingClock))
        told = utcnow() - dt.timedelta(hours=80)
        clock.notified_at, clock.due_at = told, told + dt.timedelta(hours=72)
        s.add(ProductBadge(product_id=clock.product_id, kind="certified_container", reason="tested"))
        s.add(
            VexStatement(
                product_id=clock.product_id,
                vuln_id=CVE,
                status="not_affected",
                justification="vulnerable_code_not_in_execute_path",
                impact_statement="The server never inflates untrusted input.",
                submitted_by=world.users["maintainer"],
            )
        )
    with state.sessions.begin() as s:
        state.services(s).compliance.check()
    return world


def test_the_compliance_pages_in_a_browser(
    app, app_state: AppState, tmp_path: Path, browser, screenshot
) -> None:  # type: ignore[no-untyped-def]
    world = held_world(app_state, tmp_path / "feed")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"

    def signed_in(role: str) -> Any:  # bypass_csp: axe-core is injected as a script the policy would refuse
        viewport = {"width": 1280, "height": 900}
        return signed_in_page(browser, base, world.users[role], PASSWORD, viewport=viewport, bypass_csp=True)

    try:
        maintainer = signed_in("maintainer")
        maintainer.goto(f"{base}/ui/orgs/{world.org}/products/{world.slug}/compliance")
        assert "On hold since" in maintainer.content() and "overdue by" in maintainer.content()
        screenshot(maintainer, "publisher-product")
        assert_accessible(maintainer, "the publisher's security page")

        reviewer = signed_in("reviewer")
        reviewer.goto(f"{base}/ui/compliance")
        reviewer.get_by_text("Extend", exact=True).first.click()  # the extension form opens in place
        screenshot(reviewer, "store-overview")
        assert_accessible(reviewer, "the store team's overview")
        reviewer.fill("#vex-reason-1", "Checked the call graph: no inflate of input.")
        reviewer.get_by_role("button", name="Accept").click()
        reviewer.wait_for_load_state()
        assert "Statement accepted" in reviewer.content()

        customer = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        customer.goto(f"{base}/products/{world.org}/{world.slug}")
        assert "On hold" not in customer.content()  # the accepted statement lifted the hold
        screenshot(customer, "store-product-after")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
