"""Sign-up on the pages: the form and its per-field errors, the confirmation mail and its link, accounts
that cannot sign in (nor get registry or API credentials) until confirmed, "send the link again" (the same
answer for any account), and a store where sign-up is closed."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient
from tests.support.accounts import (
    BASE_URL,
    browser,
    link_in,
    outbox,
    post,
    run_jobs,
    without_secrets,
)
from tests.support.factories import PASSWORD, make_user
from tests.support.pages import sign_in
from tests.support.registry_client import protocol_guard

from dockyard.accounts.models import EmailToken, User
from dockyard.accounts.selfservice import LINKS_PER_HOUR
from dockyard.audit.models import AuditEvent
from dockyard.web.app import create_app

NEW_PASSWORD = "a-long-new-password"


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


def sign_up(client, username: str, email: str, password: str = NEW_PASSWORD, confirm: str | None = None):
    form = {"username": username, "email": email, "password": password, "confirm": confirm or password}
    return post(client, "/ui/signup", form)


def user_row(state, username: str) -> User | None:
    with state.sessions() as s:
        user = s.scalar(select(User).where(User.username == username))
        s.expunge_all()
        return user


def test_sign_up_mails_a_link_and_the_account_works_once_confirmed(client, app_state):
    r = sign_up(client, "ada", "Ada@Example.org")
    assert r.status_code == 303 and r.headers["location"] == "/ui/verify-email/resend"
    page = client.get("/ui/verify-email/resend")
    assert "Check your email" in page.text and "ada@example.org" in page.text
    user = user_row(app_state, "ada")
    assert user is not None and user.email == "ada@example.org" and user.email_verified_at is None

    (mail,) = outbox(app_state)  # queued by the sign-up's own transaction
    assert (mail.to_address, mail.template) == ("ada@example.org", "verify_email")
    assert "48 hours" in mail.body_text
    path, token = link_in(mail)
    assert path == "/ui/verify-email"

    # Not yet: no session, and no registry or API credentials by password either.
    r = sign_in(client, "ada", NEW_PASSWORD)
    assert r.status_code == 403 and "Confirm your email address first" in r.text
    assert 'name="identifier" value="ada"' in r.text  # the resend button, for this account
    r = client.get("/token", params={"service": "dockyard"}, auth=("ada", NEW_PASSWORD))
    assert r.status_code == 403 and "confirm your email address" in r.json()["errors"][0]["message"]
    r = client.get("/api/v1/me", auth=("ada", NEW_PASSWORD))
    assert r.status_code == 403 and r.json()["error"]["code"] == "EMAIL_UNVERIFIED"

    # Opening the link asks first (mail scanners open links too); the button confirms.
    r = client.get(f"{path}?token={token}")
    assert r.status_code == 200 and "ada@example.org" in r.text and "Confirm email address" in r.text
    assert user_row(app_state, "ada").email_verified_at is None  # type: ignore[union-attr]
    r = post(client, "/ui/verify-email", {"token": token})
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert "is confirmed" in client.get("/ui/login").text
    assert user_row(app_state, "ada").email_verified_at is not None  # type: ignore[union-attr]
    assert sign_in(client, "ada", NEW_PASSWORD).status_code == 303
    assert client.get("/ui/account").status_code == 200

    # Each link works once.
    r = client.get(f"{path}?token={token}")
    assert r.status_code == 400 and "used already" in r.text
    r = post(client, "/ui/verify-email", {"token": token})
    assert r.status_code == 400 and "used already" in r.text


def test_the_audit_trail_has_the_sign_up_and_never_the_links_secret(client, app_state):
    sign_up(client, "grace", "grace@example.org")
    _, token = link_in(outbox(app_state)[0])
    post(client, "/ui/verify-email", {"token": token})
    with app_state.sessions() as s:
        events = list(
            s.scalars(select(AuditEvent).where(AuditEvent.namespace == "grace").order_by(AuditEvent.id))
        )
        stored = list(s.scalars(select(EmailToken.token_hash)))
    tags = [e.tag for e in events]
    assert tags == ["user:create", "user:email_verify_request", "user:email_verify"]
    assert events[0].data == {"staff": [], "signup": True}
    assert all(token not in str(e.data) for e in events)
    assert token not in stored  # only its hash is kept


def test_each_wrong_field_is_shown_beside_it(client, app_state):
    r = sign_up(client, "Not OK", "not-an-address", "short", "other")
    assert r.status_code == 400
    for field in ("username", "email", "password"):
        assert f'id="{field}-error"' in r.text
        assert f'aria-describedby="{field}-hint {field}-error"' in r.text
    assert r.text.count('aria-invalid="true"') == 3
    assert "Check the fields marked below." in r.text
    assert 'value="Not OK"' in r.text and 'value="not-an-address"' in r.text  # kept; passwords are not
    assert 'name="username" type="text" value="Not OK" aria-invalid="true"' in r.text
    r = sign_up(client, "ada2", "ada2@example.org", NEW_PASSWORD, "something else")
    assert r.status_code == 400 and 'id="confirm-error"' in r.text and "not the same" in r.text
    r = sign_up(client, "root", "root@example.org")
    assert r.status_code == 400 and "reserved" in r.text
    assert user_row(app_state, "ada2") is None and outbox(app_state) == []


def test_a_taken_username_or_address_is_refused_clearly(client, app_state):
    with app_state.sessions.begin() as s:
        taken = make_user(s).username
        s.execute(update(User).where(User.username == taken).values(email="taken@example.org"))
    r = sign_up(client, taken, "fresh@example.org")
    assert r.status_code == 409 and 'id="username-error"' in r.text and "This username is taken" in r.text
    r = sign_up(client, "fresh-name", "Taken@Example.org")
    assert r.status_code == 409 and 'id="email-error"' in r.text and "already uses this email" in r.text
    assert user_row(app_state, "fresh-name") is None and outbox(app_state) == []


def test_sign_up_without_the_forms_token_is_refused(client, app_state):
    form = {"username": "mallory", "email": "m@example.org", "password": PASSWORD, "confirm": PASSWORD}
    r = client.post("/ui/signup", data=form, follow_redirects=False)
    assert r.status_code == 403 and "expired or did not come from this site" in r.text
    assert user_row(app_state, "mallory") is None


def test_a_signed_in_user_is_sent_to_their_repositories(app, app_state):
    with app_state.sessions.begin() as s:
        name = make_user(s).username
    with browser(app, name, PASSWORD) as b:
        r = b.get("/ui/signup", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/ui/"


def test_send_the_link_again_answers_the_same_for_any_account(client, app, app_state):
    sign_up(client, "linus", "linus@example.org")
    answers = []
    for identifier in ("linus", "nobody-here", "nobody@example.org"):
        with browser(app) as b:
            r = post(b, "/ui/verify-email/resend", {"identifier": identifier})
            page = without_secrets(b.get(r.headers["location"]).text)
            answers.append((r.status_code, r.headers["location"], page))
    assert answers[0] == answers[1] == answers[2]
    assert "If an account awaits confirmation" in answers[0][2]
    assert len(outbox(app_state)) == 1  # the request only queued a job
    run_jobs(app, app_state)
    assert [m.to_address for m in outbox(app_state)] == ["linus@example.org"] * 2
    # At most LINKS_PER_HOUR links an hour to one address: the form cannot flood an inbox.
    for _ in range(LINKS_PER_HOUR + 2):
        post(client, "/ui/verify-email/resend", {"identifier": "linus@example.org"})
    run_jobs(app, app_state)
    assert len(outbox(app_state, "linus@example.org")) == LINKS_PER_HOUR


def test_a_confirmed_account_gets_no_confirmation_link(client, app, app_state):
    with app_state.sessions.begin() as s:
        name = make_user(s).username
        s.execute(update(User).where(User.username == name).values(email=f"{name}@example.org"))
    post(client, "/ui/verify-email/resend", {"identifier": name})
    run_jobs(app, app_state)
    assert outbox(app_state) == []


def test_an_expired_or_unknown_link_says_so_and_offers_a_new_one(client, app_state):
    sign_up(client, "old", "old@example.org")
    path, token = link_in(outbox(app_state)[0])
    with app_state.sessions.begin() as s:
        s.execute(update(EmailToken).values(expires_at=dt.datetime(2000, 1, 1)))
    r = client.get(f"{path}?token={token}")
    assert r.status_code == 400 and "expired" in r.text and "Get a new confirmation link" in r.text
    r = post(client, "/ui/verify-email", {"token": token})
    assert r.status_code == 400
    r = client.get(f"{path}?token=not-a-real-token")
    assert r.status_code == 400 and "not valid" in r.text
    assert client.get(path).status_code == 400  # no token at all


@pytest.fixture
def closed(app_state):
    """The application of a store where sign-up is closed (DOCKYARD_SIGNUP=closed)."""
    settings = dataclasses.replace(app_state.settings, signup="closed")
    state = dataclasses.replace(app_state, settings=settings)
    with TestClient(create_app(settings, state=state), base_url=BASE_URL) as c:
        yield c


def test_when_sign_up_is_closed_the_page_says_so_and_nothing_links_to_it(closed, app_state):
    r = closed.get("/ui/signup")
    assert r.status_code == 200 and "Sign-up is closed" in r.text and 'name="password"' not in r.text
    for page in ("/", "/ui/login"):
        assert 'href="/ui/signup"' not in closed.get(page).text
    r = sign_up(closed, "eve", "eve@example.org")
    assert r.status_code == 403 and "Sign-up is closed" in r.text
    assert user_row(app_state, "eve") is None and outbox(app_state) == []


def test_when_sign_up_is_open_the_pages_link_to_it(client):
    assert 'href="/ui/signup"' in client.get("/").text
    assert 'href="/ui/signup"' in client.get("/ui/login").text
