"""The publisher-profile API: read and edit, the per-field errors in the envelope, the agreement, the
company email's link (verified with the API), image uploads (413 and 400 in the envelope) and serving."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from tests.support.accounts import link_in, outbox
from tests.support.factories import PASSWORD, make_org, make_user
from tests.support.pages import sign_in
from tests.support.pictures import picture

from dockyard.publishing.agreement import AGREEMENT_VERSION


@pytest.fixture
def world(app_state):
    with app_state.sessions.begin() as s:
        owner = make_user(s).username
        reader = make_user(s).username
        outsider = make_user(s).username
        org = make_org(s, owner=owner, members={reader: "reader"})
        make_org(s, owner=outsider)
    return org, owner, reader, outsider


def as_(user: str) -> tuple[str, str]:
    return (user, PASSWORD)


def upload(client, org: str, user: str, data: bytes, kind: str = "logo", content_type: str = "image/png"):
    return client.post(
        f"/api/v1/publishers/{org}/images",
        params={"kind": kind},
        content=data,
        headers={"content-type": content_type},
        auth=as_(user),
    )


def test_a_new_profile_says_everything_it_lacks(client, world) -> None:
    org, owner, *_ = world
    r = client.get(f"/api/v1/publishers/{org}", auth=as_(owner))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["org"] == org and body["can_edit"] and not body["complete"]
    assert [m["field"] for m in body["missing"]] == [
        "legal_name", "website", "phone", "email", "logo", "story", "agreement",
    ]  # fmt: skip
    assert body["agreement"]["current_version"] == AGREEMENT_VERSION


def test_every_wrong_field_is_in_the_envelope(client, world) -> None:
    org, owner, *_ = world
    bad = {"legal_name": "A", "website": "acme.example", "phone": "020 7946 0958", "email": "nope"}
    r = client.put(f"/api/v1/publishers/{org}", json=bad, auth=as_(owner))
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "INVALID"
    assert {d["field"]: d["message"] for d in error["detail"]}["phone"].startswith("Start the number with +")
    assert sorted(d["field"] for d in error["detail"]) == ["email", "legal_name", "phone", "website"]
    r = client.put(f"/api/v1/publishers/{org}", json={"colour": "red"}, auth=as_(owner))
    assert r.status_code == 400 and r.json()["error"]["detail"][0]["field"] == "body.colour"


def test_the_whole_profile_through_the_api(client, app_state, world) -> None:
    org, owner, reader, _ = world
    r = upload(client, org, owner, picture(512, 512))
    assert r.status_code == 201, r.text
    logo = r.json()
    assert logo["kind"] == "logo" and sorted(logo["renditions"]) == ["128", "512", "64"]
    profile = {
        "legal_name": "Acme Software Ltd",
        "website": "https://acme.example",
        "phone": "+44 20 7946 0958",
        "email": "store@acme.example",
        "story": "We make *databases*.",
        "logo_id": logo["id"],
    }
    r = client.put(f"/api/v1/publishers/{org}", json=profile, auth=as_(owner))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["phone"], body["phone_display"]) == ("+442079460958", "+44 20 7946 0958")
    assert not body["email_verified"] and body["email_link_pending"]
    assert [m["field"] for m in body["missing"]] == ["email", "agreement"]

    (mail,) = outbox(app_state, to="store@acme.example")
    path, token = link_in(mail)
    assert path == "/ui/publisher-email/verify"
    r = client.post("/api/v1/publishers/email/verify", json={"token": token})
    assert r.status_code == 200 and r.json() == {"org": org, "email": "store@acme.example"}
    r = client.post("/api/v1/publishers/email/verify", json={"token": token})
    assert r.status_code == 400 and "used already" in r.json()["error"]["message"]

    r = client.post(f"/api/v1/publishers/{org}/agreement", json={"version": "1999-01"}, auth=as_(owner))
    assert r.status_code == 409
    r = client.post(
        f"/api/v1/publishers/{org}/agreement", json={"version": AGREEMENT_VERSION}, auth=as_(owner)
    )
    assert r.status_code == 200
    body = r.json()
    assert body["complete"] and body["missing"] == []
    assert (
        body["agreement"]["accepted_by"] == owner
        and body["agreement"]["accepted_version"] == AGREEMENT_VERSION
    )

    # Members read it; only owners change it.
    r = client.get(f"/api/v1/publishers/{org}", auth=as_(reader))
    assert r.status_code == 200 and r.json()["complete"] and not r.json()["can_edit"]
    r = client.put(f"/api/v1/publishers/{org}", json={"legal_name": "Evil"}, auth=as_(reader))
    assert r.status_code == 403 and r.json()["error"]["code"] == "DENIED"


def test_resend_asks_for_an_address_and_mails_a_new_link(client, app_state, world) -> None:
    org, owner, *_ = world
    r = client.post(f"/api/v1/publishers/{org}/email/resend", auth=as_(owner))
    assert r.status_code == 400 and r.json()["error"]["detail"] == {"field": "email"}
    client.put(f"/api/v1/publishers/{org}", json={"email": "a@acme.example"}, auth=as_(owner))
    r = client.post(f"/api/v1/publishers/{org}/email/resend", auth=as_(owner))
    assert r.status_code == 202
    first, second = outbox(app_state, to="a@acme.example")
    r = client.post("/api/v1/publishers/email/verify", json={"token": link_in(first)[1]})
    assert r.status_code == 400 and "newer link" in r.json()["error"]["message"]
    assert (
        client.post("/api/v1/publishers/email/verify", json={"token": link_in(second)[1]}).status_code == 200
    )


def test_members_of_other_organisations_and_strangers_see_nothing(client, world) -> None:
    org, _owner, _reader, outsider = world
    for method, path in [
        ("GET", f"/api/v1/publishers/{org}"),
        ("PUT", f"/api/v1/publishers/{org}"),
        ("POST", f"/api/v1/publishers/{org}/email/resend"),
    ]:
        r = client.request(method, path, json={} if method == "PUT" else None, auth=as_(outsider))
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", (method, path)
    assert upload(client, org, outsider, picture(512, 512)).status_code == 404
    assert client.get(f"/api/v1/publishers/{org}").status_code == 401
    r = client.get(f"/api/v1/publishers/{outsider}", auth=as_(outsider))  # a personal namespace
    assert r.status_code == 400 and "personal namespace" in r.json()["error"]["message"]


def test_image_uploads_are_refused_in_the_envelope(client, world) -> None:
    org, owner, reader, _ = world
    r = upload(client, org, owner, picture(512, 513))
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": "IMAGE_INVALID",
        "message": "the logo must be square: it is 512x513",
        "detail": {"field": "logo"},
    }
    r = upload(client, org, owner, picture(512, 512, "GIF"), content_type="image/gif")
    assert r.status_code == 400 and "PNG, JPEG or WebP" in r.json()["error"]["message"]
    r = upload(client, org, owner, b"\x89PNG\r\n\x1a\n" + b"\0" * (6 * 1024 * 1024))
    assert r.status_code == 413 and r.json()["error"]["code"] == "TOO_LARGE"
    r = upload(client, org, owner, picture(512, 512), content_type="application/json")
    assert r.status_code == 400 and r.json()["error"]["detail"] == {"field": "content-type"}
    r = upload(client, org, owner, picture(512, 512), kind="banner")
    assert r.status_code == 400 and r.json()["error"]["detail"][0]["field"] == "query.kind"
    assert upload(client, org, reader, picture(512, 512)).status_code == 403


def test_catalogue_images_are_public_once_released_and_kept_a_year(client, world) -> None:
    org, owner, *_ = world
    shot = upload(client, org, owner, picture(1280, 720, "JPEG"), kind="screenshot").json()
    assert sorted(shot["renditions"]) == ["full", "thumb"]
    # A screenshot no published revision shows yet: for the organisation's eyes only, never cached shared.
    client.cookies.clear()
    assert client.get(shot["renditions"]["thumb"]).status_code == 404
    sign_in(client, *as_(owner))
    r = client.get(shot["renditions"]["thumb"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    assert r.headers["cache-control"] == "private, max-age=300"
    assert Image.open(io.BytesIO(r.content)).size == (480, 270)
    r2 = client.get(shot["renditions"]["thumb"], headers={"if-none-match": r.headers["etag"]})
    assert r2.status_code == 304
    # The company logo is public: anyone, kept a year.
    logo = upload(client, org, owner, picture(512, 512)).json()
    r = client.put(f"/api/v1/publishers/{org}", json={"logo_id": logo["id"]}, auth=as_(owner))
    assert r.status_code == 200, r.text
    client.cookies.clear()
    r = client.get(logo["renditions"]["64"])
    assert r.headers["content-type"] == "image/png" and Image.open(io.BytesIO(r.content)).size == (64, 64)
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert client.get(f"/catalog-images/{logo['id']}/full").status_code == 404
    assert client.get("/catalog-images/999999/512").status_code == 404
