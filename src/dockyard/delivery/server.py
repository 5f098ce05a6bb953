"""Blob delivery: signed blob URLs (``urls.py``) served zero-copy by a small threaded HTTP/1.1 server.

Registries at scale answer a blob GET with a redirect to a presigned object-store URL, so the bytes never
pass through the application. This does the same for the local-disk store: the registry view checks access
and answers 307 to ``<blob public url>/blobs/<digest>?expires=...&signature=...``; this server checks the
HMAC and the expiry (the signature is the credential: no token, no database) and hands the open file to the
kernel with sendfile(2). Each server worker process runs one, bound with SO_REUSEPORT to the same port.

It runs a thread per connection, so it bounds what a client can hold: at most ``max_connections`` open
connections (more get a 503 from the accepting thread, no thread of their own), ``header_timeout`` seconds
to send a request header once it started (slowloris), ``idle_timeout`` for a kept-alive connection to start
its next request and for a transfer to stall.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.server
import io
import json
import logging
import os
import re
import selectors
import socket
import socketserver
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

from dockyard.delivery.urls import BlobUrlSigner
from dockyard.errors import DockyardError, Forbidden, Invalid, NotFound, RangeInvalid
from dockyard.oci.errors import OCI_ERRORS
from dockyard.spec import parse_digest
from dockyard.storage.blobstore import BlobStore

log = logging.getLogger("dockyard.delivery")

IDLE_TIMEOUT = 30.0  # seconds a keep-alive connection may idle (or a transfer stall) before it is closed
# Seconds from the first byte of a request to the end of its header (a new connection's from its accept):
# the per-read timeout alone lets a client trickling a header line by line hold its thread forever.
HEADER_TIMEOUT = 10.0
MAX_CONNECTIONS = 512  # open connections per process, each a thread; more are answered 503 at once
RETRY_AFTER = 1  # seconds, in the 503 of a refused connection: slots free as transfers end
CLIENT_CLOSED = 499  # status reported for a request whose client left before its response went out (nginx's)
LINGER = 2.0  # seconds a refused connection is drained after its 503, so closing it sends no reset
_PATH = re.compile(r"/blobs/([^/]+)")
# One range of bytes; bounded digit runs, so int() never sees a huge number.
_RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")


# -- ranges --------------------------------------------------------------------------------------------
def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` / ``a-`` / ``-n`` range as inclusive (start, end); None means the whole blob.

    Anything else (several ranges, other units, a malformed spec) is ignored, as RFC 9110 allows; a range
    that starts past the end raises RangeInvalid (416).
    """
    match = _RANGE.fullmatch((header or "").strip())
    if not match or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        if last and int(last) < start:
            return None  # not a valid range spec: ignored
        if start >= size:
            raise RangeInvalid(f"range starts at {start}, the blob has {size} bytes")
        return start, min(int(last), size - 1) if last else size - 1
    suffix = int(last)
    if suffix == 0 or size == 0:
        raise RangeInvalid(f"no last {suffix} bytes in a blob of {size}")
    return max(0, size - suffix), size - 1


# -- the server ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Delivered:
    """One answered request, for metrics and the access log (never the signature)."""

    method: str
    digest: str
    status: int
    sent: int
    seconds: float
    ip: str | None
    user_agent: str


@dataclass
class _Plan:
    file: BinaryIO
    status: int
    start: int
    length: int
    headers: dict[str, str]


