"""The scan renderers: table, JSON document, SARIF log, counts and the --fail-on gate.

Scores and classes follow severity.py: Critical 7.0-10.0, Major 4.0-6.9, Minor 0.1-3.9, Unscored otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum, StrEnum

import jsonschema
import pytest
from rich.console import Console

from dockyard.scanning import report
from dockyard.scanning.types import Component, ImageIndex, OSInfo

BASE = "sha256:" + "ab" * 32
APP = "sha256:" + "cd" * 32
IMAGE = "acme/web:1.2@sha256:" + "ef" * 32

LIBSSL = Component(
    "libssl3",
    "3.0.11-1~deb12u2",
    "Debian:12",
    "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12",
    BASE,
    "var/lib/dpkg/status",
    "openssl",
    "3.0.11-1~deb12u2",
    "amd64",
)
LOG4J = Component(
    "org.apache.logging.log4j:log4j-core",
    "2.14.1",
    "Maven",
    "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
    APP,
    "app/lib/log4j-core-2.14.1.jar",
)
BABEL = Component(
    "@babel/core",
    "7.23.2",
    "npm",
    "pkg:npm/%40babel/core@7.23.2",
    APP,
    "app/node_modules/@babel/core/package.json",
)
LODASH = Component(
    "lodash", "4.17.20", "npm", "pkg:npm/lodash@4.17.20", APP, "app/node_modules/lodash/package.json"
)
INDEX = ImageIndex(
    os=OSInfo("debian", "12", "Debian GNU/Linux 12 (bookworm)", "bookworm"),
    components=[LIBSSL, LOG4J, BABEL, LODASH],
    layers=[BASE, APP],
    platform="linux/amd64",
    warnings=["skipped a 3 GiB file"],
)


@dataclass(frozen=True)
class Finding:
    id: str
    component: Component
    severity: object
    score: float | None = None
    vector: str | None = None
    fixed_version: str | None = None
    summary: str = ""
    aliases: tuple[str, ...] = field(default=())
    score_source: str | None = None
    score_record: str | None = None

    @property
    def installed_version(self) -> str:
        return self.component.version


def of(*classes: str) -> list[Finding]:
    return [Finding(f"CVE-2024-{i:04d}", LODASH, c) for i, c in enumerate(classes)]


MINOR = Finding(
    "CVE-2023-5678",
    LIBSSL,
    "Minor",
    3.7,
    "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:L",
    None,
    "Excessive time spent in DH check",
)
CRITICAL = Finding(
    "CVE-2021-44228",
    LOG4J,
    "Critical",
    10.0,
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H",
    "2.15.0",
    "Remote code execution via JNDI lookups",
    ("GHSA-jfh8-c2jp-5v3q",),
    "nvd (primary) v3.1",
    "NVD-CVE-2021-44228",
)
MAJOR = Finding(
    "CVE-2023-45133",
    BABEL,
    "Major",
    6.5,
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:N/I:N/A:H",
    "7.23.2-fixed",
    "Arbitrary code execution",
    ("GHSA-67hx-6x53-jw92",),
)
UNSCORED = Finding("OSV-2024-0001", LODASH, "Unscored", summary="Command injection | in <template>")
# The same vulnerability in two packages: one SARIF rule, two results.
MAJOR_TOO = Finding("CVE-2023-45133", LODASH, "Major", 4.3, None, "4.17.21", "Arbitrary code execution")
FINDINGS = [MINOR, UNSCORED, MAJOR, CRITICAL, MAJOR_TOO]


# -- counts and --fail-on ------------------------------------------------------------------------------------


def test_counts_lists_every_class_in_order():
    assert list(report.counts([])) == ["Critical", "Major", "Minor", "Unscored"]
    assert report.counts([]) == {"Critical": 0, "Major": 0, "Minor": 0, "Unscored": 0}
    result = report.counts(FINDINGS)
    assert list(result.items()) == [("Critical", 1), ("Major", 2), ("Minor", 1), ("Unscored", 1)]


class Severity(StrEnum):
    CRITICAL = "Critical"
    MAJOR = "Major"


class PlainSeverity(Enum):
    MINOR = "Minor"


def test_severity_may_be_an_enum_or_any_case_but_not_unknown():
    assert report.counts(of(Severity.CRITICAL, Severity.MAJOR, PlainSeverity.MINOR, "unscored")) == {
        "Critical": 1,
        "Major": 1,
        "Minor": 1,
        "Unscored": 1,
    }
    with pytest.raises(ValueError, match="unknown severity class"):
        report.counts(of("High"))


@pytest.mark.parametrize(
    ("present", "fail_on", "expected"),
    [
        # the worst finding present, the threshold, whether the scan fails
        ("Critical", "critical", True),
        ("Critical", "major", True),
        ("Critical", "minor", True),
        ("Major", "critical", False),
        ("Major", "major", True),
        ("Major", "minor", True),
        ("Minor", "critical", False),
        ("Minor", "major", False),
        ("Minor", "minor", True),
        ("Unscored", "critical", False),
        ("Unscored", "major", False),
        ("Unscored", "minor", False),
    ],
)
def test_exceeds_at_every_boundary(present, fail_on, expected):
    # Pad with every class better than the one under test, so the worst finding alone decides.
    order = ["Critical", "Major", "Minor", "Unscored"]
    padding = order[order.index(present) + 1 :]
    assert report.exceeds(of(*padding, present), fail_on) is expected
    assert report.exceeds(of(present, *padding), fail_on.upper()) is expected


def test_exceeds_with_no_findings_and_bad_thresholds():
    for level in ("critical", "major", "minor"):
        assert report.exceeds([], level) is False
    with pytest.raises(ValueError, match="--fail-on"):
        report.exceeds(FINDINGS, "high")
    with pytest.raises(ValueError):
        report.exceeds(FINDINGS, "unscored")


# -- table --------------------------------------------------------------------------------------------------


def render(findings, *, color: bool = False) -> str:
    console = Console(
        record=True, width=220, force_terminal=color, color_system="standard" if color else None
    )
    report.as_table(findings, INDEX, console=console)
    return console.export_text(styles=color)


def rows(text: str) -> list[list[str]]:
    """The body rows of the rendered table, as lists of stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def test_table_rows_are_sorted_worst_first_with_every_column():
    text = render(FINDINGS)
    assert rows(text) == [
        [
            "Critical",
            "CVE-2021-44228",
            "10.0",
            "nvd (primary) v3.1",
            "org.apache.logging.log4j:log4j-core",
            "2.14.1",
            "2.15.0",
            "cdcdcdcdcdcd",
        ],
        ["Major", "CVE-2023-45133", "6.5", "-", "@babel/core", "7.23.2", "7.23.2-fixed", "cdcdcdcdcdcd"],
        ["Major", "CVE-2023-45133", "4.3", "-", "lodash", "4.17.20", "4.17.21", "cdcdcdcdcdcd"],
        ["Minor", "CVE-2023-5678", "3.7", "-", "libssl3", "3.0.11-1~deb12u2", "no fix", "abababababab"],
        ["Unscored", "OSV-2024-0001", "-", "-", "lodash", "4.17.20", "no fix", "cdcdcdcdcdcd"],
    ]
    assert "OS: Debian GNU/Linux 12 (bookworm)" in text
    assert "Critical: 1  Major: 2  Minor: 1  Unscored: 1  (5 findings in 4 components)" in text


