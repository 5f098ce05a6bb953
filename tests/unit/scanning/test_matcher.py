"""Matching components against real advisories: OSV range semantics, source-package matching for distros,
one finding per vulnerability across feeds, and the speed of rescanning many images."""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from tests.support.vulndata import find_vulndata

from dockyard.scanning.matcher import Finding, Matcher, is_affected, match
from dockyard.scanning.models import AffectedPackage
from dockyard.scanning.severity import Severity
from dockyard.scanning.types import Component, OSInfo
from dockyard.scanning.versions import parse
from dockyard.scanning.vulndb import ingest

VULNDATA = find_vulndata()
DEBIAN_12 = OSInfo("debian", "12.4").osv_ecosystem
ALPINE_319 = OSInfo("alpine", "3.19.1").osv_ecosystem


def rng(*events: dict[str, str], kind: str = "ECOSYSTEM") -> dict:
    return {"type": kind, "events": list(events)}


def pkg(*ranges: dict, versions: tuple[str, ...] = ()) -> dict:
    return {"ranges": list(ranges), "versions": list(versions)}


# ---- OSV range semantics (no database) --------------------------------------------------------------------


def test_introduced_and_fixed() -> None:
    entry = pkg(rng({"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}))
    assert is_affected("Debian:12", "2.36-9+deb12u2", entry) == (True, "2.36-9+deb12u3")
    assert is_affected("Debian:12", "2.36-9+deb12u3", entry) == (False, None)
    assert is_affected("Debian:12", "1:2.0-1", entry) == (False, None)  # an epoch outranks everything


def test_events_are_sorted_before_they_are_read() -> None:
    # PYSEC-2023-192 (urllib3) lists its second interval first.
    entry = pkg(rng({"introduced": "2.0.0"}, {"fixed": "2.0.6"}, {"introduced": "0"}, {"fixed": "1.26.17"}))
    assert is_affected("PyPI", "1.26.4", entry) == (True, "1.26.17")
    assert is_affected("PyPI", "2.0.5", entry) == (True, "2.0.6")
    for safe in ("1.26.17", "1.99", "2.0.6", "3.0"):
        assert is_affected("PyPI", safe, entry) == (False, None)


def test_last_affected_and_limit() -> None:
    entry = pkg(rng({"introduced": "1.0"}, {"last_affected": "1.5"}))
    assert is_affected("PyPI", "1.5", entry) == (True, None)  # affected, and no fixed release is known
    assert is_affected("PyPI", "1.5.1", entry) == (False, None)
    assert is_affected("PyPI", "0.9", entry) == (False, None)
    limited = pkg(rng({"introduced": "0"}, {"limit": "2.0"}))
    assert is_affected("PyPI", "1.9", limited) == (True, None)
    assert is_affected("PyPI", "2.0", limited) == (False, None)


def test_introduced_zero_without_a_fix_is_unfixed() -> None:
    assert is_affected("Debian:12", "1:1.2.13.dfsg-1", pkg(rng({"introduced": "0"}))) == (True, None)


def test_a_zero_fix_means_never_affected() -> None:
    # osv.dev's form of Alpine's "0" (not affected): introduced 0, fixed 0.
    assert is_affected("Alpine:v3.19", "1.3-r2", pkg(rng({"introduced": "0"}, {"fixed": "0"}))) == (
        False,
        None,
    )


def test_ranges_are_ored_and_the_fix_must_clear_all_of_them() -> None:
    entry = pkg(
        rng({"introduced": "0"}, {"fixed": "3.1.4-r1"}), rng({"introduced": "0"}, {"fixed": "3.1.4-r3"})
    )
    assert is_affected("Alpine:v3.19", "3.1.4-r0", entry) == (True, "3.1.4-r3")
    assert is_affected("Alpine:v3.19", "3.1.4-r2", entry) == (True, "3.1.4-r3")
    assert is_affected("Alpine:v3.19", "3.1.4-r3", entry) == (False, None)
    two = pkg(rng({"introduced": "1.0"}, {"fixed": "1.2"}), rng({"introduced": "2.0"}, {"fixed": "2.3"}))
    assert is_affected("PyPI", "2.1", two) == (True, "2.3")
    assert is_affected("PyPI", "1.5", two) == (False, None)


def test_explicit_versions() -> None:
    entry = pkg(versions=("0.1", "1.0", "1.0.1"))
    assert is_affected("PyPI", "1.0.1", entry) == (True, None)
    assert is_affected("PyPI", "1.0.0", entry) == (True, None)  # PEP 440: 1.0.0 is 1.0
    assert is_affected("PyPI", "1.0.2", entry) == (False, None)
    assert is_affected("Go", "v1.2.3", pkg(versions=("1.2.3",))) == (True, None)


def test_git_ranges_are_ignored() -> None:
    entry = pkg(rng({"introduced": "0"}, {"fixed": "1dd69c5c5982fae7c87a620d487c2ebf7a6b436b"}, kind="GIT"))
    assert is_affected("PyPI", "1.0", entry) == (False, None)


def test_semver_ranges_with_go_versions() -> None:
    entry = pkg(
        rng(
            {"introduced": "0"},
            {"fixed": "1.20.10"},
            {"introduced": "1.21.0-0"},
            {"fixed": "1.21.3"},
            kind="SEMVER",
        )
    )
    assert is_affected("Go", "go1.21.1", entry) == (True, "1.21.3")
    assert is_affected("Go", "v1.20.9", entry) == (True, "1.20.10")
    assert is_affected("Go", "1.20.10", entry) == (False, None)
    assert is_affected(
        "Go",
        "v0.0.0-20230101000000-abcdefabcdef",
        pkg(rng({"introduced": "0"}, {"fixed": "0.17.0"}, kind="SEMVER")),
    ) == (True, "0.17.0")


def test_npm_range_type() -> None:
    entry = pkg({"type": "NPM_RANGE", "expression": "<4.17.11", "patched": ">=4.17.11"})
    assert is_affected("npm", "4.17.4", entry) == (True, "4.17.11")
    assert is_affected("npm", "4.17.11", entry) == (False, None)
    assert is_affected("npm", "not-semver", entry) == (False, None)


def test_accepts_stored_rows() -> None:
    row = AffectedPackage(
        ecosystem="PyPI", name="x", ranges=[rng({"introduced": "0"}, {"fixed": "1.0"})], versions=[]
    )
    assert is_affected("PyPI", "0.9", row) == (True, "1.0")


# ---- real advisories --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vulndb(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """The whole Debian feed plus small subsets of the others, in one transaction rolled back at the end."""
    if not VULNDATA.is_dir():
        pytest.skip(f"no vulnerability data at {VULNDATA}")
    root = tmp_path_factory.mktemp("feeds")
    for rel in (
        "alpine-secdb/3.19/main.json",
        *(f"nodejs-security-wg/vuln/npm/{n}.json" for n in (368, 493, 516)),
        *(f"go-vulndb/osv/{g}.json" for g in ("GO-2023-2102", "GO-2024-2687", "GO-2022-0969")),
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(VULNDATA / rel, root / rel)
    for package in ("urllib3", "django"):
        shutil.copytree(VULNDATA / "pypa-advisory-database/vulns" / package, root / "pypa" / package)
    conn = engine.connect()
    outer = conn.begin()
    session = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    for source in (VULNDATA / "debian-osv", root):
        assert ingest(session, source).errors == []
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        conn.close()


def deb(name: str, version: str, source: str | None = None, source_version: str | None = None) -> Component:
    return Component(
        name,
        version,
        "Debian",
        f"pkg:deb/debian/{name}@{version}",
        "sha256:base",
        "var/lib/dpkg/status",
        source,
        source_version,
    )


def apk(name: str, version: str, origin: str | None = None) -> Component:
    return Component(
        name,
        version,
        "Alpine",
        f"pkg:apk/alpine/{name}@{version}",
        "sha256:base",
        "lib/apk/db/installed",
        origin,
    )


def lang(ecosystem: str, name: str, version: str) -> Component:
    return Component(
        name, version, ecosystem, f"pkg:{ecosystem.lower()}/{name}@{version}", "sha256:app", "app"
    )


def by_id(findings: list[Finding]) -> dict[str, Finding]:
    ids = [f.id for f in findings]
    assert len(ids) == len(set(ids)), "one finding per vulnerability per component"
    return {f.id: f for f in findings}


def test_debian_matches_the_source_package_below_the_fix(vulndb: Session) -> None:
    libc6 = deb("libc6", "2.36-9+deb12u2", "glibc", "2.36-9+deb12u2")
    found = by_id(match(vulndb, [libc6], DEBIAN_12))
    looney = found["CVE-2023-4911"]  # the CVE record and DSA-5514-1 are one finding
    assert looney.advisories == ("CVE-2023-4911", "DSA-5514-1")
    assert "DSA-5514-1" in looney.aliases
    assert (looney.fixed_version, looney.score, looney.severity) == ("2.36-9+deb12u3", 7.8, Severity.CRITICAL)
    assert looney.vector == "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"
    assert (looney.component, looney.package, looney.ecosystem) == (libc6, "glibc", "Debian:12")
    # DSA-5611-1 fixed three CVEs at once: it joins each of their findings.
    for cve in ("CVE-2023-6246", "CVE-2023-6779", "CVE-2023-6780"):
        assert "DSA-5611-1" in found[cve].advisories and found[cve].fixed_version == "2.36-9+deb12u4"

    fixed = by_id(match(vulndb, [deb("libc6", "2.36-9+deb12u3", "glibc", "2.36-9+deb12u3")], DEBIAN_12))
    assert "CVE-2023-4911" not in fixed and "CVE-2023-6246" in fixed


def test_binary_version_is_used_when_the_source_version_is_the_same(vulndb: Session) -> None:
    found = by_id(match(vulndb, [deb("libcurl4", "7.88.1-10+deb12u3", "curl")], DEBIAN_12))
    assert found["CVE-2023-38545"].fixed_version == "7.88.1-10+deb12u4"
    assert found["CVE-2023-38545"].advisories == ("CVE-2023-38545", "DSA-5523-1")
    assert found["CVE-2023-38546"].advisories == ("CVE-2023-38546", "DSA-5523-1")  # one DSA, two CVEs
    assert "CVE-2023-38545" not in by_id(
        match(vulndb, [deb("libcurl4", "7.88.1-10+deb12u4", "curl")], DEBIAN_12)
    )


def test_unfixed_debian_entries_have_no_fix_version(vulndb: Session) -> None:
    found = by_id(match(vulndb, [deb("zlib1g", "1:1.2.13.dfsg-1", "zlib")], DEBIAN_12))
    zlib = found["CVE-2023-45853"]
    assert zlib.fixed_version is None
    assert (zlib.score, zlib.severity) == (9.8, Severity.CRITICAL)


def test_a_dsa_whose_cves_have_no_records_stands_alone(vulndb: Session) -> None:
    found = by_id(match(vulndb, [deb("linux-image-amd64", "6.1.67-1", "linux")], DEBIAN_12))
    assert found["DSA-5593-1"].fixed_version == "6.1.69-1"
    assert "DSA-5593-1" not in by_id(
        match(vulndb, [deb("linux-image-amd64", "6.1.69-1", "linux")], DEBIAN_12)
    )


def test_urllib3_and_django(vulndb: Session) -> None:
    found = by_id(match(vulndb, [lang("PyPI", "urllib3", "1.26.4")], None))
    assert {f.advisories for f in found.values()} >= {
        ("PYSEC-2021-108",),
        ("PYSEC-2023-192",),
        ("PYSEC-2023-212",),
    }
    assert found["CVE-2021-33503"].fixed_version == "1.26.5"
    assert found["CVE-2023-43804"].fixed_version == "1.26.17"
    assert "CVE-2021-28363" not in found  # PYSEC-2021-59 was fixed in 1.26.4 itself
    assert "CVE-2021-33503" not in by_id(match(vulndb, [lang("PyPI", "urllib3", "1.26.5")], None))

    django = by_id(match(vulndb, [lang("PyPI", "Django", "3.2")], None))  # PEP 503 name lookup
    assert django["CVE-2021-31542"].advisories == ("PYSEC-2021-7",)
    assert django["CVE-2021-31542"].fixed_version == "3.2.1"
    assert "CVE-2021-31542" not in by_id(match(vulndb, [lang("PyPI", "django", "3.2.1")], None))


def test_alpine_matches_the_origin_and_merges_feeds(vulndb: Session) -> None:
    libssl = apk("libssl3", "3.1.4-r0", "openssl")
    found = by_id(match(vulndb, [libssl], ALPINE_319))
    finding = found["CVE-2023-5678"]
    assert finding.advisories == ("ALPINE-CVE-2023-5678", "CVE-2023-5678")  # secdb and the OSV CVE record
    assert finding.fixed_version == "3.1.4-r1" and finding.package == "openssl"
    assert finding.score == 5.3  # secdb has no scores; the CVE record's vector is used
    assert "CVE-2023-5678" not in by_id(match(vulndb, [apk("libssl3", "3.1.4-r1", "openssl")], ALPINE_319))
    assert match(vulndb, [apk("libssl3", "3.1.4-r0")], ALPINE_319) == []  # no origin: not the advisory's name
    # zlib: "0" in secdb and fixed "0" in OSV both say v3.19 was never affected by CVE-2023-45853.
    assert "CVE-2023-45853" not in by_id(match(vulndb, [apk("zlib", "1.3-r2", "zlib")], ALPINE_319))


def test_npm_legacy_advisories_via_semver_ranges(vulndb: Session) -> None:
    found = by_id(match(vulndb, [lang("npm", "lodash", "4.17.4")], None))
    assert (found["CVE-2018-3721"].fixed_version, found["CVE-2018-16487"].fixed_version) == (
        "4.17.5",
        "4.17.11",
    )
    assert found["CVE-2018-16487"].score == 5.7
    assert set(by_id(match(vulndb, [lang("npm", "lodash", "4.17.15")], None))) == {"NSWG-ECO-516"}
    assert match(vulndb, [lang("npm", "Lodash", "4.17.19")], None) == []


def test_go_modules_and_the_standard_library(vulndb: Session) -> None:
    found = by_id(match(vulndb, [lang("Go", "golang.org/x/net", "v0.16.0")], None))
    assert found["CVE-2023-39325"].advisories == ("GO-2023-2102",)
    assert found["CVE-2023-39325"].fixed_version == "0.17.0"
    pseudo = by_id(
        match(vulndb, [lang("Go", "golang.org/x/net", "v0.0.0-20230901000000-abcdefabcdef")], None)
    )
    assert "CVE-2023-39325" in pseudo
    assert "CVE-2023-39325" not in by_id(match(vulndb, [lang("Go", "golang.org/x/net", "v0.17.0")], None))
    stdlib = by_id(match(vulndb, [lang("Go", "stdlib", "go1.21.1")], None))
    assert stdlib["CVE-2023-39325"].fixed_version == "1.21.3"
    assert "CVE-2022-27664" not in stdlib  # fixed in 1.18.6, long before 1.21
    assert "CVE-2023-39325" not in by_id(match(vulndb, [lang("Go", "stdlib", "go1.20.10")], None))


def test_os_packages_need_a_known_release(vulndb: Session) -> None:
    components = [deb("libc6", "2.36-9+deb12u2", "glibc"), lang("PyPI", "urllib3", "1.26.4")]
    assert {f.component.name for f in match(vulndb, components, None)} == {"urllib3"}
    assert {f.component.name for f in match(vulndb, components, "Debian:11")} >= {"urllib3"}


def test_aliased_records_from_different_feeds_are_one_finding(vulndb: Session, tmp_path: Path) -> None:
    """A PYSEC record and a CVE record for the same PyPI flaw; a newer-style DEBIAN-CVE record (``upstream``)
    next to the old bare-CVE record."""
    affected = [
        {
            "package": {"ecosystem": "PyPI", "name": "urllib3"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.26.5"}]}],
        }
    ]
    cve = {
        "id": "CVE-2021-33503",
        "modified": "2024-01-01T00:00:00Z",
        "affected": affected,
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}],
    }
    debian = {
        "id": "DEBIAN-CVE-2023-4911",
        "upstream": ["CVE-2023-4911"],
        "modified": "2025-03-01T00:00:00Z",
        "affected": [
            {
                "package": {"ecosystem": "Debian:12", "name": "glibc"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}]}
                ],
            }
        ],
    }
    (tmp_path / "cve.json").write_text(json.dumps(cve))
    (tmp_path / "debian.json").write_text(json.dumps(debian))
    savepoint = vulndb.begin_nested()
    try:
        assert ingest(vulndb, tmp_path).added == 2
        found = by_id(match(vulndb, [lang("PyPI", "urllib3", "1.26.4")], None))
        merged = found["CVE-2021-33503"]
        assert merged.advisories == ("CVE-2021-33503", "PYSEC-2021-108")
        assert merged.score == 7.5  # the CVE record's vector now scores the merged finding
        glibc = by_id(match(vulndb, [deb("libc6", "2.36-9+deb12u2", "glibc")], DEBIAN_12))["CVE-2023-4911"]
        assert glibc.advisories == ("CVE-2023-4911", "DEBIAN-CVE-2023-4911", "DSA-5514-1")
    finally:
        savepoint.rollback()


