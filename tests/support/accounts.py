"""Helpers for the account pages' tests: signed-in browsers, posting forms, running the queued jobs, and
reading the mail an action queued (the outbox rows) and the links in it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select
from starlette.testclient import TestClient

from dockyard.email.models import OutboundEmail
from dockyard.jobs import Worker
from dockyard.web.context import AppState
from tests.support.pages import sign_in, with_csrf

BASE_URL = "http://127.0.0.1:5999"
LINK = re.compile(r"http://127\.0\.0\.1:5999(/ui/[a-z/-]+)\?token=([A-Za-z0-9_-]+)")


def post(client: Any, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """POST a page form as a browser does: with the session's CSRF token, not following redirects."""
    return client.post(path, data=with_csrf(client, data), follow_redirects=False, **kwargs)


def htmx_post(client: Any, path: str, data: dict[str, Any] | None = None) -> Any:
    """POST as htmx does: the CSRF token in a header, HX-Request set."""
    token = with_csrf(client)["csrf_token"]
    headers = {"HX-Request": "true", "X-CSRF-Token": token}
    return client.post(path, data=data or {}, headers=headers, follow_redirects=False)


@contextmanager
def browser(app: Any, username: str | None = None, password: str | None = None) -> Iterator[TestClient]:
    """A browser of its own (its own cookies) on ``app``, signed in when a username is given."""
    with TestClient(app, base_url=BASE_URL) as c:
        if username is not None:
            r = sign_in(c, username, password or "")
            assert r.status_code == 303, (r.status_code, r.text[:500])
        yield c


def run_jobs(app: Any, state: AppState) -> int:
    """Run every queued job (the mail links asked for, then the mails themselves), as a worker would."""
    return Worker(state.sessions, app.state.jobs, bus=state.bus, services=state.services).run_until_idle()


def outbox(state: AppState, to: str | None = None) -> list[OutboundEmail]:
    """The mail queued so far (to ``to``), oldest first."""
    with state.sessions() as s:
        query = select(OutboundEmail).order_by(OutboundEmail.id)
        if to is not None:
            query = query.where(OutboundEmail.to_address == to)
        mails = list(s.scalars(query))
        s.expunge_all()
        return mails


def link_in(mail: OutboundEmail) -> tuple[str, str]:
    """(path, token) of the one link in a mail (the same in its text and HTML bodies)."""
    found = set(LINK.findall(mail.body_text))
    assert len(found) == 1, f"expected one link in {mail.subject!r}: {found}"
    assert found == set(LINK.findall(mail.body_html.replace("&amp;", "&")))
    return found.pop()


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def without_secrets(page: str) -> str:
    """A page with its CSRF tokens (43 URL-safe characters, one per browser) blanked, to compare pages."""
    return re.sub(r"[A-Za-z0-9_-]{43}", "SECRET", page)