def test_table_colours_the_class():
    text = render([CRITICAL, MAJOR, MINOR])
    coloured = render([CRITICAL, MAJOR, MINOR], color=True)
    assert "\x1b[" not in text
    assert "\x1b[1;31mCritical" in coloured  # bold red
    assert "\x1b[33mMinor" in coloured  # yellow


def test_table_prints_image_content_literally():
    evil = Component("[bold red]evil[/]", "1.0", "npm", "pkg:npm/evil@1.0", APP, "x")
    text = render([Finding("CVE-2024-9999", evil, "Minor", 2.0)])
    assert "[bold red]evil[/]" in text


def test_table_with_no_findings_still_prints_counts():
    text = render([])
    assert "No known vulnerabilities found." in text
    assert "Critical: 0  Major: 0  Minor: 0  Unscored: 0  (0 findings in 4 components)" in text


def test_table_in_a_log_is_as_wide_as_its_content():
    # Not a terminal (a CI log, a pipe): 80 columns would cut names and versions with an ellipsis.
    long = Component(
        "libgnutls-openssl27-very-long-package-name",
        "1:3.7.9-2+deb12u3-with-a-long-version",
        "Debian",
        "pkg:deb/debian/x@1",
        BASE,
        "var/lib/dpkg/status",
    )
    finding = Finding("GHSA-aaaa-bbbb-cccc-dddd-eeee", long, "Critical", 9.8, None, "1:3.7.9-2+deb12u4-fixed")
    console = Console(record=True, width=80, force_terminal=False, color_system=None)
    report.as_table([finding], INDEX, console=console)
    text = console.export_text()
    for value in (long.name, long.version, finding.id, finding.fixed_version, "Critical", "Component"):
        assert value in text
    assert "…" not in text
    assert console.width == 80  # restored


