#!/usr/bin/env python3
"""Benchmark logins: dockyard's /token and Basic credentials on /v2, against Distribution with htpasswd.

The script starts its own dockyard (and, unless --only dockyard, the CNCF Distribution registry with htpasswd
Basic auth), prepares a user, an access token and a tagged repository, and times single requests from
keep-alive httpx clients, sequentially (1 client) and with --concurrency (8) clients released together:

1. ``GET /token`` with Basic ``user:password``: the first login of a user (cold: argon2 runs), and repeated
   logins with the same password (the verified-password cache);
2. ``GET /token`` with Basic ``user:dyt_...`` (a personal access token: SHA-256, never argon2);
3. ``GET /v2/<repo>/tags/list`` with Basic ``user:password`` and with ``user:dyt_...`` on the request itself;
4. the same ``tags/list`` with a Bearer token from /token (the /v2 fast path, for reference);
5. Distribution: the same ``tags/list`` with Basic ``user:password`` checked against a bcrypt htpasswd file
   (cost --bcrypt-cost) on every request, and the ratio dockyard / Distribution of the latencies.

Figures are latencies in milliseconds (median and 99th percentile over all requests of a case) and the
requests per second of the whole case. Server CPU seconds are recorded per case. Progress goes to stderr,
the table to stdout, everything to --json.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from registry_bench import (
    DISTRIBUTION,
    DOCKYARD,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    REPO_ROOT,
    BenchError,
    Server,
    config_json,
    descriptor,
    distribution_config,
    free_port,
    fresh_database,
    image_manifest,
    log,
    sha256_digest,
    start_server,
    tar_bytes,
    tool_version,
)

Send = Callable[[httpx.Client, int], httpx.Response]
TOKEN = "token"


def basic(username: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile, nearest rank (q=99 of 8 samples: the largest)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Case:
    server: str
    title: str
    clients: int
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    server_cpu_s: float = 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.wall_s if self.wall_s else 0.0


def run_case(
    server: Server, case: Case, send: Send, per_client: int, expect: int = 200, warmup: int = 0
) -> Case:
    """``case.clients`` threads, each with its own keep-alive client, released together; each sends
    ``per_client`` requests (``send(client, i)`` with i unique across threads) and records their latency."""
    barrier = threading.Barrier(case.clients + 1)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        mine: list[float] = []
        try:
            with httpx.Client(base_url=server.base_url, trust_env=False, timeout=60.0) as http:
                for i in range(warmup):
                    send(http, -1 - i)  # connection set up, caches warm: not timed
                barrier.wait()
                for i in range(per_client):
                    t0 = time.perf_counter()
                    r = send(http, n * per_client + i)
                    mine.append((time.perf_counter() - t0) * 1000)
                    if r.status_code != expect:
                        raise BenchError(f"{case.title}: HTTP {r.status_code} {r.text[:300]}")
        except BaseException as exc:
            errors.append(exc)
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.abort()
        with lock:
            case.latencies_ms += mine

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(case.clients)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
    for t in threads:
        t.join()
    case.wall_s, case.server_cpu_s = time.perf_counter() - t0, server.cpu_seconds() - cpu0
    if errors:
        raise errors[0]
    log(
        f"  {case.server}: {case.title}, {case.clients} client(s): median {case.median:.1f} ms, "
        f"p99 {case.p99:.1f} ms, {case.rate:,.0f}/s (server cpu {case.server_cpu_s:.2f} s)"
    )
    return case


# ------------------------------------------------------------------------------------------------ servers
def start_dockyard(args: argparse.Namespace, password: str, tmp: Path, stack: contextlib.ExitStack) -> Server:
    if not os.access(args.dockyard_bin, os.X_OK):
        raise BenchError(f"dockyard executable not found at {args.dockyard_bin}")
    port, data = free_port(), tmp / "dockyard-data"
    data.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    if env.get("PYTHONPATH"):
        # The server runs in the temp directory: a relative PYTHONPATH=src would silently name nothing
        # there, and the editable install's code would be measured instead of the tree asked for.
        env["PYTHONPATH"] = os.pathsep.join(
            str(Path(p).resolve()) for p in env["PYTHONPATH"].split(os.pathsep)
        )
    env.update(
        DOCKYARD_LISTEN=f"127.0.0.1:{port}",
        DOCKYARD_BLOB_LISTEN="off",  # no blobs are pulled here
        # No in-process job workers: no scan of the pushed image, no feed download at first start; the
        # figures are the logins' alone.
        DOCKYARD_JOB_WORKERS="0",
        DOCKYARD_DATA_DIR=str(data),
        DOCKYARD_ADMIN_PASSWORD=password,
    )
    database = None
    if args.postgres:
        database, env["DOCKYARD_DATABASE_URL"] = fresh_database(args.postgres, stack)
    cmd = [str(args.dockyard_bin), "serve"]
    if args.workers and args.workers > 1:
        # As in registry_bench.py: one single-worker start creates the token signing key first.
        start_server(DOCKYARD, cmd, env, port, tmp, args.startup_timeout).stop()
        env["DOCKYARD_WORKERS"] = str(args.workers)
    server = start_server(DOCKYARD, cmd, env, port, tmp, args.startup_timeout)
    server.database = database
    stack.callback(server.stop)
    return server


def bcrypt_hash(password: str, cost: int) -> str:
    """A bcrypt hash for htpasswd: Python's crypt (glibc/libxcrypt), else the htpasswd tool."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # deprecated, gone in Python 3.13

            hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2**cost))
            if hashed and hashed.startswith("$2"):
                return hashed
        except (ImportError, AttributeError, ValueError):
            pass
    if shutil.which("htpasswd") is None:
        raise BenchError("no bcrypt: needs Python's crypt module (< 3.13) or htpasswd (apache2-utils)")
    out = subprocess.run(
        ["htpasswd", "-nbBC", str(cost), "u", password], capture_output=True, text=True, check=True
    )
    return out.stdout.strip().split(":", 1)[1]


