"""Driving the pages as a browser does: forms carry the session's CSRF token."""

from __future__ import annotations

import re
from typing import Any

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: Any, path: str = "/ui/login") -> str:
    """The CSRF token of this client's session, read off a page's form (which starts the session)."""
    r = client.get(path)
    found = CSRF_INPUT.search(r.text)
    assert found, f"no CSRF token on {path} ({r.status_code})"
    return found.group(1)


def with_csrf(client: Any, data: dict[str, str] | None = None, path: str = "/ui/login") -> dict[str, str]:
    return {**(data or {}), "csrf_token": csrf_token(client, path)}


def sign_in(client: Any, username: str, password: str, **kwargs: Any) -> Any:
    """POST the sign-in form; returns the response (303 to the next page on success)."""
    data = with_csrf(client, {"username": username, "password": password, "next": "/ui/"})
    return client.post("/ui/login", data=data, follow_redirects=False, **kwargs)


def signed_in_page(browser: Any, base: str, username: str, password: str, **context: Any) -> Any:
    """A Playwright page of a browser context of its own (``context``: new_context's options, a 1280x800
    viewport by default), signed in through the login form as a person does."""
    context.setdefault("viewport", {"width": 1280, "height": 800})
    page = browser.new_context(**context).new_page()
    page.goto(f"{base}/ui/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    return page