def test_table_on_a_narrow_terminal_folds_instead_of_cutting():
    long = Component("a-really-long-package-name-x", "1.2.3-a-long-version", "npm", "pkg:npm/x@1", APP, "x")
    console = Console(record=True, width=60, force_terminal=True, color_system=None)
    report.as_table([Finding("CVE-2024-12345678", long, "Minor", 2.0)], INDEX, console=console)
    text = console.export_text()
    assert "…" not in text
    assert "".join(row[1] for row in rows(text)) == "CVE-2024-12345678"  # folded over lines, all there
    assert "".join(row[4] for row in rows(text)) == long.name


def test_installed_is_the_binary_package_version_and_the_source_keeps_its_own():
    bsdutils = Component(
        "bsdutils",
        "1:2.38.1-5+deb12u3",
        "Debian",
        "pkg:deb/debian/bsdutils@1:2.38.1-5%2Bdeb12u3",
        BASE,
        "var/lib/dpkg/status",
        "util-linux",
        "2.38.1-5+deb12u3",
    )

    @dataclass(frozen=True)
    class Matched(Finding):
        @property
        def installed_version(self) -> str:
            return "2.38.1-5+deb12u3"  # what the matcher compared: the source version

    finding = Matched("CVE-2022-0563", bsdutils, "Minor", 2.0)
    (row,) = rows(render([finding]))
    assert row[5] == "1:2.38.1-5+deb12u3"
    (doc,) = json.loads(report.as_json(IMAGE, INDEX, [finding]))["findings"]
    assert doc["installed"] == "1:2.38.1-5+deb12u3"
    assert (doc["source_name"], doc["source_version"]) == ("util-linux", "2.38.1-5+deb12u3")
    sarif = json.loads(report.as_sarif(IMAGE, [finding]))["runs"][0]["results"][0]["properties"]
    assert sarif["installedVersion"] == "1:2.38.1-5+deb12u3"
    assert sarif["sourceVersion"] == "2.38.1-5+deb12u3"


