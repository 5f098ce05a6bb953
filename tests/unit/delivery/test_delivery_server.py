"""The blob delivery server on a real socket: signed URLs in, blobs out zero-copy, errors as OCI envelopes."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard.delivery.server import CLIENT_CLOSED, Delivered, DeliveryServer, parse_range
from dockyard.delivery.urls import BlobUrlSigner
from dockyard.storage.blobstore import BlobStore, blob_key
from dockyard.storage.local import LocalDriver

DATA = bytes(range(256)) * 40  # 10240 bytes
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
OTHER = "sha256:" + hashlib.sha256(b"other").hexdigest()


def put(store: BlobStore, data: bytes, tmp: Path) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    source = tmp / f"src-{digest[7:19]}"
    source.write_bytes(data)
    store.driver.put_file(blob_key(digest), source)
    return digest


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    store = BlobStore(LocalDriver(tmp_path / "storage"), tmp_path / "uploads")
    put(store, DATA, tmp_path)
    return store


@pytest.fixture
def signer(tmp_path: Path) -> BlobUrlSigner:
    return BlobUrlSigner.from_dir(tmp_path / "keys")


@pytest.fixture
def records() -> list[Delivered]:
    return []


@pytest.fixture
def server(store: BlobStore, signer: BlobUrlSigner, records: list[Delivered]) -> Iterator[DeliveryServer]:
    server = DeliveryServer(store, signer, "127.0.0.1:0", records.append, idle_timeout=5)
    server.start()
    signer.base_url = f"http://127.0.0.1:{server.port}"
    try:
        yield server
    finally:
        server.stop()


def connect(server: DeliveryServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)


def get(
    server: DeliveryServer, target: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[http.client.HTTPResponse, bytes]:
    conn = connect(server)
    try:
        conn.request(method, target, headers=headers or {})
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def signed(signer: BlobUrlSigner, digest: str = DIGEST) -> str:
    return f"/blobs/{digest}?{signer.query(digest)}"


def raw(server: DeliveryServer, request: bytes) -> bytes:
    """Send bytes as they are (no client normalising the path) and read until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def reported(records: list[Delivered], count: int) -> list[Delivered]:
    """The server reports a request after its last byte is sent, so a client may see the body first."""
    deadline = time.monotonic() + 5
    while len(records) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return records


def assert_envelope(response: http.client.HTTPResponse, body: bytes, status: int, code: str) -> None:
    assert response.status == status, (response.status, body)
    assert response.getheader("content-type") == "application/json"
    doc = json.loads(body)
    assert set(doc) == {"errors"} and len(doc["errors"]) == 1, doc
    assert doc["errors"][0]["code"] == code, doc
    assert isinstance(doc["errors"][0]["message"], str) and doc["errors"][0]["message"]
    assert b"Traceback" not in body


# -- ranges --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", (0, 0)),
        ("bytes=5-", (5, 9)),
        ("bytes=5-100", (5, 9)),
        ("bytes=-3", (7, 9)),
        ("bytes=-30", (0, 9)),
        (None, None),
        ("bytes=5-3", None),  # invalid: ignored
        ("bytes=0-1,4-5", None),  # several ranges: the whole blob
        ("items=0-1", None),
        ("bytes=-", None),
        ("bytes=\u0661-\u0662", None),  # non-ASCII digits
    ],
)
def test_parse_range(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 10) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=-5", 0)]
)
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    from dockyard.errors import RangeInvalid

    with pytest.raises(RangeInvalid):
        parse_range(header, size)


# -- serving -------------------------------------------------------------------------------------------
def test_get_serves_the_blob_with_its_headers(
    server: DeliveryServer, signer: BlobUrlSigner, records: list[Delivered]
) -> None:
    response, body = get(server, signed(signer))
    assert response.status == 200
    assert body == DATA
    assert response.getheader("content-length") == str(len(DATA))
    assert response.getheader("content-type") == "application/octet-stream"
    assert response.getheader("docker-content-digest") == DIGEST
    assert response.getheader("etag") == f'"{DIGEST}"'
    assert response.getheader("accept-ranges") == "bytes"
    (record,) = reported(records, 1)
    assert (record.method, record.status, record.sent, record.digest) == ("GET", 200, len(DATA), DIGEST)


