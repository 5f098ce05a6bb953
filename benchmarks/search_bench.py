"""Search latency through the HTTP API over 100,000 generated listings, on SQLite and on PostgreSQL.

    PYTHONPATH=src python benchmarks/search_bench.py [--listings 100000] [--rounds 40]
        [--postgres postgresql+psycopg://dockyard@127.0.0.1:55432/dockyard_test] [--only sqlite|postgres]
        [--keep] [--against SRC]

Generates listings from realistic words (names, descriptions, tags, 13 categories, 400 publishers, 1-3
platforms each), bulk-inserts them with their publishers, products and revisions (tests.support.search_data)
into a fresh database (PostgreSQL: a database created for the run and dropped after), indexes them with the
real SearchService, starts ``dockyard serve`` on it (tests.support.live.LiveServer) and times GET
/api/v1/search for a mix of queries, one client, sequentially. Prints p50 and p95 per query kind and over
all. Target: p95 under 50 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from tests.support.live import LiveServer  # noqa: E402
from tests.support.search_data import Spec, insert_listings  # noqa: E402

from dockyard.db import make_engine, migrate  # noqa: E402
from dockyard.publishing.manifest import Category  # noqa: E402

SOFTWARE = [
    "postgres",
    "mysql",
    "mariadb",
    "redis",
    "mongo",
    "cassandra",
    "kafka",
    "rabbitmq",
    "nginx",
    "apache",
    "haproxy",
    "envoy",
    "traefik",
    "grafana",
    "prometheus",
    "loki",
    "elastic",
    "kibana",
    "jenkins",
    "gitlab",
    "vault",
    "consul",
    "etcd",
    "minio",
    "ceph",
    "spark",
    "flink",
    "airflow",
    "jupyter",
    "tensorflow",
    "pytorch",
    "node",
    "python",
    "golang",
    "rust",
    "java",
    "tomcat",
    "wildfly",
    "keycloak",
    "sonarqube",
    "nexus",
    "harbor",
    "memcached",
    "clickhouse",
    "influx",
    "timescale",
    "neo4j",
    "couchdb",
    "solr",
    "zookeeper",
    "nats",
    "mosquitto",
    "wordpress",
    "drupal",
    "ghost",
]
ADJECTIVES = [
    "fast",
    "secure",
    "scalable",
    "lightweight",
    "managed",
    "enterprise",
    "cloud",
    "native",
    "open",
    "distributed",
    "realtime",
    "hardened",
    "minimal",
    "official",
    "community",
    "supported",
    "certified",
    "reliable",
    "durable",
    "streaming",
    "embedded",
]
NOUNS = [
    "database",
    "cache",
    "proxy",
    "server",
    "gateway",
    "broker",
    "queue",
    "monitor",
    "dashboard",
    "pipeline",
    "backup",
    "agent",
    "operator",
    "exporter",
    "collector",
    "scanner",
    "registry",
    "runtime",
    "notebook",
    "analytics",
    "search",
    "engine",
    "storage",
    "cluster",
    "toolkit",
]
WORDS = [
    "data",
    "container",
    "image",
    "deploy",
    "production",
    "teams",
    "high",
    "availability",
    "replication",
    "cluster",
    "metrics",
    "logs",
    "traces",
    "encryption",
    "tls",
    "authentication",
    "role",
    "access",
    "policy",
    "backup",
    "restore",
    "snapshot",
    "migration",
    "schema",
    "query",
    "index",
    "performance",
    "latency",
    "throughput",
    "memory",
    "disk",
    "network",
    "kubernetes",
    "helm",
    "compose",
    "upgrade",
    "patch",
    "support",
    "sla",
    "monitoring",
    "alerting",
    "dashboard",
    "api",
    "rest",
    "grpc",
    "plugin",
    "extension",
    "integration",
    "scale",
    "shard",
    "partition",
]
PLATFORMS = ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x", "linux/ppc64le", "windows/amd64"]


def generate(n: int, seed: int = 7) -> list[Spec]:
    rng = random.Random(seed)
    categories = [c.value for c in Category]
    publishers = [f"pub{i:03d}" for i in range(400)]
    specs = []
    for i in range(n):
        soft, adj, noun = rng.choice(SOFTWARE), rng.choice(ADJECTIVES), rng.choice(NOUNS)
        long = " ".join(rng.choice(WORDS + SOFTWARE) for _ in range(rng.randint(30, 90)))
        specs.append(
            Spec(
                key=f"p{i:06d}",
                name=f"{soft.title()} {adj.title()} {noun.title()}",
                publisher=rng.choice(publishers),
                short=f"A {adj} {noun} for {soft} with {rng.choice(WORDS)} and {rng.choice(WORDS)}",
                long=long,
                category=rng.choice(categories),
                tags=rng.sample(WORDS + SOFTWARE, 3),
                free=rng.random() < 0.6,
                certified=rng.random() < 0.1,
                downloads=int(rng.paretovariate(1.2) * 10),
                platforms=rng.sample(PLATFORMS, rng.randint(1, 3)),
                status="listed" if rng.random() < 0.97 else rng.choice(["on_hold", "revoked"]),
                age=rng.randint(0, 1500),
            )
        )
    return specs


QUERIES: list[tuple[str, dict[str, str]]] = [
    ("one word", {"q": "postgres"}),
    ("one word", {"q": "cache"}),
    ("one word (rare)", {"q": "mosquitto"}),
    ("two words", {"q": "redis backup"}),
    ("two words", {"q": "secure gateway"}),
    ("phrase", {"q": '"high availability"'}),
    ("phrase", {"q": '"kafka broker"'}),
    ("excluded", {"q": "nginx -proxy"}),
    ("prefix (typing)", {"q": "promet"}),
    ("filters", {"q": "database", "certified": "1", "arch": "linux/arm64"}),
    ("filters", {"q": "monitor", "free": "1", "category": "Monitoring"}),
    ("empty + filter", {"category": "Database"}),
    ("empty + filter", {"publisher": "pub042"}),
    ("empty + filter", {"arch": "linux/s390x", "free": "1"}),
    ("by downloads", {"q": "server", "sort": "downloads"}),
    ("by downloads", {"sort": "downloads"}),
    ("newest", {"q": "grafana", "sort": "newest"}),
    ("page 5", {"q": "cluster", "page": "5"}),
]


def fresh_postgres(url: str, keep: bool = False) -> tuple[str, callable, bool]:
    """The benchmark's database: (url, drop, loaded). With ``keep``, one left by an earlier --keep run is
    reused when it holds listings (``loaded``), and this one is left for the next."""
    parts = urlsplit(url)
    name = "dockyard_search_bench"
    admin = create_engine(urlunsplit(parts._replace(path="/postgres")), isolation_level="AUTOCOMMIT")
    bench = urlunsplit(parts._replace(path=f"/{name}"))
    loaded = False
    with admin.connect() as conn:
        there = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if keep and there:
            engine = create_engine(bench)
            with engine.connect() as bench_conn:
                loaded = bool(bench_conn.scalar(text("SELECT to_regclass('listing') IS NOT NULL"))) and bool(
                    bench_conn.scalar(text("SELECT EXISTS (SELECT 1 FROM listing)"))
                )
            engine.dispose()
        if not loaded:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {name}"))

    def drop() -> None:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    return bench, drop, loaded


def load(url: str, specs: list[Spec], loaded: bool = False) -> float:
    engine = make_engine(url)
    migrate(engine)  # (a reused database: brought to the newest migration, its listings kept)
    started = time.perf_counter()
    if loaded:
        engine.dispose()
        return 0.0
    batch = 10_000
    for start in range(0, len(specs), batch):
        with Session(engine) as session, session.begin():
            insert_listings(session, specs[start : start + batch], prefix="")
    # Settled as a live database would be after autovacuum: statistics, and (PostgreSQL) the visibility
    # map and hint bits set once, not by the first timed queries.
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with engine.begin() as conn:  # (dockyard's SQLite engine begins explicitly: committed here)
            conn.execute(text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


def measure(bases: list[str], rounds: int) -> list[dict[str, list[float]]]:
    """Each query timed on each server in turn (several: interleaved, the first one alternating, so that
    both see the same load on a shared machine)."""
    times: list[dict[str, list[float]]] = [{} for _ in bases]
    clients = [httpx.Client(base_url=base, timeout=30) for base in bases]
    try:
        for _label, params in QUERIES:  # warm: the pool's connections, the page cache, prepared statements
            for client in clients:
                for _ in range(3):
                    client.get("/api/v1/search", params=params).raise_for_status()
        for n in range(rounds):
            for label, params in QUERIES:
                order = list(range(len(clients)))
                if n % 2:
                    order.reverse()
                for i in order:
                    t0 = time.perf_counter()
                    r = clients[i].get("/api/v1/search", params=params)
                    elapsed = (time.perf_counter() - t0) * 1000
                    r.raise_for_status()
                    times[i].setdefault(label, []).append(elapsed)
    finally:
        for client in clients:
            client.close()
    return times


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def database_size(url: str) -> str:
    """The database's size on disk (SQLite: the file and its WAL; PostgreSQL: pg_database_size)."""
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    else:
        engine = create_engine(url)
        with engine.connect() as conn:
            size = conn.scalar(text("SELECT pg_database_size(current_database())"))
        engine.dispose()
    return f"{size / 1024 / 1024:.0f} MiB"


