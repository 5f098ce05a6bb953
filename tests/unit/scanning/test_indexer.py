"""The indexer on real images: a Debian bookworm minbase root filesystem built by mmdebstrap and wrapped by
umoci (held against dpkg-query run on the same files), a distroless-style image, an Alpine image, layers
that delete through whiteouts, opaque directories and symlinks, and a layer appended by ``umoci insert``."""

from __future__ import annotations

import gzip
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest
from packageurl import PackageURL
from tests.support.rootfs import (
    ALPINE_INSTALLED,
    OciImage,
    TarLayer,
    alpine_layer,
    cached_minbase_image,
    dpkg_query,
    extract,
    gzipped,
    have,
    oci_image,
    umoci_insert,
)

from dockyard.scanning.detectors.apk import ApkDetector
from dockyard.scanning.detectors.base import DetectorResult
from dockyard.scanning.detectors.dpkg import DpkgDetector
from dockyard.scanning.detectors.osrelease import detect_os
from dockyard.scanning.detectors.rpm import RpmDetector
from dockyard.scanning.indexer import FORMAT, LayerFacts, default_detectors, index_layer, merge
from dockyard.scanning.types import Component, ImageIndex, OSInfo

needs_umoci = pytest.mark.skipif(not have("umoci"), reason="umoci is not installed")
OS_DETECTORS = [DpkgDetector(), ApkDetector(), RpmDetector()]


