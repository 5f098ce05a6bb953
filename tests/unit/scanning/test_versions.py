"""Version ordering per ecosystem: tables of tricky cases, and dpkg checked against python-debian on every
Debian version in the real feed."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from debian.debian_support import Version as DebianVersion
from tests.support.vulndata import find_vulndata

from dockyard.scanning.versions import apk_compare, base_ecosystem, compare, npm_range, parse

VULNDATA = find_vulndata()


def _check(ecosystem: str, a: str, op: str, b: str) -> None:
    expected = {"<": -1, "=": 0, ">": 1}[op]
    assert compare(ecosystem, a, b) == expected, f"{ecosystem}: {a} {op} {b}"
    assert compare(ecosystem, b, a) == -expected, f"{ecosystem}: {b} vs {a} (antisymmetry)"


DPKG = [
    ("1.0~rc1", "<", "1.0"),
    ("1:0.9", ">", "2.0"),  # the epoch wins
    ("1.0~~", "<", "1.0~~a"),
    ("1.0~", "<", "1.0"),
    ("1.0", "=", "1.0-0"),
    ("1.0a", "<", "1.0+"),  # letters sort before other characters
    ("1.0", "<", "1.0.0"),
    ("2.36-9+deb12u4", "<", "2.36-9+deb12u10"),
    ("3.0.11-1~deb12u2", "<", "3.0.11-1"),  # a backport/stable upload sorts before the unstable one
    ("7.88.1-10+deb12u5", ">", "7.88.1-10"),
    ("1:1.2.13.dfsg-1", ">", "1.3"),
    ("0.9.8o-4squeeze3", ">", "0.9.8o-4"),
]


@pytest.mark.parametrize(("a", "op", "b"), DPKG)
def test_dpkg_ordering(a: str, op: str, b: str) -> None:
    _check("Debian", a, op, b)
    _check("Debian:12", a, op, b)  # a release suffix orders like its base


def test_dpkg_agrees_with_python_debian_on_every_version_in_the_feed() -> None:
    root = VULNDATA / "debian-osv"
    if not root.is_dir():
        pytest.skip(f"no vulnerability data at {root}")
    versions: set[str] = set()
    for path in root.rglob("*.json"):
        for entry in json.loads(path.read_bytes()).get("affected", []):
            if entry.get("package", {}).get("ecosystem", "").startswith("Debian"):
                versions.update(entry.get("versions", []))
                versions.update(v for r in entry.get("ranges", []) for e in r["events"] for v in e.values())
    ordered = sorted(versions)
    assert len(ordered) > 3000
    rng = random.Random(12)
    for a, b in (rng.sample(ordered, 2) for _ in range(30_000)):
        va, vb = DebianVersion(a), DebianVersion(b)
        assert compare("Debian", a, b) == (va > vb) - (va < vb), (a, b)


APK = [  # from apk-tools' own test table (test/version.data) plus the pre-release/revision case
    ("1.2.3_rc1-r0", "<", "1.2.3-r0"),
    ("0.1.0_alpha", "<", "0.1.3_alpha"),
    ("0.1.0_alpha2", ">", "0.1.0_alpha"),
    ("1.1", ">", "1.1_alpha1"),
    ("1.0.4-r3", "<", "1.0.4-r4"),
    ("2.3.0b-r1", "<", "2.3.0b-r2"),
    ("3.1_p16", "<", "3.1_p17"),
    ("1.8.5", "<", "1.8.5_p2"),
    ("4.5_p1-r1", ">", "4.5_p1"),
    ("1.06-r6", "<", "006"),
    ("1.2.07.8", "<", "1.2.12.04"),  # leading zeros after a dot: fewer zeros sort higher
    ("2.10.1", ">", "02.08.01b"),
    ("1.7", "<", "1.7b"),
    ("0.9.8c-r1", "<", "0.9.8d"),
    ("22.7-r1", "<", "22.7.3-r1"),
    ("0.1.0_alpha_pre2", "<", "0.1.0_alpha"),
    ("2.9.11_pre20051101-r3", ">", "2.9.11_pre20051101"),
    ("1.0.0_pre20191002222144-r0", "<", "1.0.0_pre20210530193627-r0"),
    ("1.0_p10-r0", ">", "1.0_p9-r0"),
    ("3.1.4-r1", ">", "3.1.4-r0"),
    ("1.36.1-r15", "<", "1.36.1-r17"),
    ("0.2.0-r1", "=", "0.2.0-r1"),
]


@pytest.mark.parametrize(("a", "op", "b"), APK)
def test_apk_ordering(a: str, op: str, b: str) -> None:
    _check("Alpine:v3.19", a, op, b)
    assert apk_compare(a, b) == {"<": -1, "=": 0, ">": 1}[op]


RPM = [
    ("1.0~beta", "<", "1.0"),
    ("1.0^git1", ">", "1.0"),
    ("1.0^git1", "<", "1.0.1"),
    ("1:1.0-1.el8", ">", "2.0-1.el8"),
    ("1.0-1.el8", "<", "1.0-2.el8"),
    ("1.0a", "<", "1.0.1"),  # numeric segments are newer than alphabetic ones
    ("2.0.10", ">", "2.0.9"),
    ("1.0.0", "=", "1.0.0"),
]


@pytest.mark.parametrize(("a", "op", "b"), RPM)
def test_rpm_ordering(a: str, op: str, b: str) -> None:
    _check("RPM", a, op, b)
    _check("Rocky Linux:9", a, op, b)


PYPI = [
    ("1.26.4", "<", "1.26.5"),
    ("2.0.0rc1", "<", "2.0.0"),
    ("1.0.dev1", "<", "1.0a1"),
    ("1.0.post1", ">", "1.0"),
    ("1.0", "=", "1.0.0"),
    ("3.2", "<", "3.2.1"),
    ("1!0.1", ">", "2.0"),
    ("1.10", ">", "1.9"),
]


@pytest.mark.parametrize(("a", "op", "b"), PYPI)
def test_pypi_ordering(a: str, op: str, b: str) -> None:
    _check("PyPI", a, op, b)


def test_pypi_invalid_versions_fall_back_instead_of_raising() -> None:
    assert compare("PyPI", "1.0-custom.build", "1.1") == -1
    assert compare("PyPI", "2.x-dev", "1.0") == 1
    assert compare("PyPI", "foo-bar", "foo-bar") == 0


SEMVER_CHAIN = [  # semver.org §11's precedence example
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.10.0",
]


@pytest.mark.parametrize("ecosystem", ["npm", "SEMVER"])
def test_semver_precedence(ecosystem: str) -> None:
    for a, b in itertools.combinations(SEMVER_CHAIN, 2):
        _check(ecosystem, a, "<", b)
    shuffled = SEMVER_CHAIN[::-1]
    assert sorted(shuffled, key=lambda v: parse(ecosystem, v)) == SEMVER_CHAIN
    _check(ecosystem, "v1.2.3", "=", "1.2.3")
    _check(ecosystem, "1.2.3+build.7", "=", "1.2.3")


GO = [
    ("v0.0.0-20210101000000-abcdefabcdef", "<", "v0.0.1"),
    ("v0.0.0-20210101000000-abcdefabcdef", "<", "v0.0.0-20220101000000-123456789abc"),
    ("v1.2.4-0.20210101000000-abcdefabcdef", ">", "v1.2.3"),  # a pseudo-version after v1.2.3 ...
    ("v1.2.4-0.20210101000000-abcdefabcdef", "<", "v1.2.4"),  # ... is a pre-release of v1.2.4
    ("v1.2.4-pre.0.20210101000000-abcdefabcdef", ">", "v1.2.4-pre"),
    ("v2.0.0+incompatible", ">", "v1.9.9"),
    ("v0.17.0", "=", "0.17.0"),  # OSV's Go versions have no "v"
    ("go1.21rc2", "<", "1.21.0"),  # toolchain versions as the stdlib reports them
    ("go1.21.1", ">", "1.21.0-0"),
    ("go1.21.1", "<", "1.21.3"),
]


@pytest.mark.parametrize(("a", "op", "b"), GO)
def test_go_ordering(a: str, op: str, b: str) -> None:
    _check("Go", a, op, b)


MAVEN = [
    ("1.0-SNAPSHOT", "<", "1.0"),
    ("1.0-alpha-1", "<", "1.0-beta"),
    ("1.0-beta", "<", "1.0-rc1"),
    ("1.0-rc1", "<", "1.0"),
    ("1.0", "=", "1.0.0"),
    ("2.17.1", ">", "2.17.0"),
    ("2.12.7.1", ">", "2.12.7"),
    ("1.0-sp1", ">", "1.0"),
]


@pytest.mark.parametrize(("a", "op", "b"), MAVEN)
def test_maven_ordering(a: str, op: str, b: str) -> None:
    _check("Maven", a, op, b)


def test_base_ecosystem_and_unknown_ecosystems() -> None:
    assert base_ecosystem("Debian:12") == "Debian"
    assert base_ecosystem("Alpine:v3.19") == "Alpine"
    assert base_ecosystem("PyPI") == "PyPI"
    # An ecosystem we have no rules for still orders numbers numerically.
    _check("Hackage", "1.10", ">", "1.9")
    _check("Hackage", "1.0rc1", "<", "1.0")


NPM_RANGES = [
    ("<4.17.5", {"4.17.4": True, "4.17.5": False, "3.0.0": True}),
    (">=4.17.15 <4.17.19", {"4.17.15": True, "4.17.18": True, "4.17.19": False, "4.17.14": False}),
    (
        "<1.6.5 || < 2.1.7 > 2.0.0",
        {"1.6.4": True, "1.6.5": False, "2.0.0": False, "2.0.1": True, "2.1.7": False},
    ),
    ("2.0.x || 2.1.x", {"2.0.5": True, "2.1.9": True, "2.2.0": False}),
    ("<3.11 || >= 4 <4.5", {"3.10.99": True, "3.11.0": False, "4.4.9": True, "4.5.0": False}),
    ("^1.2.3", {"1.2.2": False, "1.9.0": True, "2.0.0": False}),
    ("^0.0.3", {"0.0.3": True, "0.0.4": False}),
    ("~1.2.3", {"1.2.9": True, "1.3.0": False}),
    ("1.2.3 - 2.3", {"2.3.9": True, "2.4.0": False, "1.2.2": False}),
    ("<=0.9.4 || 1.0.0", {"0.9.4": True, "1.0.0": True, "1.0.1": False}),
    (
        ">=2.0.0-alpha8 <=2.0.0-rc2 || >=2.0.0 <=2.13.0",
        {"2.0.0-beta": True, "2.0.0-rc3": False, "2.13.0": True},
    ),
    ("<5.0.0", {"5.0.0-beta.3": True}),  # pre-releases are included: a scanner must not miss them
    ("*", {"0.0.1": True}),
    ("<0.0.0", {"0.0.0": False, "9.9.9": False}),  # nodejs advisories' "no patched version"
]


@pytest.mark.parametrize(("expression", "cases"), NPM_RANGES)
def test_npm_ranges(expression: str, cases: dict[str, bool]) -> None:
    rng = npm_range(expression)
    for version, inside in cases.items():
        assert rng.contains(version) is inside, f"{version} in {expression!r}"


def test_npm_patched_range_names_the_fix() -> None:
    assert npm_range(">=4.17.5").lowest_above("4.17.4") == "4.17.5"
    assert npm_range(">=1.6.5 <2.0.0 || >=2.1.7").lowest_above("1.0.0") == "1.6.5"
    assert npm_range(">=1.6.5 <2.0.0 || >=2.1.7").lowest_above("2.0.3") == "2.1.7"
    assert npm_range("<0.0.0").lowest_above("1.0.0") is None


def test_npm_range_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        npm_range(">=banana")