def test_a_reused_matcher_gives_the_same_findings(vulndb: Session) -> None:
    image = [deb("libc6", "2.36-9+deb12u2", "glibc"), lang("npm", "lodash", "4.17.4")]
    matcher = Matcher(vulndb)
    first = matcher.match(image, DEBIAN_12)
    assert matcher.match(image, DEBIAN_12) == first == match(vulndb, image, DEBIAN_12)


def _known_versions(session: Session) -> dict[str, list[str]]:
    """Debian 12 versions the feed names for each selected source package (a minbase bookworm image plus the
    usual extras), oldest first."""
    names = [
        n.strip() for n in (VULNDATA / "debian-osv/SELECTED-SOURCE-PACKAGES.txt").read_text().split() if n
    ]
    versions: dict[str, set[str]] = {n: set() for n in names}
    query = select(AffectedPackage.name, AffectedPackage.ranges, AffectedPackage.versions).where(
        AffectedPackage.ecosystem == "Debian:12", AffectedPackage.name.in_(names)
    )
    for name, ranges, listed in session.execute(query):
        versions[name].update(listed)
        versions[name].update(e["fixed"] for r in ranges for e in r["events"] if "fixed" in e)
    return {n: sorted(vs or {"1.0-1"}, key=lambda v: parse("Debian", v)) for n, vs in versions.items()}