def test_head_answers_headers_only(server: DeliveryServer, signer: BlobUrlSigner, records) -> None:
    response, body = get(server, signed(signer), method="HEAD")
    assert (response.status, body) == (200, b"")
    assert response.getheader("content-length") == str(len(DATA))
    assert response.getheader("docker-content-digest") == DIGEST
    response, body = get(server, f"/blobs/{DIGEST}?expires=1&signature={'0' * 64}", method="HEAD")
    assert (response.status, body) == (403, b"")
    assert sorted((r.method, r.status, r.sent) for r in reported(records, 2)) == [
        ("HEAD", 200, 0),
        ("HEAD", 403, 0),
    ]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=100-1123", 100, 1123),
        ("bytes=10000-", 10000, 10239),
        ("bytes=-40", 10200, 10239),
    ],
)
def test_a_range_is_206(
    server: DeliveryServer, signer: BlobUrlSigner, header: str, start: int, end: int
) -> None:
    response, body = get(server, signed(signer), {"Range": header})
    assert response.status == 206
    assert response.getheader("content-range") == f"bytes {start}-{end}/{len(DATA)}"
    assert response.getheader("content-length") == str(end - start + 1)
    assert body == DATA[start : end + 1]


def test_an_unsatisfiable_range_is_416(server: DeliveryServer, signer: BlobUrlSigner) -> None:
    response, body = get(server, signed(signer), {"Range": "bytes=20000-20010"})
    assert_envelope(response, body, 416, "RANGE_INVALID")
    assert response.getheader("content-range") == f"bytes */{len(DATA)}"


def test_if_range_with_another_validator_gets_the_whole_blob(
    server: DeliveryServer, signer: BlobUrlSigner
) -> None:
    response, body = get(server, signed(signer), {"Range": "bytes=0-9", "If-Range": '"sha256:old"'})
    assert (response.status, body) == (200, DATA)
    response, body = get(server, signed(signer), {"Range": "bytes=0-9", "If-Range": f'"{DIGEST}"'})
    assert (response.status, body) == (206, DATA[:10])


def test_keep_alive_serves_several_requests_on_one_connection(
    server: DeliveryServer, signer: BlobUrlSigner, store: BlobStore, tmp_path: Path
) -> None:
    second = os.urandom(3 * 1024 * 1024 + 7)
    second_digest = put(store, second, tmp_path)
    conn = connect(server)
    try:
        conn.request("GET", signed(signer))
        first = conn.getresponse()
        assert first.read() == DATA
        sock = conn.sock
        for digest, data, headers in [
            (second_digest, second, {}),
            (DIGEST, DATA[5:10], {"Range": "bytes=5-9"}),
            (second_digest, b"", {}),  # HEAD
        ]:
            method = "HEAD" if not data else "GET"
            conn.request(method, signed(signer, digest), headers=headers)
            response = conn.getresponse()
            assert response.read() == data
            assert response.status in (200, 206)
        conn.request("GET", f"/blobs/{DIGEST}?expires=1&signature={'0' * 64}")  # an error keeps it open too
        response = conn.getresponse()
        assert_envelope(response, response.read(), 403, "DENIED")
        conn.request("GET", signed(signer))
        assert conn.getresponse().read() == DATA
        assert conn.sock is sock  # every response came over the first connection
    finally:
        conn.close()


def test_a_removed_blob_is_404(server: DeliveryServer, signer: BlobUrlSigner, store: BlobStore) -> None:
    store.delete(DIGEST)
    response, body = get(server, signed(signer))
    assert_envelope(response, body, 404, "BLOB_UNKNOWN")


