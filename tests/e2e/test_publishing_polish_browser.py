"""The publishing pages' finishing touches in Debian's chromium (Playwright), against the app served
in-process by uvicorn: the Publishing page from the top bar, the editor's image choosers with thumbnails,
the review page's listing with the real logo and screenshots, resolving a thread with its button (folded
afterwards), and the queue's ages. A full-page screenshot of each in $DOCKYARD_TEST_ARTIFACTS/polish
(default test-artifacts/polish)."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from dockyard.db import utcnow
from dockyard.publishing.models import CatalogImage, ProductRevision
from dockyard.web.context import AppState
from tests.support.factories import PASSWORD
from tests.support.pages import signed_in_page
from tests.support.pictures import picture
from tests.support.review_world import build_world
from tests.support.smtpd import free_port

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


def test_publishing_pages_in_a_browser(app, app_state: AppState, tmp_path: Path, browser) -> None:
    world = build_world(app_state, tmp_path / "feed", scan=False)
    shots = Path(os.environ.get("DOCKYARD_TEST_ARTIFACTS") or REPO / "test-artifacts") / "polish"
    shots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    owner_auth = (world.users["owner"], PASSWORD)
    try:
        # Real catalogue images, uploaded as a publisher would, chosen by the product's draft.
        with httpx.Client(base_url=f"{base}/api/v1", auth=owner_auth, timeout=60) as api:

            def upload(kind: str, data: bytes) -> int:
                r = api.post(
                    f"/publishers/{world.org}/images", params={"kind": kind}, content=data,
                    headers={"Content-Type": "image/png"},
                )  # fmt: skip
                assert r.status_code == 201, r.text
                return int(r.json()["id"])

            logo = upload("logo", picture(512, 512))
            shot_ids = [upload("screenshot", picture(1280, 800)), upload("screenshot", picture(1920, 1080))]
            upload("logo", picture(600, 600, mode="RGBA"))  # another choice in the editor
            with app_state.sessions.begin() as s:
                revision = s.get(ProductRevision, world.revision)
                revision.manifest = {**revision.manifest, "logo": logo, "screenshots": shot_ids}
                # The world's catalogue rows are stand-ins without bytes: the real uploads replace them.
                publisher = revision.product.publisher
                publisher.logo_id = logo
                s.flush()
                for image in s.scalars(select(CatalogImage).where(CatalogImage.publisher_id == publisher.id)):
                    if not image.renditions:
                        s.delete(image)
            comments = f"/publishers/{world.org}/products/{world.slug}/comments"
            first = api.post(comments, json={"body": "Is the Enterprise tier priced per node?"}).json()["id"]
            api.post(comments, json={"body": "Per cluster.", "parent_id": first})
            api.post(comments, json={"body": "The install text mentions an old tag."})

        def signed_in(role: str):
            return signed_in_page(browser, base, world.users[role], PASSWORD)

        owner, reviewer = signed_in("owner"), signed_in("reviewer")
        owner.get_by_role("link", name="Publishing").click()
        owner.wait_for_load_state()
        assert owner.locator('nav a[aria-current="page"]').inner_text() == "Publishing"
        owner.screenshot(path=str(shots / "01-publishing.png"), full_page=True)

        owner.goto(f"{base}/ui/orgs/{world.org}/products/{world.slug}/edit")
        logo_img = owner.locator(f'img[src="/catalog-images/{logo}/128"]')
        assert logo_img.is_visible()
        assert owner.locator(f'input[name="logo"][value="{logo}"]').is_checked()
        owner.locator("#f-logo").scroll_into_view_if_needed()
        owner.screenshot(path=str(shots / "02-editor-images.png"), full_page=True)

        owner.goto(f"{base}/ui/orgs/{world.org}/products/{world.slug}/review")
        owner.get_by_role("button", name="Submit").click()
        owner.wait_for_load_state()
        assert "Submitted for review." in owner.content()
        owner.get_by_role("button", name="Resolve the thread started by").first.click()
        owner.wait_for_load_state()
        assert "Thread resolved" in owner.content()
        assert owner.locator(f"details#comment-{first}").count() == 1
        owner.screenshot(path=str(shots / "03-publisher-product.png"), full_page=True)

        with app_state.sessions.begin() as s:  # waiting a while: the rival two days, ours three hours
            now = utcnow()
            s.get(ProductRevision, world.other_revision).submitted_at = now - dt.timedelta(days=2, hours=5)
            s.get(ProductRevision, world.revision).submitted_at = now - dt.timedelta(hours=3, minutes=2)
        reviewer.goto(f"{base}/ui/review")
        assert reviewer.locator("td.age time").all_inner_texts() == ["2 d", "3 h"]
        reviewer.screenshot(path=str(shots / "04-queue.png"), full_page=True)
        reviewer.goto(f"{base}/ui/review/revisions/{world.revision}")
        listing = reviewer.locator("#listing")
        assert listing.locator(f'img[src="/catalog-images/{logo}/128"]').is_visible()
        assert listing.locator("#listing-screenshots img").count() == 2
        # The images really load (naturalWidth is read without eval, from a locator's property).
        size = listing.locator("#listing-logo img").evaluate("img => img.naturalWidth")
        assert size == 128
        reviewer.screenshot(path=str(shots / "05-review-page.png"), full_page=True)
    finally:
        server.should_exit = True
        thread.join(10)
