"""The whole publishing flow in a real browser (Debian's chromium driven by Playwright) against a live
``dockyard serve`` whose job worker scans pushed images and sends mail to a real SMTP server on loopback
(aiosmtpd):

1. a publisher signs up, confirms the account from the mailed link, creates an organisation, completes the
   publisher profile (logo uploaded, company email confirmed from its link, agreement accepted);
2. pushes two images built here with skopeo into two private repositories of the organisation; the
   server image carries a Debian zlib that a feed written by the test makes a Critical finding;
3. uploads a product logo and a screenshot in the editor, creates a product with a free and a paid tier
   mapping the two images, and submits it;
4. a store-reviewer claims it from the queue and requests a change on the short description (a comment
   anchored at ``short_description``); the publisher gets the mail, fixes the field and resubmits;
5. the reviewer's approval without an override reason is refused, then made with one;
6. a store-admin publishes: the product's page shows it live with the pinned digests, and a later push to
   the staging tag changes none of them.

A full-page screenshot of each step lands in $DOCKYARD_TEST_ARTIFACTS/publish-flow (default:
test-artifacts/ at the repository's root)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.clients import Clients, require_tools
from tests.support.images import Layer, OciImage, build_image
from tests.support.live import LiveServer
from tests.support.pictures import picture
from tests.support.scanimages import DEBIAN12_OS_RELEASE, dpkg_status, osv_record, write_feed
from tests.support.smtpd import Collector, Received, smtp_server

require_tools("skopeo", "umoci")
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOTS = "publish-flow"
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
CVE = "CVE-2031-0042"
ORG, SLUG, NAME = "acme", "acme-db", "Acme Database"
PUBLISHER, PUBLISHER_EMAIL, PASSWORD = "ada", "ada@example.org", "ada-publisher-pass-1"
COMPANY_EMAIL = "store@acme.example"
REVIEWER, REVIEWER_PASSWORD = "rita", "rita-reviewer-pass-1"
WORDY = "A fast SQL database for containers, clustered, replicated, observable, with an agent"
FIXED = "A fast SQL database for containers."
REASON = "zlib is only linked by the unused compression plug-in; the fix ships in 16.3."


# -- images, mail, waiting ------------------------------------------------------------------------------
def debian_image(layout: Path, ref: str, version: str) -> OciImage:
    """A Debian 12 image whose dpkg database lists zlib1g (``version``): the scanner matches the feed."""
    packages = [("zlib1g", version, "zlib"), ("libc6", "2.36-9", "glibc")]
    base = Layer(
        files={
            "usr/lib/os-release": DEBIAN12_OS_RELEASE.encode(),
            "var/lib/dpkg/status": dpkg_status(packages).encode(),
        }
    )
    app = Layer(files={"opt/acme/VERSION": f"{ref}\n".encode()})
    return build_image(layout, ref, [base, app], labels={"org.opencontainers.image.title": ref})


def plain_image(layout: Path, ref: str) -> OciImage:
    return build_image(layout, ref, [Layer(files={"opt/agent/agent.txt": b"the acme agent\n"})])


def wait_for_mail(collector: Collector, predicate: Callable[[Received], bool], what: str) -> Received:
    """The first received message ``predicate`` accepts (the outbox sends after commit, on the worker)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for received in list(collector.received):
            if predicate(received):
                return received
        time.sleep(0.05)
    subjects = [r.message["Subject"] for r in collector.received]
    raise AssertionError(f"no mail {what} in 60 s; received: {subjects}")


def body_of(received: Received) -> str:
    return received.message.get_body(("plain",)).get_content()


def link_in(received: Received, path: str) -> str:
    found = re.search(rf"http://\S+{re.escape(path)}(\?token=[A-Za-z0-9_-]+)?", body_of(received))
    assert found, body_of(received)
    return found.group(0)