def test_an_unopenable_blob_is_an_envelope_not_a_dropped_connection(
    server: DeliveryServer, signer: BlobUrlSigner, store: BlobStore
) -> None:
    path = store.local_path(DIGEST)
    assert path is not None
    path.unlink()
    path.symlink_to(path.name)  # open() fails with ELOOP, an OSError that is not "file not found"
    response, body = get(server, signed(signer))
    assert_envelope(response, body, 404, "BLOB_UNKNOWN")


def test_a_blob_removed_mid_transfer_is_still_sent_whole(
    server: DeliveryServer, signer: BlobUrlSigner, store: BlobStore, tmp_path: Path
) -> None:
    big = os.urandom(16 * 1024 * 1024)
    digest = put(store, big, tmp_path)
    conn = connect(server)
    try:
        conn.request("GET", signed(signer, digest))
        response = conn.getresponse()
        head = response.read(1024)
        assert store.delete(digest)  # gc removes it: the server's open file keeps serving the same bytes
        assert head + response.read() == big
    finally:
        conn.close()


@pytest.mark.parametrize(
    "query",
    [
        "",
        "expires=99999999999",
        f"signature={'0' * 64}",
        f"expires=99999999999&signature={'0' * 64}",
        "expires=1&signature=x&expires=2",
    ],
)
def test_a_bad_signature_is_403(server: DeliveryServer, query: str) -> None:
    response, body = get(server, f"/blobs/{DIGEST}?{query}")
    assert_envelope(response, body, 403, "DENIED")


def test_an_expired_url_is_403(server: DeliveryServer, signer: BlobUrlSigner) -> None:
    response, body = get(server, f"/blobs/{DIGEST}?{signer.query(DIGEST, now=time.time() - 301)}")
    assert_envelope(response, body, 403, "DENIED")


def test_a_url_for_one_blob_does_not_open_another(
    server: DeliveryServer, signer: BlobUrlSigner, store: BlobStore, tmp_path: Path
) -> None:
    other = put(store, b"other", tmp_path)
    assert other == OTHER
    query = signer.query(DIGEST)
    response, body = get(server, f"/blobs/{OTHER}?{query}")
    assert_envelope(response, body, 403, "DENIED")


