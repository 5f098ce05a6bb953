"""Forgotten passwords on the pages: the same answer, doing the same work, whether or not an account
matches; the reset link (one hour, once); the new password ending every session; the notice mailed."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update
from tests.support.accounts import browser, link_in, outbox, post, run_jobs, without_secrets
from tests.support.factories import PASSWORD, make_user
from tests.support.pages import sign_in
from tests.support.registry_client import protocol_guard

from dockyard.accounts.models import EmailToken, User
from dockyard.accounts.selfservice import LINKS_PER_HOUR
from dockyard.jobs import Job

NEW = "brand-new-password-9"


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


@pytest.fixture
def bob(app_state) -> str:
    """A confirmed user with an address (made by an administrator)."""
    with app_state.sessions.begin() as s:
        name = make_user(s).username
        s.execute(update(User).where(User.username == name).values(email=f"{name}@example.org"))
    return name


def forgot(client, identifier: str):
    return post(client, "/ui/password/forgot", {"identifier": identifier})


def jobs_queued(state) -> int:
    with state.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Job)) or 0)


def test_the_answer_is_the_same_whether_or_not_the_account_exists(app, app_state, bob):
    answers = []
    for identifier in (f"{bob}@example.org", "nobody@example.org"):
        with browser(app) as b:
            r = forgot(b, identifier)
            answers.append((r.status_code, without_secrets(r.text.replace(identifier, "WHO"))))
    assert answers[0] == answers[1]
    assert answers[0][0] == 200 and "Check your email" in answers[0][1]
    # Both did the same work: one job each, no mail yet (the job looks the account up).
    assert jobs_queued(app_state) == 2 and outbox(app_state) == []
    run_jobs(app, app_state)
    (mail,) = outbox(app_state)
    assert mail.to_address == f"{bob}@example.org" and mail.template == "password_reset"
    assert "an hour" in mail.body_text


def test_a_reset_link_sets_a_new_password_once_and_ends_every_session(client, app, app_state, bob):
    with browser(app, bob, PASSWORD) as elsewhere:
        forgot(client, bob)  # by username, too
        run_jobs(app, app_state)
        path, token = link_in(outbox(app_state)[0])
        assert path == "/ui/password/reset"
        r = client.get(f"{path}?token={token}")
        assert r.status_code == 200 and bob in r.text and 'name="password"' in r.text

        r = post(client, path, {"token": token, "password": NEW, "confirm": "not the same"})
        assert r.status_code == 400 and 'id="confirm-error"' in r.text
        r = post(client, path, {"token": token, "password": "short", "confirm": "short"})
        assert r.status_code == 400 and 'id="password-error"' in r.text

        r = post(client, path, {"token": token, "password": NEW, "confirm": NEW})
        assert r.status_code == 303 and r.headers["location"] == "/ui/login"
        assert "Your password is changed" in client.get("/ui/login").text
        # The other browser's session ended with the old password.
        r = elsewhere.get("/ui/account", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")

    assert sign_in(client, bob, PASSWORD).status_code == 401
    assert sign_in(client, bob, NEW).status_code == 303
    r = client.get(f"{path}?token={token}")
    assert r.status_code == 400 and "used already" in r.text and "Get a new reset link" in r.text
    r = post(client, path, {"token": token, "password": "another-one-1", "confirm": "another-one-1"})
    assert r.status_code == 400 and sign_in(client, bob, NEW).status_code == 303

    run_jobs(app, app_state)
    notice = outbox(app_state)[-1]
    assert notice.template == "notice" and notice.subject == "Your password was changed"
    assert "with a password-reset link" in notice.body_text and notice.to_address == f"{bob}@example.org"


def test_reset_links_live_an_hour_and_confirmation_links_two_days(client, app, app_state, bob):
    forgot(client, bob)
    run_jobs(app, app_state)
    with app_state.sessions() as s:
        token = s.scalar(select(EmailToken))
        assert token is not None and token.expires_at - token.created_at == dt.timedelta(hours=1)
    path, secret = link_in(outbox(app_state)[0])
    with app_state.sessions.begin() as s:
        s.execute(update(EmailToken).values(expires_at=dt.datetime(2000, 1, 1)))
    r = post(client, path, {"token": secret, "password": NEW, "confirm": NEW})
    assert r.status_code == 400 and "expired" in r.text
    assert sign_in(client, bob, PASSWORD).status_code == 303


def test_the_form_cannot_flood_an_inbox(client, app, app_state, bob):
    for _ in range(LINKS_PER_HOUR + 3):
        assert forgot(client, f"{bob}@example.org").status_code == 200
    run_jobs(app, app_state)
    assert len(outbox(app_state)) == LINKS_PER_HOUR


def test_an_empty_form_is_refused_beside_the_field(client):
    r = forgot(client, "  ")
    assert r.status_code == 400 and 'id="identifier-error"' in r.text


def test_a_reset_link_confirms_an_unconfirmed_address(client, app, app_state):
    form = {"username": "zoe", "email": "zoe@example.org", "password": NEW, "confirm": NEW}
    post(client, "/ui/signup", form)
    forgot(client, "zoe@example.org")
    run_jobs(app, app_state)
    path, token = link_in(outbox(app_state, "zoe@example.org")[-1])
    assert path == "/ui/password/reset"
    post(client, path, {"token": token, "password": "zoes-new-password", "confirm": "zoes-new-password"})
    assert sign_in(client, "zoe", "zoes-new-password").status_code == 303


def test_a_reset_link_of_an_old_address_stops_working(client, app, app_state, bob):
    forgot(client, bob)
    run_jobs(app, app_state)
    path, token = link_in(outbox(app_state)[0])
    with app_state.sessions.begin() as s:
        s.execute(update(User).where(User.username == bob).values(email="elsewhere@example.org"))
    r = client.get(f"{path}?token={token}")
    assert r.status_code == 200  # the link itself is fine...
    r = post(client, path, {"token": token, "password": NEW, "confirm": NEW})
    assert r.status_code == 400 and "no longer uses" in r.text  # ...but the account moved on
