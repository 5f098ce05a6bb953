"""Scan results over HTTP: the JSON API (report, findings, SBOM, rescan, staff reclassify) with its visibility
rules, and the server-rendered scan page behind a login (escaping, 404 for those who may not see it)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.support.factories import PASSWORD, make_org, make_robot, make_user
from tests.support.pages import sign_in, with_csrf
from tests.support.registry_client import assert_api_error
from tests.support.scanimages import ACTOR, Images, debian_layer, osv_record, write_feed

from dockyard.audit.models import AuditEvent
from dockyard.jobs import Job, Worker
from dockyard.scanning.presenters import SbomSource, render_sbom
from dockyard.scanning.services import ScanService
from dockyard.web.context import AppState

CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
MINOR = "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"  # 1.8
EVIL = "evil<script>alert(1)</script>"
# libfoo1's version is not its source's: an epoch, as bsdutils 1:2.38.1-5+deb12u3 (util-linux's 2.38.1-...).
PACKAGES = [
    ("zlib1g", "1:1.2.13.dfsg-1", "zlib"),
    ("libfoo1", "1:1.0-1", "foo (1.0-1)"),
    ("libbar1", "2.0-1", "bar"),
]


def basic(username: str, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


@dataclass
class World:
    repo: str
    digest: str
    owner: str
    member: str
    robot: tuple[str, str]
    staff: str
    customer: str
    other: str

    def auth(self, who: str) -> dict[str, str]:
        if who == "anonymous":
            return {}
        if who == "robot":
            return basic(*self.robot)
        return basic(getattr(self, who))


@pytest.fixture
def world(app, app_state: AppState, tmp_path: Path) -> World:
    with app_state.sessions.begin() as s:
        owner = make_user(s).username
        member = make_user(s).username
        staff = make_user(s, admin=True).username
        customer = make_user(s).username
        other = make_user(s).username
        org = make_org(s, owner=owner, members={member: "maintainer"})
        make_org(s, owner=other)
        robot = make_robot(s, org, role="reader")
        feed = write_feed(
            tmp_path / "feed",
            osv_record("CVE-2031-0001", "zlib", vector=CRITICAL),
            osv_record("CVE-2031-0002", "foo", vector=MINOR, fixed="1.0-2"),
            osv_record("CVE-2031-0003", "bar", vector=None),
        )
        ScanService(s, app_state.blobs, app_state.bus, app_state.settings).update_vulndb([feed], ACTOR)
    repo = f"{org}/app"
    with app_state.sessions.begin() as s:
        stored = Images(s, app_state.blobs, app_state.bus).image(repo, "v1", [debian_layer(PACKAGES)])
    worker = Worker(app_state.sessions, app.state.jobs, bus=app_state.bus, services=app_state.services)
    worker.run_until_idle()
    return World(repo, stored.digest, owner, member, robot, staff, customer, other)


def url(w: World, suffix: str = "", ref: str = "v1") -> str:
    return f"/api/v1/repositories/{w.repo}/scans/{ref}{suffix}"


def test_report_lists_counts_and_findings_with_their_details(client: TestClient, world: World) -> None:
    r = client.get(url(world), headers=world.auth("owner"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["digest"], body["status"], body["os"]["ecosystem"]) == (world.digest, "done", "Debian:12")
    assert body["counts"] == {"Critical": 1, "Major": 0, "Minor": 1, "Unscored": 1}
    by_id = {f["vulnerability"]: f for f in body["findings"]}
    crit = by_id["CVE-2031-0001"]
    assert crit["score"] == 9.8 and crit["vector"] == CRITICAL
    assert (crit["severity"], crit["computed_severity"], crit["override"]) == ("Critical", "Critical", None)
    assert crit["component"]["name"] == "zlib1g" and crit["component"]["ecosystem"].startswith("Debian")
    assert crit["component"]["purl"].startswith("pkg:deb/")
    assert crit["installed"] and crit["fixed_version"] is None and crit["layer"].startswith("sha256:")
    assert crit["first_seen_at"] and crit["resolved_at"] is None and crit["sla_due_at"]
    assert by_id["CVE-2031-0002"]["fixed_version"] == "1.0-2"
    # installed: the binary package's version; the source's (which the feed's ranges are about) on its own.
    foo = by_id["CVE-2031-0002"]
    assert (foo["installed"], foo["source_version"], foo["component"]["version"]) == (
        "1:1.0-1",
        "1.0-1",
        "1:1.0-1",
    )
    assert by_id["CVE-2031-0003"]["severity"] == "Unscored" and by_id["CVE-2031-0003"]["score"] is None
    assert body["findings"][0]["vulnerability"] == "CVE-2031-0001"  # worst first
    by_digest = client.get(url(world, ref=world.digest), headers=world.auth("owner"))
    assert by_digest.json()["counts"] == body["counts"]


def test_findings_say_which_record_and_cvss_version_scored_them(
    client: TestClient, app, app_state: AppState, world: World, tmp_path: Path
) -> None:
    def findings() -> dict[str, dict]:
        r = client.get(url(world), headers=world.auth("owner"))
        assert r.status_code == 200, r.text
        return {f["vulnerability"]: f for f in r.json()["findings"]}

    before = findings()
    own = before["CVE-2031-0001"]  # Debian's own vector
    assert (own["score_source"], own["score_record"]) == ("debian v3.1", "CVE-2031-0001")
    assert own["url"] == "https://nvd.nist.gov/vuln/detail/CVE-2031-0001"
    assert (before["CVE-2031-0003"]["score_source"], before["CVE-2031-0003"]["score_record"]) == (None, None)
    # NVD scores the CVE Debian left unscored (its Primary v3.1 metric); a lesser Secondary one is ignored.
    nvd = tmp_path / "nvd"
    nvd.mkdir()
    (nvd / "CVE-2031-0003.json").write_text(
        json.dumps(
            {
                "id": "CVE-2031-0003",
                "published": "2031-01-01T00:00:00.000",
                "lastModified": "2031-01-02T00:00:00.000",
                "vulnStatus": "Analyzed",
                "descriptions": [{"lang": "en", "value": "bar overflows"}],
                "metrics": {
                    "cvssMetricV31": [
                        {"source": "nvd@nist.gov", "type": "Primary", "cvssData": {"vectorString": CRITICAL}},
                        {"source": "cna@x.org", "type": "Secondary", "cvssData": {"vectorString": MINOR}},
                    ]
                },
            }
        )
    )
    with app_state.sessions.begin() as s:
        ScanService(s, app_state.blobs, app_state.bus, app_state.settings).update_vulndb([nvd], ACTOR)
    Worker(
        app_state.sessions, app.state.jobs, bus=app_state.bus, services=app_state.services
    ).run_until_idle()  # the re-match
    lent = findings()["CVE-2031-0003"]
    assert (lent["score"], lent["vector"], lent["severity"]) == (9.8, CRITICAL, "Critical")
    assert (lent["score_source"], lent["score_record"]) == ("nvd (primary) v3.1", "NVD-CVE-2031-0003")
    assert findings()["CVE-2031-0001"]["score_source"] == "debian v3.1"  # its own vector still wins


@pytest.mark.parametrize("who", ["owner", "member", "robot", "staff"])
def test_members_robots_and_staff_see_every_endpoint(client: TestClient, world: World, who: str) -> None:
    for suffix in ("", "/findings", "/sbom"):
        r = client.get(url(world, suffix), headers=world.auth(who))
        assert r.status_code == 200, (suffix, r.text)


@pytest.mark.parametrize("who,status", [("anonymous", 401), ("customer", 404), ("other", 404)])
def test_everyone_else_is_refused_without_learning_the_image_exists(
    client: TestClient, world: World, who: str, status: int
) -> None:
    for suffix in ("", "/findings", "/sbom"):
        assert_api_error(client.get(url(world, suffix), headers=world.auth(who)), status)
        # A repository that does not exist answers the same.
        missing = f"/api/v1/repositories/{world.repo}-nope/scans/v1{suffix}"
        assert_api_error(client.get(missing, headers=world.auth(who)), status)
    assert_api_error(client.post(url(world), headers=world.auth(who)), status)


def test_findings_filter_by_class_and_state(client: TestClient, world: World) -> None:
    h = world.auth("member")
    r = client.get(url(world, "/findings"), params={"severity": "minor"}, headers=h)
    assert [f["vulnerability"] for f in r.json()["findings"]] == ["CVE-2031-0002"]
    r = client.get(url(world, "/findings"), params={"state": "all"}, headers=h)
    assert len(r.json()["findings"]) == 3
    r = client.get(url(world, "/findings"), params={"state": "resolved"}, headers=h)
    assert r.json()["findings"] == []
    assert_api_error(client.get(url(world, "/findings"), params={"state": "bogus"}, headers=h), 400)
    assert_api_error(client.get(url(world, "/findings"), params={"severity": "bogus"}, headers=h), 400)


def test_the_documented_bound_of_findings_is_the_one_enforced(client: TestClient, world: World) -> None:
    """The document said up to 10000 findings; the service refused more than 1000 (a 400 for a valid
    request). Found by schemathesis's positive-data check."""
    document = client.get("/api/v1/openapi.json").json()
    operation = document["paths"]["/repositories/{name}/scans/{reference}/findings"]["get"]
    (limit,) = [p["schema"] for p in operation["parameters"] if p["name"] == "limit"]
    h = world.auth("member")
    r = client.get(url(world, "/findings"), params={"limit": limit["maximum"]}, headers=h)
    assert r.status_code == 200, r.text
    r = client.get(url(world, "/findings"), params={"limit": limit["maximum"] + 1}, headers=h)
    assert assert_api_error(r, 400, "INVALID")["detail"][0]["field"] == "query.limit"