def _image(known: dict[str, list[str]], rng: random.Random, pool: int) -> list[Component]:
    """~90 packages, each at one of its ``pool`` newest known versions (an image built at some point in
    bookworm's life)."""
    image = []
    for name in rng.sample(sorted(known), 90):
        version = rng.choice(known[name][-pool:])
        image.append(deb(f"lib{name}", version, name, version))
    return image


def test_matching_a_minbase_image_is_fast(vulndb: Session) -> None:
    image = _image(_known_versions(vulndb), random.Random(3), pool=3)
    cpu, wall = time.process_time(), time.monotonic()
    findings = match(vulndb, image, DEBIAN_12)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    print(f"minbase: {len(image)} packages, {len(findings)} findings: {cpu:.3f}s CPU, {wall:.3f}s wall")
    assert findings and cpu < 3.0


@pytest.mark.slow
def test_rescanning_ten_thousand_images_after_a_feed_update(vulndb: Session) -> None:
    rng = random.Random(7)
    known = _known_versions(vulndb)
    apps = [lang("PyPI", "urllib3", v) for v in ("1.24.1", "1.26.4", "1.26.18", "2.0.5")] + [
        lang("npm", "lodash", v) for v in ("4.17.4", "4.17.15", "4.17.21")
    ]
    images = [_image(known, rng, pool=12) + rng.sample(apps, 3) for _ in range(10_000)]
    matcher = Matcher(vulndb)  # a fresh one: nothing cached from before the "update"
    cpu, wall = time.process_time(), time.monotonic()
    total = sum(len(matcher.match(image, DEBIAN_12)) for image in images)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    keys = len({(c.source_name or c.name, c.version) for image in images for c in image})
    print(f"10,000 images ({keys} distinct package versions, {total} findings): {cpu:.1f}s CPU, {wall:.1f}s")
    assert cpu < 10.0
