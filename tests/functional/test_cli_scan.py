"""``dockyard scan`` on real images against real advisories: a layer of urllib3 1.26.4 and Django 3.2 as pip
installs them, a Debian bookworm minbase image (mmdebstrap + umoci), and the same image pulled from a live
dockyard server. Expected findings are worked out from the feed files themselves, not from the scanner."""

from __future__ import annotations

import base64
import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cvss import CVSS3
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from debian.debian_support import Version as DebVersion
from packaging.utils import canonicalize_name
from packaging.version import Version
from spdx_tools.spdx.parser.json.json_parser import parse_from_file as parse_spdx
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
from tests.conftest import _migrated_database_url
from tests.support.cli import DEBIAN, PYPA, Cli, child_processes, need_vulndata, one_line_error
from tests.support.langfixtures import (
    PYPI_PACKAGES,
    add_index,
    layer_of,
    need,
    pip_site_packages,
    run,
    umoci_layout,
)
from tests.support.rootfs import TarLayer, cached_minbase_image, have, oci_image

SITE = "usr/local/lib/python3.11/site-packages"

pytestmark = pytest.mark.database  # each CLI run gets a database of its own (_migrated_database_url)


# ---- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def feeds(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A database fed by ``vulndb update``: urllib3's and Django's PyPA records and the whole Debian feed."""
    need_vulndata()
    tmp = tmp_path_factory.mktemp("scan-cli")
    cli = Cli(tmp / "data", _migrated_database_url(tmp, "scan"))
    result = cli("vulndb", "update", "-s", PYPA / "urllib3", "-s", PYPA / "django", "-s", DEBIAN)
    assert result.exit_code == 0, result.stderr
    return cli


