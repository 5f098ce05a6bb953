"""Blob delivery: signed blob URLs (``blob_urls.py``) served zero-copy by a small threaded HTTP/1.1 server.

Registries at scale answer a blob GET with a redirect to a presigned object-store URL, so the bytes never
pass through the application. This does the same for the local-disk store: the registry view checks access
and answers 307 to ``<blob public url>/blobs/<digest>?expires=...&signature=...``; this server checks the
HMAC and the expiry (the signature is the credential: no token, no database) and hands the open file to the
kernel with sendfile(2). Each server worker process runs one, bound with SO_REUSEPORT to the same port.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import re
import socket
import socketserver
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

from dockyard.errors import DockyardError, Forbidden, Invalid, NotFound, RangeInvalid
from dockyard.oci.digest import parse_digest
from dockyard.registry.errors import oci_error
from dockyard.storage.blob_urls import BlobUrlSigner
from dockyard.storage.blobstore import BlobStore

log = logging.getLogger("dockyard.delivery")

IDLE_TIMEOUT = 30.0  # seconds a keep-alive connection may idle (or a transfer stall) before it is closed
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
    ) -> None:
        self.blobs, self.signer, self.address = blobs, signer, address
        self.on_request = on_request
        self.idle_timeout = idle_timeout
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
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS round trip nobody here needs.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self._lock:
            self._connections.add(request)
        super().process_request(request, client_address)  # type: ignore[arg-type]

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

    def handle_error(self, request: object, client_address: object) -> None:
        log.exception("blob delivery: unexpected error serving %s", client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients fetch a whole image over one connection
    default_request_version = "HTTP/1.0"  # not 0.9: even an error for a garbled line gets a status line
    disable_nagle_algorithm = True  # headers and body are separate writes; Nagle would delay the body
    server: _HTTPServer
    digest: str = ""  # of the request being answered, once validated (for the access log)

    def setup(self) -> None:
        self.timeout = self.server.delivery.idle_timeout
        super().setup()

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
        error = DockyardError(message or "bad request", code="UNSUPPORTED")
        self._send_envelope(error, {"Connection": "close"}, status=code)

    # -- one request
    def _serve(self, head: bool) -> None:
        started, status, sent = time.perf_counter(), 500, 0
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
                status = plan.status
                self._send_headers(plan.status, plan.headers)
                if not head and plan.length:
                    sent = self.connection.sendfile(plan.file, plan.start, plan.length)
                    if sent != plan.length:  # the file shrank: the client must not reuse this connection
                        self.close_connection = True
        except OSError:  # the client went away or stalled past the timeout mid-transfer
            self.close_connection = True
        finally:
            client = self.client_address[0] if self.client_address else None
            self.server.delivery.report(
                Delivered(
                    self.command or "",
                    self.digest,
                    status,
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
            "Cache-Control": "max-age=31536000",  # a digest's bytes never change
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
        """``{"errors":[{code,message}]}`` with the status of the registry's OCI error table."""
        table_status, code, message = oci_error(exc)
        status = status or table_status
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        headers |= getattr(exc, "headers", None) or {}
        headers |= extra or {}
        headers.pop("Connection", None)  # _send_headers says it, once, when the connection closes
        self._send_headers(status, headers)
        if self.command != "HEAD":
            self.wfile.write(body)
        return status
