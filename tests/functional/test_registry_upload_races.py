"""The upload race on a running server: two PATCHes on one upload session at once must not let anyone
rewrite a blob whose bytes they know (alice's layer, from bob's own repository), nor put bytes under a
digest they do not hash to.

The attack: PATCH A streams the real bytes of alice's layer into bob's upload and pauses with 4 MiB on
disk; PATCH B starts at that offset and holds its body; A finishes; B sends garbage over A's bytes; the
final ``PUT ?digest=<alice's digest>`` with an empty body then moved the corrupted file over alice's blob.
Now B is refused (416, as the OCI distribution spec answers a chunk that does not continue the upload) and
the stored blob is never replaced. One and two worker processes: the second PATCH may reach the other one.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.live import LiveServer
from tests.support.registry_client import RegistryClient, sha256

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
PASSWORD = "race-password-1"


@pytest.fixture(params=[1, 2], ids=["one-worker", "two-workers"])
def server(request: pytest.FixtureRequest, tmp_path: Path, fresh_database_url: str) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path / "live-data",
        fresh_database_url,
        extra_env={"DOCKYARD_WORKERS": str(request.param), "DOCKYARD_LOG_LEVEL": "INFO"},
    ).start()
    try:
        for user in ("alice", "bob"):
            live.dockyard("user", "create", user, "--password", PASSWORD)
        yield live
    finally:
        live.stop()


def client(server: LiveServer, user: str) -> RegistryClient:
    http = httpx.Client(base_url=server.url, timeout=60, follow_redirects=True)
    return RegistryClient(http, user, PASSWORD)


def stored_file(server: LiveServer, digest: str) -> Path:
    hexpart = digest.split(":", 1)[1]
    return server.data_dir / "storage" / "blobs" / "sha256" / hexpart[:2] / hexpart


def upload_size(bob: RegistryClient, location: str) -> int:
    r = bob.request("GET", location, "bob/x")
    assert r.status_code == 204, r.text
    return int(r.headers["range"].split("-")[1]) + 1


class Request(threading.Thread):
    """One HTTP request on a connection of its own, sent from a thread; the response or error is kept."""

    def __init__(self, reg: RegistryClient, method: str, url: str, body: Iterator[bytes], **headers: str):
        super().__init__(daemon=True)
        self.reg, self.method, self.url, self.body, self.headers = reg, method, url, body, headers
        self.outcome: httpx.Response | Exception | None = None
        self.reg.token("repository:bob/x:pull,push,delete")  # fetched before any racing starts

    def run(self) -> None:
        with httpx.Client(base_url=self.reg.http.base_url, timeout=60) as http:
            try:
                self.outcome = http.request(
                    self.method,
                    self.url,
                    content=self.body,
                    headers=self.reg.headers("bob/x", extra=self.headers),
                )
            except httpx.HTTPError as exc:  # the server may answer B early and close the connection
                self.outcome = exc


def paused(head: bytes, tail: bytes, resume: threading.Event, started: threading.Event) -> Iterator[bytes]:
    started.set()
    for i in range(0, len(head), 256 * 1024):
        yield head[i : i + 256 * 1024]
    assert resume.wait(60)
    for i in range(0, len(tail), 256 * 1024):
        yield tail[i : i + 256 * 1024]


def until(condition, timeout: float = 30.0, explain=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out {explain()}"
        time.sleep(0.01)


def server_log(server: LiveServer) -> str:
    logs = sorted(server.data_dir.parent.glob("server-*.log"))
    return logs[-1].read_text(errors="replace")[-3000:] if logs else "(no log)"


def race(server: LiveServer, bob: RegistryClient, layer: bytes) -> tuple[object, object, str]:
    """PATCH A (the real bytes, paused at 4 MiB) and PATCH B (garbage, from A's offset) on one of bob's
    uploads; returns their outcomes and the upload's location."""
    r = bob.request("POST", "/v2/bob/x/blobs/uploads/", "bob/x")
    assert r.status_code == 202, r.text
    location = r.headers["location"]

    cut = 4 * MiB + 100
    a_resume, a_started = threading.Event(), threading.Event()
    a = Request(bob, "PATCH", location, paused(layer[:cut], layer[cut:], a_resume, a_started))
    a.start()

    def a_block_on_disk() -> bool:
        # A answered before its body was read: say how, rather than wait for a size that cannot come.
        assert a.outcome is None, f"PATCH A ended early: {a.outcome!r} {getattr(a.outcome, 'text', '')}"
        return upload_size(bob, location) >= 4 * MiB

    try:
        until(a_block_on_disk, explain=lambda: f"A alive={a.is_alive()}; server log:\n{server_log(server)}")
    except BaseException:
        a_resume.set()  # never leave A's thread waiting into the next test
        a.join(60)
        raise

    offset = upload_size(bob, location)
    garbage = b"\xff" * 1024
    b_resume, b_started = threading.Event(), threading.Event()
    b = Request(
        bob,
        "PATCH",
        location,
        paused(b"", garbage, b_resume, b_started),
        **{"Content-Range": f"{offset}-{offset + len(garbage) - 1}", "Content-Length": str(len(garbage))},
    )
    b.start()
    assert b_started.wait(30)
    time.sleep(0.5)  # B's head is in: the server has let B in (and it waits for its body), or refused it
    a_resume.set()
    a.join(60)
    b_resume.set()
    b.join(60)
    return a.outcome, b.outcome, location


def assert_refused_as_out_of_order(outcome: object) -> None:
    if isinstance(outcome, httpx.Response):
        assert outcome.status_code == 416, (outcome.status_code, outcome.text)
        assert outcome.json()["errors"][0]["code"] == "RANGE_INVALID"
    else:  # answered before its body was sent, the connection closed under it
        assert isinstance(outcome, httpx.HTTPError), outcome


def test_bob_cannot_rewrite_alices_blob(server: LiveServer) -> None:
    alice, bob = client(server, "alice"), client(server, "bob")
    layer = os.urandom(6 * MiB)
    alice.push_image("alice/app", "v1", [layer])
    digest = sha256(layer)
    path = stored_file(server, digest)
    inode = path.stat().st_ino

    a, b, location = race(server, bob, layer)

    assert isinstance(a, httpx.Response) and a.status_code == 202, a
    r = bob.request("PUT", f"{location}?digest={digest}", "bob/x", headers={"Content-Length": "0"})
    pulled = alice.pull_blob("alice/app", digest)
    assert pulled.status_code == 200
    assert sha256(pulled.content) == digest  # what skopeo checks ("Digest did not match" before the fix)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest.split(":")[1]
    assert path.stat().st_ino == inode  # the stored file was kept, not replaced
    assert_refused_as_out_of_order(b)
    # The upload held exactly alice's bytes (B wrote none): a correct upload of a stored digest.
    assert r.status_code == 201, r.text


def test_bob_cannot_poison_a_digest_before_alice_pushes_it(server: LiveServer) -> None:
    alice, bob = client(server, "alice"), client(server, "bob")
    layer = os.urandom(6 * MiB)
    digest = sha256(layer)

    _a, b, location = race(server, bob, layer)

    r = bob.request("PUT", f"{location}?digest={digest}", "bob/x", headers={"Content-Length": "0"})
    # Stored or refused, whatever is stored under the digest hashes to it.
    assert r.status_code in (201, 400), r.text
    path = stored_file(server, digest)
    if r.status_code == 400:
        assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert not path.exists()
    else:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest.split(":")[1]
    assert_refused_as_out_of_order(b)
    alice.push_image("alice/app", "v1", [layer])
    assert sha256(alice.pull_blob("alice/app", digest).content) == digest