@pytest.fixture(scope="module")
def py_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout: ``app`` (linux/amd64) holds one layer of pip-installed urllib3 and Django, ``arm64``
    the same layer for linux/arm64, and ``multi`` an index of both."""
    need("umoci")
    root = tmp_path_factory.mktemp("py-image")
    tar = layer_of(pip_site_packages(root), root / "layer.tar", SITE)
    layout = root / "layout"
    umoci_layout(layout, "app", [tar])
    umoci_layout(layout, "arm64", [tar], architecture="arm64")
    add_index(
        layout,
        "multi",
        [
            ("app", {"os": "linux", "architecture": "amd64"}),
            ("arm64", {"os": "linux", "architecture": "arm64", "variant": "v8"}),
        ],
    )
    return layout


@pytest.fixture(scope="module")
def minbase(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> str:
    if not have("umoci"):
        pytest.skip("umoci is not installed")
    cache = getattr(pytestconfig, "cache", None)  # the minbase tar is built once per checkout
    root = cache.mkdir("dockyard-rootfs") if cache else tmp_path_factory.mktemp("rootfs")
    image = cached_minbase_image(root)[1]
    return f"oci:{image.layout}:{image.tag}"


def empty_cli(tmp_path: Path, database_url: str) -> Cli:
    need_vulndata()
    return Cli(tmp_path / "data", database_url)


def manifest_digest(layout: Path, ref: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    (d,) = [d for d in index["manifests"] if d["annotations"]["org.opencontainers.image.ref.name"] == ref]
    return d["digest"]


# ---- the oracle: which PyPA records name a version, read straight from the YAML ------------------------


def _affects(doc: dict, name: str, version: str) -> bool:
    v = Version(version)
    for entry in doc.get("affected") or []:
        if canonicalize_name(entry["package"]["name"]) != canonicalize_name(name):
            continue
        if version in (entry.get("versions") or []):
            return True
        for rng in entry.get("ranges") or []:
            if rng["type"] != "ECOSYSTEM":
                continue
            events = sorted(
                (Version(raw), kind != "introduced", kind) for e in rng["events"] for kind, raw in e.items()
            )
            hit = False
            for at, _, kind in events:
                if kind == "introduced" and v >= at:
                    hit = True
                elif (kind == "fixed" and v >= at) or (kind == "last_affected" and v > at):
                    hit = False
            if hit:
                return True
    return False


def pysec_records(directory: str, name: str, version: str) -> dict[str, dict]:
    docs = [yaml.safe_load(p.read_text()) for p in (PYPA / directory).glob("*.yaml")]
    return {d["id"]: d for d in docs if not d.get("withdrawn") and _affects(d, name, version)}


def cvss3(doc: dict) -> float | None:
    vectors = [s["score"] for s in doc.get("severity") or [] if s["type"] == "CVSS_V3"]
    return max(CVSS3(v).scores()[0] for v in vectors) if vectors else None


def scan_json(cli: Cli, *args: str | Path) -> tuple[dict, int]:
    result = cli("scan", *args, "--format", "json")
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout), result.exit_code


# ---- language packages --------------------------------------------------------------------------------


def test_json_lists_the_pysec_findings_with_scores(feeds: Cli, py_layout: Path) -> None:
    doc, code = scan_json(feeds, f"oci:{py_layout}:app")
    assert code == 0  # findings alone do not fail a scan: only --fail-on does
    assert doc["schema"] == "dockyard.scan/v1"
    assert doc["image"]["digest"] == manifest_digest(py_layout, "app")
    assert doc["image"]["platform"] == "linux/amd64"
    assert {(c["name"], c["version"]) for c in doc["components"]} == set(PYPI_PACKAGES.items())

    for directory, (name, version) in zip(("urllib3", "django"), PYPI_PACKAGES.items(), strict=True):
        expected = pysec_records(directory, name, version)
        assert expected, f"the data names no advisory for {name} {version}"
        found = [f for f in doc["findings"] if f["component"]["name"] == name]
        assert all(f["installed"] == version for f in found)
        by_pysec = {a: f for f in found for a in (f["id"], *f["aliases"]) if a.startswith("PYSEC-")}
        assert set(by_pysec) == set(expected), name
        for pysec, record in expected.items():
            finding = by_pysec[pysec]
            assert finding["id"] in {pysec, *record.get("aliases", [])}  # named by its CVE when it has one
            assert finding["score"] == cvss3(record)  # None when the record has no vector
            assert (finding["severity"] == "Unscored") == (finding["score"] is None)

    cookie = next(f for f in doc["findings"] if "PYSEC-2023-192" in f["aliases"])
    assert (cookie["id"], cookie["score"], cookie["severity"]) == ("CVE-2023-43804", 8.1, "Critical")
    assert cookie["fixed"] == "1.26.17" and cookie["layer_index"] == 0
    assert doc["counts"]["Critical"] >= 1


def test_fail_on_thresholds(tmp_path: Path, fresh_database_url: str, py_layout: Path, feeds: Cli) -> None:
    # A Major (4.2, PYSEC-2023-212) and an unscored record (PYSEC-2021-108) are the worst there is here.
    major, unscored = (PYPA / "urllib3" / f"{i}.yaml" for i in ("PYSEC-2023-212", "PYSEC-2021-108"))
    assert cvss3(yaml.safe_load(major.read_text())) == 4.2
    assert cvss3(yaml.safe_load(unscored.read_text())) is None
    cli = empty_cli(tmp_path, fresh_database_url)
    assert cli("vulndb", "update", "-s", major, "-s", unscored).exit_code == 0
    image = f"oci:{py_layout}:app"
    doc, _ = scan_json(cli, image)
    assert doc["counts"] == {"Critical": 0, "Major": 1, "Minor": 0, "Unscored": 1}
    assert cli("scan", image).exit_code == 0
    assert cli("scan", image, "--fail-on", "critical").exit_code == 0
    for threshold in ("major", "minor"):
        result = cli("scan", image, "--fail-on", threshold, "--format", "json")
        assert result.exit_code == 1
        assert json.loads(result.stdout)["counts"]["Major"] == 1  # the report is still written
    # With CVE-2023-43804 (8.1) in the database, even the highest threshold trips.
    assert feeds("scan", image, "--fail-on", "critical").exit_code == 1
    assert cli("scan", image, "--fail-on", "severe").exit_code == 2  # a usage error


def test_table_goes_to_stdout_and_the_summary_with_it(feeds: Cli, py_layout: Path) -> None:
    result = feeds("scan", f"oci:{py_layout}:app")
    assert result.exit_code == 0
    assert "CVE-2023-43804" in result.stdout and "CVE-2021-31542" in result.stdout
    assert "Critical: 1" in result.stdout and "findings in 2 components" in result.stdout
    assert result.stderr == ""  # no progress display without a terminal


def test_output_file(feeds: Cli, py_layout: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    result = feeds("scan", f"oci:{py_layout}:app", "--format", "json", "--output", target)
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(target.read_text())["schema"] == "dockyard.scan/v1"
    assert "findings in 2 components" in result.stderr  # the summary line, for logs
    table = tmp_path / "report.txt"
    assert feeds("scan", f"oci:{py_layout}:app", "-o", table).stdout == ""
    assert "CVE-2023-43804" in table.read_text()


def test_cyclonedx_and_spdx_validate(feeds: Cli, py_layout: Path, tmp_path: Path) -> None:
    image = f"oci:{py_layout}:app"
    doc, _ = scan_json(feeds, image)
    cdx = feeds("scan", image, "--format", "cyclonedx")
    assert cdx.exit_code == 0
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(cdx.stdout) is None
    bom = json.loads(cdx.stdout)
    assert bom["metadata"]["component"]["version"] == manifest_digest(py_layout, "app")
    purls = {c.get("purl") for c in bom["components"]}
    assert {"pkg:pypi/urllib3@1.26.4", "pkg:pypi/django@3.2"} <= purls
    assert {v["id"] for v in bom["vulnerabilities"]} == {f["id"] for f in doc["findings"]}

    target = tmp_path / "sbom.spdx.json"
    assert feeds("scan", image, "--format", "spdx", "--output", target).exit_code == 0
    assert validate_full_spdx_document(parse_spdx(str(target))) == []
    spdx = json.loads(target.read_text())
    assert spdx["spdxVersion"] == "SPDX-2.3"
    assert {"urllib3", "Django"} <= {p["name"] for p in spdx["packages"]}


def test_sarif_has_a_result_per_finding(feeds: Cli, py_layout: Path) -> None:
    image = f"oci:{py_layout}:app"
    doc, _ = scan_json(feeds, image)
    result = feeds("scan", image, "--format", "sarif")
    assert result.exit_code == 0
    log = json.loads(result.stdout)
    assert log["version"] == "2.1.0"
    (run_,) = log["runs"]
    assert len(run_["results"]) == len(doc["findings"]) > 0
    levels = {r["ruleId"]: r["level"] for r in run_["results"]}
    assert levels["CVE-2023-43804"] == "error"
    assert run_["properties"]["digest"] == manifest_digest(py_layout, "app")


def test_an_index_scans_every_platform_or_the_one_chosen(feeds: Cli, py_layout: Path) -> None:
    image = f"oci:{py_layout}:multi"
    docs, _ = scan_json(feeds, image)
    assert [d["image"]["platform"] for d in docs] == ["linux/amd64", "linux/arm64/v8"]
    assert docs[0]["findings"] == docs[1]["findings"]  # the same layer, read once, matched twice
    (arm,) = [scan_json(feeds, image, "--platform", "linux/arm64")[0]]
    assert arm["image"]["platform"] == "linux/arm64/v8"
    assert arm["image"]["digest"] == manifest_digest(py_layout, "arm64")
    sarif = json.loads(feeds("scan", image, "--format", "sarif").stdout)
    assert [r["properties"]["platform"] for r in sarif["runs"]] == ["linux/amd64", "linux/arm64/v8"]

    line = one_line_error(feeds("scan", image, "--format", "cyclonedx"))
    assert "2 platforms" in line and "--platform" in line
    assert "no platform windows/amd64" in one_line_error(feeds("scan", image, "--platform", "windows/amd64"))


# ---- errors -----------------------------------------------------------------------------------------------


def test_bad_references_and_images_exit_2_with_one_line(feeds: Cli, py_layout: Path, tmp_path: Path) -> None:
    cases = {
        "nope:/x": "expected one of oci:",
        f"oci:{tmp_path}/missing": "no such directory",
        f"oci:{py_layout}": "name one of",
        f"oci:{py_layout}:v9": "no image named 'v9'",
        "docker:nohost": "expected docker://HOST/NAME:TAG",
        f"oci-archive:{tmp_path}/none.tar": "none.tar",
    }
    for reference, message in cases.items():
        assert message in one_line_error(feeds("scan", reference)), reference
    assert "USER:PASSWORD" in one_line_error(feeds("scan", "docker://127.0.0.1:1/a/b:1", "--creds", "x"))


def tampered_copy(layout: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the layout whose first layer's bytes no longer match its digest."""
    copy = tmp_path / "layout"
    shutil.copytree(layout, copy)
    manifest = json.loads((copy / "blobs/sha256" / manifest_digest(copy, "app")[7:]).read_bytes())
    layer = manifest["layers"][0]["digest"]
    blob = copy / "blobs/sha256" / layer[7:]
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # the gzip trailer: the stream still inflates, the digest no longer matches
    blob.write_bytes(bytes(data))
    return copy, layer