@pytest.mark.parametrize(
    ("vuln_id", "url"),
    [
        ("CVE-2021-44228", "https://nvd.nist.gov/vuln/detail/CVE-2021-44228"),
        ("GHSA-jfh8-c2jp-5v3q", "https://github.com/advisories/GHSA-jfh8-c2jp-5v3q"),
        ("NSWG-ECO-516", "https://github.com/nodejs/security-wg/blob/main/vuln/npm/516.json"),
        ("NSWG-COR-12", "https://github.com/nodejs/security-wg/blob/main/vuln/core/12.json"),
        # The names stored before, for findings recorded under them.
        ("NPM-516", "https://github.com/nodejs/security-wg/blob/main/vuln/npm/516.json"),
        ("NODE-12", "https://github.com/nodejs/security-wg/blob/main/vuln/core/12.json"),
        ("PYSEC-2021-59", "https://osv.dev/vulnerability/PYSEC-2021-59"),
        ("ALPINE-XSA-313", "https://security.alpinelinux.org/vuln/XSA-313"),
    ],
)
def test_advisory_links_resolve_to_the_record(vuln_id: str, url: str) -> None:
    assert report.advisory_url(vuln_id) == url


# -- JSON ---------------------------------------------------------------------------------------------------


def test_json_document_structure():
    doc = json.loads(report.as_json(IMAGE, INDEX, FINDINGS))
    assert list(doc) == ["schema", "image", "os", "counts", "components", "findings", "warnings"]
    assert doc["schema"] == "dockyard.scan/v1"
    assert doc["image"] == {"reference": IMAGE, "platform": "linux/amd64", "layers": [BASE, APP]}
    assert doc["os"] == {
        "id": "debian",
        "version_id": "12",
        "pretty_name": "Debian GNU/Linux 12 (bookworm)",
        "codename": "bookworm",
        "osv_ecosystem": "Debian:12",
    }
    assert doc["counts"] == {"Critical": 1, "Major": 2, "Minor": 1, "Unscored": 1}
    assert doc["warnings"] == ["skipped a 3 GiB file"]
    assert len(doc["components"]) == 4
    libssl = next(c for c in doc["components"] if c["name"] == "libssl3")
    assert libssl == {
        "name": "libssl3",
        "version": "3.0.11-1~deb12u2",
        "ecosystem": "Debian:12",
        "purl": LIBSSL.purl,
        "layer": BASE,
        "path": "var/lib/dpkg/status",
        "source_name": "openssl",
        "source_version": "3.0.11-1~deb12u2",
        "arch": "amd64",
    }

    assert [f["id"] for f in doc["findings"]] == [
        "CVE-2021-44228",
        "CVE-2023-45133",
        "CVE-2023-45133",
        "CVE-2023-5678",
        "OSV-2024-0001",
    ]
    assert doc["findings"][0] == {
        "id": "CVE-2021-44228",
        "aliases": ["GHSA-jfh8-c2jp-5v3q"],
        "severity": "Critical",
        "score": 10.0,
        "vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H",
        "cvss_version": None,
        "score_source": "nvd (primary) v3.1",
        "score_record": "NVD-CVE-2021-44228",
        "url": "https://nvd.nist.gov/vuln/detail/CVE-2021-44228",
        "summary": "Remote code execution via JNDI lookups",
        "component": {
            "name": "org.apache.logging.log4j:log4j-core",
            "version": "2.14.1",
            "ecosystem": "Maven",
            "purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
        },
        "installed": "2.14.1",
        "source_name": None,
        "source_version": None,
        "fixed": "2.15.0",
        "layer": APP,
        "layer_index": 1,
        "path": "app/lib/log4j-core-2.14.1.jar",
    }
    unscored = doc["findings"][-1]
    assert (unscored["score"], unscored["vector"], unscored["fixed"], unscored["severity"]) == (
        None,
        None,
        None,
        "Unscored",
    )
    assert doc["findings"][3]["layer_index"] == 0


def test_json_for_an_image_without_os_or_findings():
    index = ImageIndex(os=None, components=[], layers=[APP])
    doc = json.loads(report.as_json("scratch-app:1", index, []))
    assert doc["os"] is None
    assert doc["findings"] == [] and doc["components"] == []
    assert doc["counts"] == {"Critical": 0, "Major": 0, "Minor": 0, "Unscored": 0}


# -- SARIF --------------------------------------------------------------------------------------------------

