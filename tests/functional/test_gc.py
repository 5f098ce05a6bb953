"""Garbage collection: what `dockyard gc` removes and keeps, and that it is safe while pushes go on."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from tests.support.factories import PASSWORD, make_user
from tests.support.registry_client import OCI_MANIFEST, RegistryClient, sha256

from dockyard.audit.models import AuditEvent
from dockyard.events import Actor
from dockyard.registry.gc import GcReport, collect
from dockyard.registry.models import Blob, Manifest, ManifestReference, Repository, RepositoryBlob
from dockyard.registry.services import RegistryService
from dockyard.storage.blobstore import BlobStore, blob_key
from dockyard.storage.local import LocalDriver
from dockyard.web.context import AppState


@pytest.fixture
def user(app_state: AppState) -> str:
    with app_state.sessions.begin() as s:
        return make_user(s).username


@pytest.fixture
def reg(client, user: str) -> RegistryClient:
    return RegistryClient(client, user, PASSWORD)


def gc(state: AppState, *, grace: int = 0, upload_ttl: int = 3600, dry_run: bool = False) -> GcReport:
    time.sleep(0.01)  # everything made so far is strictly older than the grace cutoff
    return collect(
        state.sessions, state.blobs, state.bus, grace=grace, upload_ttl=upload_ttl, dry_run=dry_run
    )


def blob_row(state: AppState, digest: str) -> Blob | None:
    with state.sessions() as s:
        return s.get(Blob, digest)


def links(state: AppState, digest: str) -> set[str]:
    with state.sessions() as s:
        return set(
            s.scalars(
                select(Repository.name)
                .join(RepositoryBlob, RepositoryBlob.repository_id == Repository.id)
                .where(RepositoryBlob.digest == digest)
            )
        )


def on_disk(state: AppState, digest: str) -> bytes | None:
    path = state.blobs.local_path(digest)
    return path.read_bytes() if path is not None and path.exists() else None


def broken_references(session: Session, blobs: BlobStore) -> list[str]:
    """Every blob a manifest references must be linked to its repository, recorded, and intact on disk."""
    problems = []
    rows = session.execute(
        select(
            Manifest.repository_id, Manifest.digest, ManifestReference.digest, ManifestReference.kind
        ).join(ManifestReference, ManifestReference.manifest_id == Manifest.id)
    ).all()
    for repo_id, manifest, ref, kind in rows:
        if kind == "manifest":
            child = session.scalar(
                select(Manifest.id).where(Manifest.repository_id == repo_id, Manifest.digest == ref)
            )
            if child is None:
                problems.append(f"{manifest}: child manifest {ref} missing")
            continue
        linked = session.scalar(
            select(RepositoryBlob.id).where(
                RepositoryBlob.repository_id == repo_id, RepositoryBlob.digest == ref
            )
        )
        row = session.get(Blob, ref)
        if linked is None:
            problems.append(f"{manifest}: blob {ref} not linked to its repository")
        if row is None:
            problems.append(f"{manifest}: blob {ref} has no row")
            continue
        path = blobs.local_path(ref)
        if path is None or not path.exists():
            problems.append(f"{manifest}: blob {ref} missing on disk")
        elif "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() != ref:
            problems.append(f"{manifest}: blob {ref} corrupt on disk")
    return problems


# -- what gc removes and what it keeps ------------------------------------------------------------
def test_unreferenced_blob_and_its_file_are_removed(app_state, reg, user) -> None:
    digest = reg.push_blob(f"{user}/app", b"lonely blob")
    assert on_disk(app_state, digest) == b"lonely blob"
    report = gc(app_state)
    assert report.links_removed == 1
    assert report.blobs_removed == 1
    assert report.bytes_freed == len(b"lonely blob")
    assert blob_row(app_state, digest) is None
    assert links(app_state, digest) == set()
    assert on_disk(app_state, digest) is None
    assert reg.request("HEAD", f"/v2/{user}/app/blobs/{digest}", f"{user}/app").status_code == 404


def test_referenced_blobs_are_kept(app_state, reg, user) -> None:
    name = f"{user}/app"
    reg.push_image(name, "v1", [b"layer one", b"layer two"])
    manifest = reg.get_manifest(name, "v1").json()
    digests = [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]
    report = gc(app_state)
    assert (report.links_removed, report.blobs_removed, report.orphan_files_removed) == (0, 0, 0)
    for digest in digests:
        assert blob_row(app_state, digest) is not None
        assert links(app_state, digest) == {name}
    assert reg.pull_blob(name, digests[2]).content == b"layer two"
    with app_state.sessions() as s:
        assert broken_references(s, app_state.blobs) == []


def test_fresh_unreferenced_blob_is_kept_within_grace(app_state, reg, user) -> None:
    # A push in progress uploads its blobs before the manifest that references them.
    digest = reg.push_blob(f"{user}/app", b"manifest comes next")
    report = gc(app_state, grace=3600)
    assert (report.links_removed, report.blobs_removed) == (0, 0)
    assert blob_row(app_state, digest) is not None
    assert on_disk(app_state, digest) == b"manifest comes next"


def test_deleting_a_manifest_frees_its_blobs(app_state, reg, user) -> None:
    name = f"{user}/app"
    digest = reg.push_image(name, "v1", [b"only here"])
    layer = sha256(b"only here")
    assert reg.request("DELETE", f"/v2/{name}/manifests/{digest}", name).status_code == 202
    report = gc(app_state)
    assert report.blobs_removed == 2  # the layer and the config
    assert on_disk(app_state, layer) is None


def test_blob_deleted_from_one_repo_but_referenced_in_another_stays(app_state, reg, user) -> None:
    shared = b"shared base layer"
    digest = reg.push_blob(f"{user}/one", shared)
    reg.push_image(f"{user}/two", "v1", [shared])
    r = reg.request("DELETE", f"/v2/{user}/one/blobs/{digest}", f"{user}/one")
    assert r.status_code == 202
    report = gc(app_state)
    assert report.blobs_removed == 0
    assert blob_row(app_state, digest) is not None
    assert links(app_state, digest) == {f"{user}/two"}
    assert on_disk(app_state, digest) == shared
    assert reg.pull_blob(f"{user}/two", digest).content == shared
    assert reg.request("GET", f"/v2/{user}/one/blobs/{digest}", f"{user}/one").status_code == 404


def test_unreferenced_link_goes_but_the_blob_used_elsewhere_stays(app_state, reg, user) -> None:
    shared = b"used by two but referenced by one"
    reg.push_blob(f"{user}/one", shared)  # linked, never referenced in "one"
    reg.push_image(f"{user}/two", "v1", [shared])
    report = gc(app_state)
    assert report.links_removed == 1
    assert report.blobs_removed == 0
    assert links(app_state, sha256(shared)) == {f"{user}/two"}
    assert on_disk(app_state, sha256(shared)) == shared


def test_expired_upload_sessions_are_removed(app_state, reg, user) -> None:
    name = f"{user}/app"
    r = reg.request("POST", f"/v2/{name}/blobs/uploads/", name)
    location = r.headers["location"]
    assert reg.request("PATCH", location, name, content=b"partial").status_code == 202
    assert gc(app_state, upload_ttl=3600).uploads_removed == 0
    assert reg.request("GET", location, name).status_code == 204
    report = gc(app_state, upload_ttl=0)
    assert report.uploads_removed == 1
    assert list(app_state.blobs.list_uploads()) == []
    assert reg.request("GET", location, name).status_code == 404


def test_an_upload_still_receiving_chunks_is_not_idle(app_state, reg, user) -> None:
    """upload_ttl expires idle sessions; a session created long ago but PATCHed just now is in use."""
    name = f"{user}/app"
    location = reg.request("POST", f"/v2/{name}/blobs/uploads/", name).headers["location"]
    upload_id = location.rsplit("/", 1)[1]
    session_dir = app_state.blobs.upload_dir / upload_id
    long_ago = time.time() - 7200
    os.utime(session_dir, (long_ago, long_ago))  # opened two hours ago...
    assert reg.request("PATCH", location, name, content=b"first chunk").status_code == 202  # ...busy now
    assert gc(app_state, upload_ttl=3600).uploads_removed == 0
    assert reg.request("GET", location, name).status_code == 204
    r = reg.request("PUT", f"{location}?digest={sha256(b'first chunk')}", name)
    assert r.status_code == 201


def test_orphan_files_without_a_row_are_removed(app_state) -> None:
    # Bytes renamed into place by an upload whose database transaction never committed (a crash).
    data = b"orphan bytes"
    digest = sha256(data)
    staged = app_state.settings.data_dir / "orphan"
    staged.write_bytes(data)
    app_state.blobs.driver.put_file(blob_key(digest), staged)
    assert gc(app_state, grace=3600).orphan_files_removed == 0  # fresh: maybe an upload in progress
    assert on_disk(app_state, digest) == data
    report = gc(app_state)
    assert report.orphan_files_removed == 1
    assert on_disk(app_state, digest) is None


def test_dry_run_removes_nothing(app_state, reg, user) -> None:
    name = f"{user}/app"
    digest = reg.push_blob(name, b"would be collected")
    reg.request("POST", f"/v2/{name}/blobs/uploads/", name)
    report = gc(app_state, upload_ttl=0, dry_run=True)
    assert (report.links_removed, report.uploads_removed) == (1, 1)
    assert blob_row(app_state, digest) is not None
    assert links(app_state, digest) == {name}
    assert on_disk(app_state, digest) == b"would be collected"
    assert len(list(app_state.blobs.list_uploads())) == 1


def test_gc_run_is_audited(app_state, reg, user) -> None:
    reg.push_blob(f"{user}/app", b"to collect")
    gc(app_state)
    with app_state.sessions() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.tag == "gc:run"))
    assert event is not None
    assert event.data["blobs_removed"] == 1
    assert event.actor_kind == "system"


# -- gc against concurrent pushes -----------------------------------------------------------------
class _VanishingPath(type(Path())):  # type: ignore[misc]
    """A blob path whose file gc removes right after the registry first looked at it."""

    looks = 0

    def __fspath__(self) -> str:
        type(self).looks += 1
        if type(self).looks == 2:
            os.unlink(super().__fspath__())
        return super().__fspath__()


def test_head_of_a_blob_gc_removes_meanwhile_is_never_a_500(app_state, reg, user, monkeypatch) -> None:
    name = f"{user}/app"
    digest = reg.push_blob(name, b"collected while looked at")
    real = app_state.blobs.local_path(digest)
    monkeypatch.setattr(app_state.blobs, "local_path", lambda d: _VanishingPath(real))
    # Answered from what the registry saw (200), or as gone (404); never a 500.
    assert reg.request("HEAD", f"/v2/{name}/blobs/{digest}", name).status_code in (200, 404)
    real.unlink(missing_ok=True)
    assert reg.request("HEAD", f"/v2/{name}/blobs/{digest}", name).status_code == 404
    assert reg.request("GET", f"/v2/{name}/blobs/{digest}", name).status_code == 404


def _wait_until_blocked(state: AppState, timeout: float = 10) -> None:
    """Wait until another connection waits for a lock (PostgreSQL); SQLite writers just queue."""
    if state.engine.dialect.name != "postgresql":
        time.sleep(0.5)
        return
    deadline = time.monotonic() + timeout
    with state.engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
            ).scalar()
            if waiting:
                return
            conn.rollback()
            time.sleep(0.02)
    raise AssertionError("gc never waited for the manifest's transaction")


def test_manifest_committed_while_gc_runs_keeps_its_blobs(app_state, reg, user) -> None:
    """A manifest PUT whose transaction is open while gc decides what is unreferenced."""
    name = f"{user}/app"
    manifest = reg.image_manifest(name, [b"layer being referenced"])
    digests = [manifest["config"]["digest"], manifest["layers"][0]["digest"]]
    time.sleep(0.05)

    session = app_state.sessions(bind=app_state.engine.execution_options(sqlite_write=True))
    registry = RegistryService(session, app_state.blobs, app_state.bus, app_state.settings)
    registry.put_manifest(name, "v1", json.dumps(manifest).encode(), OCI_MANIFEST, Actor.system())
    reports: list[GcReport] = []
    errors: list[BaseException] = []

    def run_gc() -> None:
        try:
            reports.append(gc(app_state))
        except BaseException:
            errors.append(traceback.format_exc())

    thread = threading.Thread(target=run_gc)
    thread.start()
    try:
        _wait_until_blocked(app_state)
        session.commit()
    finally:
        session.close()
        thread.join(60)
    assert errors == []
    for digest in digests:
        assert links(app_state, digest) == {name}, digest
        assert on_disk(app_state, digest) is not None
    with app_state.sessions() as s:
        assert broken_references(s, app_state.blobs) == []
    # gc ran to the end once the manifest committed, and collected nothing of it.
    assert reports[0].blobs_removed == 0
    gc(app_state)
    assert reg.pull_blob(name, digests[1]).content == b"layer being referenced"


class ServerError(AssertionError):
    pass


def _checked(r) -> bool:
    """True on success; False on a clean 4xx (the client retries); raise on anything else."""
    if r.status_code >= 500 or r.status_code < 200:
        raise ServerError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
    if 400 <= r.status_code < 500:
        codes = {e["code"] for e in r.json()["errors"]}
        assert codes <= {"MANIFEST_BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN"}, r.text
        return False
    return True


def _try_push(reg: RegistryClient, name: str, tag: str, layers: list[bytes]) -> str | None:
    """One attempt at a push as a client makes it: blobs, then the manifest. None: retry."""
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    descs = []
    for data in [config, *layers]:
        digest = sha256(data)
        descs.append({"mediaType": "application/octet-stream", "digest": digest, "size": len(data)})
        r = reg.request("HEAD", f"/v2/{name}/blobs/{digest}", name)
        if r.status_code == 200:
            continue  # like docker: push only what the registry does not have
        assert r.status_code == 404, r.status_code
        r = reg.request("POST", f"/v2/{name}/blobs/uploads/", name)
        if not _checked(r):
            return None
        r = reg.request("PUT", f"{r.headers['location']}?digest={digest}", name, content=data)
        if not _checked(r):
            return None
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {**descs[0], "mediaType": "application/vnd.oci.image.config.v1+json"},
        "layers": [{**d, "mediaType": "application/vnd.oci.image.layer.v1.tar"} for d in descs[1:]],
    }
    r = reg.put_manifest(name, tag, manifest)
    return r.headers["docker-content-digest"] if _checked(r) else None


@pytest.mark.slow
def test_pushes_during_repeated_gc_never_leave_a_manifest_without_its_blobs(app_state, client, user) -> None:
    """gc with no grace at all, in a loop, while four clients push images sharing layers.

    A push may lose the race (gc removes a blob between its upload and the manifest) and must then fail
    with a 4xx the client retries; a manifest that was accepted must keep every blob it references.
    """
    errors: list[str] = []
    pushed: list[tuple[str, str, list[bytes]]] = []
    retries = [0]
    done = threading.Event()
    gc_runs = [0]

    deadline = time.monotonic() + 12

    def pusher(i: int) -> None:
        reg = RegistryClient(client, user, PASSWORD)
        name = f"{user}/app{i % 3}"
        try:
            for n in itertools.count():
                if time.monotonic() > deadline:
                    return
                layers = [b"common base layer", f"shared in repo {i % 2}".encode(), f"own {i} {n}".encode()]
                while (digest := _try_push(reg, name, f"t{i}-{n}", layers)) is None:
                    retries[0] += 1  # gc won the race: a real client pushes what is missing again
                    if time.monotonic() > deadline:
                        return
                pushed.append((name, digest, layers))
        except BaseException:
            errors.append(traceback.format_exc())

    def collector() -> None:
        try:
            while not done.is_set():
                collect(app_state.sessions, app_state.blobs, app_state.bus, grace=0, upload_ttl=3600)
                gc_runs[0] += 1
                time.sleep(random.uniform(0.1, 0.8))  # windows in which a push can get through
        except BaseException:
            errors.append(traceback.format_exc())

    gc_thread = threading.Thread(target=collector)
    pushers = [threading.Thread(target=pusher, args=(i,)) for i in range(4)]
    gc_thread.start()
    for t in pushers:
        t.start()
    for t in pushers:
        t.join(300)
    done.set()
    gc_thread.join(60)
    assert errors == [], "\n".join(errors)
    assert gc_runs[0] > 3
    assert len(pushed) >= 4, f"{len(pushed)} pushed, {retries[0]} retries"

    # Whatever raced, a last collection must find every accepted manifest intact.
    gc(app_state)
    with app_state.sessions() as s:
        assert broken_references(s, app_state.blobs) == []
    reg = RegistryClient(client, user, PASSWORD)
    for name, digest, layers in pushed:
        r = reg.get_manifest(name, digest)
        assert r.status_code == 200
        for desc, data in zip(r.json()["layers"], layers, strict=True):
            assert reg.pull_blob(name, desc["digest"]).content == data


# -- the command line -----------------------------------------------------------------------------
@pytest.fixture
def live_reg(live_server) -> Iterator[RegistryClient]:
    import httpx

    with httpx.Client(base_url=live_server.url, timeout=30, follow_redirects=True) as http:
        yield RegistryClient(http, "admin", live_server.admin_password)


def test_cli_gc_dry_run_and_run(live_server, live_reg) -> None:
    digest = live_reg.push_blob("admin/app", b"cli collects me")
    live_reg.push_image("admin/app", "v1", [b"kept by the manifest"])
    data_dir = live_server.data_dir
    blobs = BlobStore(LocalDriver(data_dir / "storage"), data_dir / "uploads")
    time.sleep(0.05)

    dry = json.loads(live_server.dockyard("gc", "--dry-run", "--grace", "0").stdout)
    assert dry["links_removed"] == 1
    assert dry["blobs_removed"] == 0  # the link is still there in a dry run, so the blob is not a candidate
    assert blobs.size(digest) == len(b"cli collects me")
    assert live_reg.request("HEAD", f"/v2/admin/app/blobs/{digest}", "admin/app").status_code == 200

    default = json.loads(live_server.dockyard("gc", "--dry-run").stdout)
    assert default["links_removed"] == 0  # DOCKYARD_GC_GRACE (an hour) protects fresh blobs

    real = json.loads(live_server.dockyard("gc", "--grace", "0").stdout)
    assert (real["links_removed"], real["blobs_removed"]) == (1, 1)
    assert blobs.size(digest) is None
    assert live_reg.request("HEAD", f"/v2/admin/app/blobs/{digest}", "admin/app").status_code == 404
    r = live_reg.get_manifest("admin/app", "v1")
    assert r.status_code == 200
    layer = r.json()["layers"][0]["digest"]
    assert live_reg.pull_blob("admin/app", layer).content == b"kept by the manifest"
    assert os.path.isdir(data_dir / "storage")
