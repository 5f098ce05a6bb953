"""kill -9 of a real server in the middle of concurrent pushes: nothing half-done may become visible.

Each round starts monolithic and chunked blob uploads (some of several MiB) and manifest pushes from
threads, SIGKILLs the server after a random delay, and starts it again on the same data directory and
database. Then: every blob row hashes to its digest on disk, every manifest's references exist in its
repository, every acknowledged push survived, no request ever got a 5xx, and the chunked uploads cut
off by the crash resume where the server says they stand.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from tests.support.live import LiveServer
from tests.support.registry_client import OCI_INDEX, OCI_MANIFEST, RegistryClient, sha256

from dockyard.db import make_engine
from dockyard.registry.models import Blob, Manifest, ManifestReference, Repository, RepositoryBlob
from dockyard.storage.blobstore import BlobStore
from dockyard.storage.local import LocalDriver

pytestmark = pytest.mark.slow

KiB, MiB = 1024, 1024 * 1024
CHUNK = 1 * MiB
ROUNDS = 4


@dataclass
class Interrupted:
    """A chunked upload the crash cut off after at least one acknowledged PATCH."""

    name: str
    location: str
    data: bytes
    acked: int


@dataclass
class Ledger:
    """What the clients were told, shared by the worker threads."""

    blobs: dict[str, tuple[str, int]] = field(default_factory=dict)  # digest -> (repo, size): got a 201
    manifests: list[tuple[str, str, str]] = field(default_factory=list)  # (repo, reference, digest)
    interrupted: list[Interrupted] = field(default_factory=list)
    statuses: list[tuple[str, str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, r: httpx.Response) -> httpx.Response:
        with self.lock:
            self.statuses.append((r.request.method, r.request.url.path, r.status_code))
        if r.status_code >= 500:
            raise AssertionError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:300]}")
        return r


class Client:
    """One pushing client (its own connection pool and token cache) that logs every response."""

    def __init__(self, server: LiveServer, ledger: Ledger, tokens: dict[str, str]) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=60, follow_redirects=True)
        self.reg = RegistryClient(self.http, "admin", server.admin_password)
        self.reg._tokens.update(tokens)  # logging in takes a while; the crash should hit the pushes
        self.ledger = ledger

    def __call__(self, method: str, url: str, name: str, **kw) -> httpx.Response:
        return self.ledger.record(self.reg.request(method, url, name, **kw))

    def close(self) -> None:
        self.http.close()


# -- the workers ----------------------------------------------------------------------------------
def monolithic(client: Client, ledger: Ledger, rng: random.Random, stop: threading.Event) -> None:
    name = "admin/mono"
    while not stop.is_set():
        data = rng.randbytes(rng.choice([1 * KiB, 200 * KiB, 2 * MiB, 6 * MiB]))
        digest = sha256(data)
        r = client("POST", f"/v2/{name}/blobs/uploads/?digest={digest}", name, content=data)
        assert r.status_code == 201, r.text
        with ledger.lock:
            ledger.blobs[digest] = (name, len(data))


def chunked(
    client: Client, ledger: Ledger, rng: random.Random, stop: threading.Event, *, pause: float = 0
) -> None:
    name = "admin/chunked"
    while not stop.is_set():
        data = rng.randbytes(rng.randint(3 * MiB, 8 * MiB))
        r = client("POST", f"/v2/{name}/blobs/uploads/", name)
        assert r.status_code == 202, r.text
        location = r.headers["location"]
        state: Interrupted | None = None
        try:
            for start in range(0, len(data), CHUNK):
                chunk = data[start : start + CHUNK]
                r = client(
                    "PATCH",
                    location,
                    name,
                    content=chunk,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{start}-{start + len(chunk) - 1}",
                    },
                )
                assert r.status_code == 202, r.text
                assert r.headers["range"] == f"0-{start + len(chunk) - 1}"
                location = r.headers["location"]
                state = Interrupted(name, location, data, start + len(chunk))
                time.sleep(pause)
            r = client("PUT", f"{location}?digest={sha256(data)}", name)
            assert r.status_code == 201, r.text
        except httpx.TransportError:
            if state is not None:
                with ledger.lock:
                    ledger.interrupted.append(state)
            raise
        with ledger.lock:
            ledger.blobs[sha256(data)] = (name, len(data))


def images(client: Client, ledger: Ledger, rng: random.Random, stop: threading.Event) -> None:
    name = "admin/images"
    pushed: list[tuple[str, int]] = []
    while not stop.is_set():
        blobs = [json.dumps({"os": "linux", "n": rng.random()}).encode()]
        blobs += [rng.randbytes(rng.choice([10 * KiB, 1 * MiB, 3 * MiB])) for _ in range(rng.randint(1, 2))]
        descs = []
        for data in blobs:
            digest = sha256(data)
            r = client("POST", f"/v2/{name}/blobs/uploads/?digest={digest}", name, content=data)
            assert r.status_code == 201, r.text
            descs.append({"digest": digest, "size": len(data)})
            with ledger.lock:
                ledger.blobs[digest] = (name, len(data))
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **descs[0]},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **d} for d in descs[1:]],
        }
        tag = f"t{rng.getrandbits(32):08x}"
        r = client.reg.put_manifest(name, tag, manifest)
        client.ledger.record(r)
        assert r.status_code == 201, r.text
        digest = r.headers["docker-content-digest"]
        body = json.dumps(manifest).encode()
        with ledger.lock:
            ledger.manifests.append((name, tag, digest))
        pushed.append((digest, len(body)))
        if len(pushed) >= 2 and rng.random() < 0.5:
            index = {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {"mediaType": OCI_MANIFEST, "digest": d, "size": s, "platform": {"os": "linux"}}
                    for d, s in pushed[-2:]
                ],
            }
            r = client.reg.put_manifest(name, f"i{tag}", index, OCI_INDEX)
            client.ledger.record(r)
            assert r.status_code == 201, r.text
            with ledger.lock:
                ledger.manifests.append((name, f"i{tag}", r.headers["docker-content-digest"]))


REPOSITORIES = ("admin/mono", "admin/chunked", "admin/images")
Worker = Callable[[Client, Ledger, random.Random, threading.Event], None]
WORKERS: list[Worker] = [
    monolithic,
    monolithic,
    chunked,
    chunked,
    functools.partial(chunked, pause=0.1),  # a slow client: most crashes land between its chunks
    images,
    images,
]


def run_round(server: LiveServer, ledger: Ledger, seed: int) -> None:
    """Start every worker, SIGKILL the server at a random moment, and wait for the workers to notice."""
    stop = threading.Event()
    killing = threading.Event()
    rng = random.Random(seed)
    with httpx.Client(base_url=server.url, timeout=60, follow_redirects=True) as http:
        login = RegistryClient(http, "admin", server.admin_password)
        for name in REPOSITORIES:
            login.token(f"repository:{name}:pull,push,delete")
    clients = [Client(server, ledger, login._tokens) for _ in WORKERS]

    def work(worker: Worker, client: Client, wseed: int) -> None:
        try:
            worker(client, ledger, random.Random(wseed), stop)
        except httpx.TransportError:
            if not killing.is_set():
                ledger.errors.append(traceback.format_exc())  # a dropped connection with no crash
        except BaseException:
            ledger.errors.append(traceback.format_exc())

    threads = [
        threading.Thread(target=work, args=(w, c, rng.getrandbits(32)), daemon=True)
        for w, c in zip(WORKERS, clients, strict=True)
    ]
    for t in threads:
        t.start()
    time.sleep(rng.uniform(0.5, 3.0))
    killing.set()
    server.kill9()
    stop.set()
    for t in threads:
        t.join(120)
    for client in clients:
        client.close()
    assert not any(t.is_alive() for t in threads), "a worker hung after the crash"


# -- the checks -----------------------------------------------------------------------------------
def check_store(engine: Engine, store: BlobStore) -> list[str]:
    """Every blob row is intact on disk; every manifest reference exists in the manifest's repository."""
    problems = []
    with engine.connect() as conn:
        for digest, size in conn.execute(select(Blob.digest, Blob.size)):
            if store.size(digest) != size:
                problems.append(f"blob {digest}: row says {size} bytes, disk has {store.size(digest)}")
                continue
            hasher = hashlib.sha256()
            with store.open(digest) as fh:
                while block := fh.read(4 * MiB):
                    hasher.update(block)
            if "sha256:" + hasher.hexdigest() != digest:
                problems.append(f"blob {digest}: content hashes to sha256:{hasher.hexdigest()}")
        refs = conn.execute(
            select(
                Manifest.repository_id, Manifest.digest, ManifestReference.digest, ManifestReference.kind
            ).join(ManifestReference, ManifestReference.manifest_id == Manifest.id)
        ).all()
        links = {(r, d) for r, d in conn.execute(select(RepositoryBlob.repository_id, RepositoryBlob.digest))}
        rows = set(conn.execute(select(Blob.digest)).scalars())
        manifests = {(r, d) for r, d in conn.execute(select(Manifest.repository_id, Manifest.digest))}
        for repo_id, manifest, ref, kind in refs:
            if kind == "blob" and ((repo_id, ref) not in links or ref not in rows):
                problems.append(f"manifest {manifest}: blob {ref} not in its repository")
            if kind == "manifest" and (repo_id, ref) not in manifests:
                problems.append(f"index {manifest}: manifest {ref} not in its repository")
        names = dict(conn.execute(select(Repository.id, Repository.name)).all())
        assert set(names.values()) <= set(REPOSITORIES)
    return problems


