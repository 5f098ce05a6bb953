"""A real webhook receiver on loopback: a threading http.server that checks every request's signature with
``dockyard.webhooks.signing.verify_signature`` (as a customer's receiver would) and answers with the statuses
it is told to, in order (the last one repeats), optionally after a delay."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dockyard.config import Settings
from dockyard.webhooks.signing import verify_signature


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    secret: str = ""  # set once the endpoint exists (its secret is shown at creation)
    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    answer: bytes = b'{"ok": true}'
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def url(self, host: str = "127.0.0.1", path: str = "/hooks/dockyard") -> str:
        return f"http://{host}:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                header = self.headers.get("Dockyard-Signature", "")
                verified = bool(receiver.secret) and verify_signature(receiver.secret, header, body)
                receiver.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, verified)
                )
                index = min(len(receiver.received) - 1, len(receiver.statuses) - 1)
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(receiver.statuses[index])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(receiver.answer)))
                    self.end_headers()
                    self.wfile.write(receiver.answer)
                except OSError:  # the client gave up (the timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def settings_reaching_loopback(tmp_path: Path, database_url: str) -> Settings:
    """The tests' settings with plain-http loopback webhook targets allowed (the receiver's; the SSRF tests
    turn them off again)."""
    return Settings(
        listen="127.0.0.1:5999",
        data_dir=tmp_path / "data",
        database_url=database_url,
        admin_password="admin-pass-1",
        webhook_allow_http=True,
        webhook_allow_private=True,
    )


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
