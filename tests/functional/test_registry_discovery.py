"""Discovery: tag listing with pagination, the referrers API, and the catalog."""

from __future__ import annotations

import json
import re

import pytest
from tests.support.factories import PASSWORD, make_user
from tests.support.registry_client import (
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryClient,
    assert_oci_error,
    bearer,
    get_token,
    protocol_guard,
    sha256,
)


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


@pytest.fixture
def user(app_state) -> str:
    with app_state.sessions.begin() as s:
        return make_user(s).username


@pytest.fixture
def reg(client, user) -> RegistryClient:
    return RegistryClient(client, user, PASSWORD)


@pytest.fixture
def name(user) -> str:
    return f"{user}/app"


def next_link(response) -> str | None:
    value = response.headers.get("link")
    if value is None:
        return None
    match = re.fullmatch(r'<([^>]+)>;\s*rel="next"', value)
    assert match, value
    return match.group(1)


# -- tags ------------------------------------------------------------------------------------------
TAGS = ["v1", "B", "a", "1.0", "_private", "latest", "v10", "v2"]


@pytest.fixture
def tagged(reg, name) -> list[str]:
    body = json.dumps(reg.image_manifest(name, [b"layer"])).encode()
    for tag in TAGS:
        assert reg.put_manifest(name, tag, body).status_code == 201
    return sorted(TAGS)  # lexical (code point) order


def list_tags(reg, name: str, query: str = ""):
    return reg.request("GET", f"/v2/{name}/tags/list{query}", name, "pull")


def test_tags_list_in_lexical_order(reg, name, tagged):
    r = list_tags(reg, name)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"name": name, "tags": tagged}
    assert tagged == ["1.0", "B", "_private", "a", "latest", "v1", "v10", "v2"]
    assert "link" not in r.headers


def test_tags_pagination_follows_link_headers(reg, name, tagged):
    r = list_tags(reg, name, "?n=3")
    assert r.json() == {"name": name, "tags": tagged[:3]}
    link = next_link(r)
    assert link == f"/v2/{name}/tags/list?n=3&last={tagged[2]}"
    seen = list(r.json()["tags"])
    pages = 1
    while link:
        r = reg.request("GET", link, name, "pull")
        assert r.status_code == 200
        page = r.json()["tags"]
        assert 0 < len(page) <= 3
        seen += page
        link = next_link(r)
        pages += 1
    assert seen == tagged
    assert pages == 3


def test_tags_with_last(reg, name, tagged):
    assert list_tags(reg, name, "?last=a").json()["tags"] == ["latest", "v1", "v10", "v2"]
    assert list_tags(reg, name, "?n=2&last=a").json()["tags"] == ["latest", "v1"]
    assert list_tags(reg, name, "?last=zzz").json()["tags"] == []
    assert list_tags(reg, name, "?last=0").json()["tags"] == tagged
    # Exactly n left: no further page.
    r = list_tags(reg, name, "?n=4&last=a")
    assert r.json()["tags"] == ["latest", "v1", "v10", "v2"]
    assert "link" not in r.headers


def test_tags_n_zero_and_large(reg, name, tagged):
    r = list_tags(reg, name, "?n=0")
    assert r.status_code == 200
    assert r.json()["tags"] == []
    assert "link" not in r.headers  # the spec: n=0 is an empty list and MUST NOT have a Link header
    r = list_tags(reg, name, "?n=1000")
    assert r.json()["tags"] == tagged
    assert "link" not in r.headers


@pytest.mark.parametrize("n", ["-1", "abc", "1.5", "100000", "%201", "0x10"])
def test_bad_n_is_pagination_number_invalid(reg, name, tagged, n):
    assert_oci_error(list_tags(reg, name, f"?n={n}"), 400, "PAGINATION_NUMBER_INVALID")


def test_tags_of_unknown_repository(reg, user):
    assert_oci_error(list_tags(reg, f"{user}/none"), 404, "NAME_UNKNOWN")


def test_tags_of_empty_repository(reg, name):
    reg.push_blob(name, b"just a blob")
    assert list_tags(reg, name).json() == {"name": name, "tags": []}


# -- referrers -------------------------------------------------------------------------------------
def push_referrer(reg, name: str, subject: str, artifact_type: str | None, annotations: dict | None = None):
    empty = reg.push_blob(name, EMPTY_JSON)
    payload = (artifact_type or "none").encode()
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [
            {
                "mediaType": "application/octet-stream",
                "digest": reg.push_blob(name, payload),
                "size": len(payload),
            }
        ],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
    }
    if artifact_type:
        doc["artifactType"] = artifact_type
    if annotations:
        doc["annotations"] = annotations
    body = json.dumps(doc).encode()
    r = reg.put_manifest(name, sha256(body), body)
    assert r.status_code == 201, r.text
    assert r.headers["oci-subject"] == subject
    return {"mediaType": OCI_MANIFEST, "digest": sha256(body), "size": len(body)}


