#!/usr/bin/env python3
"""Benchmark dockyard's OCI registry against the CNCF Distribution registry, side by side, in one run.

The script starts its own copy of each server (temporary data directories, free loopback ports), drives both
with the same clients, and prints every figure with the ratio dockyard / Distribution:

1. blob push: one large random blob (default 1 GiB), POST /v2/<name>/blobs/uploads/ then one monolithic PUT
   whose body curl streams from a file (Content-Length set), in MB/s of wall time for POST + PUT;
2. blob pull: GET of that blob by curl into /dev/null, curl's ``speed_download`` in MB/s;
3. manifest push: N distinct OCI image manifests (default 1000), each referencing one tiny pre-pushed config
   blob and one tiny layer blob, PUT by tag from one keep-alive httpx.Client shared by a few threads, in
   manifests/s;
4. manifest pull: GET of those manifests by tag, same client, in manifests/s (bodies compared with the pushed
   ones);
5. concurrent image pull: C parallel clients (default 16), each fetching one image's manifest with httpx and
   then its config and layers (default 100 MiB in 4 tar layers) with one curl over one connection, as
   aggregate MB/s (all bytes / time until the last client finishes).

Each figure is the median of --repeat samples (the server that goes first alternates). MB is 10**6 bytes.
Registry tokens are fetched before each timed section, so the figures measure the data path, not the token
endpoint. Server and client CPU seconds are recorded for every sample, so a client-bound result can be told
apart from a server-bound one.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
MIB = 1024 * 1024
CHUNK = 4 * MIB
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
DOCKYARD = "dockyard"
DISTRIBUTION = "distribution"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A server or a request misbehaved; the message says which and how."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------- test data


@dataclass(frozen=True)
class Blob:
    path: Path
    digest: str
    size: int


class RandomReader(io.RawIOBase):
    """A file-like object yielding `size` random bytes (feeds tarfile without a temp file)."""

    def __init__(self, size: int) -> None:
        self.remaining = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.remaining if n < 0 else min(n, self.remaining)
        self.remaining -= n
        return os.urandom(n)


def hash_file(path: Path) -> Blob:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return Blob(path, "sha256:" + h.hexdigest(), size)


def make_random_blob(path: Path, size: int) -> Blob:
    h = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(CHUNK, left))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return Blob(path, "sha256:" + h.hexdigest(), size)


def tar_bytes(name: str, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(payload), 0, 0o644
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def make_tar_layer(path: Path, payload_size: int, name: str) -> Blob:
    """An uncompressed tar with one file of random bytes: a realistic layer that indexers can open."""
    with tarfile.open(path, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = payload_size, 0, 0o644
        tar.addfile(info, RandomReader(payload_size))
    return hash_file(path)


def config_json(diff_ids: Sequence[str]) -> bytes:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    return json.dumps(config, separators=(",", ":"), sort_keys=True).encode()


def descriptor(media_type: str, digest: str, size: int) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def image_manifest(
    config: dict[str, Any], layers: Sequence[dict[str, Any]], note: str | None = None
) -> bytes:
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": list(layers),
    }
    if note is not None:
        manifest["annotations"] = {"org.dockyard.bench.note": note}
    return json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()


# ------------------------------------------------------------------------------------------------ client


def curl(args: Sequence[str], headers: dict[str, str]) -> str:
    """Run curl (no proxies, errors on stderr) and return its stdout (the -w output)."""
    cmd = ["curl", "-sS", "--noproxy", "*", "--max-time", "3600"]
    for key, value in headers.items():
        cmd += ["-H", f"{key}: {value}" if value else f"{key}:"]  # "Key:" removes curl's own header
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"curl exited with {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


class RegistryClient:
    """A small OCI distribution client: anonymous, Basic, or Docker token (Bearer) auth, found from /v2/."""

    def __init__(self, label: str, base_url: str, username: str, password: str, pool: int) -> None:
        self.label = label
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(300.0, connect=10.0),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            trust_env=False,
            follow_redirects=True,
        )
        self.username, self.password = username, password
        self.scheme = "none"  # "none", "basic" or "bearer"
        self.realm = self.service = ""
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def fail(self, what: str, response: httpx.Response) -> BenchError:
        body = response.text[:500].strip()
        return BenchError(f"{self.label}: {what}: HTTP {response.status_code} {body}")

    def probe(self) -> None:
        """Find out from GET /v2/ which auth scheme the registry wants."""
        r = self.http.get("/v2/")
        if r.status_code == 200:
            return
        if r.status_code != 401:
            raise self.fail("GET /v2/", r)
        scheme, _, params = r.headers.get("www-authenticate", "").partition(" ")
        if scheme.lower() == "basic":
            self.scheme = "basic"
        elif scheme.lower() == "bearer":
            attrs = dict(re.findall(r'(\w+)="([^"]*)"', params))
            if "realm" not in attrs:
                raise BenchError(f"{self.label}: Bearer challenge without a realm: {params!r}")
            self.scheme = "bearer"
            self.realm = urljoin(self.base_url + "/", attrs["realm"])
            self.service = attrs.get("service", "")
        else:
            raise BenchError(f"{self.label}: unsupported challenge {r.headers.get('www-authenticate')!r}")

    def _fetch_token(self, scope: str) -> tuple[str, float]:
        params = {"scope": scope, **({"service": self.service} if self.service else {})}
        r = self.http.get(self.realm, params=params, auth=(self.username, self.password))
        if r.status_code != 200:
            raise self.fail(f"token request for {scope}", r)
        body = r.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise BenchError(f"{self.label}: token response without a token: {body!r}")
        return token, float(body.get("expires_in") or 60)

    def auth_headers(self, repo: str, actions: str = "pull,push") -> dict[str, str]:
        if self.scheme == "none":
            return {}
        if self.scheme == "basic":
            raw = f"{self.username}:{self.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        scope = f"repository:{repo}:{actions}"
        with self._lock:
            cached = self._tokens.get(scope)
            if cached is None or cached[1] <= time.monotonic():
                token, lifetime = self._fetch_token(scope)
                # Refresh well before expiry, so a token never runs out in the middle of a transfer.
                cached = (token, time.monotonic() + max(lifetime - 60, lifetime / 2))
                self._tokens[scope] = cached
        return {"Authorization": f"Bearer {cached[0]}"}

    def request(
        self, method: str, url: str, repo: str, actions: str = "pull,push", **kwargs: Any
    ) -> httpx.Response:
        """Send with auth; on a 401 drop the cached token and retry once."""
        extra = kwargs.pop("headers", {})
        for attempt in range(2):
            r = self.http.request(
                method, url, headers={**self.auth_headers(repo, actions), **extra}, **kwargs
            )
            if r.status_code != 401 or self.scheme != "bearer" or attempt:
                return r
            with self._lock:
                self._tokens.pop(f"repository:{repo}:{actions}", None)
        raise AssertionError("unreachable")

    def blob_url(self, repo: str, digest: str) -> str:
        return f"{self.base_url}/v2/{repo}/blobs/{digest}"

    def start_upload(self, repo: str) -> str:
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/", repo, content=b"")
        if r.status_code != 202 or "location" not in r.headers:
            raise self.fail(f"POST /v2/{repo}/blobs/uploads/", r)
        return urljoin(self.base_url + "/", r.headers["location"])

    @staticmethod
    def with_digest(location: str, digest: str) -> str:
        return f"{location}{'&' if '?' in location else '?'}digest={digest}"

    def push_bytes(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        url = self.with_digest(self.start_upload(repo), digest)
        r = self.request("PUT", url, repo, content=data, headers={"Content-Type": "application/octet-stream"})
        if r.status_code != 201:
            raise self.fail(f"PUT blob {digest}", r)
        return digest

    def push_file(self, repo: str, blob: Blob, scratch: Path) -> None:
        """POST, then one monolithic PUT of the whole file streamed by curl (it sends Content-Length)."""
        url = self.with_digest(self.start_upload(repo), blob.digest)
        headers = {
            **self.auth_headers(repo),
            "Content-Type": "application/octet-stream",
            "Expect": "",  # no 100-continue round trip (and no 1 s stall if a server never sends 100)
        }
        out = curl(
            ["-X", "PUT", "-T", str(blob.path), "-o", str(scratch), "-w", "%{http_code}", url], headers
        )
        if out.strip() != "201":
            body = scratch.read_text(errors="replace")[:500] if scratch.exists() else ""
            raise BenchError(f"{self.label}: PUT blob {blob.digest}: HTTP {out.strip()} {body}")

    def blob_size(self, repo: str, digest: str) -> int | None:
        """HEAD a blob; its Content-Length, or None when the server leaves it out."""
        r = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo, "pull")
        if r.status_code != 200:
            raise self.fail(f"HEAD blob {digest}", r)
        length = r.headers.get("content-length")
        return int(length) if length is not None else None

    def verify_blob(self, repo: str, blob: Blob) -> None:
        h = hashlib.sha256()
        size = 0
        with self.http.stream("GET", f"/v2/{repo}/blobs/{blob.digest}", headers=self.auth_headers(repo)) as r:
            if r.status_code != 200:
                r.read()
                raise self.fail(f"GET blob {blob.digest}", r)
            for chunk in r.iter_raw(CHUNK):
                h.update(chunk)
                size += len(chunk)
        if size != blob.size or "sha256:" + h.hexdigest() != blob.digest:
            raise BenchError(f"{self.label}: blob {blob.digest} came back as {size} bytes, digest differs")

    def put_manifest(self, repo: str, tag: str, body: bytes) -> None:
        r = self.request(
            "PUT", f"/v2/{repo}/manifests/{tag}", repo, content=body, headers={"Content-Type": OCI_MANIFEST}
        )
        if r.status_code != 201:
            raise self.fail(f"PUT manifest {repo}:{tag}", r)
        returned = r.headers.get("docker-content-digest")
        if returned and returned != sha256_digest(body):
            raise BenchError(f"{self.label}: manifest {repo}:{tag} stored as {returned}")

    def get_manifest(self, repo: str, ref: str, actions: str = "pull,push") -> bytes:
        r = self.request(
            "GET", f"/v2/{repo}/manifests/{ref}", repo, actions, headers={"Accept": MANIFEST_ACCEPT}
        )
        if r.status_code != 200:
            raise self.fail(f"GET manifest {repo}:{ref}", r)
        return r.content


# ----------------------------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Server:
    label: str
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    database: str | None = None  # the PostgreSQL database it uses (--postgres)

    def cpu_seconds(self) -> float:
        """CPU time of every live process in the server's session (it leads its own session)."""
        ticks = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[3]) == self.proc.pid:  # session id
                ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        return ticks / CLK_TCK

    def database_cpu_seconds(self) -> float:
        """CPU time of the live PostgreSQL backends connected to this server's database (a local cluster).

        Backends are owned by the cluster's user and named "postgres: <user> <database> <client> ..."; the
        connection pool keeps them for the whole run, so their CPU time covers every request.
        """
        if self.database is None:
            return 0.0
        ticks = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                if not cmdline.startswith(b"postgres: ") or self.database.encode() not in cmdline.split()[:3]:
                    continue
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            ticks += sum(int(x) for x in fields[11:13])  # utime stime
        return ticks / CLK_TCK

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)  # the server and any workers it forked
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue


