"""Ingesting the real feeds in /work/shared/vulndata (copied in small subsets to tmp_path for speed)."""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, func, insert, inspect, select
from sqlalchemy.orm import Session
from tests.support.vulndata import find_vulndata

from dockyard.db import downgrade, make_engine, migrate
from dockyard.models import metadata
from dockyard.scanning.matcher import Matcher, match
from dockyard.scanning.models import Advisory, AffectedPackage, FeedState
from dockyard.scanning.types import Component
from dockyard.scanning.vulndb import ingest
from dockyard.scanning.vulnfeeds import normalize_name

VULNDATA = find_vulndata()
pytestmark = pytest.mark.skipif(not VULNDATA.is_dir(), reason=f"no vulnerability data at {VULNDATA}")


def feed(tmp_path: Path, *files: str, name: str = "feed") -> Path:
    """A feed directory holding copies of the given vulndata files (keeping their relative paths)."""
    root = tmp_path / name
    for rel in files:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(VULNDATA / rel, target)
    return root


def rows(session: Session, advisory_id: str) -> list[AffectedPackage]:
    return list(session.scalars(select(AffectedPackage).where(AffectedPackage.advisory_id == advisory_id)))


def debian12(session: Session, advisory_id: str, name: str) -> AffectedPackage:
    (row,) = [r for r in rows(session, advisory_id) if r.ecosystem == "Debian:12" and r.name == name]
    return row


DEBIAN = (
    "debian-osv/CVE/2023/CVE-2023-4911.json",
    "debian-osv/DSA/2023/DSA-5514-1.json",
    "debian-osv/CVE/2023/CVE-2023-45853.json",
)


def test_debian_records_are_stored_with_their_ranges_and_scores(db_session: Session, tmp_path: Path) -> None:
    report = ingest(db_session, feed(tmp_path, *DEBIAN), feed="debian-osv")
    assert (report.files, report.added, report.updated, report.errors) == (3, 3, 0, [])

    cve = db_session.get(Advisory, "CVE-2023-4911")
    assert cve.source == "debian-osv"
    assert cve.severity == [{"type": "CVSS_V3", "vector": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"}]
    assert (cve.score, cve.cvss_version, cve.score_from) == (7.8, "v3", None)
    assert "Looney" in cve.details or "GLIBC_TUNABLES" in cve.details
    glibc = debian12(db_session, "CVE-2023-4911", "glibc")
    assert glibc.ranges == [
        {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}]}
    ]

    dsa = db_session.get(Advisory, "DSA-5514-1")
    assert dsa.related == ["CVE-2023-4911"] and dsa.aliases == []
    assert dsa.summary == "glibc - security update"

    zlib = debian12(db_session, "CVE-2023-45853", "zlib")  # no fix in bookworm
    assert not any("fixed" in e for r in zlib.ranges for e in r["events"])

    state = db_session.get(FeedState, "debian-osv")
    assert state.records == 3 and state.last_modified is not None


def test_feed_names_default_to_the_records_ecosystems(db_session: Session, tmp_path: Path) -> None:
    ingest(db_session, feed(tmp_path, *DEBIAN, "go-vulndb/osv/GO-2023-2102.json"))
    sources = {
        vid: db_session.get(Advisory, vid).source
        for vid in ("CVE-2023-4911", "DSA-5514-1", "CVE-2023-45853", "GO-2023-2102")
    }
    # osv.dev's converted CVE records carry Alpine and Debian entries alike.
    assert sources == {
        "CVE-2023-4911": "osv:Debian",
        "DSA-5514-1": "osv:Debian",
        "CVE-2023-45853": "osv:Alpine+Debian",
        "GO-2023-2102": "osv:Go",
    }


def test_reingest_changes_nothing(db_session: Session, tmp_path: Path) -> None:
    source = feed(tmp_path, *DEBIAN, "go-vulndb/osv/GO-2023-2102.json")
    first = ingest(db_session, source)
    second = ingest(db_session, source)
    assert first.added == 4
    assert (second.added, second.updated, second.withdrawn, second.unchanged) == (0, 0, 0, 4)


