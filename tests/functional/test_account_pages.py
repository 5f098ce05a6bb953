"""The account settings page: profile and a new address (confirmed by a link, the old address told), the
password (the current one required, wrong ones throttled like logins), personal access tokens (the secret
shown once, revocation with and without htmx), sign out everywhere, store roles."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from tests.support.accounts import browser, htmx_post, link_in, outbox, post
from tests.support.factories import PASSWORD, make_user
from tests.support.pages import sign_in
from tests.support.registry_client import protocol_guard

from dockyard.accounts.models import AccessToken, User
from dockyard.accounts.throttle import DEFAULT_LIMITS

NEW = "brand-new-password-9"


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


@pytest.fixture
def carol(app_state) -> str:
    with app_state.sessions.begin() as s:
        name = make_user(s, staff=("store-reviewer",)).username
        s.execute(update(User).where(User.username == name).values(email=f"{name}@example.org"))
    return name


@pytest.fixture
def me(client, carol):
    """The default client, signed in as carol."""
    assert sign_in(client, carol, PASSWORD).status_code == 303
    return client


def test_the_page_shows_the_profile_and_store_roles(me, carol):
    r = me.get("/ui/account")
    assert r.status_code == 200
    assert f"{carol}@example.org" in r.text and "confirmed" in r.text
    assert "store-reviewer" in r.text
    assert "You have no access tokens yet." in r.text
    assert 'action="/ui/sign-out-everywhere"' in r.text
    assert 'aria-current="page"' in r.text  # the Account item of the navigation


def test_anonymous_visitors_are_sent_to_sign_in(client):
    r = client.get("/ui/account", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/account"


# -- tokens ------------------------------------------------------------------------------------------------
def new_token(client, name: str = "laptop", scopes=("pull", "push"), expires: str = "30"):
    return post(
        client, "/ui/account/tokens", {"token_name": name, "scopes": list(scopes), "expires": expires}
    )


def test_a_new_tokens_secret_is_shown_once_with_the_login_command(me, carol):
    r = new_token(me)
    assert r.status_code == 201
    secret = r.text.split("<pre data-copy><code>", 1)[1].split("</code>", 1)[0]
    assert secret.startswith("dyt_")
    assert "secret-once" in r.text and "shown only this once" in r.text
    command = f"echo &#39;{secret}&#39; | podman login --tls-verify=false --username &#39;{carol}&#39;"
    assert command in r.text and "--password-stdin 127.0.0.1:5999" in r.text
    # It works as the scopes say, and is never shown again.
    assert me.get("/token", params={"service": "dockyard"}, auth=(carol, secret)).status_code == 200
    page = me.get("/ui/account").text
    assert secret not in page and "<strong>laptop</strong>" in page
    with me.app.state.dockyard.sessions() as s:  # type: ignore[attr-defined]
        token = s.scalar(select(AccessToken).where(AccessToken.name == "laptop"))
        assert token is not None and token.scopes == "pull,push" and token.expires_at is not None


def test_an_api_only_token_shows_how_to_call_the_api(me):
    r = new_token(me, "script", scopes=("api",), expires="never")
    assert r.status_code == 201
    assert 'curl -H "Authorization: Bearer dyt_' in r.text and "/api/v1/me" in r.text
    assert "podman login" not in r.text.split('id="new-token"', 1)[1].split("</div>", 1)[0]


def test_the_token_form_says_what_is_missing(me):
    r = new_token(me, "", scopes=())
    assert r.status_code == 400
    assert 'id="token_name-error"' in r.text and 'id="scopes-error"' in r.text
    r = new_token(me, "x", expires="99999")
    assert r.status_code == 400 and 'id="expires-error"' in r.text


def test_revoking_a_token_with_and_without_htmx(me, carol, app_state):
    new_token(me, "first")
    new_token(me, "second")
    with app_state.sessions() as s:
        ids = dict(s.execute(select(AccessToken.name, AccessToken.id)).all())
    r = post(me, f"/ui/account/tokens/{ids['first']}/revoke")
    assert r.status_code == 303 and r.headers["location"] == "/ui/account#tokens"
    page = me.get("/ui/account").text
    assert "Token “first” is revoked" in page and "<strong>first</strong>" not in page
    r = htmx_post(me, f"/ui/account/tokens/{ids['second']}/revoke")
    assert r.status_code == 200 and r.text.startswith('<tr class="gone-row">') and "second" in r.text
    with app_state.sessions() as s:
        assert all(s.scalars(select(AccessToken.revoked)))


def test_nobody_revokes_someone_elses_token(app, app_state, me):
    with app_state.sessions.begin() as s:
        other = make_user(s).username
    with browser(app, other, PASSWORD) as b:
        new_token(b, "theirs")
    with app_state.sessions() as s:
        token_id = s.scalar(select(AccessToken.id))
    r = post(me, f"/ui/account/tokens/{token_id}/revoke")
    assert r.status_code == 404
    r = post(me, "/ui/account/tokens/99999999999999999999/revoke")
    assert r.status_code == 404


def test_forms_without_the_csrf_token_are_refused(me):
    r = me.post("/ui/account/tokens", data={"token_name": "x", "scopes": "pull"}, follow_redirects=False)
    assert r.status_code == 403
    r = me.post("/ui/account/password", data={"current_password": PASSWORD, "new_password": NEW})
    assert r.status_code == 403


# -- password ----------------------------------------------------------------------------------------------
def change_password(client, current: str, new: str = NEW, confirm: str | None = None):
    form = {"current_password": current, "new_password": new, "confirm_password": confirm or new}
    return post(client, "/ui/account/password", form)


def test_changing_the_password_keeps_this_browser_and_ends_the_others(me, app, app_state, carol):
    with browser(app, carol, PASSWORD) as elsewhere:
        r = change_password(me, PASSWORD)
        assert r.status_code == 303 and r.headers["location"] == "/ui/account#password"
        assert "Your password is changed" in me.get("/ui/account").text  # still signed in here
        r = elsewhere.get("/ui/account", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    assert sign_in(elsewhere, carol, NEW).status_code == 303
    notice = outbox(app_state)[-1]
    assert notice.subject == "Your password was changed" and "account settings page" in notice.body_text


def test_a_wrong_current_password_is_refused_and_throttled(me, carol):
    r = change_password(me, "not my password")
    assert r.status_code == 400 and 'id="current_password-error"' in r.text
    assert "not your current password" in r.text
    r = change_password(me, PASSWORD, NEW, "different")
    assert r.status_code == 400 and 'id="confirm_password-error"' in r.text
    r = change_password(me, PASSWORD, "short")
    assert r.status_code == 400 and 'id="new_password-error"' in r.text
    for _ in range(DEFAULT_LIMITS.per_account_and_address):
        change_password(me, "still wrong")
    r = change_password(me, PASSWORD)  # even the right one waits, as a login would
    assert r.status_code == 400 and "Too many wrong passwords" in r.text
    assert sign_in(me, carol, NEW).status_code == 429


# -- email -------------------------------------------------------------------------------------------------
def test_a_new_address_is_confirmed_by_link_and_the_old_one_is_told(me, app_state, carol):
    r = post(me, "/ui/account/email", {"email": "Carol.New@Example.org", "current_password": PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/ui/account#profile"
    page = me.get("/ui/account").text
    assert "We sent a link to carol.new@example.org" in page and "Changing to" in page
    notice, link = outbox(app_state)
    assert notice.to_address == f"{carol}@example.org" and "carol.new@example.org" in notice.body_text
    assert link.to_address == "carol.new@example.org" and link.template == "verify_email"
    path, token = link_in(link)
    r = post(me, path, {"token": token})
    assert r.status_code == 303 and r.headers["location"] == "/ui/account"
    page = me.get("/ui/account").text
    assert "Your email address is now carol.new@example.org" in page and "Changing to" not in page


def test_a_new_address_is_refused_beside_the_field(me, app_state, carol):
    with app_state.sessions.begin() as s:
        other = make_user(s).username
        s.execute(update(User).where(User.username == other).values(email="taken@example.org"))
    cases = [
        ({"email": "not an address", "current_password": PASSWORD}, 400, "new-email-error"),
        ({"email": "taken@example.org", "current_password": PASSWORD}, 409, "new-email-error"),
        ({"email": f"{carol}@example.org", "current_password": PASSWORD}, 400, "new-email-error"),
        ({"email": "fine@example.org", "current_password": "wrong"}, 400, "email-current-password-error"),
    ]
    for form, status, error in cases:
        r = post(me, "/ui/account/email", form)
        assert r.status_code == status and f'id="{error}"' in r.text, (form, r.status_code)
    assert outbox(app_state) == []