def check_acknowledged(reg: RegistryClient, ledger: Ledger) -> list[str]:
    """Every push the server acknowledged (201) before the crash is still there."""
    problems = []
    for digest, (name, size) in list(ledger.blobs.items()):
        r = reg.request("HEAD", f"/v2/{name}/blobs/{digest}", name, "pull")
        if r.status_code != 200 or int(r.headers.get("content-length", -1)) != size:
            problems.append(f"acknowledged blob {digest} in {name}: HEAD {r.status_code}")
    for name, reference, digest in ledger.manifests:
        r = reg.get_manifest(name, reference)
        if r.status_code != 200 or r.headers.get("docker-content-digest") != digest:
            problems.append(f"acknowledged manifest {name}:{reference}: GET {r.status_code}")
    return problems


def resume(reg: RegistryClient, ledger: Ledger, upload: Interrupted) -> None:
    """Resume a chunked upload from where the restarted server says it stands, and finish it."""
    r = ledger.record(reg.request("GET", upload.location, upload.name))
    if r.status_code == 404:
        # The final PUT was in flight: the upload was consumed, and the blob must then be complete.
        digest = sha256(upload.data)
        head = ledger.record(reg.request("HEAD", f"/v2/{upload.name}/blobs/{digest}", upload.name))
        assert head.status_code in (200, 404), head.status_code
        return
    assert r.status_code == 204, r.text
    start, end = (int(x) for x in r.headers["range"].split("-"))
    stored = end + 1
    assert start == 0
    # At least what was acknowledged; at most that plus a part of the PATCH that was in flight.
    assert upload.acked <= stored <= min(upload.acked + CHUNK, len(upload.data)), (upload.acked, stored)
    location = r.headers["location"]
    if stored < len(upload.data):
        rest = upload.data[stored:]
        r = ledger.record(
            reg.request(
                "PATCH",
                location,
                upload.name,
                content=rest,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{stored}-{len(upload.data) - 1}",
                },
            )
        )
        assert r.status_code == 202, r.text
        assert r.headers["range"] == f"0-{len(upload.data) - 1}"
        location = r.headers["location"]
    digest = sha256(upload.data)
    r = ledger.record(reg.request("PUT", f"{location}?digest={digest}", upload.name))
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == digest
    pulled = ledger.record(reg.pull_blob(upload.name, digest))
    assert pulled.status_code == 200
    assert hashlib.sha256(pulled.content).hexdigest() == digest.split(":")[1]
    ledger.blobs[digest] = (upload.name, len(upload.data))