_MESSAGE = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "markdown": {}, "id": {}, "arguments": {}, "properties": {}},
    "anyOf": [{"required": ["text"]}, {"required": ["id"]}],
    "additionalProperties": False,
}
_MULTIFORMAT = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "markdown": {"type": "string"}, "properties": {}},
    "required": ["text"],
    "additionalProperties": False,
}
_PROPERTY_BAG = {
    "type": "object",
    "properties": {"tags": {"type": "array", "uniqueItems": True, "items": {"type": "string"}}},
    "additionalProperties": True,
}
_LEVEL = {"enum": ["none", "note", "warning", "error"]}


def _obj(required: list[str], **properties) -> dict:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_ANY = {}
# The objects of the SARIF 2.1.0 schema (oasis-tcs/sarif-spec sarif-schema-2.1.0.json) that as_sarif writes,
# with their full property lists (so a misspelt key fails as additionalProperties) and their constraints;
# objects we never write are accepted as they come. No installed package ships the schema itself.
# fmt: off
SARIF_2_1_0_EXCERPT = _obj(
    ["version", "runs"],
    **{
        "$schema": {"type": "string", "format": "uri"},
        "version": {"enum": ["2.1.0"]},
        "inlineExternalProperties": _ANY,
        "properties": _PROPERTY_BAG,
        "runs": {
            "type": "array",
            "minItems": 1,
            "items": _obj(
                ["tool"],
                **dict.fromkeys(
                    [
                        "invocations", "conversion", "language", "versionControlProvenance",
                        "originalUriBaseIds", "artifacts", "logicalLocations", "graphs",
                        "automationDetails", "runAggregates", "baselineGuid", "redactionTokens",
                        "defaultEncoding", "defaultSourceLanguage", "newlineSequences", "columnKind",
                        "externalPropertyFileReferences", "threadFlowLocations", "taxonomies",
                        "addresses", "translations", "policies", "webRequests", "webResponses",
                        "specialLocations",
                    ],
                    _ANY,
                ),
                properties=_PROPERTY_BAG,
                tool=_obj(
                    ["driver"],
                    extensions=_ANY,
                    properties=_PROPERTY_BAG,
                    driver=_obj(
                        ["name"],
                        **dict.fromkeys(
                            [
                                "guid", "organization", "product", "productSuite", "shortDescription",
                                "fullDescription", "fullName", "semanticVersion", "dottedQuadFileVersion",
                                "releaseDateUtc", "downloadUri", "globalMessageStrings", "notifications",
                                "taxa", "locations", "language", "contents", "isComprehensive",
                                "localizedDataSemanticVersion",
                                "minimumRequiredLocalizedDataSemanticVersion", "associatedComponent",
                                "translationMetadata", "supportedTaxonomies",
                            ],
                            _ANY,
                        ),
                        name={"type": "string"},
                        version={"type": "string"},
                        informationUri={"type": "string", "format": "uri"},
                        properties=_PROPERTY_BAG,
                        rules={
                            "type": "array",
                            "uniqueItems": True,
                            "items": _obj(
                                ["id"],
                                **dict.fromkeys(
                                    [
                                        "deprecatedIds", "guid", "deprecatedGuids", "deprecatedNames",
                                        "messageStrings", "relationships",
                                    ],
                                    _ANY,
                                ),
                                id={"type": "string"},
                                name={"type": "string"},
                                shortDescription=_MULTIFORMAT,
                                fullDescription=_MULTIFORMAT,
                                help=_MULTIFORMAT,
                                helpUri={"type": "string", "format": "uri"},
                                defaultConfiguration=_obj(
                                    [],
                                    enabled={"type": "boolean"},
                                    level=_LEVEL,
                                    rank=_ANY,
                                    parameters=_ANY,
                                    properties=_PROPERTY_BAG,
                                ),
                                properties=_PROPERTY_BAG,
                            ),
                        },
                    ),
                ),
                results={
                    "type": "array",
                    "items": _obj(
                        ["message"],
                        **dict.fromkeys(
                            [
                                "rule", "kind", "analysisTarget", "guid", "correlationGuid",
                                "occurrenceCount", "fingerprints", "stacks", "codeFlows", "graphs",
                                "graphTraversals", "relatedLocations", "suppressions", "baselineState",
                                "rank", "attachments", "hostedViewerUri", "workItemUris", "provenance",
                                "fixes", "taxa", "webRequest", "webResponse",
                            ],
                            _ANY,
                        ),
                        ruleId={"type": "string"},
                        ruleIndex={"type": "integer", "minimum": -1},
                        level=_LEVEL,
                        message=_MESSAGE,
                        partialFingerprints={"type": "object", "additionalProperties": {"type": "string"}},
                        properties=_PROPERTY_BAG,
                        locations={
                            "type": "array",
                            "items": _obj(
                                [],
                                id=_ANY,
                                message=_ANY,
                                annotations=_ANY,
                                relationships=_ANY,
                                properties=_PROPERTY_BAG,
                                physicalLocation={
                                    **_obj(
                                        [],
                                        address=_ANY,
                                        region=_ANY,
                                        contextRegion=_ANY,
                                        properties=_PROPERTY_BAG,
                                        artifactLocation=_obj(
                                            [],
                                            uri={"type": "string", "format": "uri-reference"},
                                            uriBaseId={"type": "string"},
                                            index={"type": "integer", "minimum": -1},
                                            description=_MESSAGE,
                                            properties=_PROPERTY_BAG,
                                        ),
                                    ),
                                    "anyOf": [{"required": ["address"]}, {"required": ["artifactLocation"]}],
                                },
                                logicalLocations={
                                    "type": "array",
                                    "items": _obj(
                                        [],
                                        name={"type": "string"},
                                        index=_ANY,
                                        fullyQualifiedName={"type": "string"},
                                        decoratedName={"type": "string"},
                                        parentIndex=_ANY,
                                        kind={"type": "string"},
                                        properties=_PROPERTY_BAG,
                                    ),
                                },
                            ),
                        },
                    ),
                },
            ),
        },
    },
)
# fmt: on


