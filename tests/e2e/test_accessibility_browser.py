"""axe-core on the public pages a newcomer meets first (sign in, sign up, password reset): no serious or
critical violation. The storefront's pages are checked in their own browser test."""

from __future__ import annotations

import pytest

from tests.support.axe import assert_accessible, violations

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.parametrize("path", ["/ui/login", "/ui/signup", "/ui/password/forgot"])
def test_public_account_pages_are_accessible(module_live_server, browser, path: str) -> None:
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        response = page.goto(f"{module_live_server.url}{path}")
        assert response is not None and response.status == 200, path
        assert_accessible(page, path)
    finally:
        context.close()


def test_the_check_finds_a_violation(module_live_server, browser) -> None:
    """The check can fail: an image without alt text and an unlabelled input are reported."""
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(f"{module_live_server.url}/ui/login")
        page.evaluate(
            """() => {
                const main = document.querySelector('main') || document.body;
                const input = document.createElement('input');
                input.type = 'text';
                main.appendChild(input);
                const img = document.createElement('img');
                img.src = '/nothing.png';
                main.appendChild(img);
            }"""
        )
        found = {v["id"] for v in violations(page)}
        assert {"image-alt", "label"} <= found, found
    finally:
        context.close()