class DeliveryServer:
    """Serves ``GET``/``HEAD /blobs/<digest>?expires=&signature=`` from the local blob store."""

    def __init__(
        self,
        blobs: BlobStore,
        signer: BlobUrlSigner,
        address: str,
        on_request: Callable[[Delivered], None] | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        header_timeout: float = HEADER_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        self.blobs, self.signer, self.address = blobs, signer, address
        self.on_request = on_request
        self.idle_timeout, self.header_timeout = idle_timeout, header_timeout
        self.max_connections = max_connections
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        assert self._httpd is not None, "not started"
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        """Bind (SO_REUSEPORT: one server per worker process, one port) and serve in a daemon thread."""
        host, _, port = self.address.rpartition(":")
        try:
            self._httpd = _HTTPServer((host.strip("[]") or "0.0.0.0", int(port)), self)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"blob delivery cannot listen on {self.address} ({exc.strerror}); "
                "set DOCKYARD_BLOB_LISTEN to a free address, or to off",
            ) from exc
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="blob-delivery", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close the listener and every open connection (idle keep-alives too)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(5)

    def report(self, record: Delivered) -> None:
        if self.on_request is not None:
            try:
                self.on_request(record)
            except Exception:  # metrics must never break a transfer
                log.exception("blob delivery metrics callback failed")


class _HTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True  # a stuck client never holds up shutdown
    block_on_close = False
    allow_reuse_address = True
    allow_reuse_port = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], delivery: DeliveryServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.delivery = delivery
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._lingerer = _Lingerer(delivery.max_connections)
        self._warned_full = -60.0  # monotonic time of the last "connections full" warning
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS round trip nobody here needs.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self._lock:
            admitted = len(self._connections) < self.delivery.max_connections
            if admitted:
                self._connections.add(request)
        if admitted:
            super().process_request(request, client_address)  # type: ignore[arg-type]
        else:
            self._refuse(request, client_address)

    def _refuse(self, request: socket.socket, client_address: object) -> None:
        """Over the cap: a 503 in one non-blocking write from the accepting thread; no thread of its own.

        A fresh socket's send buffer takes the few hundred bytes whole; a client that already left is closed
        at once. The rest is the lingerer's: closing now, with the client's request unread, would reset the
        connection, and the client could lose the 503 or fail to send its request.
        """
        response = _busy_response()
        try:
            request.setblocking(False)
            written = request.send(response)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            written = 0
        if written == len(response):
            self._lingerer.add(request)
        else:
            request.close()
        now = time.monotonic()
        if now - self._warned_full >= 60:  # once a minute: a flood must not flood the log too
            self._warned_full = now
            log.warning(
                "blob delivery: %d connections open, the most allowed; refusing more with 503",
                self.delivery.max_connections,
            )
        ip = client_address[0] if isinstance(client_address, tuple) and client_address else None
        self.delivery.report(Delivered("", "", 503, 0, 0.0, str(ip) if ip else None, ""))

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)  # type: ignore[arg-type]

    def close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes the handler thread, which then closes it
        self._lingerer.close()

    def handle_error(self, request: object, client_address: object) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            # The client reset or left (between requests, mid-header, mid-response): nothing failed here.
            log.debug("blob delivery: %s left: %s", client_address, exc)
            return
        log.exception("blob delivery: unexpected error serving %s", client_address)