def start_distribution(
    args: argparse.Namespace, username: str, password: str, tmp: Path, stack: contextlib.ExitStack
) -> Server:
    binary = shutil.which(args.distribution_bin)
    if binary is None:
        raise BenchError(f"{args.distribution_bin} not found (Debian package docker-registry)")
    port, data = free_port(), tmp / "distribution-data"
    data.mkdir()
    htpasswd = tmp / "htpasswd"
    htpasswd.write_text(f"{username}:{bcrypt_hash(password, args.bcrypt_cost)}\n")
    config = tmp / "distribution.yml"
    auth = f"auth:\n  htpasswd:\n    realm: bench\n    path: {htpasswd}\n"
    config.write_text(distribution_config(data, port) + auth)
    server = start_server(DISTRIBUTION, [binary, "serve", str(config)], dict(os.environ), port, tmp, 60)
    stack.callback(server.stop)
    return server


# ---------------------------------------------------------------------------------------------- fixtures
def push_image(http: httpx.Client, repo: str, headers: dict[str, str], tags: int) -> None:
    """A tiny image under ``tags`` tags, so tags/list has something to list."""
    layer = tar_bytes("hello.txt", b"hello from the token benchmark\n")
    config = config_json([sha256_digest(layer)])
    for data in (config, layer):
        # POST, then PUT with the digest: Distribution 2.8 does not finish an upload in the POST.
        r = http.post(f"/v2/{repo}/blobs/uploads/", headers=headers)
        location = r.headers.get("location", "")
        if r.status_code != 202 or not location:
            raise BenchError(f"upload start at {http.base_url}: HTTP {r.status_code} {r.text[:300]}")
        r = http.put(
            f"{location}{'&' if '?' in location else '?'}digest={sha256_digest(data)}",
            content=data,
            headers={**headers, "Content-Type": "application/octet-stream"},
        )
        if r.status_code != 201:
            raise BenchError(f"blob push to {http.base_url}: HTTP {r.status_code} {r.text[:300]}")
    body = image_manifest(
        descriptor(OCI_CONFIG, sha256_digest(config), len(config)),
        [descriptor(OCI_LAYER, sha256_digest(layer), len(layer))],
    )
    for i in range(tags):
        r = http.put(
            f"/v2/{repo}/manifests/v{i}", content=body, headers={**headers, "Content-Type": OCI_MANIFEST}
        )
        if r.status_code != 201:
            raise BenchError(f"manifest push to {http.base_url}: HTTP {r.status_code} {r.text[:300]}")


@dataclass
class Dockyard:
    user: str
    password: str
    token: str  # a personal access token (pull, push)
    repo: str
    cold_users: list[str]


