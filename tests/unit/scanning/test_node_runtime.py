"""The Node.js runtime: found in images (an upstream ``node`` binary, its headers), matched against the
Node.js security WG's core advisories; distro ``nodejs`` packages matched against both their distro's feed
and the core advisories without repeating a CVE the distro tracks; Alpine edge matched against secdb's edge.

Expected core findings were computed independently with node-semver (npm's own ``semver`` package):
``satisfies(v, vulnerable) && !satisfies(v, patched)`` over every ``core/<n>.json`` whose
``affectedEnvironments`` include ``all`` or ``linux``."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from tests.support.rootfs import TarLayer
from tests.support.scanimages import DEBIAN12_OS_RELEASE, dpkg_status
from tests.support.vulndata import find_vulndata

from dockyard.scanning.detectors.node import CHUNK, NodeRuntimeDetector, binary_version
from dockyard.scanning.indexer import index_layer, merge
from dockyard.scanning.matcher import Matcher
from dockyard.scanning.models import Advisory, AffectedPackage
from dockyard.scanning.types import Component, OSInfo
from dockyard.scanning.vulndb import ingest

VULNDATA = find_vulndata()
CORE = VULNDATA / "nodejs-security-wg/vuln/core"

# node-semver's verdicts (see the module docstring): NSWG-COR-<n> -> its CVE.
CORE_18_12_1 = {
    "CVE-2023-23918",
    "CVE-2023-23919",
    "CVE-2023-23936",
    "CVE-2023-24807",
    "CVE-2023-23920",
    "CVE-2023-30581",
    "CVE-2023-30589",
    "CVE-2023-30588",
    "CVE-2023-30590",
    "CVE-2023-32002",
    "CVE-2023-32006",
    "CVE-2023-32559",
    "CVE-2023-45143",
    "CVE-2023-44487",
    "CVE-2023-38552",
    "CVE-2023-39333",
    "CVE-2023-46809",
    "CVE-2024-21892",
    "CVE-2024-22019",
    "CVE-2024-22025",
    "CVE-2024-27983",
    "CVE-2024-27982",
    "CVE-2024-22020",
    "CVE-2025-23085",
}
CORE_18_19_0 = {
    "CVE-2023-46809",
    "CVE-2024-21892",
    "CVE-2024-22019",
    "CVE-2024-22025",
    "CVE-2024-27983",
    "CVE-2024-27982",
    "CVE-2024-22020",
    "CVE-2025-23085",
}
CORE_20_12_2 = {
    "CVE-2024-36137",
    "CVE-2024-22018",
    "CVE-2024-22020",
    "CVE-2024-37372",
    "CVE-2025-23083",
    "CVE-2025-23085",
    "CVE-2025-23166",
    "CVE-2025-23167",
    "CVE-2025-55130",
    "CVE-2025-55131",
    "CVE-2025-55132",
    "CVE-2025-59464",
    "CVE-2025-59465",
    "CVE-2025-59466",
    "CVE-2026-21637",
    "CVE-2026-21710",
    "CVE-2026-21713",
    "CVE-2026-21714",
    "CVE-2026-21715",
    "CVE-2026-21716",
    "CVE-2026-21717",
}
EDGE_OS_RELEASE = (
    'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.21_alpha20240807\nPRETTY_NAME="Alpine Linux edge"\n'
    'HOME_URL="https://alpinelinux.org/"\n'
)


def fake_node(version: str, *, split_at: int | None = None, marker: bool = True) -> bytes:
    """An ELF-looking executable carrying node's version strings where a real one does (the inspector's
    ``node.js/v..`` and process.release's URL), optionally cut across the detector's chunk boundary."""
    inspector = f"node.js/v{version}".encode() if marker else b""
    release = f"https://nodejs.org/download/release/v{version}/node-v{version}.tar.gz".encode()
    body = b"\x7fELF" + bytes(4000) + release + bytes(3000)
    if split_at is None:
        return body + inspector + bytes(100)
    cut = split_at - len(body) - len(inspector) // 2
    return body + bytes(cut) + inspector + bytes(100)


def node_version_h(major: int, minor: int, patch: int) -> str:
    return (
        "#ifndef SRC_NODE_VERSION_H_\n#define SRC_NODE_VERSION_H_\n\n"
        f"#define NODE_MAJOR_VERSION {major}\n#define NODE_MINOR_VERSION {minor}\n"
        f"#define NODE_PATCH_VERSION {patch}\n\n#define NODE_VERSION_IS_LTS 1\n"
        "#define NODE_VERSION_IS_RELEASE 1\n"
    )


def layer(tar: TarLayer, n: int):
    return index_layer(io.BytesIO(tar.bytes()), f"sha256:{n:064x}")


# ---- detection -------------------------------------------------------------------------------------------


def test_binary_version_is_found_across_a_chunk_boundary() -> None:
    data = fake_node("18.12.1", split_at=CHUNK)
    assert data.index(b"node.js/v18.12.1") < CHUNK < data.index(b"node.js/v18.12.1") + 16
    assert binary_version(io.BytesIO(data), len(data)) == "18.12.1"
    # Without the inspector string, process.release's URL says it.
    assert binary_version(io.BytesIO(fake_node("20.1.0", marker=False)), 10**6) == "20.1.0"
    assert binary_version(io.BytesIO(b"\x7fELF" + bytes(5000)), 10**6) is None


def test_official_node_image_lists_one_runtime_at_usr_local_bin_node() -> None:
    base = (
        TarLayer()
        .file("usr/lib/os-release", DEBIAN12_OS_RELEASE)
        .file("var/lib/dpkg/status", dpkg_status([("libc6", "2.36-9+deb12u7", "glibc")]))
    )
    node = (
        TarLayer()
        .file("usr/local/bin/node", fake_node("18.12.1", split_at=CHUNK), mode=0o755)
        .symlink("usr/local/bin/nodejs", "node")
        .file("usr/local/include/node/node_version.h", node_version_h(18, 12, 1))
        .file("usr/local/share/doc/node/README.md", "node")
    )
    index = merge([layer(base, 1), layer(node, 2)])
    runtimes = [c for c in index.components if c.ecosystem == "Node.js"]
    assert [(c.name, c.version, c.purl, c.path) for c in runtimes] == [
        ("node", "18.12.1", "pkg:generic/node@18.12.1", "usr/local/bin/node")
    ]
    assert runtimes[0].layer_digest == f"sha256:{2:064x}"


def test_headers_stand_in_for_a_binary_that_says_nothing() -> None:
    tar = (
        TarLayer()
        .file("opt/node/bin/node", b"\x7fELF" + bytes(5000), mode=0o755)
        .file("opt/node/include/node/node_version.h", node_version_h(20, 11, 0))
    )
    (c,) = merge([layer(tar, 3)]).components
    assert (c.version, c.path) == ("20.11.0", "opt/node/include/node/node_version.h")
    # A file called node that is not executable, or not in a bin directory, is not read.
    det = NodeRuntimeDetector()
    assert not det.wants("usr/local/bin/node", 0o644, 10**6)
    assert not det.wants("usr/share/node", 0o755, 10**6)


def test_a_node_owned_by_the_debian_package_is_not_listed_again() -> None:
    tar = (
        TarLayer()
        .file("usr/lib/os-release", DEBIAN12_OS_RELEASE)
        .file("var/lib/dpkg/status", dpkg_status([("nodejs", "18.19.0+dfsg-6~deb12u1", None)]))
        .file("var/lib/dpkg/info/nodejs.list", "/usr/bin/node\n/usr/include/node/node_version.h\n")
        .file("usr/bin/node", fake_node("18.19.0"), mode=0o755)
        .file("usr/include/node/node_version.h", node_version_h(18, 19, 0))
    )
    assert [(c.ecosystem, c.name) for c in merge([layer(tar, 4)]).components] == [("Debian", "nodejs")]


def test_alpine_edge_is_matched_against_secdbs_edge_branch() -> None:
    assert OSInfo("alpine", "3.21_alpha20240807", "Alpine Linux edge").osv_ecosystem == "Alpine:edge"
    assert OSInfo("alpine", "3.22.0_alpha20250108").osv_ecosystem == "Alpine:edge"  # alpine-release only
    assert OSInfo("alpine", "3.21.0_rc1", "Alpine Linux v3.21").osv_ecosystem == "Alpine:v3.21"
    assert OSInfo("alpine", "3.20.3", "Alpine Linux v3.20").osv_ecosystem == "Alpine:v3.20"
    tar = (
        TarLayer().file("etc/alpine-release", "3.21_alpha20240807\n").file("etc/os-release", EDGE_OS_RELEASE)
    )
    assert merge([layer(tar, 5)]).os.osv_ecosystem == "Alpine:edge"


# ---- matching --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def feeds(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Session, dict]]:
    """Debian's feed and secdb's edge branch; the distro-only findings of two nodejs packages; then the
    Node.js core advisories (directory and index both). Rolled back at the end."""
    root = tmp_path_factory.mktemp("node-feeds")
    shutil.copytree(VULNDATA / "alpine-secdb/edge", root / "edge")
    shutil.copytree(CORE, root / "core")
    conn = engine.connect()
    outer = conn.begin()
    session = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        for source in (VULNDATA / "debian-osv", root / "edge"):
            assert ingest(session, source).errors == []
        before = {
            "debian": _ids(Matcher(session).match([DEBIAN_NODE], "Debian:12")),
            "debian-u1": _ids(Matcher(session).match([DEBIAN_NODE_U1], "Debian:12")),
            "alpine": _ids(Matcher(session).match([ALPINE_NODE], "Alpine:edge")),
        }
        report = ingest(session, root / "core")
        assert (report.errors, report.added) == ([], 171)
        yield session, before
    finally:
        session.close()
        outer.rollback()
        conn.close()


DEBIAN_NODE = Component(  # bookworm's first nodejs; node-semver gives 18.13.0 the same 24 CVEs as 18.12.1
    "nodejs", "18.13.0+dfsg1-1", "Debian", "pkg:deb/debian/nodejs", "sha256:1", "var/lib/dpkg/status"
)
DEBIAN_NODE_U1 = Component(
    "nodejs", "18.19.0+dfsg-6~deb12u1", "Debian", "pkg:deb/debian/nodejs", "sha256:1", "var/lib/dpkg/status"
)
ALPINE_NODE = Component(
    "nodejs", "20.12.2-r0", "Alpine", "pkg:apk/alpine/nodejs", "sha256:1", "lib/apk/db/installed", "nodejs"
)


def _ids(findings) -> set[str]:
    return {f.id for f in findings}


def runtime(version: str) -> Component:
    return Component(
        "node", version, "Node.js", f"pkg:generic/node@{version}", "sha256:2", "usr/local/bin/node"
    )


def test_core_records_are_stored_under_their_own_ecosystem(feeds: tuple[Session, dict]) -> None:
    session, _ = feeds
    one = session.get(Advisory, "NSWG-COR-1")
    assert (one.source, one.aliases, one.severity) == ("node-core", ["CVE-2017-1000381"], [])
    # Its only severity is a word ("high"): the score is borrowed from another record of its CVE (Debian's).
    assert (one.score, one.score_from) == (7.5, "CVE-2017-1000381")
    scored = session.get(Advisory, "NSWG-COR-40")  # "cvss": "3.0/AV:N/..." without its prefix
    assert (scored.score, scored.cvss_vector) == (5.9, "CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:H")
    assert json.loads((CORE / "150.json").read_text())["affectedEnvironments"] == ["win32"]
    for n, ecosystem in ((150, "Node.js:win32"), (1, "Node.js")):
        query = select(AffectedPackage.ecosystem).where(AffectedPackage.advisory_id == f"NSWG-COR-{n}")
        assert session.scalars(query).all() == [ecosystem]
    again = ingest(session, CORE)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 171)  # files and index: one batch


def test_an_upstream_runtime_matches_the_core_advisories(feeds: tuple[Session, dict]) -> None:
    session, _ = feeds
    findings = Matcher(session).match([runtime("18.12.1")], None)
    assert _ids(findings) == CORE_18_12_1
    by_id = {f.id: f for f in findings}
    assert by_id["CVE-2023-23918"].advisories == ("NSWG-COR-103",)
    assert by_id["CVE-2023-23918"].fixed_version == "18.14.1"
    assert "CVE-2024-27980" not in by_id  # win32 only (NSWG-COR-150)
    old = {f.id: f for f in Matcher(session).match([runtime("4.1.1")], None)}
    assert (old["CVE-2015-7384"].score, old["CVE-2015-7384"].severity.value) == (5.9, "Major")
    assert old["NSWG-COR-2"].severity.value == "Unscored"  # a record without a CVE keeps its own id
    assert Matcher(session).match([runtime("24.99.0")], None) == []


def debian_nodejs_cves() -> set[str]:
    """Every id Debian's feed has for its nodejs source package in bookworm, affected or not."""
    ids: set[str] = set()
    for path in (VULNDATA / "debian-osv").rglob("*.json"):
        doc = json.loads(path.read_text())
        if any(
            a.get("package", {}).get("name") == "nodejs" and a["package"].get("ecosystem") == "Debian:12"
            for a in doc.get("affected", [])
        ):
            ids.update(
                [doc["id"], *doc.get("aliases", []), *doc.get("related", []), *doc.get("upstream", [])]
            )
    return ids


