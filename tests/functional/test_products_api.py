"""The products API: create from a manifest, read and replace the working revision, every field problem in
the error envelope, the problems of a draft, the frozen revision, who may, and the public JSON Schema."""

from __future__ import annotations

import pytest
from tests.support.factories import PASSWORD, make_org, make_user
from tests.support.products import catalog_image, manifest
from tests.support.registry_client import protocol_guard
from tests.support.scanimages import Images

from dockyard.publishing.manifest import json_schema
from dockyard.publishing.models import Product

BASE = "/api/v1/publishers/acme/products"


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


@pytest.fixture
def team(app_state) -> dict:
    with app_state.sessions.begin() as s:
        people = {role: (make_user(s).username, PASSWORD) for role in ("owner", "maint", "reader", "other")}
        make_org(
            s,
            "acme",
            owner=people["owner"][0],
            members={people["maint"][0]: "maintainer", people["reader"][0]: "reader"},
        )
        make_org(s, "rival", owner=people["other"][0])
        Images(s, app_state.blobs).image("acme/db-server", "16", [b"a"])
        Images(s, app_state.blobs).image("acme/db-agent", "1.4", [b"b"])
        people["logo"] = catalog_image(s, "acme", "logo")
        people["shot"] = catalog_image(s, "acme", "screenshot")
        people["rival-logo"] = catalog_image(s, "rival", "logo")
    return people


def good(team: dict, **changes) -> dict:
    data = manifest("acme", **{"logo": team["logo"], "screenshots": [team["shot"]], **changes})
    data["images"][0]["tags"] = ["16"]
    return data


def test_create_read_and_replace(client, team) -> None:
    r = client.post(BASE, json=good(team), auth=team["maint"])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["slug"] == "acme-db" and body["publisher"] == "acme" and body["live"] is None
    assert (
        body["working"]["number"] == 1 and body["working"]["state"] == "draft" and body["working"]["editable"]
    )
    assert body["working"]["manifest"]["tiers"][1]["price"] == {
        "amount": 4900,
        "currency": "USD",
        "period": "month",
    }
    assert body["problems"] == []

    data = good(team, logo=team["rival-logo"], name="Acme DB")
    r = client.put(f"{BASE}/acme-db", json=data, auth=team["owner"])
    assert r.status_code == 200
    assert r.json()["working"]["manifest"]["name"] == "Acme DB" and r.json()["working"]["number"] == 1
    assert r.json()["problems"] == [
        {"field": "logo", "message": f"image {team['rival-logo']} is not one of acme's catalogue images"}
    ]
    assert client.get(f"{BASE}/acme-db", auth=team["reader"]).json()["problems"] == r.json()["problems"]

    listed = client.get(BASE, auth=team["reader"]).json()["products"]
    assert [(p["slug"], p["name"], p["working"]["state"], p["live"]) for p in listed] == [
        ("acme-db", "Acme DB", "draft", None)
    ]


def test_every_field_problem_in_the_envelope(client, team) -> None:
    data = good(team, slug="Bad Slug")
    data["tiers"][1]["price"]["currency"] = "USX"
    r = client.post(BASE, json=data, auth=team["owner"])
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "INVALID" and error["message"].startswith("2 problems, first: slug:")
    assert error["detail"] == [
        {
            "field": "slug",
            "message": "'Bad Slug' is not a slug: 1 to 64 lowercase letters, digits and hyphens, not "
            "starting or ending with one",
        },
        {"field": "tiers[1].price.currency", "message": "'USX' is not an ISO 4217 code"},
    ]
    r = client.post(BASE, json=["not", "a", "mapping"], auth=team["owner"])
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID"


def test_a_taken_slug_and_a_renamed_slug(client, team) -> None:
    assert client.post(BASE, json=good(team), auth=team["owner"]).status_code == 201
    r = client.post(BASE, json=good(team), auth=team["owner"])
    assert r.status_code == 409 and r.json()["error"]["detail"][0]["field"] == "slug"
    r = client.put(f"{BASE}/acme-db", json=good(team, slug="other"), auth=team["owner"])
    assert r.status_code == 400 and r.json()["error"]["detail"][0]["field"] == "slug"


def test_a_submitted_revision_is_frozen(client, app_state, team) -> None:
    assert client.post(BASE, json=good(team), auth=team["owner"]).status_code == 201
    with app_state.sessions.begin() as s:
        s.query(Product).one().working_revision.state = "in_review"
    r = client.put(f"{BASE}/acme-db", json=good(team, name="Sneaky"), auth=team["owner"])
    assert r.status_code == 409 and "a submitted revision is frozen" in r.json()["error"]["message"]
    assert r.json()["error"]["detail"] == {"state": "in_review", "revision": 1}
    got = client.get(f"{BASE}/acme-db", auth=team["owner"]).json()
    assert got["working"]["manifest"]["name"] == "Acme Database" and got["working"]["editable"] is False


def test_who_may(client, team) -> None:
    assert client.post(BASE, json=good(team), auth=team["owner"]).status_code == 201
    # A reader reads but does not edit.
    assert client.get(f"{BASE}/acme-db", auth=team["reader"]).status_code == 200
    assert client.put(f"{BASE}/acme-db", json=good(team), auth=team["reader"]).status_code == 403
    assert client.post(BASE, json=good(team, slug="x"), auth=team["reader"]).status_code == 403
    # Another organisation's member learns nothing: the same 404 as for an organisation that does not exist.
    for method, path in (
        ("GET", BASE),
        ("GET", f"{BASE}/acme-db"),
        ("PUT", f"{BASE}/acme-db"),
        ("POST", BASE),
    ):
        r = client.request(method, path, json=good(team) if method != "GET" else None, auth=team["other"])
        assert r.status_code == 404, (method, path)
        assert r.json()["error"]["message"] == "organisation 'acme' not found"
    assert client.get("/api/v1/publishers/nobody/products", auth=team["other"]).json()["error"][
        "message"
    ] == ("organisation 'nobody' not found")
    # Anonymous: 401.
    assert client.get(BASE).status_code == 401
    assert client.post(BASE, json=good(team)).status_code == 401


def test_the_json_schema_is_public(client) -> None:
    r = client.get("/api/v1/schemas/product.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/schema+json")
    assert r.json() == json_schema()
    assert r.json()["$id"] == "/api/v1/schemas/product.json"
    assert set(r.json()["required"]) == {"name", "slug"}
    assert "compatibility" in r.json()["properties"]


def test_a_body_over_a_megabyte_is_refused_before_it_is_parsed(client, team) -> None:
    huge = good(team, long_description="x" * (1024 * 1024))  # valid Markdown, but the body is > 1 MiB
    r = client.post(BASE, json=huge, auth=team["maint"])
    assert r.status_code == 413, r.text
    assert r.json()["error"] == {
        "code": "TOO_LARGE",
        "message": "a request body is larger than 1 MB",
        "detail": {"field": "body"},
    }

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"name": "'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}'

    r = client.post(BASE, content=chunks(), headers={"content-type": "application/json"}, auth=team["maint"])
    assert r.status_code == 413, r.text
    with client.app.state.dockyard.sessions() as s:
        assert s.query(Product).count() == 0
    # Just under the limit is read and answered on its merits.
    r = client.post(BASE, json=good(team, long_description="x" * 1000), auth=team["maint"])
    assert r.status_code == 201, r.text