@pytest.mark.parametrize(
    "target",
    [
        "/blobs/../../keys/blob-url-secret",
        "/blobs/..%2f..%2fkeys%2fblob-url-secret",
        "/blobs/sha256:..%2f..%2f..%2fetc%2fpasswd",
        "/blobs/sha256%3a%2e%2e",
        "/blobs/%2e%2e",
        "/blobs/sha256:" + "A" * 64,
        "/blobs/md5:" + "0" * 32,
    ],
)
def test_a_path_traversal_digest_is_refused_even_when_signed(
    server: DeliveryServer, signer: BlobUrlSigner, target: str
) -> None:
    from urllib.parse import unquote

    digest = unquote(target.rsplit("/", 1)[-1]) if target.count("/") == 2 else "x"
    query = signer.query(digest)  # a valid signature for the very string: the digest check still refuses
    reply = raw(server, f"GET {target}?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split()[1] in (b"400", b"404"), reply[:300]
    assert json.loads(body)["errors"][0]["code"] in ("DIGEST_INVALID", "NAME_UNKNOWN")
    assert DATA not in body and b"Traceback" not in reply


def test_unknown_paths_and_methods(server: DeliveryServer, signer: BlobUrlSigner) -> None:
    for target in ("/", "/v2/", f"/blobs/{DIGEST}/x", f"/storage/{blob_key(DIGEST)}"):
        response, body = get(server, target)
        assert_envelope(response, body, 404, "NAME_UNKNOWN")
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response, body = get(server, signed(signer), method=method)
        assert_envelope(response, body, 405, "UNSUPPORTED")
        assert response.getheader("allow") == "GET, HEAD"


def test_malformed_requests_get_an_envelope_and_a_close(server: DeliveryServer) -> None:
    for request in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"BREW /blobs HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        reply = raw(server, request)
        head, _, body = reply.partition(b"\r\n\r\n")
        status = int(head.split(b"\r\n")[0].split()[1])
        assert 400 <= status < 600, reply
        assert json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
        assert b"connection: close" in head.lower()


def test_a_request_body_on_get_closes_the_connection(server: DeliveryServer, signer: BlobUrlSigner) -> None:
    smuggled = f"GET {signed(signer)} HTTP/1.1\r\nHost: x\r\n\r\n"
    request = f"GET {signed(signer)} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(smuggled)}\r\n\r\n{smuggled}"
    reply = raw(server, request.encode())
    assert reply.count(b"HTTP/1.1 200") == 1  # the body was not taken for a second request
    assert reply.endswith(DATA)


def test_stop_closes_idle_keep_alive_connections_at_once(store: BlobStore, signer: BlobUrlSigner) -> None:
    server = DeliveryServer(store, signer, "127.0.0.1:0", idle_timeout=60)
    server.start()
    conn = connect(server)
    conn.request("GET", signed(signer))
    assert conn.getresponse().read() == DATA
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    conn.sock.settimeout(5)
    assert conn.sock.recv(1) == b""  # closed by the server, not left to its 60 s idle timeout
    conn.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", conn.port), timeout=2).close()


def test_worker_processes_share_one_port(store: BlobStore, signer: BlobUrlSigner) -> None:
    """SO_REUSEPORT: a second server (another worker process) binds the same port and serves too."""
    first = DeliveryServer(store, signer, "127.0.0.1:0")
    first.start()
    second = DeliveryServer(store, signer, f"127.0.0.1:{first.port}")
    try:
        second.start()
        assert second.port == first.port
        first.stop()
        response, body = get(second, signed(signer))
        assert (response.status, body) == (200, DATA)
    finally:
        first.stop()
        second.stop()


def test_a_port_in_use_says_what_to_do(store: BlobStore, signer: BlobUrlSigner) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = DeliveryServer(store, signer, f"127.0.0.1:{taken.getsockname()[1]}")
        with pytest.raises(OSError, match="DOCKYARD_BLOB_LISTEN"):
            server.start()


# -- limits: connections, header time, clients that leave ----------------------------------------------
@pytest.fixture
def start(
    store: BlobStore, signer: BlobUrlSigner, records: list[Delivered]
) -> Iterator[Callable[..., DeliveryServer]]:
    """Start a server with limits of the test's choosing; stopped after the test."""
    started: list[DeliveryServer] = []

    def start(**limits: float) -> DeliveryServer:
        server = DeliveryServer(store, signer, "127.0.0.1:0", records.append, **limits)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        signer.base_url = f"http://127.0.0.1:{server.port}"
        return server

    yield start
    for server in started:
        server.stop()


def open_connections(server: DeliveryServer) -> int:
    assert server._httpd is not None
    return len(server._httpd._connections)


def settle(server: DeliveryServer) -> None:
    """Wait until the server has closed every connection: by then its handlers logged and reported all."""
    deadline = time.monotonic() + 5
    while open_connections(server) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert open_connections(server) == 0


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends a RST rather than a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def wait_for_close(sock: socket.socket, seconds: float, trickle: bytes = b"") -> tuple[float, bytes]:
    """Read until the server closes (sending ``trickle`` each half second meanwhile): (seconds, reply)."""
    started, reply = time.monotonic(), b""
    sock.settimeout(0.5)
    while time.monotonic() - started < seconds:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            if trickle:
                try:
                    sock.sendall(trickle)
                except OSError:  # the server closed (and reset the trickle it did not read)
                    break
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        reply += chunk
    return time.monotonic() - started, reply


def test_over_the_connection_cap_a_client_gets_a_quick_503_and_no_thread(
    start: Callable[..., DeliveryServer], signer: BlobUrlSigner, records: list[Delivered]
) -> None:
    server = start(max_connections=3)
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
    try:
        began = time.monotonic()
        response, body = get(server, signed(signer))  # the fourth: over the cap
        assert time.monotonic() - began < 1
        assert_envelope(response, body, 503, "TOOMANYREQUESTS")
        assert response.getheader("retry-after") == "1"
        assert 503 in [r.status for r in reported(records, 1)]

        # A burst over the cap: every one is answered, none gets a thread (the lingerer is one for all).
        threads = threading.active_count()
        burst = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(20)]
        for sock in burst:
            sock.sendall(f"GET {signed(signer)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        for sock in burst:
            _, reply = wait_for_close(sock, 5)
            assert reply.startswith(b"HTTP/1.1 503 "), reply
            sock.close()
        assert threading.active_count() <= threads + 1
        assert open_connections(server) == 3

        held.pop().close()  # a slot frees when a connection closes
        deadline = time.monotonic() + 5
        while (status := get(server, signed(signer))[0].status) == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 200
    finally:
        for sock in held:
            sock.close()


def test_a_header_trickled_line_by_line_is_cut_off_at_the_header_deadline(
    start: Callable[..., DeliveryServer], signer: BlobUrlSigner
) -> None:
    # A line every half second never trips the 5 s per-read timeout: only the whole-header deadline does.
    server = start(header_timeout=1.5, idle_timeout=5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"GET {signed(signer)} HTTP/1.1\r\n".encode())
        seconds, reply = wait_for_close(sock, 10, trickle=b"X-Trickle: 1\r\n")
    assert 1.2 < seconds < 3.5, seconds
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408 "), reply
    response, body = get(server, signed(signer))
    assert (response.status, body) == (200, DATA)


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(
    start: Callable[..., DeliveryServer],
) -> None:
    server = start(header_timeout=1, idle_timeout=30)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        seconds, reply = wait_for_close(sock, 10)
    assert 0.8 < seconds < 2.5, seconds
    assert reply == b""  # nothing was asked: nothing to answer, not even a 408
    settle(server)


def test_the_header_deadline_runs_from_a_requests_first_byte_not_the_last_response(
    start: Callable[..., DeliveryServer], signer: BlobUrlSigner
) -> None:
    server = start(header_timeout=0.5, idle_timeout=5)
    conn = connect(server)
    try:
        conn.request("GET", signed(signer))
        assert conn.getresponse().read() == DATA
        sock = conn.sock
        time.sleep(1)  # idle past the header deadline, within the keep-alive idle time
        conn.request("GET", signed(signer))
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, DATA)
        assert conn.sock is sock
    finally:
        conn.close()


def test_a_client_that_leaves_before_its_response_is_no_server_error(
    server: DeliveryServer,
    signer: BlobUrlSigner,
    records: list[Delivered],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="dockyard.delivery")
    missing = f"GET {signed(signer, OTHER)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()  # signed, not stored
    invalid = b"GET /blobs/nope HTTP/1.1\r\nHost: x\r\n\r\n"
    for request, close in [
        *[(missing, socket.socket.close)] * 5,  # a FIN right after the request
        *[(missing, reset)] * 5,  # a RST right after the request
        (invalid, socket.socket.close),
        (invalid, reset),
        (missing[:40], reset),  # mid-header
        (b"", reset),  # before a byte
    ]:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        if request:
            sock.sendall(request)
        close(sock)
    response, body = get(server, signed(signer))  # still serving (and accepted after every one of them)
    assert (response.status, body) == (200, DATA)
    settle(server)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    statuses = [r.status for r in records]
    assert 500 not in statuses
    assert set(statuses) <= {200, 404, CLIENT_CLOSED}, statuses  # 404: answered before the client left
    assert CLIENT_CLOSED in statuses