def _busy_response() -> bytes:
    """The 503 of a refused connection: an OCI error envelope, Retry-After, and the connection closes."""
    _, body = _envelope(
        DockyardError("too many connections to the blob delivery server", code="TOOMANYREQUESTS")
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Server: dockyard\r\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Retry-After: {RETRY_AFTER}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def _envelope(exc: DockyardError) -> tuple[int, bytes]:
    """(status, body) of the OCI error envelope for one of the few codes this server emits.

    Every error here is raised with an OCI code and a message of its own, so the table in ``oci/errors.py``
    gives the status; the registry's mapping of generic domain errors (``registry/errors.py``) is not needed.
    """
    status, default_message = OCI_ERRORS[exc.code]
    body = {"errors": [{"code": exc.code, "message": exc.message or default_message}]}
    return status, json.dumps(body).encode()


class _Lingerer:
    """Refused connections, 503 sent and write side shut, are read and dropped until the client closes.

    Closing a socket with unread bytes (the request the client sent before it saw the 503) makes the kernel
    answer with a reset, which may reach the client before it reads the 503, or fail its write of the request.
    One thread for all of them, started while there are some; each for at most ``linger`` seconds, and at
    most ``limit`` at a time (beyond that a flood gets plain closes: bounded file descriptors come first).
    """

    def __init__(self, limit: int, linger: float = LINGER) -> None:
        self._limit, self._linger = limit, linger
        self._lock = threading.Lock()
        self._incoming: list[tuple[float, socket.socket]] = []  # handed over, not yet watched by the thread
        self._count = 0  # incoming and watched
        self._running = self._closed = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            if self._closed or self._count >= self._limit:
                sock.close()
                return
            self._incoming.append((time.monotonic() + self._linger, sock))
            self._count += 1
            if self._running:
                return
            try:
                threading.Thread(target=self._run, name="blob-delivery-linger", daemon=True).start()
            except RuntimeError:  # no thread to be had: plain closes, then
                for _, waiting in self._incoming:
                    waiting.close()
                self._incoming, self._count = [], 0
                return
            self._running = True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for _, sock in self._incoming:
                sock.close()
            self._count -= len(self._incoming)
            self._incoming = []

    def _run(self) -> None:
        watched: dict[socket.socket, float] = {}  # socket -> when to close it, whatever the client does
        selector = selectors.DefaultSelector()  # epoll: no FD_SETSIZE limit, unlike select()
        try:
            while True:
                with self._lock:
                    incoming, self._incoming = self._incoming, []
                    if self._closed or not (incoming or watched):
                        self._running = False  # said under the lock: an add() from now on starts a thread
                        return
                for deadline, sock in incoming:
                    watched[sock] = deadline
                    selector.register(sock, selectors.EVENT_READ)
                # A short wait: sockets handed over meanwhile join at the next turn (their 503 is out).
                for key, _ in selector.select(0.1):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if self._drained(sock):
                        self._drop(sock, selector, watched)
                now = time.monotonic()
                for sock in [sock for sock, deadline in watched.items() if deadline <= now]:
                    self._drop(sock, selector, watched)
        except Exception:  # not expected; what it watched is closed below, the next refusal starts afresh
            log.exception("blob delivery: lingering close of refused connections failed")
            with self._lock:
                self._running = False
        finally:
            for sock in watched:
                sock.close()
            selector.close()
            with self._lock:
                self._count -= len(watched)

    @staticmethod
    def _drained(sock: socket.socket) -> bool:
        """Read what arrived; True once the client closed (now a close sends no reset) or reset."""
        try:
            for _ in range(16):  # bounded: a client streaming bytes cannot keep the thread here
                if not sock.recv(65536):
                    return True
        except BlockingIOError:
            return False
        except OSError:
            return True
        return False

    def _drop(
        self, sock: socket.socket, selector: selectors.BaseSelector, watched: dict[socket.socket, float]
    ) -> None:
        selector.unregister(sock)
        del watched[sock]
        sock.close()
        with self._lock:
            self._count -= 1


class _HeaderClock(io.RawIOBase):
    """The connection's reads, under a deadline for the whole request header rather than each read.

    The socket timeout alone bounds every read, so a client sending a header line every few seconds holds its
    connection (and thread) indefinitely. While a header is awaited, each read gets only what is left of the
    deadline: ``idle_timeout`` for a kept-alive connection's first byte, then ``header_timeout`` from that
    byte (from the accept, for a new connection). Between header and response the socket is back to
    ``idle_timeout`` per write, which only bounds a stalled transfer.
    """

    def __init__(
        self, raw: io.RawIOBase, sock: socket.socket, header_timeout: float, idle_timeout: float
    ) -> None:
        super().__init__()
        self._raw, self._sock = raw, sock
        self.header_timeout, self.idle_timeout = header_timeout, idle_timeout
        self.deadline: float | None = None  # None: not reading a header
        self._started = False  # the header deadline runs
        self.received = 0  # bytes of the awaited request read so far (0: it never started)

    def readable(self) -> bool:
        return True

    def await_request(self, new_connection: bool) -> None:
        self.received, self._started = 0, new_connection
        self.deadline = time.monotonic() + (self.header_timeout if new_connection else self.idle_timeout)

    def header_read(self) -> None:
        """The header is in (or answered): back to the per-read idle timeout for the response."""
        if self.deadline is not None:
            self.deadline = None
            self._sock.settimeout(self.idle_timeout)

    def readinto(self, buffer: bytearray | memoryview) -> int | None:  # type: ignore[override]
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request header deadline passed")
            self._sock.settimeout(left)
        count = self._raw.readinto(buffer)
        if count and self.deadline is not None:
            self.received += count
            if not self._started:
                self._started = True
                self.deadline = time.monotonic() + self.header_timeout
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients fetch a whole image over one connection
    default_request_version = "HTTP/1.0"  # not 0.9: even an error for a garbled line gets a status line
    disable_nagle_algorithm = True  # headers and body are separate writes; Nagle would delay the body
    server: _HTTPServer
    digest: str = ""  # of the request being answered, once validated (for the access log)
    clock: _HeaderClock
    fresh: bool  # no request read on this connection yet

    def setup(self) -> None:
        delivery = self.server.delivery
        self.timeout = delivery.idle_timeout
        super().setup()
        # The same socket reader under the header clock; detach() leaves the socket's reference count as is.
        raw = self.rfile.detach()  # type: ignore[attr-defined]
        self.clock = _HeaderClock(raw, self.connection, delivery.header_timeout, delivery.idle_timeout)
        self.rfile = io.BufferedReader(self.clock)
        self.fresh = True

    def handle_one_request(self) -> None:
        """The stdlib's, with the header deadline, and a 408 for a request that started but did not finish."""
        # What send_error needs, should the request line never arrive whole (408).
        self.command = None  # type: ignore[assignment]
        self.request_version, self.requestline = self.default_request_version, ""
        self.clock.await_request(new_connection=self.fresh)
        self.fresh = False
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if len(self.raw_requestline) > 65536:
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            parsed = self.parse_request()  # answers a malformed request itself (send_error)
        except TimeoutError:
            self.close_connection = True
            # Only a request that started is told why; a client that sent nothing, or idled after its last
            # request, is just closed.
            if self.clock.received:
                self.clock.header_read()
                with contextlib.suppress(OSError):
                    self.send_error(HTTPStatus.REQUEST_TIMEOUT, "request header not received in time")
            return
        self.clock.header_read()
        if not parsed:
            return
        method = getattr(self, f"do_{self.command}", None)
        if method is None:
            self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method ({self.command!r})")
            return
        method()
        self.wfile.flush()

    def version_string(self) -> str:
        return "dockyard"

    def log_message(self, format: str, *args: object) -> None:
        pass  # one access-log line per request goes through Delivered instead

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _not_allowed(self) -> None:
        self.close_connection = self.close_connection or self._has_body()
        self._send_envelope(Invalid("only GET and HEAD", code="UNSUPPORTED"), {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _not_allowed

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors the stdlib detects (bad request line, long headers): our envelope, then close."""
        self.close_connection = True
        self.clock.header_read()  # a write of its own must not run on what was left of the header deadline
        error = DockyardError(message or "bad request", code="UNSUPPORTED")
        self._send_envelope(error, {"Connection": "close"}, status=code)

    # -- one request
    def _serve(self, head: bool) -> None:
        # status: of a response that went out (a whole envelope, or a blob's header); None until then.
        started, status, sent = time.perf_counter(), None, 0
        self.digest = ""
        if self._has_body():
            self.close_connection = True  # we never read a body: what follows it is not a request
        try:
            try:
                plan = self._plan()
            except DockyardError as exc:
                status = self._send_envelope(exc)
                return
            with plan.file:
                self._send_headers(plan.status, plan.headers)
                status = plan.status  # a transfer cut short keeps its status; sent says how far it got
                if not head and plan.length:
                    sent = self.connection.sendfile(plan.file, plan.start, plan.length)
                    if sent != plan.length:  # the file shrank: the client must not reuse this connection
                        self.close_connection = True
        except OSError:  # the client went away, or stalled past the idle timeout mid-transfer
            self.close_connection = True
            if status is None:  # it left before its response went out: its abort, not the server's 500
                status = CLIENT_CLOSED
        finally:
            client = self.client_address[0] if self.client_address else None
            self.server.delivery.report(
                Delivered(
                    self.command or "",
                    self.digest,
                    500 if status is None else status,  # an unexpected error, logged by handle_error
                    sent,
                    time.perf_counter() - started,
                    str(client) if client else None,
                    self.headers.get("User-Agent", "")[:200] if self.headers else "",
                )
            )

    def _plan(self) -> _Plan:
        url = urlsplit(self.path)
        match = _PATH.fullmatch(url.path)
        if not match:
            raise NotFound("no such endpoint", code="NAME_UNKNOWN")
        digest = unquote(match.group(1))
        parse_digest(digest)  # DIGEST_INVALID: nothing but a well-formed digest ever names a file
        self.digest = digest
        try:
            query = parse_qs(url.query, keep_blank_values=True, max_num_fields=8)
        except ValueError:
            query = {}
        expires, signature = query.get("expires", []), query.get("signature", [])
        if (
            len(expires) != 1
            or len(signature) != 1
            or not self.server.delivery.signer.verify(digest, expires[0], signature[0])
        ):
            raise Forbidden("invalid or expired blob URL", code="DENIED")
        fh = self._open(digest)
        try:
            return self._plan_file(digest, fh)
        except BaseException:
            fh.close()
            raise

    def _open(self, digest: str) -> BinaryIO:
        path = self.server.delivery.blobs.local_path(digest)
        if path is None:
            raise NotFound("blob unknown to registry", code="BLOB_UNKNOWN")
        try:
            # Open once, then fstat: gc may unlink the blob meanwhile, and the open file stays whole.
            fh: BinaryIO = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the caller
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound("blob unknown to registry", code="BLOB_UNKNOWN") from None
        except OSError as exc:  # unreadable (permissions): say so in the log, answer like a missing blob
            log.warning("blob delivery cannot open %s: %s", path, exc)
            raise NotFound("blob unknown to registry", code="BLOB_UNKNOWN") from None
        return fh

    def _plan_file(self, digest: str, fh: BinaryIO) -> _Plan:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotFound("blob unknown to registry", code="BLOB_UNKNOWN")
        size, etag = info.st_size, f'"{digest}"'
        headers = {
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": digest,
            "ETag": etag,
            "Accept-Ranges": "bytes",
            # A digest's bytes never change; "private": a layer of a private repository is no shared cache's.
            "Cache-Control": "private, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        }
        if_range = self.headers.get("If-Range")
        wanted = self.headers.get("Range") if if_range is None or if_range == etag else None
        try:
            span = parse_range(wanted, size)
        except RangeInvalid as exc:
            exc.headers = {"Content-Range": f"bytes */{size}"}  # type: ignore[attr-defined]
            raise
        if span is None:
            return _Plan(fh, 200, 0, size, {**headers, "Content-Length": str(size)})
        start, end = span
        headers |= {"Content-Length": str(end - start + 1), "Content-Range": f"bytes {start}-{end}/{size}"}
        return _Plan(fh, 206, start, end - start + 1, headers)

    # -- writing
    def _has_body(self) -> bool:
        length = self.headers.get("Content-Length") if self.headers else None
        return bool(self.headers and self.headers.get("Transfer-Encoding")) or (length not in (None, "0"))

    def _send_headers(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _send_envelope(
        self, exc: DockyardError, extra: dict[str, str] | None = None, status: int | None = None
    ) -> int:
        """``{"errors":[{code,message}]}`` with the status of the OCI error table."""
        table_status, body = _envelope(exc)
        status = status or table_status
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        headers |= getattr(exc, "headers", None) or {}
        headers |= extra or {}
        headers.pop("Connection", None)  # _send_headers says it, once, when the connection closes
        self._send_headers(status, headers)
        if self.command != "HEAD":
            self.wfile.write(body)
        return status
