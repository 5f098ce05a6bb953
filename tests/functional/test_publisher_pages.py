"""The publisher profile pages: the form with every field, errors beside their fields, the logo upload, the
agreement's checkbox, the checklist of what is missing, read-only for members, the company-email link page,
and the link from the organisation page."""

from __future__ import annotations

import re

import pytest
from tests.support.accounts import BASE_URL, browser, link_in, outbox
from tests.support.factories import PASSWORD, make_org, make_user
from tests.support.pages import with_csrf
from tests.support.pictures import picture

from dockyard.publishing.agreement import AGREEMENT_VERSION

GOOD = {
    "legal_name": "Acme Software Ltd",
    "website": "https://acme.example",
    "phone": "+44 20 7946 0958",
    "email": "store@acme.example",
    "story": "We make **databases**.\n\n<script>alert(1)</script>",
}


@pytest.fixture
def world(app_state):
    with app_state.sessions.begin() as s:
        owner = make_user(s).username
        reader = make_user(s).username
        outsider = make_user(s).username
        org = make_org(s, owner=owner, members={reader: "reader"})
    return org, owner, reader, outsider


def save(client, org: str, fields: dict[str, str], logo: bytes | None = None, accept: bool = False):
    page = f"/ui/orgs/{org}/publisher"
    data = with_csrf(client, fields | ({"accept_agreement": AGREEMENT_VERSION} if accept else {}), path=page)
    files = {"logo": ("logo.png", logo or b"", "image/png")}
    return client.post(page, data=data, files=files, follow_redirects=False, headers={"origin": BASE_URL})


def error_beside(html: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', html)
    assert found, f"no error beside {field}"
    return found.group(1)


def test_the_organisation_page_links_to_the_profile(app, world) -> None:
    org, owner, *_ = world
    with browser(app, owner, PASSWORD) as c:
        assert f'href="/ui/orgs/{org}/publisher"' in c.get(f"/ui/orgs/{org}").text


def test_an_empty_profile_lists_what_is_missing(app, world) -> None:
    org, owner, *_ = world
    with browser(app, owner, PASSWORD) as c:
        r = c.get(f"/ui/orgs/{org}/publisher")
    assert r.status_code == 200
    for label in ("Legal entity name", "Company website", "Phone number", "Company email", "Company logo"):
        assert f">{label}</label>" in r.text
    assert "7 things are missing" in r.text and "Accept the publisher agreement" in r.text
    assert 'enctype="multipart/form-data"' in r.text and 'name="accept_agreement"' in r.text
    assert "It has the right to distribute" in r.text  # the agreement's text is on the page


def test_errors_are_shown_beside_their_fields_and_nothing_is_saved(app, world) -> None:
    org, owner, *_ = world
    with browser(app, owner, PASSWORD) as c:
        bad = GOOD | {"phone": "020 7946 0958", "website": "acme.example"}
        r = save(c, org, bad, logo=picture(511, 511), accept=True)
        assert r.status_code == 400
        assert error_beside(r.text, "phone").startswith("Start the number with + and its country code")
        assert error_beside(r.text, "website").startswith("Enter a web address starting with https://")
        assert error_beside(r.text, "logo") == "The logo must be at least 512x512: it is 511x511."
        assert 'value="Acme Software Ltd"' in r.text  # what was typed is kept
        assert 'name="accept_agreement" value="' + AGREEMENT_VERSION + '" checked' in r.text
        r = c.get(f"/ui/orgs/{org}/publisher")
        assert "7 things are missing" in r.text  # nothing was saved, the agreement neither


def test_a_full_profile_with_logo_and_agreement(app, app_state, world) -> None:
    org, owner, *_ = world
    with browser(app, owner, PASSWORD) as c:
        r = save(c, org, GOOD, logo=picture(600, 600, "JPEG"), accept=True)
        assert r.status_code == 303, r.text[:2000]
        page = c.get(r.headers["location"]).text
        assert "A confirmation link is on its way to store@acme.example" in page
        assert "1 thing is missing" in page and "Confirm the company email address" in page
        assert 'value="+44 20 7946 0958"' in page
        assert "<strong>databases</strong>" in page and "<script>alert" not in page
        logo = re.search(r'src="(/catalog-images/\d+/128)"', page)
        assert logo and c.get(logo.group(1)).headers["content-type"] == "image/png"
        assert "accepted</span> by " + owner in page

        (mail,) = outbox(app_state, to="store@acme.example")
        path, token = link_in(mail)
    with browser(app) as anyone:  # the company inbox's reader need not have an account
        r = anyone.get(f"{path}?token={token}")
        assert r.status_code == 200 and "store@acme.example" in r.text and org in r.text
        r = anyone.post(path, data=with_csrf(anyone, {"token": token}, path=f"{path}?token={token}"))
        assert r.status_code == 200 and "is now the confirmed company email address" in r.text
        r = anyone.get(f"{path}?token={token}")
        assert r.status_code == 400 and "used already" in r.text
    with browser(app, owner, PASSWORD) as c:
        page = c.get(f"/ui/orgs/{org}/publisher").text
        assert "Nothing is missing" in page and 'badge ok">complete' in page


def test_resend_from_the_page(app, app_state, world) -> None:
    org, owner, *_ = world
    with browser(app, owner, PASSWORD) as c:
        save(c, org, {"email": "a@acme.example"})
        page = c.get(f"/ui/orgs/{org}/publisher").text
        assert "Send the link again" in page
        r = c.post(
            f"/ui/orgs/{org}/publisher/email/resend",
            data=with_csrf(c, path=f"/ui/orgs/{org}/publisher"),
            follow_redirects=False,
        )
        assert r.status_code == 303
        assert "A new confirmation link is on its way to a@acme.example" in c.get(r.headers["location"]).text
    assert len(outbox(app_state, to="a@acme.example")) == 2


def test_members_read_only_strangers_get_404(app, world) -> None:
    org, _owner, reader, outsider = world
    with browser(app, reader, PASSWORD) as c:
        r = c.get(f"/ui/orgs/{org}/publisher")
        assert (
            r.status_code == 200
            and "Only the owners of" in r.text
            and '<form method="post" action="/ui/orgs' not in r.text
        )
        assert save(c, org, GOOD).status_code == 403
    with browser(app, outsider, PASSWORD) as c:
        assert c.get(f"/ui/orgs/{org}/publisher").status_code == 404
        assert save(c, org, GOOD).status_code == 404
    with browser(app) as anonymous:
        r = anonymous.get(f"/ui/orgs/{org}/publisher", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")


def test_the_form_needs_its_csrf_token(app, world) -> None:
    org, owner, *_ = world
    with browser(app, owner, PASSWORD) as c:
        r = c.post(f"/ui/orgs/{org}/publisher", data=GOOD, files={"logo": ("a.png", b"", "image/png")})
        assert r.status_code == 403
