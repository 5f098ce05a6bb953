"""The store's customer pages: the home page, a product's page (every manifest item, never a staging
repository), a publisher's page, the on-hold and revoked labels, and the HTML 404."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient
from tests.support.store_world import published_world

from dockyard.publishing.models import ProductRevision
from dockyard.store.models import Listing, ListingStatus, ProductBadge
from dockyard.web.context import AppState


@pytest.fixture
def world(app_state: AppState, tmp_path: Path):  # type: ignore[no-untyped-def]
    return published_world(app_state, tmp_path / "feed")


def set_listing(state: AppState, org: str, slug: str, **values: object) -> None:
    with state.sessions.begin() as s:
        s.execute(
            update(Listing)
            .where(Listing.publisher_slug == org, Listing.product_slug == slug)
            .values(**values)
        )


def badge(state: AppState, org: str, slug: str, kind: str) -> None:
    with state.sessions.begin() as s:
        product_id = s.scalar(
            select(Listing.product_id).where(Listing.publisher_slug == org, Listing.product_slug == slug)
        )
        s.add(ProductBadge(product_id=product_id, kind=kind, reason="tested"))
        s.execute(
            update(Listing).where(Listing.product_id == product_id).values(certified=kind != "official")
        )


def text_of(html: str) -> str:
    """The page's visible text, roughly: tags dropped, whitespace squeezed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_product_page_shows_every_manifest_item(client: TestClient, app_state: AppState, world) -> None:  # type: ignore[no-untyped-def]
    badge(app_state, world.org, world.slug, "certified_container")
    r = client.get(f"/products/{world.org}/{world.slug}")
    assert r.status_code == 200, r.text
    html, text = r.text, text_of(r.text)
    with app_state.sessions() as s:
        manifest = s.get(ProductRevision, world.revision).manifest
    assert "<h1>Acme Database</h1>" in html
    assert f'src="/catalog-images/{manifest["logo"]}/128"' in html  # the logo
    assert "A fast SQL database for containers." in text  # short description
    assert (
        "<strong>fast</strong>" in html and "<script>alert" not in html
    )  # long description, rendered safely
    assert 'href="/search?category=Database"' in html
    for tag in manifest["tags"]:
        assert f'href="/search?q={tag}"' in html
    shot = manifest["screenshots"][0]
    assert f'src="/catalog-images/{shot}/thumb"' in html and 'href="#shot-1"' in html
    assert f'src="/catalog-images/{shot}/full"' in html and 'id="shot-1"' in html  # full size, no JS
    assert 'href="https://acme.example/support"' in html and "mailto:support@acme.example" in html
    assert 'href="https://acme.example/docs"' in html  # self-help resource
    assert "24x7" in text and "4 hours" in text  # SLA
    assert "Community" in text and "Single node" in text and "Free" in text
    assert "Enterprise" in text and "Cluster and agent" in text and "$49.00 / month" in text
    assert f'href="/products/{world.org}/{world.slug}/get?tier=Community"' in html
    assert f'href="/products/{world.org}/{world.slug}/get?tier=Enterprise"' in html
    assert ">Get<" in html and ">Subscribe<" in html
    assert "docker pull acme/db" in text  # installation instructions
    assert 'href="https://acme.example/eula"' in html  # licence
    assert "Acme Ltd" in text and f'href="/publishers/{world.org}"' in html
    assert f'href="/publishers/{world.org}#story"' in html
    # the badge, with what it certifies as its accessible description
    assert 'aria-describedby="head-certified_container"' in html
    assert 'id="head-certified_container"' in html and "Built with best practices" in text
    # images: customer-facing names, platforms, sizes, store pull references
    host = urlsplit(app_state.settings.public_url).netloc
    assert f"{host}/store/{world.org}/{world.slug}/server:16" in html
    assert f"{host}/store/{world.org}/{world.slug}/agent:1.4" in html
    assert "linux/amd64" in text and re.search(r"\d+(\.\d)? (B|KB|MB)", text)
    assert "Downloads" in text and "Last update" in text


def test_the_staging_repositories_never_reach_the_page_or_the_api(
    client: TestClient,
    world,  # type: ignore[no-untyped-def]
) -> None:
    for path in (f"/products/{world.org}/{world.slug}", f"/api/v1/products/{world.org}/{world.slug}", "/"):
        body = client.get(path).text
        assert "db-server" not in body and "db-agent" not in body, path