def referrers(reg, name: str, digest: str, query: str = ""):
    return reg.request("GET", f"/v2/{name}/referrers/{digest}{query}", name, "pull")


def test_referrers_list_and_filter(reg, name):
    subject = reg.push_image(name, "v1")
    sig = push_referrer(reg, name, subject, "application/vnd.example.signature", {"created": "today"})
    sbom = push_referrer(reg, name, subject, "application/vnd.example.sbom")
    # No artifactType: the config's media type stands in for it.
    plain = push_referrer(reg, name, subject, None)
    # A referrer of something else is not listed.
    push_referrer(reg, name, sha256(b"other subject"), "application/vnd.example.signature")

    r = referrers(reg, name, subject)
    assert r.status_code == 200
    assert r.headers["content-type"] == OCI_INDEX
    assert "oci-filters-applied" not in r.headers
    index = r.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    by_digest = {d["digest"]: d for d in index["manifests"]}
    assert set(by_digest) == {sig["digest"], sbom["digest"], plain["digest"]}
    assert by_digest[sig["digest"]] == {
        **sig,
        "artifactType": "application/vnd.example.signature",
        "annotations": {"created": "today"},
    }
    assert by_digest[sbom["digest"]] == {**sbom, "artifactType": "application/vnd.example.sbom"}
    assert by_digest[plain["digest"]] == {**plain, "artifactType": OCI_EMPTY}

    r = referrers(reg, name, subject, "?artifactType=application/vnd.example.sbom")
    assert r.status_code == 200
    assert r.headers["oci-filters-applied"] == "artifactType"
    assert r.headers["content-type"] == OCI_INDEX
    assert [d["digest"] for d in r.json()["manifests"]] == [sbom["digest"]]

    r = referrers(reg, name, subject, "?artifactType=application/vnd.example.none")
    assert r.headers["oci-filters-applied"] == "artifactType"
    assert r.json()["manifests"] == []


def test_referrers_of_an_unknown_digest_is_an_empty_index(reg, name):
    reg.push_image(name, "v1")
    r = referrers(reg, name, sha256(b"nothing refers to me"))
    assert r.status_code == 200
    assert r.headers["content-type"] == OCI_INDEX
    assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def test_referrers_are_per_repository(reg, user, name):
    subject = reg.push_image(name, "v1")
    push_referrer(reg, name, subject, "application/vnd.example.signature")
    other = f"{user}/other"
    reg.push_image(other, "v1")
    assert referrers(reg, other, subject).json()["manifests"] == []


def test_referrers_disappear_with_their_manifest(reg, name):
    subject = reg.push_image(name, "v1")
    sig = push_referrer(reg, name, subject, "application/vnd.example.signature")
    r = reg.request("DELETE", f"/v2/{name}/manifests/{sig['digest']}", name)
    assert r.status_code == 202
    assert referrers(reg, name, subject).json()["manifests"] == []


@pytest.mark.parametrize("digest", ["sha256:abc", "notadigest", "sha256:" + "G" * 64])
def test_referrers_with_invalid_digest(reg, name, digest):
    reg.push_image(name, "v1")
    assert_oci_error(referrers(reg, name, digest), 400, "DIGEST_INVALID")


# -- catalog ----------------------------------------------------------------------------------------
def test_catalog_pagination(client, app_state):
    with app_state.sessions.begin() as s:
        admin = make_user(s, admin=True).username
        user = make_user(s).username
    reg = RegistryClient(client, user, PASSWORD)
    names = sorted(f"{user}/{n}" for n in ("c", "a", "b", "a/nested"))
    for repo in names:
        reg.push_blob(repo, b"x")
    token = get_token(client, "registry:catalog:*", admin, PASSWORD)
    r = client.get("/v2/_catalog", headers=bearer(token))
    assert r.json() == {"repositories": names}
    r = client.get("/v2/_catalog?n=3", headers=bearer(token))
    assert r.json() == {"repositories": names[:3]}
    link = next_link(r)
    assert link is not None
    r = client.get(link, headers=bearer(token))
    assert r.json() == {"repositories": names[3:]}
    assert next_link(r) is None
    assert_oci_error(client.get("/v2/_catalog?n=x", headers=bearer(token)), 400, "PAGINATION_NUMBER_INVALID")
