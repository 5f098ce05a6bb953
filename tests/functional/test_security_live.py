"""Security attacks that need a real server process: clients that leave mid-request, and the CLI's
password change ending sessions and refresh tokens of a running server."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from tests.support.live import LiveServer
from tests.support.pages import with_csrf
from tests.support.registry_client import OCI_MANIFEST, get_token

pytestmark = pytest.mark.slow


def server_log(server: LiveServer) -> str:
    return (server.data_dir.parent / f"server-{server.port}.log").read_text(errors="replace")


def send_and_vanish(server: LiveServer, head: str, body: bytes) -> None:
    """Send a request head and part of its body, then close the connection (a cancelled push)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head.encode() + body)
        time.sleep(0.3)
    time.sleep(0.5)


def test_clients_leaving_mid_body_are_no_server_errors(live_server: LiveServer):
    admin = ("admin", live_server.admin_password)
    token = get_token(httpx.Client(base_url=live_server.url), ["repository:admin/app:pull,push"], *admin)
    auth = f"Authorization: Bearer {token}\r\n"
    host = f"Host: {live_server.host}\r\n"
    send_and_vanish(
        live_server,
        f"PUT /v2/admin/app/manifests/t1 HTTP/1.1\r\n{host}{auth}Content-Type: {OCI_MANIFEST}\r\n"
        "Content-Length: 4000\r\n\r\n",
        b'{"schemaVersion": 2, "layers": [',
    )
    digest = "sha256:" + "a" * 64
    send_and_vanish(
        live_server,
        f"POST /v2/admin/app/blobs/uploads/?digest={digest} HTTP/1.1\r\n{host}{auth}"
        "Content-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n",
        b"x" * 100_000,
    )
    # The server is fine, logged no traceback, and counted no 5xx.
    assert httpx.get(f"{live_server.url}/healthz").status_code == 200
    metrics = httpx.get(f"{live_server.url}/metrics").text
    statuses = [line for line in metrics.splitlines() if line.startswith("dockyard_http_requests_total{")]
    assert not [line for line in statuses if 'status="5' in line], statuses
    assert any('status="499"' in line for line in statuses), statuses
    log = server_log(live_server)
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
    # Nothing half-written: no tag, and the abandoned upload left no session behind.
    r = httpx.get(f"{live_server.url}/v2/admin/app/tags/list", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404 or r.json().get("tags") in (None, [])
    assert (
        not list((live_server.data_dir / "uploads").glob("*"))
        if (live_server.data_dir / "uploads").exists()
        else True
    )


def test_passwd_on_the_command_line_ends_sessions_and_refresh_tokens(live_server: LiveServer):
    http = httpx.Client(base_url=live_server.url)
    live_server.dockyard("user", "create", "carol", "--password", "carol-password-1")
    form = {
        "grant_type": "password",
        "username": "carol",
        "password": "carol-password-1",
        "service": "dockyard",
    }
    refresh_token = http.post("/token", data=form).json()["refresh_token"]
    browser = httpx.Client(base_url=live_server.url, follow_redirects=True)
    form = with_csrf(browser, {"username": "carol", "password": "carol-password-1", "next": "/ui/"})
    r = browser.post("/ui/login", data=form)
    assert r.status_code == 200 and "Sign out" in r.text and "carol" in r.text  # followed the redirect
    copied = browser.cookies["dockyard_session"]

    live_server.dockyard("user", "passwd", "carol", "--password", "carol-password-2")

    r = http.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token, "service": "dockyard"}
    )
    assert r.status_code == 401
    thief = httpx.Client(base_url=live_server.url, cookies={"dockyard_session": copied})
    r = thief.get("/ui/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")


def test_parallel_guesses_cannot_outrun_the_throttle(live_server: LiveServer):
    """Every attempt is counted before its password is hashed: 100 guesses at once get at most the
    limit's worth of evaluations plus those allowed in flight at once (401, or 200 for the right one);
    before, all 100 (258 in the attack) were evaluated."""
    from concurrent.futures import ThreadPoolExecutor

    from dockyard.accounts.throttle import DEFAULT_LIMITS, MAX_IN_FLIGHT

    live_server.dockyard("user", "create", "dave", "--password", "dave-password-1")
    passwords = [f"wrong-{i}" for i in range(99)] + ["dave-password-1"]

    def attempt(password: str) -> int:
        return httpx.get(f"{live_server.url}/token", auth=("dave", password), timeout=60).status_code

    with ThreadPoolExecutor(100) as pool:
        statuses = list(pool.map(attempt, passwords))
    bound = DEFAULT_LIMITS.per_account_and_address + MAX_IN_FLIGHT
    assert statuses.count(401) + statuses.count(200) <= bound, statuses
    assert statuses.count(429) >= len(passwords) - bound, statuses