def sarif(findings=FINDINGS) -> dict:
    return json.loads(report.as_sarif(IMAGE, findings))


def test_sarif_matches_the_2_1_0_schema_excerpt():
    validator = jsonschema.Draft7Validator(SARIF_2_1_0_EXCERPT, format_checker=jsonschema.FormatChecker())
    log = sarif()
    validator.validate(log)
    validator.validate(sarif([]))
    log["runs"][0]["results"][0]["level"] = "critical"
    log["runs"][0]["results"][1]["locations"][0]["physicalLocation"]["artifactLoc"] = {}
    assert len(list(validator.iter_errors(log))) == 2  # the excerpt can fail


def test_sarif_rules_one_per_vulnerability():
    log = sarif()
    assert log["version"] == "2.1.0"
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    run = log["runs"][0]
    assert run["tool"]["driver"]["name"] == "dockyard"
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["CVE-2021-44228", "CVE-2023-45133", "CVE-2023-5678", "OSV-2024-0001"]
    log4shell = rules[0]
    assert log4shell["properties"]["security-severity"] == "10.0"
    assert log4shell["properties"]["scoreSource"] == "nvd (primary) v3.1"
    assert "security" in log4shell["properties"]["tags"]
    assert log4shell["defaultConfiguration"] == {"level": "error"}
    assert log4shell["helpUri"] == "https://nvd.nist.gov/vuln/detail/CVE-2021-44228"
    help_text = log4shell["help"]["text"]
    assert "Remote code execution via JNDI lookups" in help_text
    assert "org.apache.logging.log4j:log4j-core 2.14.1: fixed in 2.15.0" in help_text
    assert "GHSA-jfh8-c2jp-5v3q" in help_text
    assert "| org.apache.logging.log4j:log4j-core | 2.14.1 | 2.15.0 |" in log4shell["help"]["markdown"]
    # One rule for a vulnerability in two packages; its severity is the worse of the two scores.
    babel_rule = rules[1]
    assert babel_rule["properties"]["security-severity"] == "6.5"
    assert "lodash 4.17.20: fixed in 4.17.21" in babel_rule["help"]["text"]
    assert rules[2]["properties"]["security-severity"] == "3.7"
    assert "security-severity" not in rules[3]["properties"]  # unscored: GitHub falls back to the level
    assert rules[3]["helpUri"] == "https://osv.dev/vulnerability/OSV-2024-0001"
    # Third-party text cannot break the markdown table or inject HTML.
    assert "Command injection \\| in &lt;template>" in rules[3]["help"]["markdown"]


