"""One structured log line per request, and Prometheus metrics, as a pure ASGI middleware.

A pure ASGI middleware (not BaseHTTPMiddleware) so blob bodies and ``pathsend`` pass straight through.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.delivery.server import Delivered

log = logging.getLogger("dockyard.access")


class Metrics:
    def __init__(self, open_uploads: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dockyard_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.bytes_in = Counter(
            "dockyard_http_received_bytes", "Request body bytes received", ["route"], registry=self.registry
        )
        self.bytes_out = Counter(
            "dockyard_http_sent_bytes", "Response body bytes sent", ["route"], registry=self.registry
        )
        self.latency = Histogram(
            "dockyard_http_request_duration_seconds", "Request duration", ["route"], registry=self.registry
        )
        self.delivery_requests = Counter(
            "dockyard_blob_delivery_requests",
            "Requests answered by the blob delivery server, by status",
            ["status"],
            registry=self.registry,
        )
        self.delivery_bytes = Counter(
            "dockyard_blob_delivery_sent_bytes",
            "Blob bytes sent by the delivery server",
            registry=self.registry,
        )
        # Requests being served, and when the last one ended: background jobs in this process wait for a
        # quiet moment (see busy), so scans do not take CPU and the GIL from pushes and pulls.
        self.in_flight = 0
        self.last_finished = 0.0
        Gauge(
            "dockyard_http_requests_in_flight", "Requests being served", registry=self.registry
        ).set_function(lambda: float(self.in_flight))
        uploads = Gauge(
            "dockyard_upload_sessions_open", "Blob upload sessions in progress", registry=self.registry
        )
        uploads.set_function(lambda: float(open_uploads()))

    def busy(self, quiet: float = 0.05) -> bool:
        """True while a request is being served or one ended less than ``quiet`` seconds ago."""
        return self.in_flight > 0 or time.monotonic() - self.last_finished < quiet

    def blob_delivered(self, record: Delivered) -> None:
        """Count and log a request of the blob delivery server, as the middleware does for the app's."""
        self.delivery_requests.labels(str(record.status)).inc()
        self.delivery_bytes.inc(record.sent)
        if log.isEnabledFor(logging.INFO):
            log.info(
                json.dumps(
                    {
                        "method": record.method,
                        "path": f"/blobs/{record.digest}" if record.digest else "/blobs",
                        "route": "blob_delivery",
                        "status": record.status,
                        "ms": round(record.seconds * 1000, 2),
                        "bytes_in": 0,
                        "bytes_out": record.sent,
                        "ip": record.ip,
                        "ua": record.user_agent,
                    }
                )
            )


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        info: dict[str, Any] = {"status": 500, "in": 0, "out": 0, "length": None}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                info["in"] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                info["status"] = message["status"]
                for key, value in message.get("headers", []):
                    if key.lower() == b"content-length":
                        info["length"] = int(value)
            elif kind == "http.response.body":
                info["out"] += len(message.get("body", b""))
            elif kind == "http.response.pathsend" and info["length"] is not None:
                info["out"] += info["length"]
            await send(message)

        self.metrics.in_flight += 1
        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            self.metrics.in_flight -= 1
            self.metrics.last_finished = time.monotonic()
            elapsed = time.perf_counter() - started
            # Starlette sets "route" when a route matched; any other path must not become a label value,
            # or every distinct 404 would add time series to every scrape.
            route = scope.get("dockyard.route") or (_route_of(scope) if "route" in scope else "unmatched")
            status = str(info["status"])
            m = self.metrics
            # The method is the client's to choose: an unknown one must not become a new time series.
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            m.requests.labels(route, method, status).inc()
            m.bytes_in.labels(route).inc(info["in"])
            m.bytes_out.labels(route).inc(info["out"])
            m.latency.labels(route).observe(elapsed)
            if log.isEnabledFor(logging.INFO):  # building the line costs more than a manifest GET's query
                log.info(_access_line(scope, route, info, elapsed))


def _access_line(scope: Scope, route: str, info: dict[str, Any], elapsed: float) -> str:
    client = scope.get("client")
    headers = dict(scope.get("headers") or [])
    return json.dumps(
        {
            "method": scope["method"],
            "path": scope["path"],
            "route": route,
            "status": info["status"],
            "ms": round(elapsed * 1000, 2),
            "bytes_in": info["in"],
            "bytes_out": info["out"],
            "ip": client[0] if client else None,
            "ua": headers.get(b"user-agent", b"").decode("latin-1")[:200],
        }
    )


def _route_of(scope: Scope) -> str:
    path: str = scope.get("path", "")
    if path.startswith("/v2"):
        return "v2"
    return "/" + path.strip("/").split("/", 1)[0]
