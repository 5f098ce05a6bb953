"""Product pages: the list, the editor (new and edit) with each problem beside its field, the problems
list, the Markdown preview, the short-description limit checked by the server, and who may see what."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from tests.support.accounts import browser, post
from tests.support.factories import PASSWORD, make_org, make_user
from tests.support.products import ACTOR, catalog_image, manifest, product_service
from tests.support.scanimages import Images

from dockyard.accounts.models import User
from dockyard.authz import Principal


@pytest.fixture
def team(app_state) -> dict:
    """Org "acme" (owner, reader) with acme/db-server:16 pushed and a logo and screenshot uploaded; a user
    of another org; a product acme-db whose draft names a missing tag."""
    with app_state.sessions.begin() as s:
        people = {role: make_user(s).username for role in ("owner", "reader", "other")}
        make_org(s, "acme", owner=people["owner"], members={people["reader"]: "reader"})
        make_org(s, "rival", owner=people["other"])
        Images(s, app_state.blobs).image("acme/db-server", "16", [b"layer"])
        Images(s, app_state.blobs).image("acme/db-agent", "1.4", [b"agent"])
        people["logo"] = catalog_image(s, "acme", "logo")
        people["shot"] = catalog_image(s, "acme", "screenshot")
    return people


def form_of(data: dict) -> dict[str, str]:
    """A manifest as the editor posts it."""
    out = {
        "name": data["name"],
        "slug": data["slug"],
        "short_description": data["short_description"],
        "category": data["category"],
        "tags": ", ".join(data["tags"]),
        "long_description": data["long_description"],
        "install": data["install"],
        "license_url": data["license_url"],
        "compatibility": data["compatibility"],
        "support.url": data["support"]["url"],
        "support.email": data["support"]["email"],
        "support.resources": "\n".join(data["support"]["resources"]),
        "support.sla.hours": data["support"]["sla"]["hours"],
        "support.sla.response": data["support"]["sla"]["response"],
        "logo": str(data["logo"] or ""),
        "screenshots": [str(i) for i in data["screenshots"]],
    }
    for i, image in enumerate(data["images"]):
        out |= {f"images[{i}].name": image["name"], f"images[{i}].repository": image["repository"]}
        out[f"images[{i}].tags"] = ", ".join(image["tags"])
    for i, tier in enumerate(data["tiers"]):
        p = f"tiers[{i}]"
        out |= {f"{p}.name": tier["name"], f"{p}.description": tier["description"]}
        out[f"{p}.images"] = ", ".join(tier["images"])
        if tier["price"] == "free":
            out[f"{p}.price"] = "free"
        else:
            out |= {f"{p}.price": "paid", f"{p}.price.amount": str(tier["price"]["amount"])}
            out |= {
                f"{p}.price.currency": tier["price"]["currency"],
                f"{p}.price.period": tier["price"]["period"],
            }
    return out


def good(team: dict, **changes) -> dict:
    data = manifest("acme", logo=team["logo"], screenshots=[team["shot"]], **changes)
    data["images"][0]["tags"] = ["16"]
    return data


def beside(page: str, path: str) -> str:
    """The message shown beside the field named ``path``."""
    found = re.search(rf'<p class="field-(?:error|warning)" id="f-{re.escape(path)}-error">([^<]*)</p>', page)
    assert found, f"no message beside {path}"
    return found.group(1).replace("&#39;", "'")


def test_create_a_product_from_the_form_then_edit_it(app, team) -> None:
    with browser(app, team["owner"], PASSWORD) as c:
        r = c.get("/ui/orgs/acme/products")
        assert r.status_code == 200 and "No products yet" in r.text and "/ui/orgs/acme/products/new" in r.text
        r = c.get("/ui/orgs/acme/products/new")
        assert r.status_code == 200 and '<option value="acme/db-server">acme/db-server</option>' in r.text
        r = post(c, "/ui/orgs/acme/products/new", form_of(good(team)))
        assert r.status_code == 303 and r.headers["location"] == "/ui/orgs/acme/products/acme-db/edit"
        r = c.get(r.headers["location"])
        assert "Saved revision 1: it is complete and ready to submit." in r.text
        assert "Complete: nothing stands in the way" in r.text
        assert 'value="A fast SQL database for containers."' in r.text
        # Edited: a tag that does not exist is saved, with a warning beside its field.
        data = good(team)
        data["images"][1]["tags"] = ["9.9"]
        r = post(c, "/ui/orgs/acme/products/acme-db/edit", form_of(data))
        assert r.status_code == 303
        r = c.get(r.headers["location"])
        assert "1 thing to fix before submitting" in r.text
        assert beside(r.text, "images[1].tags[0]") == "'acme/db-agent' has no tag '9.9'"
        r = c.get("/ui/orgs/acme/products")
        assert "Acme Database" in r.text and "draft" in r.text and "1 thing to fix" in r.text


def test_invalid_fields_are_refused_beside_each_field(app, team) -> None:
    with browser(app, team["owner"], PASSWORD) as c:
        data = form_of(good(team, short_description="x" * 141))
        data["tiers[1].price.currency"] = "USX"
        data["license_url"] = "ftp://nope"
        r = post(c, "/ui/orgs/acme/products/new", data)
        assert r.status_code == 400 and "Not saved: 3 problems" in r.text
        assert beside(r.text, "short_description") == "at most 140 characters (141 given)"
        assert beside(r.text, "tiers[1].price.currency") == "'USX' is not an ISO 4217 code"
        assert beside(r.text, "license_url") == "'ftp://nope' is not an http(s) URL"
        assert "141/140" in r.text  # the counter, drawn by the server
        assert 'value="USX"' in r.text  # what was typed stays
        assert c.get("/ui/orgs/acme/products").text.count("Acme Database") == 0


def test_blank_rows_are_dropped_and_rows_renumbered(app, team) -> None:
    with browser(app, team["owner"], PASSWORD) as c:
        data = form_of(good(team))
        # The second image moved to the fourth row: rows 1 and 2 blank.
        for field in ("name", "repository", "tags"):
            data[f"images[3].{field}"] = data.pop(f"images[1].{field}")
        data["images[3].tags"] = "nope"
        r = post(c, "/ui/orgs/acme/products/new", data)
        assert r.status_code == 303
        r = c.get(r.headers["location"])
        assert beside(r.text, "images[1].tags[0]") == "'acme/db-agent' has no tag 'nope'"


def test_preview_renders_markdown_without_saving(app, team) -> None:
    with browser(app, team["owner"], PASSWORD) as c:
        data = form_of(good(team, long_description="**bold** <script>alert(1)</script>"))
        r = post(c, "/ui/orgs/acme/products/new", {**data, "action": "preview"})
        assert r.status_code == 200 and "<strong>bold</strong> &lt;script&gt;" in r.text
        assert "<script>alert" not in r.text
        assert "No products yet" in c.get("/ui/orgs/acme/products").text


def test_a_frozen_revision_is_shown_read_only_and_refused(app, app_state, team) -> None:
    with app_state.sessions.begin() as s:
        owner = s.scalar(select(User).where(User.username == team["owner"]))
        who = Principal(kind="user", name=owner.username, user_id=owner.id)
        product = product_service(s).create("acme", good(team), who, ACTOR)
        product.working_revision.state = "submitted"
    with browser(app, team["owner"], PASSWORD) as c:
        r = c.get("/ui/orgs/acme/products/acme-db/edit")
        assert "a submitted revision is frozen" in r.text and "Save draft" not in r.text
        r = post(c, "/ui/orgs/acme/products/acme-db/edit", form_of(good(team, name="Sneaky")))
        assert (
            r.status_code == 409
            and "Revision 1 of acme/acme-db is submitted: a submitted revision is frozen" in r.text
        )
        assert 'value="Acme Database"' in c.get("/ui/orgs/acme/products/acme-db/edit").text


def test_who_sees_what(app, team) -> None:
    with browser(app, team["owner"], PASSWORD) as c:
        assert post(c, "/ui/orgs/acme/products/new", form_of(good(team))).status_code == 303
    with browser(app, team["reader"], PASSWORD) as c:
        r = c.get("/ui/orgs/acme/products/acme-db/edit")
        assert (
            r.status_code == 200
            and "its owners and maintainers edit them" in r.text
            and "Save draft" not in r.text
        )
        assert "/products/new" not in c.get("/ui/orgs/acme/products").text
        assert post(c, "/ui/orgs/acme/products/acme-db/edit", form_of(good(team))).status_code == 403
    with browser(app, team["other"], PASSWORD) as c:
        for page in (
            "/ui/orgs/acme/products",
            "/ui/orgs/acme/products/new",
            "/ui/orgs/acme/products/acme-db/edit",
        ):
            assert c.get(page).status_code == 404
        assert post(c, "/ui/orgs/acme/products/new", form_of(good(team))).status_code == 404
    with browser(app) as c:
        r = c.get("/ui/orgs/acme/products", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
