"""Health check, Prometheus metrics and the structured access log."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD, make_user
from tests.support.registry_client import RegistryClient, sha256

from dockyard.config import Settings
from dockyard.web.app import create_app
from dockyard.web.context import AppState

Samples = dict[tuple[str, frozenset], float]


def scrape(http) -> Samples:
    r = http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_total(samples: Samples, route: str, method: str, status: int) -> float:
    return value(samples, "dockyard_http_requests_total", route=route, method=method, status=str(status))


@pytest.fixture
def user(app_state: AppState) -> str:
    with app_state.sessions.begin() as s:
        return make_user(s).username


@pytest.fixture
def reg(client: TestClient, user: str) -> RegistryClient:
    return RegistryClient(client, user, PASSWORD)


# -- health ---------------------------------------------------------------------------------------
def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"status": "ok"}


def test_healthz_reports_an_unreachable_database(settings: Settings, app_state: AppState) -> None:
    from dockyard.db import make_engine

    broken = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    state = AppState(settings, broken, app_state.sessions, app_state.blobs, app_state.bus, app_state.signer)
    try:
        with TestClient(create_app(settings, state=state)) as c:
            r = c.get("/healthz")
    finally:
        broken.dispose()
    assert r.status_code == 503
    assert r.json()["status"] == "unhealthy"


# -- metrics --------------------------------------------------------------------------------------
def test_requests_are_counted_by_route_method_and_status(client, reg, user) -> None:
    name = f"{user}/app"
    reg.token(f"repository:{name}:pull")
    before = scrape(client)
    client.get("/v2/")  # no token: 401
    digest = reg.push_blob(name, b"counted")
    reg.pull_blob(name, digest)
    reg.request("GET", f"/v2/{name}/blobs/{sha256(b'absent')}", name)
    after = scrape(client)

    def delta(route: str, method: str, status: int) -> float:
        return requests_total(after, route, method, status) - requests_total(before, route, method, status)

    assert delta("v2", "GET", 401) == 1
    assert delta("/token", "GET", 200) == 1
    assert delta("upload_start", "POST", 202) == 1
    assert delta("upload", "PUT", 201) == 1
    assert delta("blob", "GET", 200) == 1
    assert delta("blob", "GET", 404) == 1
    assert delta("/metrics", "GET", 200) == 1  # the first scrape
    duration = value(after, "dockyard_http_request_duration_seconds_count", route="upload")
    assert duration >= 1


def test_bytes_in_and_out_grow_by_the_bodies_of_a_push_and_a_pull(client, reg, user) -> None:
    name = f"{user}/app"
    layer = bytes(range(256)) * 1200  # 300 KiB
    manifest = reg.image_manifest(name, [layer])  # pushes the config and the layer
    body = json.dumps(manifest).encode()
    before = scrape(client)
    reg.push_blob(name, layer)  # again: the same bytes travel again
    assert reg.put_manifest(name, "v1", manifest).status_code == 201
    pulled = reg.get_manifest(name, "v1")
    blob = reg.pull_blob(name, sha256(layer))
    after = scrape(client)

    def grew(metric: str, route: str) -> float:
        return value(after, metric, route=route) - value(before, metric, route=route)

    assert blob.content == layer
    assert grew("dockyard_http_received_bytes_total", "upload") == len(layer)
    assert grew("dockyard_http_received_bytes_total", "manifest") == len(body)
    assert grew("dockyard_http_sent_bytes_total", "blob") == len(layer)
    assert grew("dockyard_http_sent_bytes_total", "manifest") == len(pulled.content) == len(body)


def test_open_upload_sessions_gauge(client, reg, user) -> None:
    name = f"{user}/app"
    assert value(scrape(client), "dockyard_upload_sessions_open") == 0
    first = reg.request("POST", f"/v2/{name}/blobs/uploads/", name).headers["location"]
    second = reg.request("POST", f"/v2/{name}/blobs/uploads/", name).headers["location"]
    assert value(scrape(client), "dockyard_upload_sessions_open") == 2
    reg.request("PATCH", first, name, content=b"partial")
    assert reg.request("DELETE", second, name).status_code == 204
    assert value(scrape(client), "dockyard_upload_sessions_open") == 1
    r = reg.request("PUT", f"{first}?digest={sha256(b'partial')}", name)
    assert r.status_code == 201
    assert value(scrape(client), "dockyard_upload_sessions_open") == 0


def test_route_labels_stay_bounded_whatever_the_paths(client) -> None:
    """Label values come from the routes, never from arbitrary request paths (a scrape-size DoS)."""
    for i in range(30):
        assert client.get(f"/no-such-page-{i}/x").status_code == 404
    routes = {
        dict(labels)["route"]
        for (metric, labels) in scrape(client)
        if metric == "dockyard_http_requests_total"
    }
    assert not [r for r in routes if "no-such-page" in r], routes
    assert len(routes) <= 5, routes


def test_method_labels_stay_bounded_whatever_the_methods(client) -> None:
    """A client-chosen method (FOOBAR1, FOOBAR2, ...) must not add a time series per request."""
    for i in range(10):
        client.request(f"FOOBAR{i}", "/healthz")
    methods = {
        dict(labels)["method"]
        for (metric, labels) in scrape(client)
        if metric == "dockyard_http_requests_total"
    }
    assert not [m for m in methods if m.startswith("FOOBAR")], methods
    assert "other" in methods


@pytest.mark.parametrize("delivery", ["off", "on"])
def test_metrics_through_a_real_server(tmp_path, fresh_database_url, delivery: str) -> None:
    """granian streams blob files with http.response.pathsend: those bytes are counted too; with blob
    delivery on, the GET is a redirect and the delivery server counts the bytes it sends."""
    from tests.support.live import LiveServer

    extra = {"DOCKYARD_BLOB_LISTEN": "off"} if delivery == "off" else {}
    live_server = LiveServer(tmp_path / "live-data", fresh_database_url, extra_env=extra).start()
    data = bytes(range(256)) * 8192  # 2 MiB
    try:
        with httpx.Client(base_url=live_server.url, timeout=30, follow_redirects=True) as http:
            reg = RegistryClient(http, "admin", live_server.admin_password)
            before = scrape(http)
            digest = reg.push_blob("admin/app", data)
            assert reg.pull_blob("admin/app", digest).content == data
            inline, redirected = (len(data), 0) if delivery == "off" else (0, len(data))
            delivered = "dockyard_blob_delivery_sent_bytes_total"
            deadline = time.monotonic() + 5  # a delivery is counted just after its last byte is sent
            after = scrape(http)
            while (
                value(after, delivered) - value(before, delivered) < redirected
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
                after = scrape(http)
    finally:
        live_server.stop()
    received = "dockyard_http_received_bytes_total"
    sent = "dockyard_http_sent_bytes_total"
    assert value(after, received, route="upload") - value(before, received, route="upload") == len(data)
    assert value(after, sent, route="blob") - value(before, sent, route="blob") == inline
    assert value(after, delivered) - value(before, delivered) == redirected
    status = 200 if delivery == "off" else 307
    assert requests_total(after, "blob", "GET", status) - requests_total(before, "blob", "GET", status) == 1


# -- the access log -------------------------------------------------------------------------------
@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> Iterator[list[dict]]:
    caplog.set_level(logging.INFO, logger="dockyard.access")
    lines: list[dict] = []
    yield lines


def logged(caplog: pytest.LogCaptureFixture) -> list[dict]:
    records = [r for r in caplog.records if r.name == "dockyard.access"]
    for record in records:
        assert "\n" not in record.getMessage()
    return [json.loads(r.getMessage()) for r in records]


def test_one_json_line_per_request(client, reg, user, caplog, access_log) -> None:
    name = f"{user}/app"
    reg.token(f"repository:{name}:pull,push,delete")
    reg.token(f"repository:{name}:pull")
    caplog.clear()
    data = b"logged bytes"
    digest = reg.push_blob(name, data)
    reg.pull_blob(name, digest)
    client.get("/healthz", headers={"User-Agent": "probe/1.0"})
    lines = logged(caplog)
    assert [(e["method"], e["route"], e["status"]) for e in lines] == [
        ("POST", "upload_start", 202),
        ("PUT", "upload", 201),
        ("GET", "blob", 200),
        ("GET", "/healthz", 200),
    ]
    put = lines[1]
    assert put["path"].startswith(f"/v2/{name}/blobs/uploads/")
    assert put["bytes_in"] == len(data)
    assert lines[2]["bytes_out"] == len(data)
    assert lines[3]["ua"] == "probe/1.0"
    for entry in lines:
        assert set(entry) == {"method", "path", "route", "status", "ms", "bytes_in", "bytes_out", "ip", "ua"}
        assert isinstance(entry["ms"], int | float) and entry["ms"] >= 0
        assert entry["ip"] == "testclient"


def test_failed_requests_are_logged_too(settings, app_state, caplog, access_log, monkeypatch) -> None:
    def broken() -> object:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(app_state.blobs, "list_uploads", broken)
    with TestClient(create_app(settings, state=app_state), raise_server_exceptions=False) as c:
        caplog.clear()
        assert c.get("/metrics").status_code == 500
        assert c.get("/v2/x/y/blobs/sha256:bad").status_code in (400, 401)
    lines = logged(caplog)
    assert len(lines) == 2
    assert (lines[0]["route"], lines[0]["status"]) == ("/metrics", 500)


def test_requests_in_flight_are_counted_and_make_the_process_busy_for_background_jobs(client) -> None:
    metrics = client.app.state.metrics
    # The scrape is itself a request in flight when the gauge is read.
    assert value(scrape(client), "dockyard_http_requests_in_flight") == 1.0
    client.get("/v2/")
    assert metrics.in_flight == 0
    assert metrics.busy(quiet=60)  # a request ended just now: in-process jobs wait a moment longer
    time.sleep(0.06)
    assert not metrics.busy(quiet=0.05)