def _sha256_file(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def db(live_server: LiveServer) -> Iterator[Engine]:
    engine = make_engine(live_server.database_url)
    yield engine
    engine.dispose()


def test_kill9_during_concurrent_pushes(live_server: LiveServer, db: Engine) -> None:
    seed = int(os.environ.get("DOCKYARD_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    store = BlobStore(LocalDriver(live_server.data_dir / "storage"), live_server.data_dir / "uploads")
    ledger = Ledger()
    resumed = 0
    for round_no in range(ROUNDS):
        context = f"seed {seed}, round {round_no}"
        run_round(live_server, ledger, rng.getrandbits(32))
        assert ledger.errors == [], f"{context}:\n" + "\n".join(ledger.errors)

        live_server.start()  # the same data directory and database
        assert check_store(db, store) == [], context
        with httpx.Client(base_url=live_server.url, timeout=60, follow_redirects=True) as http:
            reg = RegistryClient(http, "admin", live_server.admin_password)
            assert check_acknowledged(reg, ledger) == [], context
            interrupted, ledger.interrupted = ledger.interrupted, []
            for upload in interrupted:
                resume(reg, ledger, upload)
                resumed += 1
        assert check_store(db, store) == [], context

    server_errors = [s for s in ledger.statuses if s[2] >= 500]
    assert server_errors == [], f"seed {seed}"
    assert len(ledger.blobs) > 10, f"seed {seed}: too little work got done to mean anything"
    assert ledger.manifests, f"seed {seed}"
    # Over four rounds with three chunked uploaders, crashes land in the middle of chunked uploads.
    assert resumed > 0, f"seed {seed}"

    # The checks are not vacuous: a damaged blob file is reported.
    victim = next(iter(ledger.blobs))
    path = store.local_path(victim)
    assert path is not None
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # a changed last byte (not one that may be "!")
    assert check_store(db, store) == [f"blob {victim}: content hashes to sha256:{_sha256_file(path)}"]