@pytest.mark.parametrize(
    ("finding", "level"),
    [(CRITICAL, "error"), (MAJOR, "warning"), (MINOR, "note"), (UNSCORED, "note")],
)
def test_sarif_levels(finding, level):
    run = sarif([finding])["runs"][0]
    assert run["results"][0]["level"] == level
    assert run["tool"]["driver"]["rules"][0]["defaultConfiguration"]["level"] == level


def test_sarif_results_one_per_finding_located_at_layer_and_purl():
    run = sarif()["runs"][0]
    results = run["results"]
    rules = run["tool"]["driver"]["rules"]
    assert len(results) == len(FINDINGS)
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in results)
    assert [r["level"] for r in results] == ["error", "warning", "warning", "note", "note"]
    first = results[0]
    location = first["locations"][0]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == "app/lib/log4j-core-2.14.1.jar"
    assert APP in location["physicalLocation"]["artifactLocation"]["description"]["text"]
    assert location["logicalLocations"][0]["fullyQualifiedName"] == LOG4J.purl
    assert first["properties"]["layer"] == APP
    assert first["properties"]["purl"] == LOG4J.purl
    assert first["properties"]["fixedVersion"] == "2.15.0"
    assert (first["properties"]["scoreSource"], first["properties"]["scoreRecord"]) == (
        "nvd (primary) v3.1",
        "NVD-CVE-2021-44228",
    )
    assert "2.14.1" in first["message"]["text"] and "fixed in 2.15.0" in first["message"]["text"]
    prints = [r["partialFingerprints"]["dockyardFinding/v1"] for r in results]
    assert len(set(prints)) == len(prints)
    assert run["properties"]["image"] == IMAGE
    assert run["properties"]["counts"] == {"Critical": 1, "Major": 2, "Minor": 1, "Unscored": 1}


def test_sarif_uri_is_a_percent_encoded_relative_reference():
    odd = Component("odd", "1", "PyPI", "pkg:pypi/odd@1", APP, "opt/my app/odd-1.dist-info/METADATA")
    results = sarif([Finding("CVE-2024-0002", odd, "Minor", 1.0)])["runs"][0]["results"]
    uri = results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "opt/my%20app/odd-1.dist-info/METADATA"
    assert (
        sarif([CRITICAL])["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"][
            "uri"
        ]
        == "app/lib/log4j-core-2.14.1.jar"
    )


def test_sarif_rule_severity_is_the_highest_score_of_its_findings():
    low_first = [
        Finding("CVE-2024-0003", LODASH, "Major", 4.1, "CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:L/I:L/A:L"),
        Finding("CVE-2024-0003", BABEL, "Major", 6.9, "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:L/A:N"),
    ]
    rule = sarif(low_first)["runs"][0]["tool"]["driver"]["rules"][0]
    assert rule["properties"]["security-severity"] == "6.9"
    assert rule["properties"]["cvssVector"] == "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:L/A:N"


def test_sarif_fingerprints_are_stable():
    assert sarif() == sarif(list(reversed(FINDINGS)))
