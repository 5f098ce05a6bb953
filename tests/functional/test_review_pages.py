"""The review pages in a browser's shoes: the reviewer's queue and review page (the manifest rendered as
customers will see it, the images with their scans, the thread with internal notes, the moves), and the
publisher's side (no internal note, ever; resubmit and withdraw). Customers and other publishers get the
404 page."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.accounts import browser, post
from tests.support.factories import PASSWORD
from tests.support.review_world import CVE, World, build_world

from dockyard.web.context import AppState


@pytest.fixture
def world(app, app_state: AppState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    return build_world(app_state, tmp_path / "feed")


def product_page(world: World) -> str:
    return f"/ui/orgs/{world.org}/products/{world.slug}/review"


def test_the_back_and_forth_on_the_pages(app, world: World) -> None:
    rid = world.revision
    review = f"/ui/review/revisions/{rid}"
    with (
        browser(app, world.users["owner"], PASSWORD) as owner,
        browser(app, world.users["reviewer"], PASSWORD) as rev,
    ):
        page = owner.get(product_page(world))
        assert page.status_code == 200
        assert (
            "<h1>Acme Database" in page.text
            and "&lt;script&gt;" in page.text
            and "<script>alert" not in page.text
        )
        assert 'rel="nofollow noopener"' in page.text and "49.00 USD / month" in page.text
        assert 'value="submit"' in page.text and 'value="claim"' not in page.text
        r = post(owner, f"/ui/orgs/{world.org}/products/{world.slug}/move", {"action": "submit"})
        assert r.status_code == 303

        queue = rev.get("/ui/review")
        assert f'href="/ui/review/revisions/{rid}"' in queue.text and "Acme Database" in queue.text
        assert post(rev, f"{review}/move", {"action": "claim"}).status_code == 303
        page = rev.get(review)
        assert (
            "In review" in page.text
            and 'value="approve"' in page.text
            and 'id="override_reason"' in page.text
        )
        assert (
            CVE in page.text and f"/ui/repositories/{world.org}/db-server/-/scans/{world.server}" in page.text
        )
        r = post(
            rev, f"{review}/comments", {"body": "Internal: zlib risk.", "internal": "on", "next": review}
        )
        assert r.status_code == 303
        r = post(
            rev,
            f"{review}/comments",
            {
                "body": "Shorter, please.",
                "anchor_kind": "field",
                "anchor": "short_description",
                "next": review,
            },
        )
        assert r.status_code == 303
        r = post(
            rev,
            f"{review}/comments",
            {"body": "x", "anchor_kind": "field", "anchor": "nope[3]", "next": review},
        )
        assert r.status_code == 400 and "not a field of this revision" in r.text
        r = post(rev, f"{review}/move", {"action": "approve"})
        assert r.status_code == 400 and 'id="override-error"' in r.text
        r = post(rev, f"{review}/move", {"action": "request-changes", "comment": ""})
        assert r.status_code == 400 and 'id="comment-error"' in r.text
        assert (
            post(rev, f"{review}/move", {"action": "request-changes", "comment": "Shorten it."}).status_code
            == 303
        )
        assert "Internal: zlib risk." in rev.get(review).text

        page = owner.get(product_page(world))
        assert (
            "Changes requested" in page.text
            and "Shorter, please." in page.text
            and "Shorten it." in page.text
        )
        assert "zlib risk" not in page.text and "internal note" not in page.text.lower().replace(
            "internal notes", ""
        )
        assert 'name="internal"' not in page.text
        # The publisher cannot read the reviewer's page either way around the filter.
        assert "zlib risk" not in owner.get(review).text
        assert 'value="resubmit"' in page.text and 'value="withdraw"' in page.text
        r = post(owner, f"/ui/orgs/{world.org}/products/{world.slug}/move", {"action": "claim"})
        assert r.status_code == 400
        assert (
            post(
                owner, f"/ui/orgs/{world.org}/products/{world.slug}/move", {"action": "withdraw"}
            ).status_code
            == 303
        )
        assert "Withdrawn" in owner.get(product_page(world)).text

        dash = owner.get(f"/ui/orgs/{world.org}/dashboard")
        assert dash.status_code == 200 and "Acme Database" in dash.text and "Critical: 1" in dash.text


@pytest.mark.parametrize("role", ["outsider", "other"])
def test_others_get_the_404_page(app, world: World, role: str) -> None:
    with browser(app, world.users[role], PASSWORD) as c:
        for path in (
            product_page(world),
            f"/ui/review/revisions/{world.revision}",
            f"/ui/orgs/{world.org}/dashboard",
        ):
            r = c.get(path)
            assert r.status_code == 404 and "Acme" not in r.text, path
        assert c.get("/ui/review").status_code == 403


def test_a_submission_with_problems_lists_them_on_the_page(app, app_state: AppState, world: World) -> None:
    from dockyard.publishing.models import ProductRevision

    with app_state.sessions.begin() as s:
        revision = s.get(ProductRevision, world.revision)
        revision.manifest = {**revision.manifest, "install": ""}
    with browser(app, world.users["owner"], PASSWORD) as owner:
        r = post(owner, f"/ui/orgs/{world.org}/products/{world.slug}/move", {"action": "submit"})
        assert r.status_code == 400 and 'id="manifest-errors"' in r.text and "install: is required" in r.text