def test_sbom_in_both_formats_validates(client: TestClient, world: World) -> None:
    h = world.auth("owner")
    cdx = client.get(url(world, "/sbom"), params={"format": "cyclonedx"}, headers=h)
    assert cdx.status_code == 200 and cdx.headers["content-type"].startswith("application/vnd.cyclonedx+json")
    doc = cdx.json()
    names = {c["name"] for c in doc["components"]}
    assert {"zlib1g", "libfoo1", "libbar1"} <= names
    assert doc["metadata"]["component"]["version"] == world.digest
    spdx = client.get(url(world, "/sbom"), params={"format": "spdx"}, headers=h)
    assert spdx.status_code == 200 and spdx.json()["spdxVersion"] == "SPDX-2.3"
    assert {"zlib1g", "libfoo1"} <= {p["name"] for p in spdx.json()["packages"]}
    assert_api_error(client.get(url(world, "/sbom"), params={"format": "xml"}, headers=h), 400)


def test_sbom_built_from_the_scan_validates_against_the_schemas(app_state: AppState, world: World) -> None:
    from dockyard.scanning.presenters import sbom_source

    with app_state.sessions() as s:
        scans = ScanService(s, app_state.blobs, app_state.bus, app_state.settings)
        source: SbomSource = sbom_source(scans, scans.image_report(world.repo, "v1"), None)
    assert len(source.index.components) == 3
    for fmt in ("cyclonedx", "spdx"):
        json.loads(render_sbom(world.repo, source, fmt, registry="127.0.0.1:5999", validate=True))


