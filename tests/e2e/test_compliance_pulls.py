"""The compliance loop seen from outside, on a live server with its mail on a real SMTP server on loopback:
the demo store (its feeds read from the local vulnerability data, every image scanned) holds one product and
revokes another; skopeo and podman still pull them (deployments must not break) and every manifest answer
carries the registry's ``Warning: 299`` (Debian bookworm's skopeo 1.9.3 and podman 4.3.1 do not print
registry warnings, even with --debug, so the header is read with an HTTP client); a revoked product's pulls
are refused once its grace period is over, with skopeo showing why; and a clock that runs out while the
server is stopped holds its product at the first check after the restart, from the stored times, with the
hold mailed to its publisher through SMTP."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine

from dockyard.compliance.models import FindingClock
from dockyard.db import utcnow
from dockyard.store.models import Listing
from tests.e2e.clients import Clients, require_tools
from tests.support.live import LiveServer
from tests.support.smtpd import smtp_server
from tests.support.store_world import MANIFEST_TYPES
from tests.support.vulndata import VULNDATA

# The demo, the feeds and two server starts take a minute or two; what they read and write in the database is
# tested on PostgreSQL too by tests/functional/test_compliance_*.py.
pytestmark = [pytest.mark.e2e, pytest.mark.sqlite_only]
require_tools("skopeo", "podman")

STAFF = "storeadmin:dockyard-demo"  # the demo's store-admin: the store team may pull any store path


def listing_status(engine: Engine, product: str) -> tuple[str, dt.datetime | None]:
    org, slug = product.split("/")
    with engine.connect() as conn:
        row = conn.execute(
            select(Listing.status, Listing.status_since).where(
                Listing.publisher_slug == org, Listing.product_slug == slug
            )
        ).one()
        return row.status, row.status_since


def store_ref(live: LiveServer, product: str, engine: Engine) -> str:
    """The first image and tag of a product's listing, as customers pull them."""
    org, slug = product.split("/")
    with engine.connect() as conn:
        images = conn.execute(
            select(Listing.images).where(Listing.publisher_slug == org, Listing.product_slug == slug)
        ).scalar_one()
    image = sorted(images)[0]
    tag = sorted(images[image])[0]
    return f"{live.host}/store/{org}/{slug}/{image}:{tag}"


def warning(live: LiveServer, ref: str) -> str:
    """The Warning header of a manifest GET of ``ref`` (Basic credentials, as /v2 takes them)."""
    path, tag = ref.removeprefix(live.host + "/").rsplit(":", 1)
    r = httpx.get(
        f"{live.url}/v2/{path}/manifests/{tag}",
        auth=tuple(STAFF.split(":", 1)),
        headers={"Accept": MANIFEST_TYPES},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    value = r.headers.get("warning", "")
    assert value.startswith('299 - "'), value
    return value


def test_held_and_revoked_products_warn_and_refuse_and_a_restart_keeps_the_clocks(
    tmp_path: Path, fresh_database_url: str
) -> None:
    feeds = ",".join(str(VULNDATA / name) for name in ("alpine-secdb", "nvd-sample"))
    with smtp_server() as smtp:
        env = {
            "DOCKYARD_SMTP_URL": smtp.url(query="timeout=5"),
            "DOCKYARD_JOB_WORKERS": "1",
            "DOCKYARD_VULNDB_SOURCES": feeds,
            # The check after the restart comes at the scheduler's first tick (5 s in), not a minute after
            # the last check the demo queued (the default interval, 60 s, counts from that job).
            "DOCKYARD_COMPLIANCE_INTERVAL": "5",
        }
        live = LiveServer(tmp_path / "live-data", fresh_database_url, extra_env=env)
        seeded = live.dockyard("demo")
        held = re.findall(r"^\s+(\S+): on hold", seeded.stdout, re.M)
        revoked = re.findall(r"^\s+(\S+): revoked", seeded.stdout, re.M)
        assert len(held) == 1 and len(revoked) == 1, seeded.stdout
        engine = create_engine(fresh_database_url)
        clients = Clients(tmp_path / "clients")
        live.start()
        try:
            assert listing_status(engine, held[0])[0] == "on_hold"
            held_ref = store_ref(live, held[0], engine)
            clients.skopeo("inspect", "--tls-verify=false", "--creds", STAFF, f"docker://{held_ref}")
            clients.podman("pull", "--tls-verify=false", "--creds", STAFF, held_ref)
            assert "on hold" in warning(live, held_ref) and "security fix is overdue" in warning(
                live, held_ref
            )

            revoked_ref = store_ref(live, revoked[0], engine)
            clients.skopeo("inspect", "--tls-verify=false", "--creds", STAFF, f"docker://{revoked_ref}")
            assert "was revoked from the store" in warning(live, revoked_ref)
            assert "pulls stop on" in warning(live, revoked_ref)
            with engine.begin() as conn:  # the grace period over
                org, slug = revoked[0].split("/")
                conn.execute(
                    Listing.__table__.update()
                    .where(Listing.publisher_slug == org, Listing.product_slug == slug)
                    .values(status_since=utcnow() - dt.timedelta(days=31))
                )
            r = clients.skopeo(
                "inspect", "--tls-verify=false", "--creds", STAFF, f"docker://{revoked_ref}", check=False
            )
            assert r.returncode != 0 and "revoked from the store" in r.stderr, r.stderr

            # Stopped, a listed product's Critical clock runs out; the first check after the restart holds it.
            live.stop()
            with engine.begin() as conn:
                product_id, org, slug = conn.execute(
                    select(Listing.product_id, Listing.publisher_slug, Listing.product_slug)
                    .where(
                        Listing.status == "listed",
                        Listing.product_id.in_(
                            select(FindingClock.product_id).where(
                                FindingClock.severity == "Critical", FindingClock.resolved_at.is_(None)
                            )
                        ),
                    )
                    .limit(1)
                ).one()
                told = utcnow() - dt.timedelta(hours=73)
                conn.execute(
                    FindingClock.__table__.update()
                    .where(FindingClock.product_id == product_id, FindingClock.severity == "Critical")
                    .values(notified_at=told, due_at=told + dt.timedelta(hours=72))
                )
            smtp.collector.received.clear()
            live.start()
            deadline = time.monotonic() + 90
            while listing_status(engine, f"{org}/{slug}")[0] != "on_hold":
                assert time.monotonic() < deadline, "the check after the restart did not hold the product"
                time.sleep(0.5)
            assert listing_status(engine, f"{org}/{slug}")[1] == told + dt.timedelta(hours=72)
            deadline = time.monotonic() + 60
            while not any("is on hold" in m.message["Subject"] for m in smtp.collector.received):
                assert time.monotonic() < deadline, [m.message["Subject"] for m in smtp.collector.received]
                time.sleep(0.2)
            with engine.connect() as conn:
                assert (
                    conn.execute(text("SELECT count(*) FROM audit_event WHERE tag = 'product:hold'")).scalar()
                    >= 2
                )
        finally:
            live.stop()
            clients.close()
            engine.dispose()
