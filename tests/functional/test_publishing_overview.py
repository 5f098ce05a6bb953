"""The top bar's Publishing link and the page it opens (each of the viewer's organisations with its
publisher profile's state and its products), and the product editor's image choosers with thumbnails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.support.accounts import browser, post
from tests.support.factories import PASSWORD, make_org
from tests.support.review_world import World, build_world

from dockyard.publishing.models import ProductRevision
from dockyard.web.context import AppState


@pytest.fixture
def world(app, app_state: AppState, tmp_path: Path) -> World:
    return build_world(app_state, tmp_path / "feed", scan=False)


def nav(page: str) -> str:
    return page[page.index('aria-label="Main"') : page.index("</nav>")]


def test_the_publishing_page(app, app_state: AppState, world: World) -> None:
    with app_state.sessions.begin() as s:
        bare = make_org(s, owner=world.users["owner"])  # no publisher profile saved yet
    with browser(app, world.users["owner"], PASSWORD) as owner:
        home = owner.get("/ui/").text
        assert '<a href="/ui/publishing" >Publishing</a>' in nav(home)
        page = owner.get("/ui/publishing")
        assert page.status_code == 200
        assert '<a href="/ui/publishing" aria-current="page">Publishing</a>' in nav(page.text)
        assert "aria-current" not in nav(page.text).replace('href="/ui/publishing" aria-current', "")

        section = re.search(
            rf'<section class="card publishing-org" id="org-{world.org}".*?</section>', page.text, re.S
        )
        assert section, page.text
        text = section.group(0)
        assert "profile complete" in text and "Acme Ltd" in text
        assert f'href="/ui/orgs/{world.org}/products/acme-db/review">Acme Database</a>' in text
        assert '#1 <span class="badge state-draft">draft</span>' in text
        assert f'href="/ui/orgs/{world.org}/products/new"' in text  # the owner may add products
        assert (
            f'href="/ui/orgs/{world.org}/dashboard"' in text
            and f'href="/ui/orgs/{world.org}/publisher"' in text
        )

        empty = re.search(
            rf'<section class="card publishing-org" id="org-{bare}".*?</section>', page.text, re.S
        )
        assert empty and "no publisher profile yet" in empty.group(0) and "No products yet." in empty.group(0)
        # Only the viewer's organisations.
        assert world.other_org not in page.text

        # The publishing pages mark Publishing as where one is.
        for path in (
            f"/ui/orgs/{world.org}/publisher",
            f"/ui/orgs/{world.org}/products",
            f"/ui/orgs/{world.org}/products/acme-db/edit",
            f"/ui/orgs/{world.org}/dashboard",
            f"/ui/orgs/{world.org}/products/acme-db/review",
        ):
            assert '<a href="/ui/publishing" aria-current="page">' in nav(owner.get(path).text), path


def test_an_incomplete_profile_says_what_is_missing(app, app_state: AppState, world: World) -> None:
    from dockyard.publishing.models import Publisher

    with app_state.sessions.begin() as s:
        for publisher in s.query(Publisher).all():
            publisher.story = ""
    with browser(app, world.users["reader"], PASSWORD) as reader:
        page = reader.get("/ui/publishing").text
        assert (
            "profile incomplete" in page
            and "1 thing missing" in page
            and "Tell the company&#39;s story." in page
        )
        assert f'href="/ui/orgs/{world.org}/products/new"' not in page  # readers add no products


def test_signed_out_and_no_organisations(app, world: World) -> None:
    with browser(app) as anonymous:
        r = anonymous.get("/ui/publishing", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
        assert "/ui/publishing" not in anonymous.get("/ui/login").text
    with browser(app, world.users["outsider"], PASSWORD) as outsider:
        page = outsider.get("/ui/publishing").text
        assert "No organisations yet" in page and 'href="/ui/orgs"' in page


def test_the_editor_chooses_images_by_their_thumbnails(app, app_state: AppState, world: World) -> None:
    with app_state.sessions() as s:
        manifest = s.get(ProductRevision, world.revision).manifest
    logo, shot = manifest["logo"], manifest["screenshots"][0]
    with browser(app, world.users["owner"], PASSWORD) as owner:
        page = owner.get(f"/ui/orgs/{world.org}/products/acme-db/edit").text
        assert (
            f'<input type="radio" name="logo" value="{logo}" checked> '
            f'<img src="/catalog-images/{logo}/128" alt="Logo #{logo}"' in page
        )
        assert '<input type="radio" name="logo" value="">' in page
        assert (
            f'<input type="checkbox" name="screenshots" value="{shot}" checked> '
            f'<img src="/catalog-images/{shot}/thumb" alt="Screenshot #{shot}"' in page
        )
        assert '<select id="f-logo"' not in page
        # Choosing no logo by the radio saves the draft without one (the form still posts as before).
        form = {"name": "Acme Database", "logo": "", "screenshots": str(shot), "compatibility": "enterprise"}
        r = post(owner, f"/ui/orgs/{world.org}/products/acme-db/edit", form)
        assert r.status_code == 303, r.text[:2000]
    with app_state.sessions() as s:
        saved = s.get(ProductRevision, world.revision).manifest
        assert saved.get("logo") is None and saved["screenshots"] == [shot]