def test_staff_reclassify_changes_counts_and_is_audited(
    client: TestClient, world: World, app_state: AppState
) -> None:
    findings = client.get(url(world, "/findings"), headers=world.auth("owner")).json()["findings"]
    minor = next(f for f in findings if f["vulnerability"] == "CVE-2031-0002")
    target = f"/api/v1/findings/{minor['id']}/reclassify"
    payload = {"severity": "Critical", "reason": "exploited in the wild"}
    for who in ("owner", "member", "customer", "robot"):
        assert_api_error(client.post(target, json=payload, headers=world.auth(who)), 403)
    assert_api_error(client.post(target, json=payload), 401)

    r = client.post(target, json=payload, headers=world.auth("staff"))
    assert r.status_code == 200, r.text
    assert r.json()["severity"] == "Critical" and r.json()["computed_severity"] == "Minor"
    body = client.get(url(world), headers=world.auth("owner")).json()
    assert body["counts"] == {"Critical": 2, "Major": 0, "Minor": 0, "Unscored": 1}
    f = next(f for f in body["findings"] if f["id"] == minor["id"])
    assert f["severity"] == "Critical" and f["computed_severity"] == "Minor"
    assert f["override"]["reason"] == "exploited in the wild" and f["override"]["by"] == world.staff
    with app_state.sessions() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.tag == "finding:reclassify")).all()
    assert len(events) == 1

    assert_api_error(client.post(target, json={"severity": "Critical"}, headers=world.auth("staff")), 400)
    assert_api_error(
        client.post(target, json={"severity": "Huge", "reason": "x"}, headers=world.auth("staff")), 400
    )
    assert_api_error(
        client.post("/api/v1/findings/999999/reclassify", json=payload, headers=world.auth("staff")), 404
    )
    cleared = client.post(target, json={"severity": None, "reason": "back"}, headers=world.auth("staff"))
    assert cleared.json()["severity"] == "Minor"
    assert client.get(url(world), headers=world.auth("owner")).json()["counts"]["Minor"] == 1