def _rewrite(path: Path, **changes: object) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def test_newer_records_replace_and_older_ones_are_ignored(db_session: Session, tmp_path: Path) -> None:
    source = feed(tmp_path, "debian-osv/CVE/2023/CVE-2023-4911.json")
    ingest(db_session, source)
    count = len(rows(db_session, "CVE-2023-4911"))

    path = source / "debian-osv/CVE/2023/CVE-2023-4911.json"
    doc = json.loads(path.read_text())
    for entry in doc["affected"]:
        if entry.get("package", {}).get("ecosystem") == "Debian:12":
            entry["ranges"][0]["events"][1]["fixed"] = "2.36-9+deb12u9"
    doc["modified"] = "2030-01-01T00:00:00Z"
    path.write_text(json.dumps(doc))
    report = ingest(db_session, source)
    assert (report.updated, report.added) == (1, 0)
    assert debian12(db_session, "CVE-2023-4911", "glibc").ranges[0]["events"][1] == {
        "fixed": "2.36-9+deb12u9"
    }
    assert len(rows(db_session, "CVE-2023-4911")) == count  # replaced, not appended

    _rewrite(path, modified="2020-01-01T00:00:00Z", details="an older copy")
    report = ingest(db_session, source)
    assert (report.updated, report.unchanged) == (0, 1)
    assert db_session.get(Advisory, "CVE-2023-4911").details != "an older copy"


def test_withdrawn_records_are_removed_on_reingest(db_session: Session, tmp_path: Path) -> None:
    real = feed(tmp_path, "go-vulndb/osv/GO-2022-0617.json")
    doc = json.loads((real / "go-vulndb/osv/GO-2022-0617.json").read_text())
    assert doc["withdrawn"]  # go-vulndb withdrew it (false positives)
    live = tmp_path / "live" / "GO-2022-0617.json"
    live.parent.mkdir()
    live.write_text(json.dumps({k: v for k, v in doc.items() if k != "withdrawn"}))

    assert ingest(db_session, live.parent).added == 1
    assert rows(db_session, "GO-2022-0617")
    report = ingest(db_session, real)
    assert report.withdrawn == 1
    advisory = db_session.get(Advisory, "GO-2022-0617")
    assert advisory.withdrawn is not None
    assert rows(db_session, "GO-2022-0617") == []
    assert db_session.get(FeedState, "osv:Go").records == 0
    component = Component("k8s.io/kubernetes", "v1.20.0", "Go", "", "sha256:l", "bin/kubelet")
    assert match(db_session, [component], None) == []
    # An older live copy met later cannot bring it back.
    assert ingest(db_session, live.parent).unchanged == 1
    assert rows(db_session, "GO-2022-0617") == []


def test_malformed_input_is_reported_and_skipped_whole(db_session: Session, tmp_path: Path) -> None:
    source = feed(tmp_path, "pypa-advisory-database/vulns/urllib3/PYSEC-2021-108.yaml")
    (source / "broken.json").write_text('{"id": "CVE-2099-1", "affected": [')
    good = {
        "package": {"ecosystem": "PyPI", "name": "x"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0"}]}],
    }
    two_keys = {
        "id": "CVE-2099-2",
        "modified": "2024-01-01T00:00:00Z",
        "affected": [
            {**good, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "1.0"}]}]}
        ],
    }
    half = {
        "id": "CVE-2099-3",
        "modified": "2024-01-01T00:00:00Z",
        "affected": [good, {**good, "ranges": [{"type": "BOGUS", "events": [{"introduced": "0"}]}]}],
    }
    bad_time = {"id": "CVE-2099-4", "modified": "yesterday", "affected": [good]}
    for name, doc in (("two-keys.json", two_keys), ("half.json", half), ("bad-time.json", bad_time)):
        (source / name).write_text(json.dumps(doc))
    (source / "README.json").write_text(json.dumps({"title": "not an advisory"}))

    report = ingest(db_session, source)
    assert report.added == 1
    assert sorted(f for f, _ in report.errors) == [
        "bad-time.json",
        "broken.json",
        "half.json",
        "two-keys.json",
    ]
    assert report.skipped == ["README.json"]
    for vid in ("CVE-2099-1", "CVE-2099-2", "CVE-2099-3", "CVE-2099-4"):
        assert db_session.get(Advisory, vid) is None
    assert db_session.scalar(select(func.count()).select_from(AffectedPackage)) == len(
        rows(db_session, "PYSEC-2021-108")
    )


