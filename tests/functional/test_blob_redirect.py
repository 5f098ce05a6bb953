"""Blob GETs through the app redirect to the delivery server (started by the lifespan) on a signed URL."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD, make_user
from tests.support.live import free_port
from tests.support.registry_client import RegistryClient, assert_oci_error, protocol_guard, sha256

from dockyard.config import Settings
from dockyard.web.app import create_app
from dockyard.web.context import AppState

DATA = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """The conftest settings, with the delivery server on a free loopback port."""
    return Settings(
        listen="127.0.0.1:5999",
        data_dir=tmp_path / "data",
        database_url=database_url,
        admin_password="admin-pass-1",
        blob_listen=f"127.0.0.1:{free_port()}",
    )


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


@pytest.fixture
def user(app_state: AppState) -> str:
    with app_state.sessions.begin() as s:
        return make_user(s).username


@pytest.fixture
def reg(client: TestClient, user: str) -> RegistryClient:
    return RegistryClient(client, user, PASSWORD)


def get_blob(reg: RegistryClient, name: str, digest: str, **kw) -> httpx.Response:
    return reg.request("GET", f"/v2/{name}/blobs/{digest}", name, "pull", follow_redirects=False, **kw)


def test_an_authorised_get_redirects_to_a_signed_url_that_yields_the_blob(
    reg: RegistryClient, user: str, settings: Settings
) -> None:
    name = f"{user}/app"
    digest = reg.push_blob(name, DATA)
    r = get_blob(reg, name, digest)
    assert r.status_code == 307, r.text
    assert r.headers["docker-content-digest"] == digest
    assert r.headers["cache-control"] == "no-store"
    location = r.headers["location"]
    url = urlsplit(location)
    assert f"{url.scheme}://{url.netloc}" == settings.blob_public_url
    assert url.path == f"/blobs/{digest}"
    assert {p.split("=")[0] for p in url.query.split("&")} == {"expires", "signature"}
    blob = httpx.get(location, timeout=30)  # no token: the signature is the credential
    assert blob.status_code == 200
    assert blob.content == DATA
    assert sha256(blob.content) == digest == blob.headers["docker-content-digest"]
    # A private layer is no shared cache's to keep; its bytes are never sniffed as something else.
    assert blob.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert blob.headers["x-content-type-options"] == "nosniff"
    part = httpx.get(location, headers={"Range": "bytes=10-19"}, timeout=30)
    assert (part.status_code, part.content) == (206, DATA[10:20])


def test_a_redirect_is_only_for_the_blob_it_names(reg: RegistryClient, user: str) -> None:
    name = f"{user}/app"
    first, second = reg.push_blob(name, b"first blob"), reg.push_blob(name, b"second blob")
    location = get_blob(reg, name, first).headers["location"]
    assert httpx.get(location.replace(first, second), timeout=30).status_code == 403
    tampered = location[:-1] + ("0" if location[-1] != "0" else "1")
    r = httpx.get(tampered, timeout=30)
    assert r.status_code == 403
    assert r.json()["errors"][0]["code"] == "DENIED"


def test_unauthorised_gets_the_same_401_and_no_redirect(reg: RegistryClient, user: str, client) -> None:
    name = f"{user}/app"
    digest = reg.push_blob(name, DATA)
    anonymous = client.get(f"/v2/{name}/blobs/{digest}", follow_redirects=False)
    assert_oci_error(anonymous, 401, "UNAUTHORIZED")
    assert "location" not in anonymous.headers
    assert anonymous.headers["www-authenticate"].startswith("Bearer realm=")
    # A token for another repository: insufficient scope, still no Location.
    other = reg.request("GET", f"/v2/{name}/blobs/{digest}", f"{user}/other", "pull", follow_redirects=False)
    assert_oci_error(other, 401, "UNAUTHORIZED")
    assert "location" not in other.headers
    assert 'error="insufficient_scope"' in other.headers["www-authenticate"]


def test_a_blob_not_linked_to_the_repository_is_404_not_a_redirect(reg: RegistryClient, user: str) -> None:
    digest = reg.push_blob(f"{user}/a", b"only in a")
    reg.push_blob(f"{user}/b", b"b exists")
    r = get_blob(reg, f"{user}/b", digest)
    assert_oci_error(r, 404, "BLOB_UNKNOWN")
    assert "location" not in r.headers


def test_head_answers_directly(reg: RegistryClient, user: str) -> None:
    name = f"{user}/app"
    digest = reg.push_blob(name, DATA)
    h = reg.request("HEAD", f"/v2/{name}/blobs/{digest}", name, "pull", follow_redirects=False)
    assert h.status_code == 200
    assert "location" not in h.headers
    assert h.headers["content-length"] == str(len(DATA))
    assert h.headers["docker-content-digest"] == digest


def test_deliveries_are_counted_in_the_metrics(reg: RegistryClient, user: str, client) -> None:
    name = f"{user}/app"
    digest = reg.push_blob(name, DATA)
    location = get_blob(reg, name, digest).headers["location"]
    assert httpx.get(location, timeout=30).status_code == 200
    assert httpx.get(location + "0", timeout=30).status_code == 403
    # The server counts a request after its last byte: the client may read the body a moment earlier.
    deadline = time.monotonic() + 5
    while True:
        samples = {
            (sample.name, tuple(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(client.get("/metrics").text)
            for sample in family.samples
        }
        counted = (
            samples.get(("dockyard_blob_delivery_requests_total", (("status", "200"),))),
            samples.get(("dockyard_blob_delivery_requests_total", (("status", "403"),))),
            samples.get(("dockyard_blob_delivery_sent_bytes_total", ())),
        )
        if counted == (1, 1, len(DATA)) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert counted == (1, 1, len(DATA))


def test_the_delivery_server_lives_with_the_app(app_state: AppState, settings: Settings) -> None:
    port = free_port()
    own = dataclasses.replace(settings, blob_listen=f"127.0.0.1:{port}", blob_public_url="")
    state = dataclasses.replace(app_state, settings=own, blob_urls=None)
    with TestClient(create_app(own, state=state), base_url="http://127.0.0.1:5999"):
        assert state.blob_urls is not None
        assert state.blob_urls.base_url == f"http://127.0.0.1:{port}"
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 404
    assert state.blob_urls is None  # after shutdown blobs are served inline again
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