def test_a_tampered_layer_is_refused(feeds: Cli, py_layout: Path, tmp_path: Path) -> None:
    copy, layer = tampered_copy(py_layout, tmp_path)
    cli = dataclasses.replace(feeds, extra_env={"DOCKYARD_CACHE_DIR": str(tmp_path / "empty-cache")})
    line = one_line_error(cli("scan", f"oci:{copy}:app"))
    assert layer in line


def test_the_layer_cache(
    feeds: Cli, py_layout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A layer read once is not read again (keyed by digest and indexer version); a corrupt entry is
    ignored and rebuilt. A layer that is read is shown by a tampered copy of it failing its digest check."""
    from dockyard.scanning import layercache
    from dockyard.scanning.indexer import FORMAT

    cache = tmp_path / "cache"
    cli = dataclasses.replace(feeds, extra_env={"DOCKYARD_CACHE_DIR": str(cache)})
    first, _ = scan_json(cli, f"oci:{py_layout}:app")
    (entry,) = (cache / "layers" / f"v{FORMAT}").glob("sha256-*.json")
    copy, layer = tampered_copy(py_layout, tmp_path)
    assert entry.name == layer.replace(":", "-") + ".json"

    again, code = scan_json(cli, f"oci:{copy}:app")  # served from the cache: the blob is not read
    assert code == 0 and again["findings"] == first["findings"]

    entry.write_text('{"format": ' + str(FORMAT) + ', "digest": "sha')  # truncated by a crash
    assert layer in one_line_error(cli("scan", f"oci:{copy}:app"))  # ignored: the layer was read
    scan_json(cli, f"oci:{py_layout}:app")
    assert json.loads(entry.read_text())["digest"] == layer  # rebuilt

    monkeypatch.setattr(layercache, "FORMAT", FORMAT + 1)  # a newer indexer: older facts are not used
    assert layer in one_line_error(cli("scan", f"oci:{copy}:app"))


def test_an_unsafe_layer_is_refused(feeds: Cli, tmp_path: Path) -> None:
    need("umoci")
    tar = tmp_path / "evil.tar"
    tar.write_bytes(TarLayer().file("../../etc/passwd", b"root:x:0:0").bytes())
    oci_image(tmp_path / "layout", "evil", [tar])
    line = one_line_error(feeds("scan", f"oci:{tmp_path / 'layout'}:evil"))
    assert "cannot be scanned safely" in line and "traversal" in line


# ---- layers read by worker processes (DOCKYARD_SCAN_WORKERS) ----------------------------------------------


@pytest.fixture(scope="module")
def layered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``layered``: urllib3 and Django, then a layer whose whiteout removes Django, then an unrelated one."""
    need("umoci")
    root = tmp_path_factory.mktemp("layered-image")
    tree = pip_site_packages(root)
    django = next(tree.glob("[Dd]jango-*.dist-info")).name
    base = layer_of(tree, root / "base.tar", SITE)
    removal = TarLayer().whiteout(f"{SITE}/{django}").file("etc/motd", "hello").write(root / "removal.tar")
    other = TarLayer().file("srv/readme", "nothing to see").write(root / "other.tar")
    umoci_layout(root / "layout", "layered", [base, removal, other])
    return root / "layout"


def with_workers(cli: Cli, workers: str, cache: Path) -> Cli:
    return dataclasses.replace(
        cli, extra_env={"DOCKYARD_SCAN_WORKERS": workers, "DOCKYARD_CACHE_DIR": str(cache)}
    )


def test_layers_read_by_workers_or_in_process_give_the_same_report(
    feeds: Cli, layered: Path, tmp_path: Path
) -> None:
    docs, entries = {}, {}
    for workers in ("0", "1", "3"):  # in process; one worker for all three layers; one worker each
        cache = tmp_path / f"cache-{workers}"
        docs[workers], _ = scan_json(with_workers(feeds, workers, cache), f"oci:{layered}:layered")
        entries[workers] = sorted(p.read_text() for p in cache.rglob("*.json"))
    assert docs["0"] == docs["1"] == docs["3"]
    # The layers' facts merge in image order whoever read them: the second layer removed Django.
    assert {c["name"] for c in docs["0"]["components"]} == {"urllib3"}
    assert any(f["component"]["name"] == "urllib3" for f in docs["0"]["findings"])
    assert len(entries["0"]) == 3 and entries["0"] == entries["1"] == entries["3"]


def test_a_workers_error_is_the_error_of_an_in_process_read(
    feeds: Cli, py_layout: Path, tmp_path: Path
) -> None:
    copy, layer = tampered_copy(py_layout, tmp_path)
    before = child_processes()
    lines = {
        workers: one_line_error(
            with_workers(feeds, workers, tmp_path / f"cache-{workers}")("scan", f"oci:{copy}:app")
        )
        for workers in ("0", "2")
    }
    assert lines["0"] == lines["2"] and layer in lines["2"]
    assert child_processes() == before
    assert not [p for p in tmp_path.rglob("cache-*/**/*") if p.is_file()]  # no entry for an unread layer


def test_a_scan_that_fails_while_workers_read_leaves_nothing_behind(
    tmp_path: Path, fresh_database_url: str, layered: Path
) -> None:
    """The database check fails in the scanning process while its workers may still be reading."""
    cache = tmp_path / "cache"
    cli = with_workers(empty_cli(tmp_path, fresh_database_url), "3", cache)
    before = child_processes()
    line = one_line_error(cli("scan", "--skip-db-update", f"oci:{layered}:layered"))
    assert "holds no advisories" in line
    assert child_processes() == before
    assert not list(cache.rglob(".tmp-*"))  # a worker stopped while writing its entry removes it


@pytest.mark.parametrize("workers", ["abc", "-1", "2.5"])
def test_a_bad_number_of_workers_is_one_line(
    tmp_path: Path, fresh_database_url: str, py_layout: Path, workers: str
) -> None:
    cli = with_workers(empty_cli(tmp_path, fresh_database_url), workers, tmp_path / "cache")
    line = one_line_error(cli("scan", "--skip-db-update", f"oci:{py_layout}:app"))
    assert line == f"error: DOCKYARD_SCAN_WORKERS must be a whole number, 0 or more, not '{workers}'"


def test_when_workers_cannot_be_forked_the_layers_are_read_in_process(
    feeds: Cli, layered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fork failing with ENOMEM (a large process under strict overcommit) warns once and scans all the same.
    (A real EAGAIN from fork is in tests/unit/test_cli_layerpool.py; ENOMEM cannot be had at will.)"""
    expected, _ = scan_json(with_workers(feeds, "0", tmp_path / "cache-0"), f"oci:{layered}:layered")

    def no_memory() -> int:
        raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))

    monkeypatch.setattr(os, "fork", no_memory)
    result = with_workers(feeds, "3", tmp_path / "cache-3")(
        "scan", "--format", "json", f"oci:{layered}:layered"
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == expected
    assert result.stderr.strip().splitlines()[0] == (
        "warning: cannot start a layer worker process (Cannot allocate memory): reading 3 layers in the "
        "scanning process"
    )
    assert result.stderr.count("warning:") == 1


def test_an_empty_database_says_so(tmp_path: Path, fresh_database_url: str, py_layout: Path) -> None:
    cli = empty_cli(tmp_path, fresh_database_url)
    line = one_line_error(cli("scan", "--skip-db-update", f"oci:{py_layout}:app"))
    assert "holds no advisories" in line and "dockyard vulndb update" in line


def test_first_use_fetches_the_configured_feeds(
    tmp_path: Path, empty_database_url: str, py_layout: Path
) -> None:
    cli = empty_cli(tmp_path, empty_database_url)  # a real first use: not even migrated
    cli.extra_env["DOCKYARD_VULNDB_SOURCES"] = f"{PYPA / 'urllib3'},{PYPA / 'django'}"
    doc, code = scan_json(cli, f"oci:{py_layout}:app")
    assert code == 0
    assert {f["component"]["name"] for f in doc["findings"]} == {"urllib3", "Django"}
    status = json.loads(cli("vulndb", "status", "--json").stdout)
    assert status["advisories"] > 0  # kept: the next scan starts at once


def test_sboms_are_written_when_no_feed_can_be_reached(
    tmp_path: Path, fresh_database_url: str, py_layout: Path
) -> None:
    cli = empty_cli(tmp_path, fresh_database_url)
    cli.extra_env["DOCKYARD_VULNDB_SOURCES"] = "http://127.0.0.1:9/osv/all.zip"
    for fmt in ("cyclonedx", "spdx"):
        result = cli("scan", "--format", fmt, f"oci:{py_layout}:app")
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)
        assert "urllib3" in result.stdout and doc
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
        assert any("127.0.0.1:9" in line for line in warnings)
        assert any("findings are not included" in line for line in warnings)
        assert "findings in" not in result.stderr  # no "0 findings" line to read as a clean image
        assert "components, not matched" in result.stderr
    assert "vulnerabilities" not in json.loads(cli("scan", "-f", "cyclonedx", f"oci:{py_layout}:app").stdout)
    # Findings formats cannot be written without advisories: exit 2, whatever the feeds said before.
    result = cli("scan", "--format", "json", f"oci:{py_layout}:app")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    # --skip-db-update: not even tried.
    result = cli("scan", "--skip-db-update", "--format", "spdx", f"oci:{py_layout}:app")
    assert result.exit_code == 0 and "127.0.0.1:9" not in result.stderr


def test_a_real_process_exits_2_without_a_traceback(feeds: Cli, tmp_path: Path) -> None:
    env = {k: v for k, v in {**os.environ, **feeds.env()}.items() if v is not None}
    exe = Path(sys.executable).with_name("dockyard")
    proc = subprocess.run(
        [str(exe), "scan", f"oci:{tmp_path}/missing:latest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: oci:{tmp_path}/missing: no such directory"]


# ---- a Debian image against the whole Debian feed --------------------------------------------------------


def debian12(cve: str, source: str) -> tuple[list[dict], float]:
    """The Debian 12 range events the feed gives ``source`` for ``cve``, and the record's CVSS v3 score."""
    record = json.loads((DEBIAN / "CVE" / cve.split("-")[1] / f"{cve}.json").read_text())
    (entry,) = [
        a
        for a in record["affected"]
        if a.get("package", {}).get("ecosystem") == "Debian:12" and a["package"]["name"] == source
    ]
    return [e for r in entry["ranges"] for e in r["events"]], cvss3(record)


# The minbase's findings on SQLite; the CLI on PostgreSQL: test_json_lists_the_pysec_findings_with_scores.
@pytest.mark.sqlite_only
def test_debian_minbase_against_the_debian_feed(feeds: Cli, minbase: str) -> None:
    doc, _ = scan_json(feeds, minbase)
    assert doc["os"]["osv_ecosystem"] == "Debian:12"
    components = {c["name"]: c for c in doc["components"]}
    findings = {(f["id"], f["component"]["name"]): f for f in doc["findings"]}

    # Unfixed in bookworm according to the feed: reported whatever the installed version, with no fix.
    for cve, source, binary in (
        ("CVE-2023-45853", "zlib", "zlib1g"),
        ("CVE-2023-31484", "perl", "perl-base"),
        ("CVE-2022-0563", "util-linux", "bsdutils"),  # bsdutils' version has an epoch its source's has not
    ):
        events, score = debian12(cve, source)
        assert not any("fixed" in e for e in events), f"{cve} has a fix in the data now"
        finding = findings[(cve, binary)]
        assert finding["fixed"] is None and finding["score"] == score
        # The binary package's version (bsdutils 1:2.38.1-...), the source's in its own field.
        assert finding["installed"] == components[binary]["version"]
        assert finding["source_version"] == components[binary]["source_version"]
    bsdutils = findings[("CVE-2022-0563", "bsdutils")]
    assert bsdutils["installed"].startswith("1:") and bsdutils["installed"] != bsdutils["source_version"]
    assert findings[("CVE-2023-45853", "zlib1g")]["severity"] == "Critical"  # 9.8

    # Fixed in 2.36-9+deb12u3: reported only if the image's glibc is older than that.
    events, _ = debian12("CVE-2023-4911", "glibc")
    (fix,) = [e["fixed"] for e in events if "fixed" in e]
    libc = components["libc6"]
    installed = libc["source_version"] or libc["version"]
    if DebVersion(installed) < DebVersion(fix):
        assert findings[("CVE-2023-4911", "libc6")]["fixed"] == fix
    else:
        assert ("CVE-2023-4911", "libc6") not in findings
    assert sum(doc["counts"].values()) == len(doc["findings"]) > 20


# ---- a registry: dockyard itself ------------------------------------------------------------------------


@pytest.mark.e2e
def test_docker_reference_on_a_live_dockyard(
    feeds: Cli, py_layout: Path, live_server, tmp_path: Path
) -> None:
    skopeo = need("skopeo")
    creds = f"admin:{live_server.admin_password}"
    for src, dest in (("app", "admin/py:1"), ("multi", "admin/py:multi")):
        copy = [skopeo, "copy", "-q", "--all", "--dest-tls-verify=false", "--dest-creds", creds]
        run([*copy, f"oci:{py_layout}:{src}", f"docker://{live_server.host}/{dest}"])
    local, _ = scan_json(feeds, f"oci:{py_layout}:app")
    remote_ref = f"docker://{live_server.host}/admin/py:1"
    remote, _ = scan_json(feeds, remote_ref, "--creds", creds)
    assert remote["image"]["digest"] == manifest_digest(py_layout, "app")
    assert remote["findings"] == local["findings"]
    both, _ = scan_json(feeds, f"docker://{live_server.host}/admin/py:multi", "--creds", creds)
    assert [d["image"]["platform"] for d in both] == ["linux/amd64", "linux/arm64/v8"]

    # The repository is private: no credentials, or wrong ones, is a one-line error.
    assert one_line_error(feeds("scan", remote_ref))
    assert "authentication failed" in one_line_error(feeds("scan", remote_ref, "--creds", "admin:wrong"))

    # Credentials from the auth file skopeo and podman use, found through REGISTRY_AUTH_FILE.
    auth = tmp_path / "auth.json"
    token = base64.b64encode(creds.encode()).decode()
    auth.write_text(json.dumps({"auths": {live_server.host: {"auth": token}}}))
    with_file = dataclasses.replace(feeds, extra_env={"REGISTRY_AUTH_FILE": str(auth)})
    assert scan_json(with_file, remote_ref)[0]["findings"] == local["findings"]
    cdx = with_file("scan", remote_ref, "--format", "cyclonedx")
    assert json.loads(cdx.stdout)["metadata"]["component"]["name"] == "admin/py:1"


def test_a_scan_of_a_migrated_sqlite_database_imports_no_sqlalchemy(
    feeds: Cli, py_layout: Path, tmp_path: Path
) -> None:
    """A real process, cold then warm: on a SQLite file at the newest revision that holds advisories, the
    matcher reads through sqlite3 (SQLAlchemy's import was 0.4-0.5 s of the start-up); on another database
    it goes through SQLAlchemy. The findings are the in-process command's either way."""
    env = {k: v for k, v in feeds.env().items() if v is not None}
    env |= {"PATH": os.environ["PATH"], "DOCKYARD_CACHE_DIR": str(tmp_path / "cache")}
    env |= {"PYTHONPATH": os.pathsep.join(sys.path)}
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('loaded:', 'sqlalchemy' in sys.modules, file=sys.stderr))\n"
        "from dockyard.cli.main import app\n"
        f"sys.argv = ['dockyard', 'scan', 'oci:{py_layout}:app', '--format', 'json']\n"
        "app()\n"
    )
    expected, _ = scan_json(feeds, f"oci:{py_layout}:app")
    sqlite = feeds.database_url.startswith("sqlite")
    for which in ("cold", "warm"):
        command = [sys.executable, "-c", code]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode in (0, 1), done.stderr
        assert f"loaded: {not sqlite}" in done.stderr, (which, done.stderr)
        assert json.loads(done.stdout)["findings"] == expected["findings"], which
