#!/usr/bin/env python3
"""Screenshots of pages, as a user sees them: starts a throwaway dockyard, makes a user (and whatever a
``--setup`` script adds), signs in with Debian's chromium and saves one PNG per path.

    PYTHONPATH=src python scripts/screenshot-pages.py --out /tmp/shots / /ui/login /ui/
    PYTHONPATH=src python scripts/screenshot-pages.py --anonymous --out /tmp/shots / /ui/login

A ``--setup FILE.py`` defining ``setup(base_url, admin, user)`` (each an (name, password) pair) can push
images or create organisations first, over HTTP. For looking at pages while building them; tests take
their own screenshots."""

from __future__ import annotations

import argparse
import runpy
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.live import LiveServer

USER = ("dana", "dana-password-1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--out", type=Path, default=Path("/tmp/shots"))
    parser.add_argument("--anonymous", action="store_true", help="do not sign in")
    parser.add_argument("--setup", type=Path, help="a Python file with setup(base_url, admin, user)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--full", action="store_true", help="the whole page, not the first screen")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(Path(tmp) / "data", f"sqlite:///{tmp}/db.sqlite").start()
        try:
            admin = ("admin", server.admin_password)
            r = httpx.post(
                f"{server.url}/api/v1/users",
                json={"username": USER[0], "password": USER[1], "email": "dana@example.com"},
                auth=admin,
            )
            r.raise_for_status()
            if args.setup:
                runpy.run_path(str(args.setup))["setup"](server.url, admin, USER)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": args.width, "height": 860})
                if not args.anonymous:
                    page.goto(f"{server.url}/ui/login")
                    page.fill("#username", USER[0])
                    page.fill("#password", USER[1])
                    page.click("form.stack button[type=submit]")
                    page.wait_for_load_state()
                for path in args.paths:
                    page.goto(f"{server.url}{path}")
                    name = path.strip("/").replace("/", "_").replace("?", "_") or "root"
                    target = args.out / f"{name}.png"
                    page.screenshot(path=str(target), full_page=args.full)
                    print(target, page.title())
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
