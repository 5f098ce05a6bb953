"""The company-email link goes out by real SMTP (aiosmtpd on loopback) through the server's job workers, to
the company address only, and works once."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD, make_org, make_user
from tests.support.pages import with_csrf
from tests.support.smtpd import SmtpServer, smtp_server

from dockyard.config import Settings
from dockyard.web.app import create_app
from dockyard.web.context import AppState

LINK = re.compile(r"http://127\.0\.0\.1:5999(/ui/publisher-email/verify)\?token=([A-Za-z0-9_-]+)")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def settings(settings: Settings, smtp: SmtpServer) -> Settings:
    return dataclasses.replace(settings, smtp_url=smtp.url(query="timeout=5"), job_workers=1)


def test_the_link_is_mailed_to_the_company_address_and_works_once(
    settings: Settings, app_state: AppState, smtp: SmtpServer
) -> None:
    with app_state.sessions.begin() as s:
        owner = make_user(s, password=PASSWORD).username
        org = make_org(s, owner=owner)
    app = create_app(settings, state=app_state)
    with TestClient(app, base_url="http://127.0.0.1:5999") as client:
        r = client.put(
            f"/api/v1/publishers/{org}",
            json={"email": "Legal@Acme.example", "legal_name": "Acme Ltd"},
            auth=(owner, PASSWORD),
        )
        assert r.status_code == 200, r.text
        (received,) = smtp.collector.wait(1)
        assert received.recipients == ["legal@acme.example"]
        assert received.message["To"] == "legal@acme.example"
        assert received.message["Subject"] == f"Confirm the company email address of {org}"
        text = received.message.get_body(("plain",)).get_content()
        html = received.message.get_body(("html",)).get_content().replace("&amp;", "&")
        (path, token), *others = LINK.findall(text)
        assert not others and LINK.search(html).groups() == (path, token)  # type: ignore[union-attr]
        assert "48 hours" in text and owner in text

        page = f"{path}?token={token}"
        r = client.get(page)
        assert r.status_code == 200 and "legal@acme.example" in r.text
        r = client.post(path, data=with_csrf(client, {"token": token}, path=page))
        assert r.status_code == 200 and "is now the confirmed company email address" in r.text
        r = client.post(path, data=with_csrf(client, {"token": token}, path="/ui/login"))
        assert r.status_code == 400 and "used already" in r.text
        body = client.get(f"/api/v1/publishers/{org}", auth=(owner, PASSWORD)).json()
        assert body["email_verified"] and "email" not in [m["field"] for m in body["missing"]]
    assert len(smtp.collector.received) == 1  # nobody else was mailed