def test_on_hold_shows_the_warning_label(client: TestClient, app_state: AppState, world) -> None:  # type: ignore[no-untyped-def]
    since = dt.datetime(2031, 3, 4, 5, 6)
    set_listing(
        app_state, world.org, world.slug, status=ListingStatus.ON_HOLD.value, status_since=since,
        status_reason="CVE-2031-0001 in zlib is past its 72-hour fix deadline",
    )  # fmt: skip
    r = client.get(f"/products/{world.org}/{world.slug}")
    text = text_of(r.text)
    assert r.status_code == 200
    assert 'class="store-label hold"' in r.text
    assert "On hold: a security fix is overdue" in text and "2031-03-04 05:06 UTC" in text
    assert "CVE-2031-0001 in zlib is past its 72-hour fix deadline" in text
    assert ">Get<" in r.text  # still listed
    with app_state.sessions.begin() as s:
        product_id = s.scalar(select(Listing.product_id).where(Listing.product_slug == world.slug))
        s.add(ProductBadge(product_id=product_id, kind="certified_container", reason="tested"))
    held = text_of(client.get(f"/products/{world.org}/{world.slug}").text)
    assert "1 badge suspended while on hold" in held
    home = client.get("/")
    assert "Acme Database" in home.text and "On hold: security fix overdue" in text_of(home.text)


def test_a_revoked_product_says_it_was_withdrawn_and_leaves_the_home_page(
    client: TestClient,
    app_state: AppState,
    world,  # type: ignore[no-untyped-def]
) -> None:
    assert "Acme Database" in client.get("/").text
    set_listing(
        app_state, world.org, world.slug, status=ListingStatus.REVOKED.value,
        status_since=dt.datetime(2031, 4, 4), status_reason="a month on hold",
    )  # fmt: skip
    r = client.get(f"/products/{world.org}/{world.slug}")
    text = text_of(r.text)
    assert r.status_code == 200
    assert "Withdrawn from the store" in text and "a month on hold" in text
    assert "/get?tier=" not in r.text and ">Get<" not in r.text and ">Subscribe<" not in r.text
    assert "/store/" not in r.text  # no pull references
    home = client.get("/")
    assert "Acme Database" not in home.text
    assert client.get(f"/publishers/{world.org}").status_code == 404  # nothing else listed
    api = client.get(f"/api/v1/products/{world.org}/{world.slug}").json()
    assert api["status"] == "revoked" and all(t["get_url"] is None for t in api["tiers"])


def test_unknown_and_unpublished_products_are_an_html_404(client: TestClient, world) -> None:  # type: ignore[no-untyped-def]
    for path in (
        f"/products/{world.org}/nope",
        f"/products/nobody/{world.slug}",
        f"/products/{world.other_org}/rival-db",  # submitted, never published
        "/publishers/nobody",
        f"/publishers/{world.other_org}",  # a publisher with nothing in the store
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("text/html") and "Page not found" in r.text
    assert client.get(f"/api/v1/products/{world.org}/nope").json()["error"]["code"] == "NOT_FOUND"


def test_the_home_page_sections_and_category_counts(client: TestClient, app_state: AppState, world) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/")
    assert r.status_code == 200
    html, text = r.text, text_of(r.text)
    assert 'action="/search"' in html and 'name="q"' in html
    assert re.search(r'href="/search\?category=Database"><span class="category-name">Database</span> '
                     r'<span class="count">1<', html)  # fmt: skip
    assert re.search(r'href="/search\?category=Networking"><span class="category-name">Networking</span> '
                     r'<span class="count">0<', html)  # fmt: skip
    assert "New in the store" in text and "Most downloaded" in text
    assert "Certified products" not in text  # none yet
    assert "Nothing has been downloaded yet" in text
    set_listing(app_state, world.org, world.slug, downloads=1234)
    badge(app_state, world.org, world.slug, "certified_container")
    html = client.get("/").text
    assert 'aria-label="Certified products"' in html and 'aria-label="Most downloaded products"' in html
    assert "1,234" in html and "certified-band" in html
    assert 'aria-describedby="certified-' in html  # the badge on the card, described


def test_the_publisher_page(client: TestClient, app_state: AppState, world) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"/publishers/{world.org}")
    assert r.status_code == 200
    text = text_of(r.text)
    assert "<h1>Acme Ltd</h1>" in r.text and 'href="https://acme.example"' in r.text
    assert "We make databases." in text and 'id="story"' in r.text
    assert f'href="/products/{world.org}/{world.slug}"' in r.text
    # the company's phone and address are for the store team, not the public page
    assert "+442071838750" not in r.text and "hello@acme.example" not in r.text


def test_the_registry_start_page_moved(client: TestClient) -> None:
    r = client.get("/ui/start")
    assert r.status_code == 200 and "Push your first image" in r.text
    assert 'href="/ui/start"' in client.get("/").text
