"""NVD and GitHub's advisories as severity sources: the score a finding takes when its own records carry no
vector, in the documented order (own vector, then NVD's Primary, then a secondary source's), and where it says
the score came from. NVD records are the real ones in vulndata/nvd-sample; there is no offline GHSA sample,
so GitHub's advisories are small OSV records written here in the advisory-database's layout."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.support.scanimages import osv_record, write_feed
from tests.support.vulndata import find_vulndata

from dockyard.scanning import nvd
from dockyard.scanning.matcher import Matcher
from dockyard.scanning.models import Advisory, AffectedPackage
from dockyard.scanning.types import Component
from dockyard.scanning.vulndb import ingest

VULNDATA = find_vulndata()
NVD_SAMPLE = VULNDATA / "nvd-sample"
DEBIAN_CVE = VULNDATA / "debian-osv" / "CVE"
BASE = "sha256:" + "ab" * 32
V3_HIGH = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
V3_LOW = "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"  # 1.8
V3_MID = "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:L/A:N"  # 4.8


def need_sample() -> None:
    if not NVD_SAMPLE.is_dir():
        pytest.skip(f"no NVD sample at {NVD_SAMPLE}")


def deb(name: str, version: str, source: str | None = None) -> Component:
    return Component(name, version, "Debian", f"pkg:deb/debian/{name}@{version}", BASE, "var/lib/dpkg/status",
                     source or name, version)  # fmt: skip


def findings(session: Session, *components: Component, os_ecosystem: str | None = "Debian:12") -> dict:
    return {(f.id, f.component.name): f for f in Matcher(session).match(components, os_ecosystem)}


def nvd_record(cve: str, *metrics: tuple[str, str, str], modified: str = "2024-05-01T00:00:00.000") -> dict:
    """An NVD ``cve`` object with (metric key, vector, Primary|Secondary) metrics."""
    grouped: dict[str, list] = {}
    for key, vector, kind in metrics:
        grouped.setdefault(key, []).append(
            {
                "source": "nvd@nist.gov" if kind == "Primary" else "cna@example.org",
                "type": kind,
                "cvssData": {"vectorString": vector},
            }
        )
    return {
        "id": cve,
        "sourceIdentifier": "cna@example.org",
        "published": "2024-01-01T00:00:00.000",
        "lastModified": modified,
        "vulnStatus": "Analyzed",
        "descriptions": [{"lang": "en", "value": f"{cve} in something"}],
        "metrics": grouped,
        "affected": [],
    }


# ---- the real NVD records -----------------------------------------------------------------------------


def test_every_sample_record_is_read(db_session: Session) -> None:
    need_sample()
    report = ingest(db_session, NVD_SAMPLE)
    assert report.errors == [] and report.records == 112 and report.added == 112
    rows = db_session.execute(select(Advisory.id, Advisory.source, Advisory.score, Advisory.aliases)).all()
    assert {r.source for r in rows} == {"nvd"}
    assert all(r.id == f"NVD-{r.aliases[0]}" for r in rows)
    assert sum(r.score is None for r in rows) == 21  # the records NVD publishes with "metrics": {}
    assert db_session.scalar(select(AffectedPackage.id).limit(1)) is None  # they affect no package
    again = ingest(db_session, NVD_SAMPLE)
    assert again.unchanged == 112


@pytest.mark.parametrize(
    ("cve", "package", "version", "expected"),
    [
        ("CVE-2005-2541", "tar", "1.34+dfsg-1.2+deb12u1", "nvd (primary) v2.0"),  # NVD analysed it (v2)
        ("CVE-2024-10524", "wget", "1.21.3-1+b2", "nvd (secondary: reefs@jfrog.com) v3.1"),  # the CNA only
    ],
)
def test_a_debian_finding_without_a_vector_takes_nvds(
    db_session: Session, tmp_path: Path, cve: str, package: str, version: str, expected: str
) -> None:
    need_sample()
    year = cve.split("-")[1]
    debian = json.loads((DEBIAN_CVE / year / f"{cve}.json").read_text())
    assert not debian.get("severity")  # Debian carries no vector: Unscored without NVD
    write_feed(tmp_path / "debian", debian)
    ingest(db_session, tmp_path / "debian")
    assert findings(db_session, deb(package, version))[(cve, package)].score is None

    nvd_dir = tmp_path / "nvd"
    nvd_dir.mkdir()
    shutil.copy(NVD_SAMPLE / f"{cve}.json", nvd_dir)
    ingest(db_session, nvd_dir)
    finding = findings(db_session, deb(package, version))[(cve, package)]
    assert finding.score is not None and finding.vector and finding.cvss_version in ("v2", "v3", "v4")
    assert (finding.score_source, finding.score_record) == (expected, f"NVD-{cve}")
    metrics = json.loads((NVD_SAMPLE / f"{cve}.json").read_text())["metrics"]
    vectors = {m["cvssData"]["vectorString"] for ms in metrics.values() for m in ms}
    assert finding.vector in vectors


# ---- the order of preference ---------------------------------------------------------------------------


def test_own_vector_then_nvd_primary_then_secondary(db_session: Session, tmp_path: Path) -> None:
    feeds = tmp_path / "feeds"
    write_feed(
        feeds,
        osv_record("CVE-2030-0001", "zlib", vector=V3_LOW),  # Debian's own vector
        osv_record("CVE-2030-0002", "zlib", vector=None),  # none: NVD's Primary wins over its Secondary
        osv_record("CVE-2030-0003", "zlib", vector=None),  # none: NVD's Secondary only
        osv_record("CVE-2030-0004", "zlib", vector=None),  # nobody scores it
    )
    (feeds / "nvd.json").write_text(
        json.dumps(
            {
                "resultsPerPage": 3,
                "totalResults": 3,
                "vulnerabilities": [
                    {"cve": nvd_record("CVE-2030-0001", ("cvssMetricV31", V3_HIGH, "Primary"))},
                    {
                        "cve": nvd_record(
                            "CVE-2030-0002",
                            ("cvssMetricV31", V3_HIGH, "Secondary"),
                            ("cvssMetricV2", "AV:N/AC:L/Au:N/C:P/I:N/A:N", "Primary"),
                            ("cvssMetricV31", V3_MID, "Primary"),
                        )
                    },
                    {
                        "cve": nvd_record(
                            "CVE-2030-0003",
                            (
                                "cvssMetricV40",
                                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                                "Secondary",
                            ),
                        )
                    },
                ],
            }
        )
    )
    ingest(db_session, feeds)
    found = findings(db_session, deb("zlib1g", "1:1.2.13.dfsg-1", "zlib"))
    own = found[("CVE-2030-0001", "zlib1g")]
    assert (own.score, own.vector, own.score_source, own.score_record) == (
        1.8,
        V3_LOW,
        "debian v3.1",
        "CVE-2030-0001",
    )
    primary = found[("CVE-2030-0002", "zlib1g")]
    assert (primary.vector, primary.cvss_version) == (V3_MID, "v3")  # Primary v3 before Primary v2/Secondary
    assert (primary.score_source, primary.score_record) == ("nvd (primary) v3.1", "NVD-CVE-2030-0002")
    secondary = found[("CVE-2030-0003", "zlib1g")]
    assert secondary.cvss_version == "v4"
    assert secondary.score_source == "nvd (secondary: cna@example.org) v4.0"
    assert secondary.score_record == "NVD-CVE-2030-0003"
    nobody = found[("CVE-2030-0004", "zlib1g")]
    assert (nobody.score, nobody.score_source, nobody.score_record) == (None, None, None)
    assert str(nobody.severity) == "Unscored"


def ghsa(ghsa_id: str, cve: str, package: str, vector: str | None) -> dict:
    """A GitHub-reviewed advisory as github/advisory-database publishes it (OSV 1.4)."""
    return {
        "schema_version": "1.4.0",
        "id": ghsa_id,
        "modified": "2024-02-01T00:00:00Z",
        "published": "2024-01-01T00:00:00Z",
        "aliases": [cve],
        "summary": f"{package} flaw",
        "details": "...",
        "severity": [{"type": "CVSS_V3", "score": vector}] if vector else [],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "9.0"}]}],
            }
        ],
        "database_specific": {"github_reviewed": True, "severity": "HIGH"},
    }


def pysec(pysec_id: str, cve: str, ghsa_id: str, package: str) -> dict:
    return {
        "id": pysec_id,
        "modified": "2024-02-01T00:00:00Z",
        "aliases": [cve, ghsa_id],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "9.0"}]}],
            }
        ],
    }


def test_github_advisories_are_a_secondary_source(db_session: Session, tmp_path: Path) -> None:
    # The advisory-database repository's layout: advisories/github-reviewed/YYYY/MM/GHSA-.../GHSA-....json
    repo = tmp_path / "advisory-database"
    for ghsa_id, cve, package, vector in (
        ("GHSA-aaaa-bbbb-cccc", "CVE-2030-1001", "alpha", V3_MID),
        ("GHSA-dddd-eeee-ffff", "CVE-2030-1002", "beta", V3_LOW),
    ):
        folder = repo / "advisories" / "github-reviewed" / "2024" / "01" / ghsa_id
        folder.mkdir(parents=True)
        (folder / f"{ghsa_id}.json").write_text(json.dumps(ghsa(ghsa_id, cve, package, vector)))
    pypa = write_feed(
        tmp_path / "pypa",
        pysec("PYSEC-2030-1", "CVE-2030-1001", "GHSA-aaaa-bbbb-cccc", "alpha"),
        pysec("PYSEC-2030-2", "CVE-2030-1002", "GHSA-dddd-eeee-ffff", "beta"),
    )
    ingest(db_session, pypa)
    report = ingest(db_session, repo, feed="ghsa")
    assert report.errors == [] and report.added == 2
    nvd_feed = write_feed(
        tmp_path / "nvd", nvd_record("CVE-2030-1002", ("cvssMetricV31", V3_HIGH, "Primary"))
    )
    ingest(db_session, nvd_feed)

    components = [
        Component(
            name, "1.0", "PyPI", f"pkg:pypi/{name}@1.0", BASE, f"site-packages/{name}.dist-info/METADATA"
        )
        for name in ("alpha", "beta")
    ]
    found = {f.component.name: f for f in Matcher(db_session).match(components, None)}
    # alpha: the GitHub advisory matched the package itself, so its vector is the finding's own.
    assert (found["alpha"].id, found["alpha"].vector) == ("CVE-2030-1001", V3_MID)
    assert (found["alpha"].score_source, found["alpha"].score_record) == ("ghsa v3.1", "GHSA-aaaa-bbbb-cccc")
    # beta: same, the ecosystem's own vector is preferred to NVD's Primary one.
    assert found["beta"].vector == V3_LOW
    # Without the GitHub records the PYSEC ones borrow: NVD's Primary score first.
    db_session.query(AffectedPackage).filter(AffectedPackage.advisory_id.like("GHSA-%")).delete()
    found = {f.component.name: f for f in Matcher(db_session).match(components, None)}
    assert found["beta"].vector == V3_HIGH
    assert (found["beta"].score_source, found["beta"].score_record) == (
        "nvd (primary) v3.1",
        "NVD-CVE-2030-1002",
    )
    # alpha: no NVD record: GitHub's advisory lends its vector (a secondary source).
    assert (found["alpha"].vector, found["alpha"].score_record) == (V3_MID, "GHSA-aaaa-bbbb-cccc")
    assert found["alpha"].score_source == "ghsa v3.1"  # the lender's feed, not the borrower's (pypa)


def test_a_rejected_cve_lends_nothing(db_session: Session, tmp_path: Path) -> None:
    rejected = nvd_record("CVE-2030-2001", ("cvssMetricV31", V3_HIGH, "Primary"))
    rejected["vulnStatus"] = "Rejected"
    ingest(db_session, write_feed(tmp_path / "debian", osv_record("CVE-2030-2001", "zlib", vector=None)))
    ingest(db_session, write_feed(tmp_path / "nvd", rejected))
    assert db_session.get(Advisory, "NVD-CVE-2030-2001").withdrawn is not None
    assert findings(db_session, deb("zlib1g", "1", "zlib"))[("CVE-2030-2001", "zlib1g")].score is None


# ---- the API ------------------------------------------------------------------------------------------


def test_fetch_pages_windows_rate_limit_and_retries() -> None:
    need_sample()
    records = [json.loads(p.read_text()) for p in sorted(NVD_SAMPLE.glob("CVE-*.json"))[:5]]
    seen: list[httpx.Request] = []
    refused = {"done": False}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if not refused["done"]:
            refused["done"] = True
            return httpx.Response(403)  # NVD's answer to a client over its rate
        start = int(request.url.params["startIndex"])
        page = records[start : start + 2]
        return httpx.Response(
            200, json={"totalResults": len(records), "vulnerabilities": [{"cve": r} for r in page]}
        )

    sleeps: list[float] = []
    now = dt.datetime(2024, 6, 1)
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        pages = list(nvd.fetch(client, dt.datetime(2024, 1, 1), api_key="k", now=now, sleep=sleeps.append))
    # 152 days: two windows of at most 120 days; the first window's pages, then the second's.
    assert [len(items) for items, _ in pages] == [2, 2, 1, 2, 2, 1]
    assert [end for _, end in pages] == [None, None, dt.datetime(2024, 4, 30), None, None, now]
    assert all(r.headers["apiKey"] == "k" for r in seen)
    assert seen[1].url.params["lastModStartDate"] == "2024-01-01T00:00:00.000+00:00"
    assert seen[1].url.params["lastModEndDate"] == "2024-04-30T00:00:00.000+00:00"
    assert sleeps[0] == pytest.approx(3.0) and all(s == pytest.approx(0.6) for s in sleeps[1:])


def test_vulndb_update_nvd_resumes_from_the_last_complete_window(fresh_database_url: str) -> None:
    from dockyard.cli.vulndb import NVD_CURSOR, update_nvd
    from dockyard.db import make_engine, make_session_factory, migrate
    from dockyard.scanning.models import FeedState

    need_sample()
    records = [json.loads(p.read_text()) for p in sorted(NVD_SAMPLE.glob("CVE-*.json"))[:3]]
    asked: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url)
        return httpx.Response(200, json={"totalResults": 3, "vulnerabilities": [{"cve": r} for r in records]})

    engine = make_engine(fresh_database_url)
    migrate(engine)
    sessions = make_session_factory(engine)
    try:
        with httpx.Client(transport=httpx.MockTransport(handler)) as client:
            report, _ = update_nvd(sessions, None, client=client)
            assert (report.records, report.added) == (3, 3)
            assert "lastModStartDate" not in asked[0].params  # the first read takes everything
            with sessions() as s:
                cursor = s.get(FeedState, NVD_CURSOR).last_modified
                assert s.get(Advisory, f"NVD-{records[0]['id']}") is not None
            report, _ = update_nvd(sessions, None, client=client)
            assert report.unchanged == 3
            assert asked[1].params["lastModStartDate"].startswith(cursor.strftime("%Y-%m-%dT%H:%M:%S"))
    finally:
        engine.dispose()