@pytest.fixture(scope="session")
def rootfs_cache(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = getattr(pytestconfig, "cache", None)
    return cache.mkdir("dockyard-rootfs") if cache else tmp_path_factory.mktemp("rootfs")


@pytest.fixture(scope="session")
def minbase(rootfs_cache: Path) -> OciImage:
    if not have("umoci"):
        pytest.skip("umoci is not installed")
    return cached_minbase_image(rootfs_cache)[1]


@pytest.fixture(scope="session")
def minbase_root(rootfs_cache: Path, minbase: OciImage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dpkg database and os files of the minbase tar, extracted with tar for the host tools to read."""
    tar, _ = cached_minbase_image(rootfs_cache)
    members = ("./var/lib/dpkg", "./usr/lib/os-release", "./etc/debian_version")
    return extract(tar, tmp_path_factory.mktemp("minbase-root"), *members)


def index_image(image: OciImage, detectors=None) -> tuple[ImageIndex, list[LayerFacts]]:
    facts = []
    for layer in image.layers:
        with layer.open() as f:
            facts.append(index_layer(f, layer.digest, detectors, media_type=layer.media_type))
    return merge(facts), facts


def debs(index: ImageIndex) -> list[Component]:
    return [c for c in index.components if c.ecosystem == "Debian"]


# --- the minbase image against the host's dpkg ------------------------------------------------------------


@pytest.mark.skipif(not have("dpkg-query"), reason="dpkg-query is not installed")
def test_minbase_components_equal_dpkg_query(minbase: OciImage, minbase_root: Path) -> None:
    index, _ = index_image(minbase)
    expected = sorted(dpkg_query(minbase_root, "${Package} ${Version} ${Architecture}\\n"))
    assert len(expected) > 50
    assert sorted(f"{c.name} {c.version} {c.arch}" for c in debs(index)) == expected
    assert sorted(f"{c.name} {c.version}" for c in debs(index)) == sorted(dpkg_query(minbase_root))
    assert index.warnings == []


def test_minbase_os_purls_sources_and_layer(minbase: OciImage, minbase_root: Path) -> None:
    index, _ = index_image(minbase)
    assert index.os == OSInfo("debian", "12", "Debian GNU/Linux 12 (bookworm)", "bookworm")
    assert index.os.osv_ecosystem == "Debian:12"
    assert index.layers == [minbase.layers[0].digest]
    status = (minbase_root / "var/lib/dpkg/status").read_text()
    for c in debs(index):
        purl = PackageURL.from_string(c.purl)
        assert (purl.type, purl.namespace, purl.name, purl.version) == ("deb", "debian", c.name, c.version)
        assert purl.qualifiers == {"arch": c.arch, "distro": "debian-12"}
        assert c.layer_digest == minbase.layers[0].digest and c.path == "var/lib/dpkg/status"
        stanza = re.search(rf"^Package: {re.escape(c.name)}\n(?:[^\n]+\n)*", status, re.M)
        assert stanza
        source = re.search(r"^Source: (\S+)(?: \((\S+)\))?$", stanza.group(0), re.M)
        assert c.source_name == (source.group(1) if source else c.name)
        assert c.source_version == (source.group(2) or c.version if source else c.version)


def test_minbase_owned_files_equal_the_list_files(minbase: OciImage, minbase_root: Path) -> None:
    index, _ = index_image(minbase)
    info = minbase_root / "var/lib/dpkg/info"
    for c in debs(index):
        (listing,) = [
            p for p in info.glob(f"{c.name}*.list") if p.name.split(":")[0].removesuffix(".list") == c.name
        ]
        expected = {line.strip("/") for line in listing.read_text().splitlines() if line not in ("/.", "")}
        # A directory shared by several packages is owned by one of them in the map, so compare files only.
        files = {p for p in expected if (minbase_root / p).is_file()}
        assert files <= c.owned_files, c.name
    dpkg = next(c for c in debs(index) if c.name == "dpkg")
    assert "usr/bin/dpkg" in dpkg.owned_files


def test_indexing_minbase_takes_well_under_a_second(minbase: OciImage) -> None:
    """The cold-scan target: one gzip layer of ~170 MB and ~8700 entries, every detector on."""
    detectors = default_detectors()
    layer = minbase.layers[0]
    cpu, wall = [], []
    for _ in range(3):
        with layer.open() as f:
            c0, w0 = time.process_time(), time.perf_counter()
            index = merge([index_layer(f, layer.digest, detectors)])
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
    print(f"minbase index: cpu {min(cpu):.3f}s wall {min(wall):.3f}s ({len(index.components)} components)")
    # CPU time, not wall time: other test sessions share this machine.
    assert min(cpu) < 1.0


def test_layer_facts_round_trip_through_json(minbase: OciImage) -> None:
    _, (facts,) = index_image(minbase)
    text = facts.to_json()
    again = LayerFacts.from_json(text)
    assert again == facts
    assert merge([again]) == merge([facts])
    assert len(text) < 1_000_000
    with pytest.raises(ValueError, match="format"):
        LayerFacts.from_json(text.replace(f'"format":{FORMAT}', '"format":0'))


# --- images of several layers -----------------------------------------------------------------------------


def _replace_version(status: str, package: str, version: str) -> str:
    return re.sub(
        rf"(^Package: {package}\n(?:[^\n]+\n)*?Version: )\S+", rf"\g<1>{version}", status, flags=re.M
    )


@needs_umoci
def test_components_are_attributed_to_the_layer_that_introduced_them(
    minbase: OciImage, minbase_root: Path, rootfs_cache: Path, tmp_path: Path
) -> None:
    status = (minbase_root / "var/lib/dpkg/status").read_text()
    upgraded = _replace_version(status, "gzip", "9.9-1")
    added = (
        upgraded + "\nPackage: hello\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.10-3\n"
    )
    tar2 = TarLayer().file("var/lib/dpkg/status", added).write(tmp_path / "l2.tar")
    tar1, _ = cached_minbase_image(rootfs_cache)
    image = oci_image(tmp_path / "oci", "upgraded", [tar1, tar2])
    index, _ = index_image(image, OS_DETECTORS)
    base, top = (layer.digest for layer in image.layers)
    by_name = {c.name: c for c in debs(index)}
    assert by_name["gzip"].version == "9.9-1" and by_name["gzip"].layer_digest == top
    assert by_name["hello"].layer_digest == top
    assert by_name["bash"].layer_digest == base  # rewritten by layer 2, but already there in layer 1
    assert {c.layer_digest for c in debs(index)} == {base, top}
    assert len(debs(index)) == len(dpkg_query(minbase_root)) + 1


def _facts(digest: str, layer: bytes, detectors=None) -> LayerFacts:
    return index_layer(io.BytesIO(layer), digest, detectors or OS_DETECTORS)


STATUS_A = "Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n\n"
STATUS_AB = STATUS_A + "Package: b\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n"


def test_a_package_deleted_and_reinstalled_is_attributed_to_the_reinstall() -> None:
    layers = [
        _facts("sha256:1", TarLayer().file("var/lib/dpkg/status", STATUS_AB).bytes()),
        _facts("sha256:2", TarLayer().file("var/lib/dpkg/status", STATUS_A).bytes()),
        _facts("sha256:3", TarLayer().file("var/lib/dpkg/status", STATUS_AB).bytes()),
    ]
    assert {c.name: c.layer_digest for c in merge(layers).components} == {"a": "sha256:1", "b": "sha256:3"}


def test_whiteouts_opaque_directories_and_symlinks_delete_lower_files() -> None:
    base = _facts(
        "sha256:1",
        TarLayer()
        .file("etc/os-release", "ID=debian\nVERSION_ID=12\n")
        .file("var/lib/dpkg/status", STATUS_AB)
        .file("var/lib/dpkg/info/a.list", "/usr/bin/a\n")
        .bytes(),
    )
    whiteout = _facts("sha256:2", TarLayer().whiteout("var/lib/dpkg/status").bytes())
    assert debs(merge([base, whiteout])) == []
    assert merge([base, whiteout]).os == OSInfo("debian", "12")

    gone_dir = _facts("sha256:2", TarLayer().whiteout("var/lib/dpkg").bytes())
    assert debs(merge([base, gone_dir])) == []

    opaque = _facts(
        "sha256:2",
        TarLayer().opaque("var/lib/dpkg").file("var/lib/dpkg/status", STATUS_A.replace("1", "2")).bytes(),
    )
    (only,) = debs(merge([base, opaque]))
    assert (only.name, only.version, only.layer_digest, only.owned_files) == (
        "a",
        "2",
        "sha256:2",
        frozenset(),
    )

    linked = _facts("sha256:2", TarLayer().symlink("var/lib/dpkg/status", "/etc/shadow").bytes())
    assert debs(merge([base, linked])) == []
    linked_dir = _facts("sha256:2", TarLayer().symlink("var/lib", "/usr/lib").bytes())
    assert debs(merge([base, linked_dir])) == []

    # Whiteouts apply to lower layers only: a layer's own files survive them.
    same = _facts(
        "sha256:2", TarLayer().whiteout("var/lib/dpkg/status").file("var/lib/dpkg/status", STATUS_A).bytes()
    )
    assert [c.name for c in debs(merge([base, same]))] == ["a"]


def test_a_symlink_named_like_a_package_database_is_never_followed() -> None:
    facts = _facts(
        "sha256:1",
        TarLayer()
        .file("etc/shadow", STATUS_AB)
        .symlink("var/lib/dpkg/status", "../../../etc/shadow")
        .bytes(),
    )
    assert facts.files == {} and "var/lib/dpkg/status" in facts.hidden


def test_hard_links_reuse_a_parsed_file_of_the_same_layer_only() -> None:
    facts = _facts(
        "sha256:1",
        TarLayer()
        .file("var/lib/dpkg/status.d/base", STATUS_A)
        .hardlink("var/lib/dpkg/status.d/copy", "var/lib/dpkg/status.d/base")
        .hardlink("var/lib/dpkg/status", "etc/shadow")  # a target outside the layer: not read
        .bytes(),
    )
    assert [c.path for c in facts.files["var/lib/dpkg/status.d/copy"]] == ["var/lib/dpkg/status.d/copy"]
    assert "var/lib/dpkg/status" not in facts.files
    assert any("hard link" in w for w in facts.warnings)
    assert [c.name for c in merge([facts]).components] == ["a"]  # one package, even if two files say so


# --- distroless, Alpine, umoci insert ---------------------------------------------------------------------


def _stanza(status: str, package: str) -> str:
    match = re.search(rf"^Package: {re.escape(package)}\n(?:[^\n]+\n)*", status, re.M)
    assert match, package
    return "".join(line + "\n" for line in match.group(0).splitlines() if not line.startswith("Status:"))


def test_distroless_status_d_with_md5sums(minbase_root: Path, minbase: OciImage) -> None:
    status = (minbase_root / "var/lib/dpkg/status").read_text()
    info = minbase_root / "var/lib/dpkg/info"
    layer = TarLayer().file("usr/lib/os-release", (minbase_root / "usr/lib/os-release").read_text())
    for pkg in ("base-files", "libc6", "zlib1g", "libgcc-s1"):
        layer.file(f"var/lib/dpkg/status.d/{pkg}", _stanza(status, pkg))
        (md5,) = info.glob(f"{pkg}*.md5sums")
        layer.file(f"var/lib/dpkg/status.d/{pkg}.md5sums", md5.read_bytes())
    index = merge([_facts("sha256:d1", gzipped(layer.bytes()))])
    want = {line.split(" ")[0]: line for line in dpkg_query(minbase_root)}
    assert sorted(f"{c.name} {c.version}" for c in debs(index)) == sorted(
        want[p] for p in ("base-files", "libc6", "zlib1g", "libgcc-s1")
    )
    libc = next(c for c in debs(index) if c.name == "libc6")
    assert "lib/x86_64-linux-gnu/libc.so.6" in libc.owned_files  # as dpkg says it, before merged /usr
    assert index.os is not None and index.os.version_id == "12"


@needs_umoci
def test_alpine_image(tmp_path: Path) -> None:
    tar = tmp_path / "alpine.tar"
    tar.write_bytes(alpine_layer())
    image = oci_image(tmp_path / "oci", "3.19", [tar])
    index, _ = index_image(image)
    assert (
        index.os == OSInfo("alpine", "3.19.1", "Alpine Linux v3.19")
        and index.os.osv_ecosystem == "Alpine:v3.19"
    )
    got = {c.name: (c.version, c.source_name, c.purl) for c in index.components}
    assert got == {
        "musl": (
            "1.2.4_git20230717-r4",
            "musl",
            "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=3.19.1",
        ),
        "busybox": ("1.36.1-r15", "busybox", "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&distro=3.19.1"),
        "ssl_client": (
            "1.36.1-r15",
            "busybox",
            "pkg:apk/alpine/ssl_client@1.36.1-r15?arch=x86_64&distro=3.19.1",
        ),
        "libcrypto3": ("3.1.4-r5", "openssl", "pkg:apk/alpine/libcrypto3@3.1.4-r5?arch=x86_64&distro=3.19.1"),
    }
    busybox = next(c for c in index.components if c.name == "busybox")
    assert busybox.owned_files == {"bin/busybox", "bin/sh", "etc/securetty"}


@needs_umoci
def test_a_layer_appended_by_umoci_insert(tmp_path: Path) -> None:
    base = tmp_path / "base.tar"
    base.write_bytes(alpine_layer())
    image = oci_image(tmp_path / "oci", "app", [base])
    src = tmp_path / "insert"
    (src / "db").mkdir(parents=True)
    extra = "P:curl\nV:8.5.0-r0\nA:x86_64\no:curl\nF:usr/bin\nR:curl\n"
    (src / "db" / "installed").write_text(ALPINE_INSTALLED + "\n" + extra)
    image = umoci_insert(image, src / "db", "/lib/apk/db")
    inserted = image.layers[-1]
    raw = gzip.decompress(inserted.blob.read_bytes())
    assert not raw.endswith(bytes(1024)), "umoci insert now writes the end-of-archive blocks"
    index, _ = index_image(image)
    curl = next(c for c in index.components if c.name == "curl")
    assert curl.layer_digest == inserted.digest
    musl = next(c for c in index.components if c.name == "musl")
    assert musl.layer_digest == image.layers[0].digest


# --- language components owned by OS packages --------------------------------------------------------------


@dataclass
class FakePython:
    """A stand-in language detector, so these tests hold whatever the real ones do."""

    name: str = "fake-python"
    max_size: int = 1 << 20

    def wants(self, path: str, mode: int, size: int) -> bool:
        return path.endswith(".dist-info/METADATA")

    def parse(self, path: str, data: BinaryIO, size: int, layer_digest: str) -> DetectorResult:
        fields = dict(line.split(": ", 1) for line in data.read().decode().splitlines() if ": " in line)
        name, version = fields["Name"], fields["Version"]
        purl = f"pkg:pypi/{name}@{version}"
        return DetectorResult(components=[Component(name, version, "PyPI", purl, layer_digest, path)])


METADATA = "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA"


def test_language_packages_shipped_by_an_os_package_are_not_listed_twice() -> None:
    detectors = [*OS_DETECTORS, FakePython()]
    status = "Package: python3-six\nStatus: install ok installed\nVersion: 1.16.0-4\nArchitecture: all\n"
    base = _facts(
        "sha256:1",
        TarLayer()
        .file("var/lib/dpkg/status", status)
        .file("var/lib/dpkg/info/python3-six.list", f"/.\n/usr\n/{METADATA}\n")
        .file(METADATA, "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n")
        .bytes(),
        detectors,
    )
    index = merge([base])
    assert [(c.ecosystem, c.name) for c in index.components] == [("Debian", "python3-six")]
    assert METADATA in index.components[0].owned_files
    # The Debian package is purged and pip installs its own copy: now pip's is the one to report.
    purge = _facts(
        "sha256:2",
        TarLayer()
        .file("var/lib/dpkg/status", "")
        .whiteout("var/lib/dpkg/info/python3-six.list")
        .file(METADATA, "Metadata-Version: 2.1\nName: six\nVersion: 1.17.0\n")
        .bytes(),
        detectors,
    )
    assert [(c.ecosystem, c.name, c.version) for c in merge([base, purge]).components] == [
        ("PyPI", "six", "1.17.0")
    ]


def test_ownership_follows_merged_usr_links() -> None:
    """dpkg says /bin/tool; the layer holds usr/bin/tool under a bin -> usr/bin link (Debian 12)."""

    class FakeGo(FakePython):
        def wants(self, path: str, mode: int, size: int) -> bool:
            return path.endswith("bin/tool")

        def parse(self, path: str, data: BinaryIO, size: int, layer_digest: str) -> DetectorResult:
            return DetectorResult(
                components=[
                    Component("stdlib", "1.22.1", "Go", "pkg:golang/stdlib@1.22.1", layer_digest, path)
                ]
            )

    status = "Package: tool\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n"
    layer = (
        TarLayer()
        .symlink("bin", "usr/bin")
        .file("var/lib/dpkg/status", status)
        .file("var/lib/dpkg/info/tool.list", "/.\n/bin\n/bin/tool\n")
        .file("usr/bin/tool", b"\x7fELF")
    )
    index = merge([_facts("sha256:1", layer.bytes(), [*OS_DETECTORS, FakeGo()])])
    assert [c.name for c in index.components] == ["tool"]
    unlinked = merge(
        [
            _facts("sha256:1", layer.bytes(), [*OS_DETECTORS, FakeGo()]),
            _facts("sha256:2", TarLayer().whiteout("bin").bytes()),
        ]
    )
    assert sorted(c.name for c in unlinked.components) == ["stdlib", "tool"]


def test_default_detectors_start_with_the_os_ones() -> None:
    names = [d.name for d in default_detectors()]
    assert names[:3] == ["dpkg", "apk", "rpm"]


# --- OS detection -----------------------------------------------------------------------------------------


OS_CASES = [
    (
        {"etc/os-release": 'ID="ubuntu"\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\n'},
        ("ubuntu", "22.04", "", "jammy"),
    ),
    (
        {
            "usr/lib/os-release": "ID=debian\nVERSION_ID=11\n",
            "etc/os-release": "ID=alpine\nVERSION_ID=3.18.0\n",
        },
        ("alpine", "3.18.0", "", ""),
    ),
    (
        {"etc/os-release": "ID=debian\nVERSION_CODENAME=trixie\n", "etc/debian_version": "trixie/sid\n"},
        ("debian", "", "", "trixie"),
    ),
    ({"etc/debian_version": "12.8\n"}, ("debian", "12", "Debian GNU/Linux 12.8", "")),
    ({"etc/alpine-release": "3.19.1\n"}, ("alpine", "3.19.1", "Alpine Linux v3.19.1", "")),
    (
        {"etc/redhat-release": "Rocky Linux release 9.3 (Blue Onyx)\n"},
        ("rocky", "9.3", "Rocky Linux release 9.3 (Blue Onyx)", ""),
    ),
    (
        {"etc/os-release": 'PRETTY_NAME="a \\"quoted\\" name"\nID=fedora\nVERSION_ID=40\n'},
        ("fedora", "40", 'a "quoted" name', ""),
    ),
    ({}, None),
]


@pytest.mark.parametrize(("files", "expected"), OS_CASES)
def test_os_detection(files: dict[str, str], expected: tuple[str, str, str, str] | None) -> None:
    assert detect_os(files) == (OSInfo(*expected) if expected else None)


def test_purls_follow_the_distribution() -> None:
    ubuntu = _facts(
        "sha256:1",
        TarLayer()
        .file("etc/os-release", 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\n')
        .file("var/lib/dpkg/status", STATUS_A)
        .bytes(),
    )
    assert merge([ubuntu]).components[0].purl == "pkg:deb/ubuntu/a@1?arch=all&distro=ubuntu-22.04"
    no_os = _facts("sha256:1", TarLayer().file("var/lib/dpkg/status", STATUS_A).bytes())
    index = merge([no_os])
    assert index.components[0].purl == "pkg:deb/debian/a@1?arch=all" and index.os is None
    assert any("no os-release" in w for w in index.warnings)
