"""/api/v1 against its own OpenAPI document, on a live server (schemathesis).

For every operation of ``/api/v1/openapi.json`` schemathesis sends boundary values first (its coverage
phase), then random valid and invalid requests (its fuzzing phase, seeded and derandomized, a bounded number
per operation), and checks each answer: no 5xx, a status code the document declares for the operation, the
declared content type, and a body that matches the declared schema (errors included: dockyard's
``{"error": {...}}`` envelope).

Three callers run the whole API, one test each:
- a store-admin's personal access token (scopes api, pull, push) as ``Authorization: Bearer``: the caller who
  may do nearly everything, so requests get past authorization into validation and the services;
- a plain user's pull-only token: 403s where the ``api`` scope is needed, 404s for scans it may not see;
- nobody: 401s.
The last two get the coverage phase's boundary cases only (see ``boundaries``).

Half the cases (chosen by a hash of their path parameters, so a replayed case is the same case) have
their path parameters replaced by real ones: an organisation with a member and a robot, a pushed image
whose scan found vulnerabilities, one of those findings. So operations reach their 2xx answers and their
409s, not only 404s.

Destructive operations, and why the run survives them:
- ``POST /me/sign-out-everywhere`` ends browser sessions and refresh tokens only; the runs authenticate with
  access tokens, which stay valid, so it runs in place like any other operation.
- ``DELETE /tokens/{token_id}`` would end the run's own credential when the generated id is its id (small
  ids are what Hypothesis tries first): that id, and the real-data cases, are replaced by a spare token
  made for the case.
- Real usernames are the member's, never the caller's: staff and membership changes never demote the
  caller; the last owner of the organisation and the last store-admin are kept by the services anyway.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from pydantic import TypeAdapter, ValidationError
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.support.live import LiveServer
from tests.support.registry_client import RegistryClient
from tests.support.scanimages import config_blob, debian_layer, osv_record, write_feed

from dockyard.web.app import api_document

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SEED = 20250807
# Per operation and caller, after the coverage phase's boundary cases. On the current API 8 examples
# and 25 pass alike; 25 took twice as long (the three callers were 15% of the whole suite's time).
FUZZ_EXAMPLES = 10
PASSWORD = "schemathesis-pass-1"
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
PACKAGES = [("zlib1g", "1:1.2.13.dfsg-1", "zlib"), ("libfoo1", "1.0-1", "foo")]


@dataclass
class World:
    """What the server holds before the run, and the credentials of the three callers."""

    url: str
    admin: str  # a store-admin, owner of ``org``; the run's main caller
    token: str  # its access token (api, pull, push)
    token_id: int
    reader_token: str  # a plain user's pull-only token
    org: str
    member: str
    robot: str  # the robot's name within ``org``
    repo: str
    tag: str
    digest: str
    finding_id: int

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def spare_token(self) -> int:
        """A new token of the admin's, for a DELETE /tokens/{token_id} case to revoke."""
        r = httpx.post(f"{self.url}/api/v1/tokens", json={"name": "spare"}, headers=self.bearer(self.token))
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.url}: {response.status_code} {response.text}"
    return response.json() if response.content else None


@pytest.fixture(scope="module")
def world(module_live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> World:
    server = module_live_server
    feed = write_feed(
        tmp_path_factory.mktemp("feed"),
        osv_record("CVE-2031-1001", "zlib", vector=CRITICAL),
        osv_record("CVE-2031-1002", "foo", fixed="1.0-2"),
    )
    server.dockyard("vulndb", "update", "--source", str(feed))
    admin_auth = ("admin", server.admin_password)
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=60) as api:
        for name, staff in (
            ("fuzz-admin-q7", ["store-admin"]),
            ("fuzz-member-q7", []),
            ("fuzz-reader-q7", []),
        ):
            body = {"username": name, "password": PASSWORD, "staff": staff}
            _ok(api.post("/users", json=body, auth=admin_auth), 201)
        admin = ("fuzz-admin-q7", PASSWORD)
        scopes = ["api", "pull", "push"]
        made = _ok(api.post("/tokens", json={"name": "run", "scopes": scopes}, auth=admin), 201)
        reader = ("fuzz-reader-q7", PASSWORD)
        reader_token = _ok(api.post("/tokens", json={"name": "ro", "scopes": ["pull"]}, auth=reader), 201)
        org = _ok(api.post("/orgs", json={"name": "fuzz-org"}, auth=admin), 201)["name"]
        _ok(api.put(f"/orgs/{org}/members/fuzz-member-q7", json={"role": "maintainer"}, auth=admin))
        robot = _ok(api.post(f"/orgs/{org}/robots", json={"name": "ci"}, auth=admin), 201)
    repo, tag = f"{org}/app", "v1"
    with httpx.Client(base_url=server.url, timeout=60) as http:
        reg = RegistryClient(http, *admin)
        layers = [debian_layer(PACKAGES)]
        r = reg.put_manifest(repo, tag, reg.image_manifest(repo, layers, config=config_blob("amd64", 1)))
        assert r.status_code == 201, r.text
        digest = r.headers["docker-content-digest"]
        report = wait_for_findings(http, f"/api/v1/repositories/{repo}/scans/{tag}", made["token"])
    return World(
        url=server.url,
        admin=admin[0],
        token=made["token"],
        token_id=made["id"],
        reader_token=reader_token["token"],
        org=org,
        member="fuzz-member-q7",
        robot=robot["username"].split("+", 1)[1],
        repo=repo,
        tag=tag,
        digest=digest,
        finding_id=report["findings"][0]["id"],
    )


