"""The store's customer pages in a real browser (Debian's chromium driven by Playwright): the home page, a
product's page (screenshots, three tiers, badges), its screenshot gallery opened full size without
JavaScript, an on-hold and a revoked product, and a publisher's page, at a desktop and a phone width; axe-core
(when installed: DOCKYARD_AXE_JS, or axe-core under /tmp/axe) finds no serious or critical violation.

Screenshots land in $DOCKYARD_TEST_ARTIFACTS/store-pages (default: test-artifacts/ at the repository's root).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.support.store_showcase import build_showcase

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOTS = "store-pages"
AXE = Path(os.environ.get("DOCKYARD_AXE_JS") or "/tmp/axe/node_modules/axe-core/axe.min.js")
WIDTHS = {"desktop": (1280, 900), "mobile": (390, 844)}


def serve(app: Any) -> tuple[str, uvicorn.Server, threading.Thread]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return url, server, thread
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


def test_the_store_pages_in_a_browser(app, app_state, tmp_path: Path, browser, screenshot) -> None:  # type: ignore[no-untyped-def]
    show = build_showcase(app_state, tmp_path / "feed")
    url, server, thread = serve(app)
    pages = {
        "home": "/",
        "product": f"/products/{show.org}/{show.products['flagship']}",
        "on-hold": f"/products/{show.org}/{show.products['held']}",
        "revoked": f"/products/{show.other_org}/{show.products['revoked']}",
        "publisher": f"/publishers/{show.org}",
    }
    problems: list[str] = []
    try:
        for width_name, (w, h) in WIDTHS.items():
            context = browser.new_context(viewport={"width": w, "height": h}, bypass_csp=AXE.exists())
            page = context.new_page()
            for name, path in pages.items():
                response = page.goto(url + path)
                assert response is not None and response.status == 200, (path, response and response.status)
                page.wait_for_load_state("networkidle")
                broken = page.evaluate(
                    "() => [...document.images].filter(i => i.complete && i.naturalWidth === 0"
                    " && i.getBoundingClientRect().width > 0).map(i => i.src)"
                )
                assert not broken, (path, broken)
                screenshot(page, f"{width_name}-{name}")
                if AXE.exists():
                    for v in axe_violations(page):
                        targets = [n["target"] for n in v["nodes"]][:3]
                        problems.append(f"{width_name} {name}: {v['id']} ({v['impact']}) {targets}")
            # the gallery opens full size from a thumbnail, without JavaScript
            page.goto(url + pages["product"])
            page.locator(".gallery a").first.click()
            assert page.locator("#shot-1").is_visible()
            screenshot(page, f"{width_name}-product-screenshot-open")
            context.close()
        # the badge's meaning shows on keyboard focus, not only on hover
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(url + pages["product"])
        page.locator(".product-meta .store-badge").first.focus()
        assert page.locator("#head-certified_container").is_visible()
        screenshot(page, "desktop-badge-tooltip")
        context.close()
    finally:
        server.should_exit = True
        thread.join(10)
    assert not problems, "\n".join(problems)