def test_a_record_the_database_refuses_leaves_the_rest_of_its_batch(
    db_session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dockyard.scanning import vulndb

    real_row = vulndb._row

    def row(record, digest):  # a NOT NULL column left empty for one record only
        values = real_row(record, digest)
        return {**values, "digest": None} if record.id == "PYSEC-2021-108" else values

    monkeypatch.setattr(vulndb, "_row", row)
    source = feed(
        tmp_path,
        *(
            f"pypa-advisory-database/vulns/urllib3/{n}.yaml"
            for n in ("PYSEC-2021-108", "PYSEC-2021-59", "PYSEC-2023-192")
        ),
    )
    report = ingest(db_session, source)
    assert report.added == 2
    assert [f for f, _ in report.errors] == ["pypa-advisory-database/vulns/urllib3/PYSEC-2021-108.yaml"]
    assert db_session.get(Advisory, "PYSEC-2021-108") is None and rows(db_session, "PYSEC-2021-108") == []
    assert rows(db_session, "PYSEC-2023-192")


def test_alpine_secdb_one_advisory_per_cve_one_row_per_release_and_origin(
    db_session: Session, tmp_path: Path
) -> None:
    source = feed(tmp_path, "alpine-secdb/3.19/main.json")
    report = ingest(db_session, source)
    assert report.errors == [] and report.added > 1000

    openssl = db_session.get(Advisory, "ALPINE-CVE-2023-5678")
    assert openssl.aliases == ["CVE-2023-5678"] and openssl.source == "alpine-secdb"
    (row,) = rows(db_session, "ALPINE-CVE-2023-5678")
    assert (row.ecosystem, row.name) == ("Alpine:v3.19", "openssl")
    assert row.ranges == [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.1.4-r1"}]}]
    # "0" means never affected: zlib lists CVE-2023-45853 under "0" in v3.19.
    assert db_session.get(Advisory, "ALPINE-CVE-2023-45853") is None
    # "CVE-2020-11740 CVE-2020-11741 XSA-313": two flaws, one line; the shared XSA is only related.
    for vid in ("ALPINE-CVE-2020-11740", "ALPINE-CVE-2020-11741"):
        xen = db_session.get(Advisory, vid)
        assert xen.aliases == [vid.removeprefix("ALPINE-")] and xen.related == ["XSA-313"]

    older = ingest(db_session, feed(tmp_path, "alpine-secdb/3.18/main.json", name="older"))
    assert older.errors == []
    releases = {r.ecosystem for r in rows(db_session, "ALPINE-CVE-2023-5678")}
    assert releases == {"Alpine:v3.18", "Alpine:v3.19"}  # v3.18 added, v3.19 kept

    again = ingest(db_session, source)
    assert (again.added, again.updated, again.withdrawn) == (0, 0, 0)
    assert {r.ecosystem for r in rows(db_session, "ALPINE-CVE-2023-5678")} == releases


def test_nodejs_legacy_npm_advisories(db_session: Session, tmp_path: Path) -> None:
    npm = "nodejs-security-wg/vuln/npm"
    source = feed(
        tmp_path,
        f"{npm}/368.json",
        f"{npm}/493.json",
        f"{npm}/516.json",
        f"{npm}/index.json",
        "nodejs-security-wg/vuln/core/1.json",
    )
    report = ingest(db_session, source)
    assert (report.added, report.errors) == (4, [])  # three npm advisories and core/1.json (NSWG-COR-1)
    assert report.skipped == [f"{npm}/index.json"]

    advisory = db_session.get(Advisory, "NSWG-ECO-493")
    assert advisory.aliases == ["CVE-2018-16487"] and advisory.source == "npm-legacy"
    # The file says cvss_score 7.0; its own vector scores 5.7, and only the vector is trusted.
    assert json.loads((source / f"{npm}/493.json").read_text())["cvss_score"] == 7.0
    assert (advisory.score, advisory.cvss_version) == (5.7, "v3")
    (row,) = rows(db_session, "NSWG-ECO-493")
    assert (row.ecosystem, row.name) == ("npm", "lodash")
    assert row.ranges == [{"type": "NPM_RANGE", "expression": "<4.17.11", "patched": ">=4.17.11"}]


def test_nodejs_advisories_under_their_own_names_replace_the_old_ones(
    db_session: Session, tmp_path: Path
) -> None:
    """The WG names its records NSWG-ECO-<n> and NSWG-COR-<n>; a database filled before held NPM-<n> and
    NODE-<n>: the next ingest of the feed removes those rows, so a package is not reported under both."""
    source = feed(tmp_path, "nodejs-security-wg/vuln/npm/516.json", "nodejs-security-wg/vuln/core/1.json")
    assert ingest(db_session, source).added == 2
    for new, old in (("NSWG-ECO-516", "NPM-516"), ("NSWG-COR-1", "NODE-1")):  # as the old code stored them
        advisory = {c.key: getattr(db_session.get(Advisory, new), c.key) for c in Advisory.__table__.columns}
        affected = [
            {c.key: getattr(r, c.key) for c in AffectedPackage.__table__.columns if c.key != "id"}
            for r in rows(db_session, new)
        ]
        db_session.execute(delete(AffectedPackage).where(AffectedPackage.advisory_id == new))
        db_session.execute(delete(Advisory).where(Advisory.id == new))
        db_session.execute(insert(Advisory), [{**advisory, "id": old}])
        db_session.execute(insert(AffectedPackage), [{**a, "advisory_id": old} for a in affected])
    lodash = Component("lodash", "4.17.15", "npm", "pkg:npm/lodash@4.17.15", "sha256:" + "ab" * 32, "x")
    assert [f.id for f in Matcher(db_session).match([lodash], None)] == ["NPM-516"]

    report = ingest(db_session, source)
    assert (report.added, report.withdrawn, report.errors) == (2, 2, [])
    assert db_session.get(Advisory, "NPM-516") is None and db_session.get(Advisory, "NODE-1") is None
    assert rows(db_session, "NPM-516") == [] and rows(db_session, "NODE-1") == []
    assert [f.id for f in Matcher(db_session).match([lodash], None)] == ["NSWG-ECO-516"]
    assert ingest(db_session, source).unchanged == 2  # and nothing more to remove after that


def test_pypa_yaml_records(db_session: Session, tmp_path: Path) -> None:
    source = feed(
        tmp_path,
        "pypa-advisory-database/vulns/urllib3/PYSEC-2021-108.yaml",
        "pypa-advisory-database/vulns/django/PYSEC-2021-7.yaml",
    )
    assert ingest(db_session, source).added == 2
    advisory = db_session.get(Advisory, "PYSEC-2021-108")
    assert "CVE-2021-33503" in advisory.aliases and advisory.source == "osv:PyPI"
    (row,) = rows(db_session, "PYSEC-2021-108")
    assert row.name == "urllib3"
    assert [r["type"] for r in row.ranges] == ["ECOSYSTEM"]  # the GIT range is dropped
    assert {r.name for r in rows(db_session, "PYSEC-2021-7")} == {"django"}  # "Django" in PEP 503 form


def test_names_are_normalised_per_ecosystem() -> None:
    assert normalize_name("PyPI", "Zope.Interface__x") == "zope-interface-x"
    assert normalize_name("npm", "@Scope/Left-Pad") == "@scope/left-pad"
    assert normalize_name("Go", "github.com/BurntSushi/toml") == "github.com/BurntSushi/toml"
    assert (
        normalize_name("Maven", "org.apache.logging.log4j:log4j-core")
        == "org.apache.logging.log4j:log4j-core"
    )


def test_a_record_without_a_vector_borrows_its_aliases_score(db_session: Session, tmp_path: Path) -> None:
    pip = feed(tmp_path, "pypa-advisory-database/vulns/pip/PYSEC-2020-173.yaml", name="pip")
    ingest(db_session, pip)
    assert db_session.get(Advisory, "PYSEC-2020-173").score is None
    # The same CVE arrives from another feed, with a vector: the PYSEC record takes its score.
    ingest(db_session, feed(tmp_path, "debian-osv/CVE/2020/CVE-2019-20916.json", name="debian"))
    pysec = db_session.get(Advisory, "PYSEC-2020-173")
    db_session.refresh(pysec)
    assert (pysec.score, pysec.cvss_version, pysec.score_from) == (7.5, "v3", "CVE-2019-20916")
    assert pysec.severity == []  # its own record still has no vector


def test_debian_upstream_field_counts_as_an_alias(db_session: Session, tmp_path: Path) -> None:
    (tmp_path / "DEBIAN-CVE-2099-0001.json").write_text(
        json.dumps(
            {
                "id": "DEBIAN-CVE-2099-0001",
                "modified": "2025-03-01T00:00:00Z",
                "upstream": ["CVE-2099-0001"],
                "affected": [
                    {
                        "package": {"ecosystem": "Debian:12", "name": "foo"},
                        "ranges": [
                            {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-2"}]}
                        ],
                    }
                ],
            }
        )
    )
    assert ingest(db_session, tmp_path).added == 1
    advisory = db_session.get(Advisory, "DEBIAN-CVE-2099-0001")
    assert advisory.aliases == ["CVE-2099-0001"] and advisory.source == "osv:Debian"


VULN_TABLES = {"vuln_advisory", "vuln_affected", "vuln_feed_state"}


def test_migration_matches_the_models_and_downgrades(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        migrate(engine)
        assert set(inspect(engine).get_table_names()) >= VULN_TABLES
        indexes = {i["name"] for i in inspect(engine).get_indexes("vuln_affected")}
        assert "ix_vuln_affected_ecosystem_name" in indexes
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            drift = [d for d in compare_metadata(context, metadata) if "vuln_" in repr(d)]
        assert drift == []
        downgrade(engine, "0001")
        assert not VULN_TABLES & set(inspect(engine).get_table_names())
        migrate(engine)
        assert set(inspect(engine).get_table_names()) >= VULN_TABLES
    finally:
        engine.dispose()


GO_FILES = (
    "go-vulndb/osv/GO-2023-2102.json",
    "go-vulndb/osv/GO-2024-2687.json",
    "go-vulndb/osv/GO-2022-0969.json",
)


def _zip(tmp_path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for rel in GO_FILES:
            archive.write(VULNDATA / rel, Path(rel).name)
        archive.writestr("README.txt", "ignored")
    return buffer.getvalue()


def test_zip_archives_like_osv_all_zip(db_session: Session, tmp_path: Path) -> None:
    path = tmp_path / "all.zip"
    path.write_bytes(_zip(tmp_path))
    report = ingest(db_session, path)
    assert (report.files, report.added, report.errors) == (3, 3, [])
    assert {r.name for r in rows(db_session, "GO-2023-2102")} == {"stdlib", "golang.org/x/net"}


def test_urls_are_downloaded_then_read(db_session: Session, tmp_path: Path) -> None:
    body = _zip(tmp_path)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, content=body, headers={"content-type": "application/zip"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        report = ingest(db_session, "https://osv-vulnerabilities.example/Go/all.zip", http_client=client)
    assert seen == ["https://osv-vulnerabilities.example/Go/all.zip"]
    assert report.added == 3


def test_a_missing_source_is_an_error(db_session: Session, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ingest(db_session, tmp_path / "nope")


@pytest.mark.slow
def test_ingest_all_of_vulndata(db_session: Session) -> None:
    """Every feed whole: no record refused, then a second pass that finds nothing to do."""
    started, cpu = time.monotonic(), time.process_time()
    reports = [
        ingest(db_session, VULNDATA / name)
        for name in (
            "debian-osv",
            "alpine-secdb",
            "pypa-advisory-database",
            "go-vulndb",
            "nodejs-security-wg",
        )
    ]
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    for report in reports:
        print(report)
        assert report.errors == []
    assert reports[0].added == 2734  # 2321 CVE + 413 DSA
    assert reports[2].added + reports[2].withdrawn == 2661
    assert reports[3].added + reports[3].withdrawn == 4291
    assert reports[4].added == 467 + 171 and reports[4].skipped == ["vuln/npm/index.json"]  # npm's index
    print(f"all of vulndata: {elapsed:.1f}s wall, {cpu:.1f}s CPU")
    assert cpu < 60

    again = ingest(db_session, VULNDATA / "go-vulndb")
    assert (again.added, again.updated, again.unchanged) == (0, 0, 4291)