def report(name: str, times: dict[str, list[float]], loaded: float, n: int, size: str) -> None:
    every = [t for ts in times.values() for t in ts]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n== {name}: {n} listings, loaded and indexed in {loaded:.1f} s; database {size}; load {load} ==")
    print(f"{'query':<18} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, ts in times.items():
        print(f"{label:<18} {statistics.median(ts):8.1f} {pct(ts, 95):8.1f} {max(ts):8.1f}")
    verdict = "meets" if pct(every, 95) < 50 else "MISSES"
    p50, p95 = statistics.median(every), pct(every, 95)
    print(f"{'all':<18} {p50:8.1f} {p95:8.1f} {max(every):8.1f}  ({verdict} p95 < 50 ms)", flush=True)


def run(
    name: str, url: str, specs: list[Spec], rounds: int, work: Path, reuse: bool = False, against: str = ""
) -> None:
    loaded = load(url, specs, reuse)
    env = {"DOCKYARD_JOB_WORKERS": "0"}
    servers = [LiveServer(work / f"{name}-data", url, extra_env=env).start()]
    try:
        if against:
            other = {**env, "PYTHONPATH": against}
            servers.append(LiveServer(work / f"{name}-against-data", url, extra_env=other).start())
        results = measure([server.url for server in servers], rounds)
        size = database_size(url)
        report(name, results[0], loaded, len(specs), size)
        if against:
            report(f"{name} (against {against})", results[1], loaded, len(specs), size)
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--postgres", default="postgresql+psycopg://dockyard@127.0.0.1:55432/dockyard_test")
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument(
        "--keep",
        action="store_true",
        help="PostgreSQL: keep the loaded database after the run, and reuse one kept before (migrated to "
        "the newest revision, not reloaded; --listings is then what was loaded then)",
    )
    parser.add_argument(
        "--against",
        metavar="SRC",
        default="",
        help="also time a second server running the code of another source tree (its PYTHONPATH, e.g. an "
        "exported commit's src), on the same database, requests interleaved with the first's",
    )
    args = parser.parse_args()
    specs = generate(args.listings)
    with tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
        work = Path(tmp)
        if args.only in (None, "sqlite"):
            run("SQLite", f"sqlite:///{work / 'bench.db'}", specs, args.rounds, work, against=args.against)
        if args.only in (None, "postgres"):
            url, drop, loaded = fresh_postgres(args.postgres, keep=args.keep)
            try:
                run("PostgreSQL", url, specs, args.rounds, work, reuse=loaded, against=args.against)
            finally:
                drop()


if __name__ == "__main__":
    main()
