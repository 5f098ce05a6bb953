"""A realistic image with every offline feed. Scores: a finding is Unscored only when no ingested record of
its vulnerability (the feed's own, NVD's, GitHub's) carries a CVSS vector, and a scored finding's vector is
one of those records' vectors.

The image is the test suite's application image (Debian bookworm minbase + pip-installed urllib3 1.26.4 and
Django 3.2 + an npm project). The feeds are the six offline ones under ``vulndata`` plus GitHub advisories:
there is no offline GHSA sample, so two small OSV records in the advisory-database's layout are written here
for CVEs that no other feed scores, modelled on GitHub's advisories of them. The oracle reads the feed files
themselves, never the database. The table: written to a pipe or a log, it is as wide as its content.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from cvss import CVSS2, CVSS3, CVSS4
from tests.conftest import _migrated_database_url
from tests.support.cli import VULNDATA, Cli, need_vulndata
from tests.support.rootfs import cached_app_image, cached_minbase_image, have

pytestmark = pytest.mark.database

FEEDS = (
    "debian-osv",
    "alpine-secdb",
    "pypa-advisory-database",
    "go-vulndb",
    "nodejs-security-wg",
    "nvd-sample",
)
# (GHSA id, CVE, PyPI package, first fixed version, vector): CVEs the offline feeds leave without a vector.
GHSA = (
    (
        "GHSA-q2q7-5pp4-w6pg",
        "CVE-2021-33503",
        "urllib3",
        "1.26.5",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
    ),
    (
        "GHSA-r3xc-prgr-mg9p",
        "CVE-2023-31047",
        "django",
        "3.2.19",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    ),
)
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def ghsa_record(ghsa: str, cve: str, package: str, fixed: str, vector: str) -> dict:
    return {
        "schema_version": "1.4.0",
        "id": ghsa,
        "modified": "2024-01-01T00:00:00Z",
        "published": "2023-01-01T00:00:00Z",
        "aliases": [cve],
        "summary": f"{cve} in {package}",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
            }
        ],
        "severity": [{"type": "CVSS_V3", "score": vector}],
        "database_specific": {"github_reviewed": True},
    }


def write_ghsa(root: Path) -> Path:
    for ghsa, *rest in GHSA:
        folder = root / "advisories" / "github-reviewed" / "2023" / "01" / ghsa
        folder.mkdir(parents=True)
        (folder / f"{ghsa}.json").write_text(json.dumps(ghsa_record(ghsa, *rest)))
    return root


# ---- the oracle: which ids the feed files give a CVSS vector -------------------------------------------


def cvss_score(vector: str) -> float:
    if vector.startswith("CVSS:4"):
        return float(CVSS4(vector).base_score)
    if vector.startswith("CVSS:3"):
        return float(CVSS3(vector).scores()[0])
    return float(CVSS2(vector).scores()[0])


def record_vectors(doc: dict, path: Path) -> tuple[set[str], list[str]]:
    """(the ids a record goes by, the CVSS vectors it carries) for each format the feeds use."""
    if "metrics" in doc and "vulnStatus" in doc:  # NVD CVE API 2.0
        if doc["vulnStatus"] == "Rejected":
            return set(), []
        metrics = [m for ms in doc["metrics"].values() for m in ms if "cvssData" in m]
        return {doc["id"]}, [m["cvssData"]["vectorString"] for m in metrics]
    if "module_name" in doc:  # the Node.js security WG's npm advisories
        return {f"NSWG-ECO-{doc['id']}", *doc.get("cves", [])}, [v for v in [doc.get("cvss_vector")] if v]
    if path.parent.name == "core" and "vulnerable" in doc:  # its core advisories: a word, never a vector
        return {f"NSWG-COR-{path.stem}", *doc.get("cve", [])}, []
    if doc.get("withdrawn"):
        return set(), []
    entries = [*(doc.get("severity") or [])]
    for affected in doc.get("affected") or []:
        entries += affected.get("severity") or []
    vectors = [e["score"] for e in entries if str(e.get("type", "")).startswith("CVSS_")]
    return {doc["id"], *(doc.get("aliases") or [])}, vectors


def scores_by_id(feeds: Iterable[Path], wanted: set[str]) -> dict[str, list[tuple[str, float]]]:
    """id -> [(vector, score)] over every record of the feeds that names one of the wanted ids."""
    pattern = re.compile("|".join(re.escape(i) for i in sorted(wanted, key=len, reverse=True)))
    found: dict[str, list[tuple[str, float]]] = {i: [] for i in wanted}
    for feed in feeds:
        for path in sorted(feed.rglob("*")):
            if (
                path.suffix not in (".json", ".yaml", ".yml")
                or not path.is_file()
                or path.name == "index.json"
            ):
                continue  # vuln/core/index.json gathers the core records read one by one
            text = path.read_text()
            # The Node.js WG's records name themselves by file (NSWG-ECO-<n>, NSWG-COR-<n>): read them all.
            if feed.name != "nodejs-security-wg" and not pattern.search(text):
                continue
            if feed.name == "alpine-secdb":
                assert "CVSS" not in text  # secdb lists fixes, never scores
                continue
            doc = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=YAML_LOADER)
            if isinstance(doc.get("cve"), dict):  # an API 2.0 ``vulnerabilities[]`` item around the record
                doc = doc["cve"]
            ids, vectors = record_vectors(doc, path)
            for i in ids & wanted:
                found[i] += [(v.strip(), cvss_score(v.strip())) for v in vectors]
    return found


# ---- the scan -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_image(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> str:
    if not have("umoci", "npm"):
        pytest.skip("umoci and npm build the image")
    cache = getattr(pytestconfig, "cache", None)  # the minbase tar is built once per checkout
    root = cache.mkdir("dockyard-rootfs") if cache else tmp_path_factory.mktemp("rootfs")
    image = cached_app_image(root, cached_minbase_image(root)[0])
    return f"oci:{image.layout}:{image.tag}"


@pytest.fixture(scope="module")
def every_feed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, list[Path]]:
    need_vulndata()
    tmp = tmp_path_factory.mktemp("scores")
    feeds = [VULNDATA / f for f in FEEDS] + [write_ghsa(tmp / "advisory-database")]
    cli = Cli(tmp / "data", _migrated_database_url(tmp, "scores"))
    args = [a for feed in feeds for a in ("-s", feed)]
    result = cli("vulndb", "update", *args)
    assert result.exit_code == 0, result.stderr
    assert "0 errors" in result.stdout and " errors" not in result.stdout.replace("0 errors", "")
    return cli, feeds


# An oracle over every feed's records (a minute on PostgreSQL): what it reads and writes there is the
# ingest and match of tests/unit/scanning/test_vulndb.py and test_matcher.py, which run on both.
@pytest.mark.sqlite_only
def test_unscored_only_where_no_ingested_record_scores_the_cve(
    every_feed: tuple[Cli, list[Path]], app_image: str
) -> None:
    cli, feeds = every_feed
    result = cli("scan", app_image, "--format", "json")
    assert result.exit_code == 0, result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert len(findings) > 100  # a realistic image: Debian, PyPI and npm findings
    assert {f["component"]["ecosystem"] for f in findings} >= {"Debian", "PyPI", "npm"}

    ids_of = {(f["id"], f["component"]["name"]): {f["id"], *f["aliases"]} for f in findings}
    scores = scores_by_id(feeds, set().union(*ids_of.values()))
    unscored = []
    for f in findings:
        offered = [s for i in ids_of[(f["id"], f["component"]["name"])] for s in scores[i]]
        if f["severity"] == "Unscored":
            # No record of it anywhere carries a vector that scores (CVSS 0.0 is "None": unscored too).
            assert not [s for s in offered if s[1] > 0], (f["id"], f["component"]["name"], offered)
            unscored.append(f)
        else:
            # Scored: by a vector one of its records really carries, with where it came from said.
            assert (f["vector"], f["score"]) in offered, (f["id"], f["vector"], offered)
            assert f["score_source"] and f["score_record"] and f["cvss_version"], f

    # The severity sources were used on this image: NVD's Primary and Secondary metrics, and GitHub's.
    sources = {f["score_source"].split(" v")[0] for f in findings if f["score_source"]}
    assert {"nvd (primary)", "ghsa"} <= sources and any(s.startswith("nvd (secondary") for s in sources)
    by_cve = {f["id"]: f for f in findings}
    for ghsa, cve, _, _, vector in GHSA:
        assert (by_cve[cve]["score_record"], by_cve[cve]["vector"]) == (ghsa, vector)
        assert by_cve[cve]["score_source"] == "ghsa v3.1"

    nvd_sample = {p.stem for p in (VULNDATA / "nvd-sample").glob("CVE-*.json")}
    in_sample = sum(f["id"] in nvd_sample for f in unscored)
    print(f"{len(unscored)} of {len(findings)} findings Unscored; {in_sample} of them in the NVD sample")
    assert unscored  # the sample holds records NVD publishes without metrics: some stay unscored


# ---- the table in a log -----------------------------------------------------------------------------------


def table_rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")
    ]


def assert_uncut(table: str, findings: list[dict]) -> None:
    """Every finding is one row, its identifier, package, versions and score source whole."""
    assert "…" not in table
    rows = {(r[1], r[4]): r for r in table_rows(table)}
    assert len(rows) == len(findings)
    for f in findings:
        row = rows[(f["id"], f["component"]["name"])]
        assert row[5] == f["installed"] and row[6] == (f["fixed"] or "no fix")
        assert row[3] == (f["score_source"] or "-")
    assert max(len(line) for line in table.splitlines()) > 80  # wider than a terminal would have been


def test_the_table_is_never_cut_when_stdout_is_not_a_terminal(
    every_feed: tuple[Cli, list[Path]], app_image: str
) -> None:
    cli, _ = every_feed
    cli = dataclasses.replace(cli, extra_env={**cli.extra_env, "COLUMNS": "80"})
    findings = json.loads(cli("scan", app_image, "--format", "json").stdout)["findings"]
    assert_uncut(cli("scan", app_image).stdout, findings)  # typer's CliRunner

    # A real process whose stdout is a pipe (`dockyard scan IMAGE | cat`).
    env = {k: v for k, v in {**os.environ, **cli.env()}.items() if v is not None}
    exe = Path(sys.executable).with_name("dockyard")
    proc = subprocess.run([str(exe), "scan", app_image], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert_uncut(proc.stdout, findings)