def start_server(
    label: str, cmd: list[str], env: dict[str, str], port: int, workdir: Path, timeout: float
) -> Server:
    log_path = workdir / f"{label}.log"
    log(f"starting {label}: {' '.join(cmd)} (log {log_path})")
    with log_path.open("wb") as log_file:
        try:
            proc = subprocess.Popen(
                cmd, env=env, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as exc:
            raise BenchError(f"{label}: cannot start {cmd[0]}: {exc}") from exc
    server = Server(label, proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False, timeout=2.0) as probe:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(
                    f"{label} exited with status {proc.returncode} at start-up; log:\n{log_tail(log_path)}"
                )
            with contextlib.suppress(httpx.TransportError):
                if probe.get(server.base_url + "/v2/").status_code in (200, 401):
                    return server
            time.sleep(0.2)
    server.stop()
    raise BenchError(f"{label} did not answer GET /v2/ within {timeout:.0f} s; log:\n{log_tail(log_path)}")


def distribution_config(root: Path, port: int) -> str:
    return f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
"""


# ------------------------------------------------------------------------------------------ measurements


@dataclass
class Sample:
    value: float
    wall_s: float
    server_cpu_s: float
    client_cpu_s: float
    database_cpu_s: float = 0.0  # PostgreSQL backends serving dockyard (--postgres); not in server_cpu_s


def client_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


Bench = Callable[["RegistryClient"], tuple[float, float]]


def measure(server: Server, client: RegistryClient, bench: Bench) -> Sample:
    """Run one timed section; `bench` returns (value, wall seconds)."""
    s0, c0, d0 = server.cpu_seconds(), client_cpu(), server.database_cpu_seconds()
    value, wall = bench(client)
    return Sample(
        value,
        wall,
        server.cpu_seconds() - s0,
        client_cpu() - c0,
        server.database_cpu_seconds() - d0,
    )


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run target(0..count-1) in threads and re-raise the first failure."""
    errors: list[BaseException] = []

    def wrapper(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrapper, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def bench_blob_push(client: RegistryClient, repo: str, blob: Blob, scratch: Path) -> tuple[float, float]:
    client.auth_headers(repo)  # token outside the timed section
    t0 = time.perf_counter()
    client.push_file(repo, blob, scratch)
    wall = time.perf_counter() - t0
    size = client.blob_size(repo, blob.digest)
    if size is not None and size != blob.size:
        raise BenchError(f"{client.label}: pushed {blob.size} bytes but HEAD says {size}")
    return blob.size / MB / wall, wall


def bench_blob_pull(client: RegistryClient, repo: str, blob: Blob) -> tuple[float, float]:
    headers = client.auth_headers(repo, "pull")
    fmt = "%{http_code} %{size_download} %{speed_download} %{time_total}"
    out = curl(["-L", "-o", "/dev/null", "-w", fmt, client.blob_url(repo, blob.digest)], headers).split()
    if out[0] != "200" or int(out[1]) != blob.size:
        raise BenchError(f"{client.label}: GET blob answered {out[0]} with {out[1]} of {blob.size} bytes")
    return float(out[2]) / MB, float(out[3])


def bench_manifest_push(
    client: RegistryClient, repo: str, manifests: Sequence[tuple[str, bytes]], threads: int
) -> tuple[float, float]:
    client.auth_headers(repo)

    def work(i: int) -> None:
        for tag, body in manifests[i::threads]:
            client.put_manifest(repo, tag, body)

    t0 = time.perf_counter()
    run_threads(threads, work)
    wall = time.perf_counter() - t0
    return len(manifests) / wall, wall


def bench_manifest_pull(
    client: RegistryClient, repo: str, manifests: Sequence[tuple[str, bytes]], threads: int
) -> tuple[float, float]:
    client.auth_headers(repo)

    def work(i: int) -> None:
        for tag, body in manifests[i::threads]:
            if client.get_manifest(repo, tag) != body:
                raise BenchError(f"{client.label}: manifest {repo}:{tag} came back different")

    t0 = time.perf_counter()
    run_threads(threads, work)
    wall = time.perf_counter() - t0
    return len(manifests) / wall, wall


def pull_image(client: RegistryClient, repo: str, tag: str, headers: dict[str, str]) -> int:
    """One client: the manifest with httpx, then config and layers with one curl (one connection)."""
    r = client.http.get(f"/v2/{repo}/manifests/{tag}", headers={**headers, "Accept": MANIFEST_ACCEPT})
    if r.status_code != 200:
        raise client.fail(f"GET manifest {repo}:{tag}", r)
    manifest = json.loads(r.content)
    descs = [manifest["config"], *manifest["layers"]]
    args = ["-L", "-w", "%{http_code} %{size_download}\\n"]
    for d in descs:
        args += ["-o", "/dev/null", client.blob_url(repo, d["digest"])]
    lines = curl(args, headers).splitlines()
    total = len(r.content)
    for d, line in zip(descs, lines, strict=True):
        code, size = line.split()
        if code != "200" or int(size) != d["size"]:
            raise BenchError(f"{client.label}: GET blob {d['digest']} answered {code} with {size} bytes")
        total += int(size)
    return total


def bench_concurrent_pull(client: RegistryClient, repo: str, tag: str, clients: int) -> tuple[float, float]:
    """`clients` threads released together by a barrier; wall time runs to the last one's finish."""
    headers = client.auth_headers(repo, "pull")
    barrier = threading.Barrier(clients)
    totals, starts, ends = [0] * clients, [0.0] * clients, [0.0] * clients

    def work(i: int) -> None:
        barrier.wait(timeout=60)
        starts[i] = time.perf_counter()
        totals[i] = pull_image(client, repo, tag, headers)
        ends[i] = time.perf_counter()

    run_threads(clients, work)
    wall = max(ends) - min(starts)
    return sum(totals) / MB / wall, wall


# --------------------------------------------------------------------------------------------- reporting


@dataclass
class Result:
    key: str
    title: str
    unit: str
    target: float
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def median(self, label: str) -> float | None:
        values = [s.value for s in self.samples.get(label, [])]
        return statistics.median(values) if values else None

    def ratio(self) -> float | None:
        ours, theirs = self.median(DOCKYARD), self.median(DISTRIBUTION)
        return ours / theirs if ours is not None and theirs else None

    def met(self) -> bool | None:
        ratio = self.ratio()
        return None if ratio is None else ratio >= self.target

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "unit": self.unit,
            DOCKYARD: self.median(DOCKYARD),
            DISTRIBUTION: self.median(DISTRIBUTION),
            "ratio": self.ratio(),
            "target": self.target,
            "met": self.met(),
            "samples": {label: [asdict(s) for s in ss] for label, ss in self.samples.items()},
        }


def fmt(value: float | None, spec: str = ",.1f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: Sequence[Result]) -> None:
    header = ("metric", "unit", DOCKYARD, DISTRIBUTION, "ratio", "target", "met")
    rows = [header]
    for r in results:
        met = r.met()
        rows.append(
            (
                r.title,
                r.unit,
                fmt(r.median(DOCKYARD)),
                fmt(r.median(DISTRIBUTION)),
                fmt(r.ratio(), ".2f"),
                f">= {r.target:.1f}",
                "-" if met is None else ("yes" if met else "NO"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print()
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(w) for cell, w in zip(row[2:], widths[2:], strict=True)]
        print("  ".join(cells))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print("ratio = dockyard / distribution (medians of the samples); MB = 10**6 bytes")


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


# ------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=[DOCKYARD, DISTRIBUTION], help="run against one server alone")
    p.add_argument("--blob-mib", type=int, default=1024, help="size of the push/pull blob (MiB)")
    p.add_argument("--manifests", type=int, default=1000, help="number of manifests to push and pull")
    p.add_argument("--threads", type=int, default=4, help="client threads for the manifest phases")
    p.add_argument("--concurrency", type=int, default=16, help="parallel clients in the image pull")
    p.add_argument("--image-mib", type=int, default=100, help="size of the concurrently pulled image (MiB)")
    p.add_argument("--image-layers", type=int, default=4, help="layers in that image")
    p.add_argument("--repeat", type=int, default=3, help="samples per figure (the median is reported)")
    p.add_argument("--no-verify", action="store_true", help="skip the untimed digest check of pulled blobs")
    p.add_argument("--json", type=Path, help="write the results as JSON to this path")
    p.add_argument("--repo-prefix", default="admin/bench", help="repository name prefix (admin owns admin/)")
    p.add_argument("--dockyard-bin", type=Path, default=REPO_ROOT / ".venv" / "bin" / "dockyard")
    p.add_argument("--dockyard-user", default="admin")
    p.add_argument(
        "--postgres",
        metavar="URL",
        help="run dockyard on PostgreSQL: a server URL (postgresql+psycopg://user@host:port/postgres) on "
        "which a fresh database is created for the run and dropped after it (default: SQLite)",
    )
    p.add_argument("--workers", type=int, help="dockyard server worker processes (DOCKYARD_WORKERS)")
    p.add_argument(
        "--dockyard-env", action="append", default=[], metavar="KEY=VALUE", help="extra env for dockyard"
    )
    p.add_argument("--distribution-bin", default="/usr/bin/docker-registry")
    p.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for each server")
    p.add_argument("--workdir", type=Path, help="parent of the temporary directory (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (data and logs)")
    p.add_argument("--fail-on-target", action="store_true", help="exit 1 when a ratio misses its target")
    args = p.parse_args(argv)
    counts = ("blob_mib", "manifests", "threads", "concurrency", "image_mib", "image_layers", "repeat")
    for name in (*counts, "workers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def fresh_database(server_url: str, stack: contextlib.ExitStack) -> tuple[str, str]:
    """Create an empty database on the PostgreSQL server at ``server_url`` (dropped when ``stack`` closes).

    Every run pushes the same manifests, so a database kept from an earlier run would turn the pushes of
    new manifests into pushes of known ones.
    """
    import psycopg  # only for --postgres

    scheme, sep, rest = server_url.partition("://")
    if not sep or not scheme.startswith("postgresql"):
        raise BenchError(f"--postgres wants postgresql+psycopg://user@host:port/dbname, got {server_url!r}")
    base, _, query = rest.partition("?")
    authority = base.split("/", 1)[0]
    libpq_url = f"postgresql://{base}" + (f"?{query}" if query else "")
    name = f"dockyard_bench_{os.getpid()}_{int(time.time())}"
    try:
        with psycopg.connect(libpq_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise BenchError(f"cannot create a database on {server_url}: {exc}") from exc

    def drop() -> None:
        try:
            with psycopg.connect(libpq_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error as exc:
            log(f"could not drop database {name}: {exc}")

    stack.callback(drop)  # registered before the server's stop, so it runs after it
    log(f"created PostgreSQL database {name}")
    return name, f"{scheme}://{authority}/{name}" + (f"?{query}" if query else "")


def start_servers(
    args: argparse.Namespace, password: str, tmp: Path, stack: contextlib.ExitStack
) -> dict[str, Server]:
    servers: dict[str, Server] = {}
    if args.only != DISTRIBUTION:
        if not os.access(args.dockyard_bin, os.X_OK):
            raise BenchError(
                f"dockyard executable not found at {args.dockyard_bin} (try --only distribution)"
            )
        port, data = free_port(), tmp / "dockyard-data"
        blob_port = free_port()
        while blob_port == port:
            blob_port = free_port()
        data.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        env.update(
            DOCKYARD_LISTEN=f"127.0.0.1:{port}",
            # Blob GETs answer 307 to the delivery server (sendfile); its default, port + 1, may be taken.
            DOCKYARD_BLOB_LISTEN=f"127.0.0.1:{blob_port}",
            DOCKYARD_DATA_DIR=str(data),
            DOCKYARD_ADMIN_PASSWORD=password,
        )
        database = None
        if args.postgres:
            database, url = fresh_database(args.postgres, stack)
            env["DOCKYARD_DATABASE_URL"] = url
        if args.workers:
            env["DOCKYARD_WORKERS"] = str(args.workers)
        for item in args.dockyard_env:
            key, sep, value = item.partition("=")
            if not sep:
                raise BenchError(f"--dockyard-env wants KEY=VALUE, got {item!r}")
            env[key] = value
        cmd = [str(args.dockyard_bin), "serve"]
        if int(env.get("DOCKYARD_WORKERS", "1")) > 1:
            # Worker processes starting together on an empty data dir may each create a token signing key
            # (then a token from one fails at the other): one start with a single worker creates the keys.
            first = start_server(
                DOCKYARD, cmd, {**env, "DOCKYARD_WORKERS": "1"}, port, tmp, args.startup_timeout
            )
            first.stop()
        server = start_server(DOCKYARD, cmd, env, port, tmp, args.startup_timeout)
        server.database = database
        stack.callback(server.stop)
        servers[DOCKYARD] = server
    if args.only != DOCKYARD:
        binary = shutil.which(args.distribution_bin)
        if binary is None:
            raise BenchError(f"{args.distribution_bin} not found (Debian package docker-registry)")
        port, data = free_port(), tmp / "distribution-data"
        data.mkdir()
        config = tmp / "distribution.yml"
        config.write_text(distribution_config(data, port))
        server = start_server(
            DISTRIBUTION, [binary, "serve", str(config)], dict(os.environ), port, tmp, args.startup_timeout
        )
        stack.callback(server.stop)
        servers[DISTRIBUTION] = server
    return servers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("curl") is None:
        raise BenchError("curl is required")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below on kill
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="dockyard-bench-", dir=args.workdir))
        if args.keep:
            stack.callback(log, f"kept {tmp}")
        else:
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        return run(args, tmp, stack)


def run(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> int:
    load_before = os.getloadavg()
    if load_before[0] > (os.cpu_count() or 1) / 2:
        log(f"warning: load average {load_before[0]:.1f} on {os.cpu_count()} CPUs; figures will be noisy")
    password = base64.urlsafe_b64encode(os.urandom(12)).decode()
    servers = start_servers(args, password, tmp, stack)
    t0 = time.perf_counter()
    big = make_random_blob(tmp / "blob.bin", args.blob_mib * MIB)
    layer_payload = args.image_mib * MIB // args.image_layers
    layers = [
        make_tar_layer(tmp / f"layer{i}.tar", layer_payload, f"bench/layer{i}.bin")
        for i in range(args.image_layers)
    ]
    log(f"generated test data in {time.perf_counter() - t0:.1f} s ({tmp})")
    image_config = config_json([b.digest for b in layers])
    image_body = image_manifest(
        descriptor(OCI_CONFIG, sha256_digest(image_config), len(image_config)),
        [descriptor(OCI_LAYER, b.digest, b.size) for b in layers],
    )
    tiny_layer = tar_bytes("hello.txt", b"hello from the dockyard benchmark\n")
    tiny_config = config_json([sha256_digest(tiny_layer)])
    tiny_config_desc = descriptor(OCI_CONFIG, sha256_digest(tiny_config), len(tiny_config))
    tiny_layer_desc = descriptor(OCI_LAYER, sha256_digest(tiny_layer), len(tiny_layer))

    def manifests_for(round_: int) -> list[tuple[str, bytes]]:
        return [
            (f"r{round_}-m{i}", image_manifest(tiny_config_desc, [tiny_layer_desc], f"{round_}/{i}"))
            for i in range(args.manifests)
        ]

    rounds = [manifests_for(r) for r in range(args.repeat)]

    clients: dict[str, RegistryClient] = {}
    for label, server in servers.items():
        user = args.dockyard_user if label == DOCKYARD else "anonymous"
        pool = 2 * max(args.threads, args.concurrency)
        client = RegistryClient(label, server.base_url, user, password, pool)
        stack.callback(client.close)
        client.probe()
        log(f"{label} is up at {server.base_url} (auth: {client.scheme})")
        clients[label] = client

    prefix = args.repo_prefix
    blob_repo, manifest_repo, image_repo = f"{prefix}-blob", f"{prefix}-manifests", f"{prefix}-image"
    scratch = tmp / "curl-body"
    results = [
        Result("blob_push", f"blob push ({args.blob_mib} MiB, POST+PUT)", "MB/s", 2.0),
        Result("blob_pull", f"blob pull ({args.blob_mib} MiB, curl)", "MB/s", 1.1),
        Result("manifest_push", f"manifest push ({args.manifests}, by tag)", "manifests/s", 1.0),
        Result("manifest_pull", f"manifest pull ({args.manifests}, by tag)", "manifests/s", 1.0),
        Result(
            "concurrent_pull",
            f"{args.concurrency}-way image pull ({args.image_mib} MiB)",
            "MB/s",
            1.1,
        ),
    ]
    labels = list(servers)

    def sample(result: Result, r: int, bench: Bench) -> None:
        # Alternate which server goes first, so neither always gets the warmer (or colder) machine.
        for label in labels if r % 2 == 0 else labels[::-1]:
            s = measure(servers[label], clients[label], bench)
            result.samples.setdefault(label, []).append(s)
            database = f", database cpu {s.database_cpu_s:.2f} s" if servers[label].database else ""
            log(
                f"  {result.key} #{r + 1} {label}: {s.value:,.1f} {result.unit} in {s.wall_s:.2f} s "
                f"(server cpu {s.server_cpu_s:.2f} s, client cpu {s.client_cpu_s:.2f} s{database})"
            )

    log("1/5 blob push")
    for r in range(args.repeat):
        sample(results[0], r, lambda c: bench_blob_push(c, blob_repo, big, scratch))
    log("2/5 blob pull")
    for r in range(args.repeat):
        sample(results[1], r, lambda c: bench_blob_pull(c, blob_repo, big))
    if not args.no_verify:
        for client in clients.values():
            client.verify_blob(blob_repo, big)

    for client in clients.values():
        client.push_bytes(manifest_repo, tiny_config)
        client.push_bytes(manifest_repo, tiny_layer)
    log("3/5 manifest push")
    for r in range(args.repeat):
        batch = rounds[r]
        sample(results[2], r, lambda c, b=batch: bench_manifest_push(c, manifest_repo, b, args.threads))
    log("4/5 manifest pull")
    for r in range(args.repeat):
        sample(results[3], r, lambda c: bench_manifest_pull(c, manifest_repo, rounds[0], args.threads))

    log("5/5 concurrent image pull (pushing the image first)")
    for client in clients.values():
        client.push_bytes(image_repo, image_config)
        for layer in layers:
            client.push_file(image_repo, layer, scratch)
            if not args.no_verify:
                client.verify_blob(image_repo, layer)
        client.put_manifest(image_repo, "latest", image_body)
    for r in range(args.repeat):
        sample(results[4], r, lambda c: bench_concurrent_pull(c, image_repo, "latest", args.concurrency))

    print_table(results)
    if args.json:
        report = {
            "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "environment": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
                "python": platform.python_version(),
                "curl": tool_version(["curl", "--version"]),
                DISTRIBUTION: (
                    tool_version([args.distribution_bin, "--version"]) if DISTRIBUTION in servers else None
                ),
            },
            "results": [r.as_json() for r in results],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {args.json}")
    missed = [r.key for r in results if r.met() is False]
    return 1 if args.fail_on_target and missed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