def wait_for_findings(http: httpx.Client, url: str, token: str, timeout: float = 60) -> dict[str, Any]:
    """The image's report once its scan (by the server's in-process worker) has found something."""
    deadline = time.monotonic() + timeout
    while True:
        r = http.get(url, headers={"Authorization": f"Bearer {token}"})
        report = r.json()
        if r.status_code == 200 and report["status"] == "done" and report["findings"]:
            return report
        assert time.monotonic() < deadline, f"no findings in {timeout} s: {r.status_code} {r.text[:500]}"
        time.sleep(0.1)


def load_schema(*, fuzzing: bool) -> Any:
    """The document the server serves (``test_the_server_serves_the_checked_document`` checks that it is),
    built in-process: the pytest plugin makes one test per operation at collection, before any server
    runs. (``schemathesis.pytest.from_fixture``, which would load it from the live server, fails under
    pytest 9 in schemathesis 4.32: it sets ``node._nodeid``, which pytest no longer has.)"""
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": FUZZ_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # The callers' credentials are ours: no generated Authorization headers (random Basic
                # credentials would be password logins, argon2 at full cost, then the login throttle).
                "with-security-parameters": False,
            },
            "phases": {"coverage": {"enabled": True}, "fuzzing": {"enabled": fuzzing}},
            "request-timeout": 30,
        }
    )
    return schemathesis.openapi.from_dict(api_document(), config=config)


schema = load_schema(fuzzing=True)
# The other two callers are refused before their requests are read almost everywhere (anonymous: 401 but on
# /search; a pull-only token: 403 wherever the api scope is needed, but on /me and the scan reads): they get
# the boundary cases (every operation, every parameter's edges, real names in half of them) and no fuzzing,
# which was most of their time. What fuzzing would add for them is random queries on those few reads,
# whose parsing the store-admin's fuzzing covers; their "not visible: 404" answers are in the boundary
# cases and in the permission matrix.
boundaries = load_schema(fuzzing=False)


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def test_the_server_serves_the_checked_document(world: World) -> None:
    served = httpx.get(f"{world.url}/api/v1/openapi.json")
    assert served.status_code == 200
    assert served.json() == api_document()


def as_served_int(value: Any) -> int | None:
    """The integer the server reads from a path parameter ("01" and " 1" are 1, as FastAPI parses them)."""
    try:
        return TypeAdapter(int).validate_python(str(value))
    except ValidationError:
        return None


def real_data(case: Any, world: World) -> None:
    """Put real names and ids into about half the cases (the same half on every run and replay)."""
    params = case.path_parameters
    if not params:
        return
    path = case.operation.path
    if path == "/tokens/{token_id}" and as_served_int(params.get("token_id")) == world.token_id:
        params["token_id"] = world.spare_token()  # never the run's own credential
    choice = zlib.crc32(repr(sorted(params.items())).encode())
    if choice % 2:
        return
    real: dict[str, Any] = {
        "org": world.org,
        "username": world.member,
        "name": world.repo if path.startswith("/repositories/") else world.robot,
        "reference": world.tag if choice & 2 else world.digest,
        "finding_id": world.finding_id,
    }
    for key in params:
        if key in real:
            params[key] = real[key]
        elif key == "token_id":
            params[key] = world.spare_token()


def call(case: Any, world: World, http: requests.Session, token: str | None) -> None:
    real_data(case, world)
    headers = world.bearer(token) if token else {}
    response = case.call_and_validate(
        base_url=f"{world.url}/api/v1", session=http, headers=headers, checks=CHECKS
    )
    # A 401 with a valid token means an earlier case revoked it: the rest of the run would test nothing.
    assert not (token and response.status_code == 401), f"the run's token stopped working: {response.text}"


@schema.parametrize()
def test_api_as_a_store_admin_with_an_access_token(case: Any, world: World, http: requests.Session) -> None:
    call(case, world, http, world.token)


@boundaries.parametrize()
def test_api_with_a_pull_only_token(case: Any, world: World, http: requests.Session) -> None:
    call(case, world, http, world.reader_token)


@boundaries.parametrize()
def test_api_anonymously(case: Any, world: World, http: requests.Session) -> None:
    call(case, world, http, None)
