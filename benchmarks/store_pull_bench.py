#!/usr/bin/env python3
"""Benchmark the store path: a manifest GET of ``store/<publisher>/<product>/<image>:<tag>`` (entitlement
check included: a customer's registry token from /token, the pin resolved per request) against a direct GET
of the same manifest in the staging repository (the publisher's token), on the same live server, in the same
run, interleaved request by request, from one keep-alive client.

Prints p50/p95 latencies (ms) of each, and the ratio of throughputs store/direct (target >= 0.9).

    PYTHONPATH=src python benchmarks/store_pull_bench.py [--requests 2000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.live import LiveServer  # noqa: E402
from tests.support.review_world import make_product, make_publisher  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PASSWORD = "bench-password-1"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def token(url: str, user: str, scope: str) -> str:
    r = httpx.get(f"{url}/token", params={"service": "dockyard", "scope": scope}, auth=(user, PASSWORD))
    r.raise_for_status()
    return r.json()["token"]


def push(url: str, user: str, repo: str, tag: str) -> str:
    headers = {"Authorization": f"Bearer {token(url, user, f'repository:{repo}:pull,push')}"}
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    )
    layer = b"layer of " + repo.encode()
    blobs = [config.encode(), layer]
    for blob in blobs:
        r = httpx.post(f"{url}/v2/{repo}/blobs/uploads/?digest={digest(blob)}", content=blob, headers=headers)
        r.raise_for_status()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(blobs[0]),
                "size": len(blobs[0]),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    r = httpx.put(
        f"{url}/v2/{repo}/manifests/{tag}",
        content=manifest,
        headers={**headers, "Content-Type": OCI_MANIFEST},
    )
    r.raise_for_status()
    return digest(manifest)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests of each kind (interleaved)")
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temporary directory")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="store-bench-"))
    database_url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    live = LiveServer(tmp / "data", database_url).start()
    try:
        url, admin = live.url, ("admin", live.admin_password)
        for user in ("olga", "carl"):
            httpx.post(
                f"{url}/api/v1/users", json={"username": user, "password": PASSWORD}, auth=admin
            ).raise_for_status()
        httpx.post(f"{url}/api/v1/orgs", json={"name": "acme"}, auth=("olga", PASSWORD)).raise_for_status()
        server = push(url, "olga", "acme/db-server", "16")
        agent = push(url, "olga", "acme/db-agent", "1.4")
        engine = create_engine(database_url)
        with Session(engine) as s, s.begin():
            revision = make_product(s, make_publisher(s, "acme"), "acme", "acme-db")
            revision.state = "published"
            revision.pins = {
                "server": {"repository": "acme/db-server", "tags": {"16": server}},
                "agent": {"repository": "acme/db-agent", "tags": {"1.4": agent}},
            }
            revision.product.live_revision_id = revision.id
        engine.dispose()
        body = {"publisher": "acme", "product": "acme-db", "tier": "Community", "accept_license": True}
        httpx.post(f"{url}/api/v1/entitlements", json=body, auth=("carl", PASSWORD)).raise_for_status()
        store_name, staging = "store/acme/acme-db/server", "acme/db-server"
        cases = {
            "store": (f"/v2/{store_name}/manifests/16", token(url, "carl", f"repository:{store_name}:pull")),
            "direct": (f"/v2/{staging}/manifests/16", token(url, "olga", f"repository:{staging}:pull")),
        }
        times: dict[str, list[float]] = {k: [] for k in cases}
        with httpx.Client(base_url=url, http2=False) as client:
            for _ in range(50):  # warm-up
                for path, tok in cases.values():
                    client.get(path, headers={"Authorization": f"Bearer {tok}", "Accept": OCI_MANIFEST})
            for _ in range(args.requests):
                for kind, (path, tok) in cases.items():
                    start = time.perf_counter()
                    r = client.get(path, headers={"Authorization": f"Bearer {tok}", "Accept": OCI_MANIFEST})
                    times[kind].append(time.perf_counter() - start)
                    if r.status_code != 200 or r.headers["docker-content-digest"] != server:
                        raise SystemExit(f"{kind}: {r.status_code} {r.text[:200]}")
        print(f"database: {database_url.split(':', 1)[0]}, {args.requests} requests of each, interleaved")
        for kind, values in times.items():
            ms = [v * 1000 for v in values]
            print(
                f"{kind:7s} p50 {percentile(ms, 50):6.2f} ms  p95 {percentile(ms, 95):6.2f} ms  "
                f"{len(values) / sum(values):7.0f} req/s (mean {statistics.mean(ms):.2f} ms)"
            )
        ratio = (len(times["store"]) / sum(times["store"])) / (len(times["direct"]) / sum(times["direct"]))
        print(f"throughput ratio store/direct: {ratio:.3f} (target >= 0.9)")
        return 0
    finally:
        live.stop()


if __name__ == "__main__":
    raise SystemExit(main())