def prepare_dockyard(server: Server, admin_password: str, args: argparse.Namespace) -> Dockyard:
    password = base64.urlsafe_b64encode(os.urandom(12)).decode()
    cold = [f"cold{i}" for i in range(args.cold + args.concurrency)]
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=120.0) as http:
        admin = ("admin", admin_password)
        for name in ["bench", *cold]:
            r = http.post("/api/v1/users", json={"username": name, "password": password}, auth=admin)
            if r.status_code != 201:
                raise BenchError(f"creating user {name}: HTTP {r.status_code} {r.text[:300]}")
        r = http.post(
            "/api/v1/tokens", json={"name": "bench", "scopes": ["pull", "push"]}, auth=("bench", password)
        )
        if r.status_code != 201:
            raise BenchError(f"creating a token: HTTP {r.status_code} {r.text[:300]}")
        token = r.json()["token"]
        repo = "bench/app"
        r = http.get(
            "/token",
            params={"service": "dockyard", "scope": f"repository:{repo}:pull,push"},
            auth=("bench", token),
        )
        push_image(http, repo, {"Authorization": f"Bearer {r.json()['token']}"}, args.tags)
    return Dockyard("bench", password, token, repo, cold)


# ------------------------------------------------------------------------------------------------- cases
def dockyard_cases(server: Server, d: Dockyard, args: argparse.Namespace) -> list[Case]:
    n, c = args.requests, args.concurrency
    scope = {"service": "dockyard", "scope": f"repository:{d.repo}:pull"}
    tags_url = f"/v2/{d.repo}/tags/list"
    password, token = basic(d.user, d.password), basic(d.user, d.token)
    cases: list[Case] = []

    def token_with(headers: dict[str, str]) -> Send:
        return lambda http, i: http.get("/token", params=scope, headers=headers)

    def first_login(names: list[str]) -> Send:
        return lambda http, i: http.get("/token", params=scope, headers=basic(names[i], d.password))

    def tags_with(headers: dict[str, str]) -> Send:
        return lambda http, i: http.get(tags_url, headers=headers)

    log("/token, first login of a user (argon2)")
    sequential, parallel = d.cold_users[: args.cold], d.cold_users[args.cold :]
    cases.append(
        run_case(
            server,
            Case(DOCKYARD, "/token, password, first login", 1),
            first_login(sequential),
            len(sequential),
        )
    )
    cases.append(
        run_case(server, Case(DOCKYARD, "/token, password, first login", c), first_login(parallel), 1)
    )
    log("/token, repeated logins")
    for title, headers in (
        ("/token, password, repeated", password),
        ("/token, access token, repeated", token),
    ):
        for clients in (1, c):
            case = Case(DOCKYARD, title, clients)
            cases.append(run_case(server, case, token_with(headers), n // clients, warmup=2))
    log("GET tags/list with Basic credentials, and with a Bearer token")
    r = httpx.get(f"{server.base_url}/token", params=scope, headers=token, trust_env=False)
    bearer = {"Authorization": f"Bearer {r.json()['token']}"}
    listings = [
        ("tags/list, Basic password", password),
        ("tags/list, Basic access token", token),
        ("tags/list, Bearer token", bearer),
    ]
    if args.only == TOKEN:  # builds from before Basic credentials on /v2 answer those with 401
        listings = listings[-1:]
    for title, headers in listings:
        for clients in (1, c):
            case = Case(DOCKYARD, title, clients)
            cases.append(run_case(server, case, tags_with(headers), n // clients, warmup=2))
    return cases


def distribution_cases(server: Server, user: str, password: str, args: argparse.Namespace) -> list[Case]:
    n, c = args.requests, args.concurrency
    headers = basic(user, password)
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=60.0) as http:
        push_image(http, "bench/app", headers, args.tags)
    log(f"GET tags/list with Basic credentials (bcrypt cost {args.bcrypt_cost})")
    cases = []
    for clients in (1, c):
        case = Case(DISTRIBUTION, "tags/list, Basic password", clients)
        send: Send = lambda http, i: http.get("/v2/bench/app/tags/list", headers=headers)  # noqa: E731
        cases.append(run_case(server, case, send, n // clients, warmup=2))
    return cases


# ------------------------------------------------------------------------------------------------ report
def print_table(cases: Sequence[Case], args: argparse.Namespace) -> None:
    rows = [("server", "case", "clients", "requests", "median ms", "p99 ms", "req/s", "server cpu s")]
    for k in cases:
        rows.append(
            (
                k.server,
                k.title,
                str(k.clients),
                str(len(k.latencies_ms)),
                f"{k.median:,.1f}",
                f"{k.p99:,.1f}",
                f"{k.rate:,.0f}",
                f"{k.server_cpu_s:.2f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(w) for cell, w in zip(row[2:], widths[2:], strict=True)]
        print("  ".join(cells))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    by = {(k.server, k.title, k.clients): k for k in cases}
    print()
    for clients in (1, args.concurrency):
        cold = by.get((DOCKYARD, "/token, password, first login", clients))
        warm = by.get((DOCKYARD, "/token, password, repeated", clients))
        if cold and warm:
            print(
                f"/token, {clients} client(s): first login {cold.median:,.1f} ms -> repeated "
                f"{warm.median:,.1f} ms median ({cold.median / warm.median:,.0f}x faster)"
            )
        ours = by.get((DOCKYARD, "tags/list, Basic password", clients))
        theirs = by.get((DISTRIBUTION, "tags/list, Basic password", clients))
        if ours and theirs:
            print(
                f"tags/list with Basic password, {clients} client(s): dockyard / Distribution latency = "
                f"{ours.median / theirs.median:.2f} (median), {ours.p99 / theirs.p99:.2f} (p99); "
                f"throughput {ours.rate / theirs.rate:.2f}x"
            )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--only",
        choices=[DOCKYARD, TOKEN],
        help="dockyard: skip Distribution; token: dockyard's /token cases and the Bearer tags/list alone "
        "(they also run against builds from before Basic credentials on /v2)",
    )
    p.add_argument(
        "--requests", type=int, default=400, help="requests per repeated case (split over clients)"
    )
    p.add_argument("--concurrency", type=int, default=8, help="clients of the concurrent cases")
    p.add_argument("--cold", type=int, default=8, help="users whose first login is timed one after another")
    p.add_argument("--tags", type=int, default=10, help="tags in the listed repository")
    p.add_argument(
        "--bcrypt-cost", type=int, default=5, help="Distribution's htpasswd bcrypt cost (htpasswd -B: 5)"
    )
    p.add_argument("--dockyard-bin", type=Path, default=REPO_ROOT / ".venv" / "bin" / "dockyard")
    p.add_argument("--postgres", metavar="URL", help="dockyard on a fresh database on this PostgreSQL server")
    p.add_argument("--workers", type=int, help="dockyard server worker processes (DOCKYARD_WORKERS)")
    p.add_argument("--distribution-bin", default="/usr/bin/docker-registry")
    p.add_argument("--startup-timeout", type=float, default=60.0)
    p.add_argument("--json", type=Path, help="write parameters, environment and every case here")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (data and logs)")
    args = p.parse_args(argv)
    for name in ("requests", "concurrency", "cold", "tags"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="dockyard-token-bench-"))
        if args.keep:
            stack.callback(log, f"kept {tmp}")
        else:
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        load_before = os.getloadavg()
        if load_before[0] > (os.cpu_count() or 1) / 2:
            log(f"warning: load average {load_before[0]:.1f} on {os.cpu_count()} CPUs; figures will be noisy")
        admin_password = base64.urlsafe_b64encode(os.urandom(12)).decode()
        server = start_dockyard(args, admin_password, tmp, stack)
        fixture = prepare_dockyard(server, admin_password, args)
        cases = dockyard_cases(server, fixture, args)
        server.stop()  # one server at a time: they share two cores with the clients
        if args.only is None:
            distribution = start_distribution(args, fixture.user, fixture.password, tmp, stack)
            cases += distribution_cases(distribution, fixture.user, fixture.password, args)
            distribution.stop()
        print_table(cases, args)
        if args.json:
            report = {
                "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "environment": {
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg(),
                    "python": platform.python_version(),
                    DISTRIBUTION: tool_version([args.distribution_bin, "--version"]),
                },
                "cases": [
                    {**asdict(k), "median_ms": k.median, "p99_ms": k.p99, "per_s": k.rate} for k in cases
                ],
            }
            args.json.write_text(json.dumps(report, indent=2) + "\n")
            log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