def wait_for_scan(live: LiveServer, repository: str, tag: str, auth: tuple[str, str]) -> dict:
    """The scan report of ``repository:tag`` once the worker has finished it (through the API)."""
    deadline = time.monotonic() + 120
    body: dict = {}
    while time.monotonic() < deadline:
        r = httpx.get(f"{live.url}/api/v1/repositories/{repository}/scans/{tag}", auth=auth, timeout=30)
        body = r.json()
        if r.status_code == 200 and body["status"] in ("done", "error", "skipped"):
            assert body["status"] == "done", body
            return body
        time.sleep(0.2)
    raise AssertionError(f"the scan of {repository}:{tag} did not finish: {body}")


def sign_in(page: Page, base: str, username: str, password: str, landing: str = "**/ui/") -> None:
    page.goto(f"{base}/ui/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(landing)


def flash_text(page: Page) -> str:
    return page.locator(".flash").first.inner_text()


# -- the test -------------------------------------------------------------------------------------------
def test_publish_a_product_from_sign_up_to_live(
    tmp_path: Path, fresh_database_url: str, browser, screenshot
) -> None:
    company_logo, product_logo, shot_png = (tmp_path / n for n in ("company.png", "logo.png", "shot.png"))
    company_logo.write_bytes(picture(640, 640, mode="RGBA"))
    product_logo.write_bytes(picture(512, 512))
    shot_png.write_bytes(picture(1280, 800))
    layouts = tmp_path / "layouts"
    layouts.mkdir()
    server_image = debian_image(layouts / "server", "16", "1:1.2.13.dfsg-1")
    agent_image = plain_image(layouts / "agent", "1.4")
    later_image = debian_image(layouts / "server-later", "16-later", "1:1.2.13.dfsg-1+deb12u1")
    feed = write_feed(tmp_path / "feed", osv_record(CVE, "zlib", vector=CRITICAL))
    clients = Clients(tmp_path / "clients")

    with smtp_server() as smtp:
        env = {"DOCKYARD_SMTP_URL": smtp.url(query="timeout=5"), "DOCKYARD_JOB_WORKERS": "1"}
        live = LiveServer(tmp_path / "live-data", fresh_database_url, extra_env=env).start()
        base = live.url
        mail = smtp.collector
        try:
            live.dockyard("vulndb", "update", "--source", str(feed))
            pub = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()

            def shot(page: Page, name: str) -> None:
                screenshot(page, name)

            # 1. Sign up, confirm the account from the mail, sign in.
            pub.goto(f"{base}/ui/signup")
            pub.fill("#username", PUBLISHER)
            pub.fill("#email", PUBLISHER_EMAIL)
            pub.fill("#password", PASSWORD)
            pub.fill("#confirm", PASSWORD)
            shot(pub, "sign-up")
            pub.get_by_role("button", name="Create account").click()
            pub.wait_for_url("**/ui/verify-email/resend")
            signup_mail = wait_for_mail(
                mail, lambda r: r.recipients == [PUBLISHER_EMAIL], "to confirm the account"
            )
            pub.goto(link_in(signup_mail, "/ui/verify-email"))
            pub.get_by_role("button", name="Confirm email address").click()
            pub.wait_for_url("**/ui/login")
            sign_in(pub, base, PUBLISHER, PASSWORD)
            shot(pub, "signed-in")

            # An organisation, and its publisher profile.
            pub.get_by_role("link", name="Organisations").click()
            pub.fill("#name", ORG)
            pub.get_by_role("button", name="Create organisation").click()
            pub.wait_for_url(f"**/ui/orgs/{ORG}")
            pub.get_by_role("link", name="Publisher profile").click()
            pub.wait_for_url(f"**/ui/orgs/{ORG}/publisher")
            pub.fill("#legal_name", "Acme Software Ltd")
            pub.fill("#website", "https://acme.example")
            pub.fill("#phone", "+44 20 7946 0958")
            pub.fill("#email", COMPANY_EMAIL)
            pub.fill("#story", "# Acme\n\nWe make **fast SQL databases** for containers since 2009.")
            pub.set_input_files("#logo", str(company_logo))
            expect(pub.locator("#logo-preview")).to_have_attribute("src", re.compile(r"^data:image/"))
            pub.check("#accept_agreement")
            shot(pub, "profile-filled-in")
            pub.get_by_role("button", name="Save profile").click()
            pub.wait_for_url(f"**/ui/orgs/{ORG}/publisher")
            assert f"A confirmation link is on its way to {COMPANY_EMAIL}" in pub.inner_text("main")
            company_mail = wait_for_mail(
                mail, lambda r: r.recipients == [COMPANY_EMAIL], "to confirm the company address"
            )
            pub.goto(link_in(company_mail, "/ui/publisher-email/verify"))
            pub.get_by_role("button", name="Confirm company address").click()
            assert "is now the confirmed company email address" in pub.inner_text("main")
            pub.goto(f"{base}/ui/orgs/{ORG}/publisher")
            assert "Nothing is missing" in pub.inner_text("main")
            shot(pub, "profile-complete")

            # 2. Two images pushed with skopeo into private staging repositories of the organisation.
            creds = f"{PUBLISHER}:{PASSWORD}"
            clients.copy(server_image.oci, f"docker://{live.host}/{ORG}/db-server:16", dest_creds=creds)
            clients.copy(agent_image.oci, f"docker://{live.host}/{ORG}/db-agent:1.4", dest_creds=creds)
            server_scan = wait_for_scan(live, f"{ORG}/db-server", "16", (PUBLISHER, PASSWORD))
            assert server_scan["digest"] == server_image.digest
            assert server_scan["counts"]["Critical"] == 1, server_scan["counts"]
            assert [f["vulnerability"] for f in server_scan["findings"]] == [CVE]
            agent_scan = wait_for_scan(live, f"{ORG}/db-agent", "1.4", (PUBLISHER, PASSWORD))
            assert agent_scan["counts"].get("Critical", 0) == 0
            for repository in ("db-server", "db-agent"):
                anonymous = httpx.get(f"{base}/api/v1/repositories/{ORG}/{repository}/scans/latest")
                assert anonymous.status_code in (401, 404)  # private: nothing to see without signing in
            pub.goto(f"{base}/ui/namespaces/{ORG}")
            for repository in ("db-server", "db-agent"):
                row = pub.locator("main table tr", has_text=repository)
                expect(row).to_contain_text("Private")
            expect(pub.locator("main table tr", has_text="db-server")).to_contain_text("1 Critical")
            shot(pub, "images-pushed")

            # 3. The product: logo and screenshot uploaded in the editor, two tiers, submitted.
            pub.goto(f"{base}/ui/orgs/{ORG}/products")
            pub.get_by_role("link", name="New product").first.click()
            pub.wait_for_url(f"**/ui/orgs/{ORG}/products/new")
            uploaded: dict[str, str] = {}
            for kind, file, label in (("logo", product_logo, "Logo"), ("screenshot", shot_png, "Screenshot")):
                pub.select_option("#upload-kind", kind)
                pub.set_input_files("#upload-file", str(file))
                pub.get_by_role("button", name="Upload", exact=True).click()
                pub.wait_for_url(f"**/ui/orgs/{ORG}/products/new")
                found = re.search(rf"{label} #(\d+) uploaded", flash_text(pub))
                assert found, flash_text(pub)
                uploaded[kind] = found.group(1)
            shot(pub, "editor-images-uploaded")
            pub.fill("#f-name", NAME)
            pub.fill("#f-slug", SLUG)
            pub.fill("#f-short_description", WORDY)
            pub.select_option("#f-category", "Database")
            pub.fill("#f-tags", "sql, database")
            pub.fill("#f-long_description", "# Acme DB\n\nA **fast** SQL database for containers.")
            pub.fill("#f-install", "```sh\npodman run registry.example/acme/db-server:16\n```")
            pub.fill("#f-license_url", "https://acme.example/eula")
            pub.check(f"input[name=logo][value='{uploaded['logo']}']")
            pub.check(f"input[name=screenshots][value='{uploaded['screenshot']}']")
            pub.fill("[id='f-support.url']", "https://acme.example/support")
            pub.fill("[id='f-support.email']", "support@acme.example")
            pub.fill("[id='f-support.resources']", "https://acme.example/docs")
            pub.fill("[id='f-support.sla.hours']", "24x7")
            pub.fill("[id='f-support.sla.response']", "4 hours")
            pub.check("input[name=compatibility][value=enterprise]")
            pub.fill("[name='images[0].name']", "server")
            pub.select_option("[name='images[0].repository']", f"{ORG}/db-server")
            pub.fill("[name='images[0].tags']", "16")
            pub.fill("[name='images[1].name']", "agent")
            pub.select_option("[name='images[1].repository']", f"{ORG}/db-agent")
            pub.fill("[name='images[1].tags']", "1.4")
            pub.fill("[name='tiers[0].name']", "Community")
            pub.fill("[name='tiers[0].description']", "Single node")
            pub.fill("[name='tiers[0].images']", "server")
            pub.fill("[name='tiers[1].name']", "Enterprise")
            pub.fill("[name='tiers[1].description']", "Cluster and agent")
            pub.fill("[name='tiers[1].images']", "server, agent")
            pub.check("input[name='tiers[1].price'][value=paid]")
            pub.fill("[name='tiers[1].price.amount']", "4900")
            pub.fill("[name='tiers[1].price.currency']", "USD")
            pub.select_option("[name='tiers[1].price.period']", "month")
            shot(pub, "editor-filled-in")
            pub.get_by_role("button", name="Create draft").click()
            pub.wait_for_url(f"**/ui/orgs/{ORG}/products/{SLUG}/edit")
            assert "Saved revision 1: it is complete and ready to submit." in flash_text(pub)
            shot(pub, "draft-saved")
            pub.get_by_role("link", name="Review and submit it").click()
            pub.wait_for_url(f"**/ui/orgs/{ORG}/products/{SLUG}/review")
            pub.get_by_role("button", name="Submit").click()
            pub.wait_for_url(f"**/ui/orgs/{ORG}/products/{SLUG}/review")
            assert "Submitted for review." in flash_text(pub)
            expect(pub.locator("#state")).to_have_text("Submitted")
            shot(pub, "submitted")

            # 4. A store-reviewer (made by the admin) claims it and asks for a shorter short description.
            admin = ("admin", live.admin_password)
            r = httpx.post(
                f"{base}/api/v1/users",
                json={"username": REVIEWER, "password": REVIEWER_PASSWORD, "email": "rita@store.example"},
                auth=admin,
                timeout=30,
            )
            assert r.status_code == 201, r.text
            live.dockyard("staff", "grant", REVIEWER, "store-reviewer")
            rev = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            sign_in(rev, base, REVIEWER, REVIEWER_PASSWORD)
            rev.goto(f"{base}/ui/review")
            queue = rev.locator("main table")
            expect(queue).to_contain_text(NAME)
            shot(rev, "review-queue")
            rev.get_by_role("link", name=NAME).click()
            rev.wait_for_url("**/ui/review/revisions/*")
            review_url = rev.url
            rev.get_by_role("button", name="Claim").click()
            rev.wait_for_url(review_url)
            expect(rev.locator("#state")).to_have_text("In review")
            rev.fill("#body", "Please keep the short description to one plain sentence.")
            rev.select_option("#anchor_kind", "field")
            rev.fill("#anchor", "short_description")
            rev.get_by_role("button", name="Post message").click()
            rev.wait_for_url(f"{review_url}#thread")
            expect(rev.locator("#thread")).to_contain_text("field: short_description")
            rev.fill("#comment", "Shorten the short description, please.")
            shot(rev, "review-claimed-with-comment")
            rev.get_by_role("button", name="Request changes").click()
            rev.wait_for_url(review_url)
            assert "Changes requested: the publisher has been told." in flash_text(rev)
            expect(rev.locator("#state")).to_have_text("Changes requested")

            # The publisher's mail: to their verified address, with the page's link.
            asked = wait_for_mail(
                mail, lambda r: r.message["Subject"] == f"Changes requested: {NAME}", "asking for changes"
            )
            assert asked.recipients == [PUBLISHER_EMAIL]
            assert "Shorten the short description, please." in body_of(asked)
            product_page = f"{base}/ui/orgs/{ORG}/products/{SLUG}/review"
            assert link_in(asked, f"/ui/orgs/{ORG}/products/{SLUG}/review") == product_page
            pub.goto(product_page)
            expect(pub.locator("#state")).to_have_text("Changes requested")
            expect(pub.locator("#thread")).to_contain_text("field: short_description")
            shot(pub, "publisher-sees-the-request")

            # The fix in the editor, and the resubmission.
            pub.get_by_role("link", name="Open in the editor").click()
            pub.wait_for_url(f"**/ui/orgs/{ORG}/products/{SLUG}/edit")
            pub.fill("#f-short_description", FIXED)
            pub.get_by_role("button", name="Save draft").click()
            pub.wait_for_url(f"**/ui/orgs/{ORG}/products/{SLUG}/edit")
            assert "it is complete and ready to submit" in flash_text(pub)
            pub.goto(product_page)
            pub.fill("#comment", "Shortened.")
            pub.get_by_role("button", name="Resubmit").click()
            pub.wait_for_url(product_page)
            assert "Resubmitted for review." in flash_text(pub)
            expect(pub.locator("#state")).to_have_text("Resubmitted")
            shot(pub, "resubmitted")

            # 5. The reviewer claims it again; approving over the Critical finding needs a reason.
            rev.goto(review_url)
            expect(rev.locator("#diff")).to_contain_text(FIXED)
            rev.get_by_role("button", name="Claim").click()
            rev.wait_for_url(review_url)
            expect(rev.locator("#images")).to_contain_text(CVE)
            rev.get_by_role("button", name="Approve").click()
            expect(rev.locator("#override-error")).to_be_visible()
            expect(rev.locator("#state")).to_have_text("In review")
            shot(rev, "approval-refused-without-a-reason")
            rev.fill("#override_reason", REASON)
            rev.get_by_role("button", name="Approve").click()
            rev.wait_for_url(review_url)
            assert "Approved." in flash_text(rev)
            expect(rev.locator("#state")).to_have_text("Approved")
            expect(rev.locator("#override")).to_contain_text(REASON)
            shot(rev, "approved-with-override")

            # 6. A store-admin publishes.
            adm = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            sign_in(adm, base, "admin", live.admin_password)
            adm.goto(review_url)
            adm.get_by_role("button", name="Publish").click()
            adm.wait_for_url(review_url)
            assert "Published: the revision is live." in flash_text(adm)
            expect(adm.locator("#state")).to_have_text("Published")
            shot(adm, "published")

            # The product's page: live, with each offered tag pinned to the digest pushed.
            def pinned_digests() -> dict[str, str]:
                pub.goto(product_page)
                expect(pub.locator("#state")).to_have_text("Published")
                assert "live in the store" in pub.inner_text(".page-head")
                assert "Digests pinned at approval" in pub.inner_text("#images")
                cards = pub.locator("#images .image-check")
                return {
                    cards.nth(i).locator("h3").inner_text().split()[0]: cards.nth(i)
                    .locator("td code")
                    .first.get_attribute("title")
                    or ""
                    for i in range(cards.count())
                }

            pins = pinned_digests()
            assert pins == {"server": server_image.digest, "agent": agent_image.digest}
            expect(pub.locator("#listing")).to_contain_text(FIXED)
            expect(pub.locator("#override")).to_contain_text(REASON)
            shot(pub, "live-with-pinned-digests")

            # A later push to the staging tag changes nothing customers get.
            clients.copy(later_image.oci, f"docker://{live.host}/{ORG}/db-server:16", dest_creds=creds)
            moved = wait_for_scan(live, f"{ORG}/db-server", "16", (PUBLISHER, PASSWORD))
            assert moved["digest"] == later_image.digest != server_image.digest
            assert pinned_digests() == pins
            shot(pub, "pins-unchanged-after-a-later-push")

            published = wait_for_mail(
                mail, lambda r: r.message["Subject"] == f"Published: {NAME}", "saying it is live"
            )
            assert published.recipients == [PUBLISHER_EMAIL]
        finally:
            clients.close()
            live.stop()
