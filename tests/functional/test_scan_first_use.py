"""``dockyard scan`` on first use, as a person sees it on a terminal: a real process in a pseudo-terminal,
with an empty database and a feed served from a loopback HTTP server that sends it slowly, so the download's
progress bar has time to show."""

from __future__ import annotations

import http.server
import io
import os
import re
import select
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.cli import PYPA, Cli, need_vulndata
from tests.support.rootfs import TarLayer, have, oci_image

pytestmark = pytest.mark.database

SITE = "usr/local/lib/python3.11/site-packages"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def feed_zip() -> bytes:
    """urllib3's PyPA records as an osv.dev-style zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted((PYPA / "urllib3").glob("*.yaml")):
            zf.write(path, path.name)
    return buffer.getvalue()


@pytest.fixture
def slow_feed() -> Iterator[str]:
    """The URL of a zip served in 20 pieces a twentieth of a second apart, with its Content-Length."""
    body = feed_zip()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = len(body) // 20 + 1
            for start in range(0, len(body), step):
                self.wfile.write(body[start : start + step])
                self.wfile.flush()
                time.sleep(0.05)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pypi/all.zip"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def image(tmp_path: Path) -> str:
    if not have("umoci"):
        pytest.skip("umoci is not installed")
    metadata = "Metadata-Version: 2.1\nName: urllib3\nVersion: 1.26.4\n"
    layer = TarLayer().file(f"{SITE}/urllib3-1.26.4.dist-info/METADATA", metadata).write(tmp_path / "l.tar")
    oci_image(tmp_path / "layout", "app", [layer])
    return f"oci:{tmp_path / 'layout'}:app"


def on_a_terminal(cli: Cli, *args: str) -> tuple[int, str]:
    """Run ``dockyard`` as a new process whose stdout and stderr are a pseudo-terminal: (exit code, what the
    terminal received, escape sequences removed)."""
    env = {k: v for k, v in {**os.environ, **cli.env()}.items() if v is not None}
    env.update(TERM="xterm-256color", COLUMNS="160", LINES="40")
    exe = Path(sys.executable).with_name("dockyard")
    main, tty = os.openpty()
    proc = subprocess.Popen([str(exe), *args], stdin=tty, stdout=tty, stderr=tty, env=env, close_fds=True)
    os.close(tty)
    received = bytearray()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the process closed its end of the terminal
            break
        if not chunk:
            break
        received += chunk
    os.close(main)
    code = proc.wait(timeout=60)
    return code, ANSI.sub("", received.decode(errors="replace"))


def test_first_use_on_a_terminal_fetches_the_feeds_with_a_progress_bar(
    tmp_path: Path, empty_database_url: str, slow_feed: str, image: str
) -> None:
    need_vulndata()
    cli = Cli(tmp_path / "data", empty_database_url, {"DOCKYARD_VULNDB_SOURCES": slow_feed})
    code, screen = on_a_terminal(cli, "scan", image)
    assert code == 0, screen
    assert "the vulnerability database is empty: fetching 1 feed (skip with --skip-db-update)" in screen
    # The bar: its label, then bytes read of the Content-Length, redrawn as the pieces arrive.
    assert f"download {slow_feed}" in screen
    read = re.findall(r"download \S+ [━╸╺ ]+ ([\d.]+)/([\d.]+) kB", screen)
    assert read and len({done for done, _ in read}) > 1, screen  # it moved
    assert read[-1][0] == read[-1][1]  # and reached the end
    assert f"reading {slow_feed}" in screen  # then a spinner while the records are written, not a full bar
    assert "CVE-2021-33503" in screen and "urllib3" in screen  # then the table, with the fetched records
    assert re.search(
        r"Critical: \d+ +Major: \d+ +Minor: \d+ +Unscored: \d+ +\(\d+ findings in 1 components\)", screen
    )

    # The database is filled: the next scan neither fetches nor says so.
    code, screen = on_a_terminal(cli, "scan", image)
    assert code == 0 and "fetching" not in screen and "download" not in screen


def test_skip_db_update_on_a_terminal(
    tmp_path: Path, empty_database_url: str, slow_feed: str, image: str
) -> None:
    need_vulndata()
    cli = Cli(tmp_path / "data", empty_database_url, {"DOCKYARD_VULNDB_SOURCES": slow_feed})
    sbom = tmp_path / "sbom.spdx.json"
    code, screen = on_a_terminal(cli, "scan", "--skip-db-update", "--format", "spdx", "-o", str(sbom), image)
    assert code == 0 and "download" not in screen and "fetching" not in screen
    assert '"name": "urllib3"' in sbom.read_text()
    lines = [line.strip() for line in screen.splitlines() if "findings" in line]
    # One line says the SBOM has no findings; no line of counts suggests the image has none.
    assert len(lines) == 1 and lines[0].startswith("warning:") and "findings are not included" in lines[0]
    assert "1 components, not matched" in screen
