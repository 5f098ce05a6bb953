"""Another tenant's private layers cannot be read through the scanner.

A user who knows the digest of a layer of someone else's private repository must not get its packages out of
a scan of an image of their own: the registry refuses a manifest naming a blob the repository was not given
(only the four exact non-distributable layer types may be absent, and the scanner skips exactly those), and
the scanner reads only blobs linked to a repository storing the image, for manifests stored before that rule
too, failing the scan with one message whether or not the digest exists elsewhere (no existence oracle).
"""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD, make_org, make_user, unique
from tests.support.registry_client import (
    OCI_MANIFEST,
    RegistryClient,
    assert_oci_error,
    protocol_guard,
    sha256,
)
from tests.support.scanimages import config_blob, debian_layer

from dockyard.jobs import Job, Worker
from dockyard.oci import mediatypes as mt
from dockyard.registry.models import Manifest, Repository
from dockyard.scanning.models import LayerIndex
from dockyard.scanning.reads import ScanReads
from dockyard.scanning.scanner import queue_scan
from dockyard.web.context import AppState

SECRET = [("acme-secret-agent", "3.1.4-1", "acme-secret"), ("libacme-keys1", "2.7-1", "acme-secret")]
LOOKALIKE = "application/vnd.oci.image.layer.v1.tar+gzip+foreign"


@pytest.fixture(autouse=True)
def _guard(client, monkeypatch):
    yield from protocol_guard(client, monkeypatch)


@pytest.fixture
def worker(app, app_state: AppState) -> Worker:
    return Worker(app_state.sessions, app.state.jobs, bus=app_state.bus, services=app_state.services)


class Tenants:
    def __init__(self, client: TestClient, app_state: AppState) -> None:
        with app_state.sessions.begin() as s:
            alice = make_user(s).username
            self.acme = make_org(s, unique("acme"), owner=alice)
            self.bob = make_user(s).username
        self.alice = RegistryClient(client, alice, PASSWORD)
        self.bob_reg = RegistryClient(client, self.bob, PASSWORD)
        self.client = client
        self.secret_repo = f"{self.acme}/secret"
        self.layer = debian_layer(SECRET)
        self.secret_layer = sha256(self.layer)
        self.alice.push_image(self.secret_repo, "v1", [self.layer], config=config_blob())

    def bob_manifest(self, repo: str, layer_type: str, layer_digest: str) -> dict:
        config = config_blob("arm64")  # not acme's manifest by accident
        return {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": mt.OCI_CONFIG,
                "digest": self.bob_reg.push_blob(repo, config),
                "size": len(config),
            },
            "layers": [{"mediaType": layer_type, "digest": layer_digest, "size": len(self.layer)}],
        }

    def sbom(self, repo: str, tag: str) -> dict:
        token = base64.b64encode(f"{self.bob}:{PASSWORD}".encode()).decode()
        r = self.client.get(
            f"/api/v1/repositories/{repo}/scans/{tag}/sbom",
            params={"format": "cyclonedx"},
            headers={"Authorization": f"Basic {token}"},
        )
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def tenants(client: TestClient, app_state: AppState) -> Tenants:
    return Tenants(client, app_state)


def scan_of(app_state: AppState, digest: str) -> tuple[str, str | None]:
    with app_state.sessions() as s:
        scan = ScanReads(s).get_scan(digest)
        assert scan is not None
        return scan.status, scan.error


def scan_jobs(app_state: AppState) -> list[Job]:
    with app_state.sessions() as s:
        return list(s.scalars(select(Job).where(Job.kind == "scan.manifest").order_by(Job.id)))


def test_a_lookalike_foreign_layer_type_must_be_linked_like_any_layer(
    tenants: Tenants, app_state: AppState, worker: Worker
) -> None:
    assert worker.run_until_idle() == 1  # acme's own scan, which reads its layer
    repo = f"{tenants.bob}/x"
    doc = tenants.bob_manifest(repo, LOOKALIKE, tenants.secret_layer)
    error = assert_oci_error(tenants.bob_reg.put_manifest(repo, "t1", doc), 400, "MANIFEST_BLOB_UNKNOWN")
    assert error["detail"] == {"digest": tenants.secret_layer}
    with app_state.sessions() as s:
        assert (
            s.scalar(select(Manifest.id).where(Manifest.digest == sha256(json.dumps(doc).encode()))) is None
        )
    assert worker.run_until_idle() == 0  # nothing queued


@pytest.mark.parametrize("layer_type", sorted(mt.NONDISTRIBUTABLE_LAYER_TYPES))
def test_a_nondistributable_layer_naming_anothers_blob_is_accepted_but_never_scanned(
    tenants: Tenants, app_state: AppState, worker: Worker, layer_type: str
) -> None:
    assert worker.run_until_idle() == 1
    repo = f"{tenants.bob}/x"
    r = tenants.bob_reg.put_manifest(repo, "t1", tenants.bob_manifest(repo, layer_type, tenants.secret_layer))
    assert r.status_code == 201, r.text  # the spec lets non-distributable layers be absent
    digest = r.headers["docker-content-digest"]
    assert worker.run_until_idle() == 1
    status, _ = scan_of(app_state, digest)
    assert status == "done"
    sbom = tenants.sbom(repo, "t1")
    assert "acme" not in json.dumps(sbom)
    assert not sbom.get("components")
    # The blob was not linked to bob's repository by any of this.
    assert tenants.bob_reg.pull_blob(repo, tenants.secret_layer).status_code == 404


def _store_prefix_manifest(app_state: AppState, repo: str, doc: dict) -> str:
    """A manifest of ``repo`` written as a registry before the fix let it through (no link check)."""
    payload = json.dumps(doc).encode()
    digest = sha256(payload)
    with app_state.sessions.begin() as s:
        repository_id = s.scalar(select(Repository.id).where(Repository.name == repo))
        assert repository_id is not None
        s.add(
            Manifest(
                repository_id=repository_id,
                digest=digest,
                media_type=OCI_MANIFEST,
                size=len(payload),
                payload=payload,
            )
        )
    return digest


def test_a_stored_manifest_naming_an_unlinked_layer_fails_its_scan_the_same_way_whether_or_not_it_exists(
    tenants: Tenants, app_state: AppState, worker: Worker
) -> None:
    assert worker.run_until_idle() == 1
    with app_state.sessions() as s:  # acme's layer facts are cached: the scan must not use them either
        assert s.get(LayerIndex, tenants.secret_layer) is not None
    repo = f"{tenants.bob}/x"
    existing = tenants.bob_manifest(repo, mt.OCI_LAYER_TAR_GZIP, tenants.secret_layer)
    missing = dict(existing, layers=[dict(existing["layers"][0], digest=sha256(b"no such layer anywhere"))])
    errors, digests = [], []
    for doc in (existing, missing):
        digest = _store_prefix_manifest(app_state, repo, doc)
        with app_state.sessions.begin() as s:
            queue_scan(s, repo, digest, force=True)
        assert worker.run_until_idle() == 1
        status, error = scan_of(app_state, digest)
        assert status == "error", (status, error)  # ended: not left "indexing" by a failing job
        assert error is not None and not error.startswith("scan failed")
        errors.append(error.replace(doc["layers"][0]["digest"], "<layer>"))
        digests.append(digest)
    assert errors[0] == errors[1]
    assert [(j.status, j.error) for j in scan_jobs(app_state)] == [("done", None)] * 3  # nothing retried
    with app_state.sessions() as s:
        assert ScanReads(s).components(digests[0]) == []