def test_debian_nodejs_adds_only_the_core_cves_debian_does_not_track(feeds: tuple[Session, dict]) -> None:
    session, before = feeds
    findings = Matcher(session).match([DEBIAN_NODE], "Debian:12")
    tracked = debian_nodejs_cves()
    upstream_only = CORE_18_12_1 - tracked
    # undici's and nghttp2's CVEs are tracked under their own Debian packages, not under nodejs.
    assert upstream_only == {"CVE-2023-23936", "CVE-2023-24807", "CVE-2023-44487", "CVE-2023-45143"}
    assert _ids(findings) == before["debian"] | upstream_only
    for f in findings:
        core = [a for a in f.advisories if a.startswith("NSWG-COR-")]
        assert bool(core) == (f.id in upstream_only), f.id
        assert (f.ecosystem, f.package, f.installed_version) == ("Debian:12", "nodejs", DEBIAN_NODE.version)


def test_alpine_edge_nodejs_matches_secdb_edge_and_the_core_advisories(feeds: tuple[Session, dict]) -> None:
    session, before = feeds
    assert before["alpine"] == {"CVE-2024-22018", "CVE-2024-22020", "CVE-2024-36137"}  # fixed in 20.15.1-r0
    findings = {f.id: f for f in Matcher(session).match([ALPINE_NODE], "Alpine:edge")}
    assert findings["CVE-2024-22020"].fixed_version == "20.15.1-r0"
    assert findings["CVE-2024-22020"].advisories == ("ALPINE-CVE-2024-22020",)
    # Every core CVE secdb lists for nodejs with a fix is Alpine's to judge. CVE-2024-37372 is one secdb marks
    # "0" (not affected); those marks are not stored, so upstream's verdict stands (a known gap).
    edge = json.loads((VULNDATA / "alpine-secdb/edge/main.json").read_text())
    (secfixes,) = [p["pkg"]["secfixes"] for p in edge["packages"] if p["pkg"]["name"] == "nodejs"]
    fixed_by_alpine = {c for v, cves in secfixes.items() if v != "0" for c in cves}
    assert set(findings) == before["alpine"] | (CORE_20_12_2 - fixed_by_alpine)
    assert findings["CVE-2025-23085"].advisories == ("NSWG-COR-149",)
    assert findings["CVE-2025-23085"].fixed_version == "20.18.2"


def test_a_debian_nodejs_whose_cves_debian_all_tracks_gets_no_upstream_finding(
    feeds: tuple[Session, dict],
) -> None:
    session, before = feeds
    assert debian_nodejs_cves() >= CORE_18_19_0
    findings = Matcher(session).match([DEBIAN_NODE_U1], "Debian:12")
    assert _ids(findings) == before["debian-u1"]
    assert not [a for f in findings for a in f.advisories if a.startswith("NSWG-COR-")]