def test_rescan_needs_push(client: TestClient, world: World, app_state: AppState) -> None:
    assert_api_error(client.post(url(world), headers=world.auth("robot")), 403)  # a reader robot
    for who in ("owner", "member", "staff"):
        r = client.post(url(world), headers=world.auth(who))
        assert r.status_code == 202, r.text
        assert r.json()["digest"] == world.digest
    with app_state.sessions() as s:
        queued = s.scalars(select(Job).where(Job.kind == "scan.manifest", Job.status == "queued")).all()
    assert [j.payload["digest"] for j in queued] == [world.digest]


# -- pages --------------------------------------------------------------------------------------------------


def login(client: TestClient, username: str, password: str = PASSWORD) -> None:
    r = client.post(
        "/ui/login",
        data=with_csrf(client, {"username": username, "password": password, "next": "/ui/"}),
        headers={"Origin": "http://127.0.0.1:5999"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def page(w: World, query: str = "") -> str:
    return f"/ui/repositories/{w.repo}/-/scans/v1{query}"


def test_the_scan_page_renders_for_a_member_after_login(client: TestClient, world: World) -> None:
    r = client.get(page(world), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    login(client, world.member)
    cookie = client.cookies.jar
    assert any(c.name == "dockyard_session" for c in cookie)
    r = client.get(page(world))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for cve in ("CVE-2031-0001", "CVE-2031-0002", "CVE-2031-0003"):
        assert cve in r.text
    assert "Debian GNU/Linux 12" in r.text and 'class="badge Critical"' in r.text
    filtered = client.get(page(world, "?severity=Minor"))
    assert "CVE-2031-0002" in filtered.text and "CVE-2031-0001" not in filtered.text
    assert client.get(page(world, "?severity=Bogus")).status_code == 400


def test_the_session_cookie_is_httponly_and_lax(client: TestClient, world: World) -> None:
    r = sign_in(client, world.member, PASSWORD)
    header = r.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header


def test_the_scan_page_is_a_404_for_those_who_may_not_see_it(client: TestClient, world: World) -> None:
    for who in ("customer", "other"):
        client.cookies.clear()
        login(client, getattr(world, who))
        r = client.get(page(world))
        assert r.status_code == 404 and "CVE-2031" not in r.text
        assert client.get(f"/ui/repositories/{world.repo}-nope/-/scans/v1").status_code == 404


def test_login_failures_logout_and_cross_site_posts(client: TestClient, world: World) -> None:
    r = sign_in(client, world.member, "wrong")
    assert r.status_code == 401 and "Invalid username or password" in r.text
    evil = {"Origin": "https://evil.example"}
    r = sign_in(client, world.member, PASSWORD, headers=evil)
    assert r.status_code == 403
    # Without the session's CSRF token (a cross-site form, or a stale page): refused, nothing done.
    form = {"username": world.member, "password": PASSWORD}
    r = client.post("/ui/login", data=form, follow_redirects=False)
    assert r.status_code == 403 and "expired" in r.text
    login(client, world.member)
    token = with_csrf(client, path="/ui/")
    assert client.post("/ui/logout", data=token, headers=evil, follow_redirects=False).status_code == 403
    assert client.post("/ui/logout", data={"csrf_token": "x" * 43}, follow_redirects=False).status_code == 403
    assert client.get(page(world)).status_code == 200
    assert client.post("/ui/logout", data=token, follow_redirects=False).status_code == 303
    assert client.get(page(world), follow_redirects=False).status_code == 303


def test_component_names_are_escaped(client: TestClient, app, app_state: AppState, world: World) -> None:
    with app_state.sessions.begin() as s:
        Images(s, app_state.blobs, app_state.bus).image(
            world.repo, "evil", [debian_layer([(EVIL, "1.0-1", "zlib")])]
        )
    Worker(
        app_state.sessions, app.state.jobs, bus=app_state.bus, services=app_state.services
    ).run_until_idle()
    login(client, world.owner)
    r = client.get(f"/ui/repositories/{world.repo}/-/scans/evil")
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
