"""Render scan results for people and machines: a rich table, a stable JSON document and SARIF 2.1.0.

The renderers read findings through ``FindingLike`` (the attributes of the matcher's ``Finding``), so they do
not depend on the matcher module. Every output lists findings in one order: worst severity class first,
then highest score, then vulnerability id, component name and installed version.

JSON document (``as_json``), version ``dockyard.scan/v1``::

    {
      "schema": "dockyard.scan/v1",
      "image": {"reference": str, "platform": str | null, "layers": [digest, ...]},
      "os": {"id", "version_id", "pretty_name", "codename", "osv_ecosystem"} | null,
      "counts": {"Critical": int, "Major": int, "Minor": int, "Unscored": int},
      "components": [{"name", "version", "ecosystem", "purl", "layer", "path",
                      "source_name", "source_version", "arch"}, ...],
      "findings": [{"id", "aliases": [str], "severity", "score": float | null, "vector": str | null,
                    "cvss_version": "v2" | "v3" | "v4" | null, "score_source": str | null,
                    "score_record": str | null,
                    "url": str, "summary", "component": {"name", "version", "ecosystem", "purl"},
                    "installed", "source_name": str | null, "source_version": str | null,
                    "fixed": str | null, "layer", "layer_index": int | null, "path"}, ...],

``installed`` is the version of the package as installed (the binary package's for OS packages); an OS
package is matched on its source package, whose name and version are ``source_name`` and ``source_version``
(null for language packages). ``score_source`` says where the score came from: the feed, NVD's Primary or
Secondary metric and the vector's CVSS version (``debian v3.1``, ``nvd (primary) v3.1``, ``ghsa v3.1``), and
``score_record`` the record whose vector it is (see ``scanning.severity`` for the order of preference);
``url`` is a page describing the vulnerability.
      "warnings": [str, ...]
    }
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from enum import Enum
from importlib import metadata
from typing import Any, Protocol
from urllib.parse import quote

from rich.console import Console, JustifyMethod
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from dockyard.scanning.types import Component, ImageIndex

SEVERITY_CLASSES: tuple[str, ...] = ("Critical", "Major", "Minor", "Unscored")
_RANK = {name: rank for rank, name in enumerate(SEVERITY_CLASSES)}
# --fail-on value -> the worst rank that still trips it ("major" trips on Major and Critical).
FAIL_ON_LEVELS: dict[str, int] = {"critical": 0, "major": 1, "minor": 2}
# Unscored findings map to "note": an unknown severity does not trip --fail-on either.
SARIF_LEVELS: dict[str, str] = {"Critical": "error", "Major": "warning", "Minor": "note", "Unscored": "note"}
_STYLES = {"Critical": "bold red", "Major": "dark_orange", "Minor": "yellow", "Unscored": "dim"}
JSON_SCHEMA_ID = "dockyard.scan/v1"
SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_URI = "https://github.com/dockyard/dockyard"


class FindingLike(Protocol):
    """What the renderers read from a matcher finding (read-only, so frozen dataclasses satisfy it)."""

    @property
    def id(self) -> str: ...
    @property
    def aliases(self) -> Sequence[str]: ...
    @property
    def component(self) -> Component: ...
    @property
    def installed_version(self) -> str: ...
    @property
    def fixed_version(self) -> str | None: ...
    @property
    def score(self) -> float | None: ...
    @property
    def vector(self) -> str | None: ...
    @property
    def severity(self) -> Any: ...  # a severity-class name or an enum whose value is one
    @property
    def summary(self) -> str: ...


def installed(finding: FindingLike) -> str:
    """The version installed: the component's own (the binary package's for OS packages), not the source
    version it was matched under."""
    return finding.component.version or finding.installed_version


def score_source(finding: FindingLike) -> str | None:
    """Where the finding's score came from (``nvd (primary) v3.1``), when the finding says (the matcher's
    findings do)."""
    return getattr(finding, "score_source", None)


def score_record(finding: FindingLike) -> str | None:
    """The record whose vector scored the finding (``NVD-CVE-2024-1``), when the finding says."""
    return getattr(finding, "score_record", None)


def severity_class(finding: FindingLike) -> str:
    """The finding's class as one of SEVERITY_CLASSES, whether it is carried as a str or an enum."""
    raw = finding.severity
    value = raw.value if isinstance(raw, Enum) else raw
    name = str(value or "").strip().capitalize()
    if name not in _RANK:
        raise ValueError(f"unknown severity class {raw!r}; expected one of {', '.join(SEVERITY_CLASSES)}")
    return name


def sort_findings(findings: Iterable[FindingLike]) -> list[FindingLike]:
    """Worst first: class, then score (unscored last), then id, component and version for a stable order."""
    return sorted(
        findings,
        key=lambda f: (
            _RANK[severity_class(f)],
            -(f.score if f.score is not None else -1.0),
            f.id,
            f.component.name,
            f.installed_version,
        ),
    )


def counts(findings: Iterable[FindingLike]) -> dict[str, int]:
    """Findings per severity class, always with every class, in the order Critical, Major, Minor, Unscored."""
    result = dict.fromkeys(SEVERITY_CLASSES, 0)
    for finding in findings:
        result[severity_class(finding)] += 1
    return result


def exceeds(findings: Iterable[FindingLike], fail_on: str) -> bool:
    """Whether any finding is at or above the ``--fail-on`` threshold (critical | major | minor)."""
    try:
        threshold = FAIL_ON_LEVELS[fail_on.strip().lower()]
    except KeyError:
        raise ValueError(f"--fail-on must be one of {', '.join(FAIL_ON_LEVELS)}, not {fail_on!r}") from None
    return any(_RANK[severity_class(f)] <= threshold for f in findings)


def short_digest(digest: str, length: int = 12) -> str:
    """``sha256:0123456789abcdef...`` -> ``0123456789ab`` (the form docker prints)."""
    return digest.split(":", 1)[-1][:length]


NODEJS_SECURITY_WG = "https://github.com/nodejs/security-wg/blob/main/vuln"


def advisory_url(vuln_id: str) -> str:
    """A page describing the vulnerability: NVD for CVEs, GitHub for GHSAs, the Node.js security WG's record
    for its npm (``NSWG-ECO-<n>``) and core (``NSWG-COR-<n>``) advisories, also under the names stored
    before (``NPM-<n>``, ``NODE-<n>``) (osv.dev carries none of them), Alpine's
    tracker for Alpine ids, OSV for everything else (PYSEC, GO, DSA, ...)."""
    if vuln_id.startswith("CVE-"):
        return f"https://nvd.nist.gov/vuln/detail/{vuln_id}"
    if vuln_id.startswith("GHSA-"):
        return f"https://github.com/advisories/{vuln_id}"
    for prefix, folder in (("NSWG-ECO-", "npm"), ("NSWG-COR-", "core"), ("NPM-", "npm"), ("NODE-", "core")):
        number = vuln_id.removeprefix(prefix)
        if vuln_id.startswith(prefix) and number.isdigit():
            return f"{NODEJS_SECURITY_WG}/{folder}/{number}.json"
    if vuln_id.startswith("ALPINE-"):
        return f"https://security.alpinelinux.org/vuln/{vuln_id.removeprefix('ALPINE-')}"
    return f"https://osv.dev/vulnerability/{vuln_id}"


def _score_text(score: float | None) -> str:
    return "-" if score is None else f"{score:.1f}"


def summary_line(findings: Sequence[FindingLike], index: ImageIndex) -> str:
    """``Critical: 1  Major: 2  Minor: 0  Unscored: 1  (4 findings in 37 components)``."""
    per_class = "  ".join(f"{name}: {n}" for name, n in counts(findings).items())
    return f"{per_class}  ({len(findings)} findings in {len(index.components)} components)"


def as_table(findings: Sequence[FindingLike], index: ImageIndex, *, console: Console) -> None:
    """Print the findings as a severity-coloured table followed by a line of counts per class."""
    if index.os is not None:
        console.print(Text(f"OS: {index.os.pretty_name or f'{index.os.id} {index.os.version_id}'}"))
    table = Table()
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("Class", "left"),
        ("ID", "left"),
        ("Score", "right"),
        ("Scored by", "left"),
        ("Component", "left"),
        ("Installed", "left"),
        ("Fixed", "left"),
        ("Layer", "left"),
    )
    for header, justify in columns:
        # Identifiers, names and versions are folded, never cut with an ellipsis.
        table.add_column(header, justify=justify, overflow="fold", no_wrap=header == "Layer")
    for finding in sort_findings(findings):
        name = severity_class(finding)
        # Text() everywhere: names and versions come from the image and must not be read as rich markup.
        table.add_row(
            Text(name, style=_STYLES[name]),
            Text(finding.id),
            Text(_score_text(finding.score)),
            Text(score_source(finding) or "-"),
            Text(finding.component.name),
            Text(installed(finding)),
            Text(finding.fixed_version) if finding.fixed_version else Text("no fix", style="dim"),
            Text(short_digest(finding.component.layer_digest)),
        )
    if findings:
        if console.is_terminal:
            console.print(table)
        else:  # a log or a file: as wide as the content, whatever width a terminal would have had
            needed = Measurement.get(console, console.options.update_width(1 << 16), table).maximum
            width = console.width
            console.width = max(width, needed)
            try:
                console.print(table)
            finally:
                console.width = width
    else:
        console.print("No known vulnerabilities found.")
    console.print(summary_line(findings, index))


def _component_json(component: Component) -> dict[str, Any]:
    return {
        "name": component.name,
        "version": component.version,
        "ecosystem": component.ecosystem,
        "purl": component.purl,
        "layer": component.layer_digest,
        "path": component.path,
        "source_name": component.source_name,
        "source_version": component.source_version,
        "arch": component.arch,
    }


def _layer_index(index: ImageIndex, digest: str) -> int | None:
    try:
        return index.layers.index(digest)
    except ValueError:
        return None


def as_json(image: str, index: ImageIndex, findings: Sequence[FindingLike]) -> str:
    """The ``dockyard.scan/v1`` document described in this module's docstring, as indented JSON."""
    os_info = index.os
    document = {
        "schema": JSON_SCHEMA_ID,
        "image": {"reference": image, "platform": index.platform, "layers": list(index.layers)},
        "os": None
        if os_info is None
        else {
            "id": os_info.id,
            "version_id": os_info.version_id,
            "pretty_name": os_info.pretty_name,
            "codename": os_info.codename,
            "osv_ecosystem": os_info.osv_ecosystem,
        },
        "counts": counts(findings),
        "components": [
            _component_json(c)
            for c in sorted(index.components, key=lambda c: (c.ecosystem, c.name, c.version, c.path))
        ],
        "findings": [
            {
                "id": f.id,
                "aliases": list(f.aliases),
                "severity": severity_class(f),
                "score": f.score,
                "vector": f.vector,
                "cvss_version": getattr(f, "cvss_version", None),
                "score_source": score_source(f),
                "score_record": score_record(f),
                "url": advisory_url(f.id),
                "summary": f.summary,
                "component": {
                    "name": f.component.name,
                    "version": f.component.version,
                    "ecosystem": f.component.ecosystem,
                    "purl": f.component.purl,
                },
                "installed": installed(f),
                "source_name": f.component.source_name,
                "source_version": f.component.source_version,
                "fixed": f.fixed_version,
                "layer": f.component.layer_digest,
                "layer_index": _layer_index(index, f.component.layer_digest),
                "path": f.component.path,
            }
            for f in sort_findings(findings)
        ],
        "warnings": list(index.warnings),
    }
    return json.dumps(document, indent=2)


def tool_version() -> str:
    """The installed dockyard version (``0+unknown`` when running from a source tree without metadata)."""
    try:
        return metadata.version("dockyard")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _rule(vuln_id: str, group: list[FindingLike]) -> dict[str, Any]:
    worst = group[0]  # the group is sorted worst first
    name = severity_class(worst)
    summary = next((f.summary for f in group if f.summary), "") or vuln_id
    aliases = sorted({a for f in group for a in f.aliases if a != vuln_id})
    affected = "\n".join(
        f"- {f.component.name} {installed(f)}: "
        + (f"fixed in {f.fixed_version}" if f.fixed_version else "no fixed version yet")
        for f in group
    )
    help_text = f"{summary}\n\nAffected packages:\n{affected}\n\nMore: {advisory_url(vuln_id)}"
    if aliases:
        help_text += f"\nAliases: {', '.join(aliases)}"
    properties: dict[str, Any] = {"tags": ["security", "vulnerability", name.lower()]}
    scored = [f for f in group if f.score is not None]
    if scored:
        top = max(scored, key=lambda f: f.score or 0.0)
        # GitHub code scanning reads this string to rank alerts (critical >= 9.0, high >= 7.0, ...).
        properties["security-severity"] = f"{top.score:.1f}"
        if top.vector:
            properties["cvssVector"] = top.vector
        if score_source(top):
            properties["scoreSource"] = score_source(top)
            properties["scoreRecord"] = score_record(top)
    return {
        "id": vuln_id,
        "shortDescription": {"text": f"{vuln_id}: {summary}"[:1024]},
        "fullDescription": {"text": summary},
        "helpUri": advisory_url(vuln_id),
        "help": {"text": help_text, "markdown": _help_markdown(vuln_id, summary, aliases, group)},
        "defaultConfiguration": {"level": SARIF_LEVELS[name]},
        "properties": properties,
    }


def _help_markdown(vuln_id: str, summary: str, aliases: list[str], group: list[FindingLike]) -> str:
    rows = "\n".join(
        f"| {_md(f.component.name)} | {_md(installed(f))} | {_md(f.fixed_version or 'no fix')} |"
        for f in group
    )
    text = (
        f"**{vuln_id}**: {_md(summary)}\n\n| Package | Installed | Fixed |\n| --- | --- | --- |\n{rows}\n\n"
        f"[{vuln_id}]({advisory_url(vuln_id)})"
    )
    if aliases:
        text += f"  \nAliases: {', '.join(aliases)}"
    return text


def _md(text: str) -> str:
    # Advisory summaries are third-party text: keep them from breaking the table or injecting markup.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _fingerprint(finding: FindingLike) -> str:
    c = finding.component
    key = "\x00".join((finding.id, c.purl or c.name, c.path, c.layer_digest))
    return hashlib.sha256(key.encode()).hexdigest()


def _result(image: str, finding: FindingLike, rule_index: int) -> dict[str, Any]:
    c = finding.component
    name = severity_class(finding)
    fix = f"fixed in {finding.fixed_version}" if finding.fixed_version else "no fixed version yet"
    score = "" if finding.score is None else f", score {finding.score:.1f}"
    return {
        "ruleId": finding.id,
        "ruleIndex": rule_index,
        "level": SARIF_LEVELS[name],
        "message": {
            "text": f"{c.name} {installed(finding)} ({c.ecosystem}) is affected by {finding.id} "
            f"({name}{score}); {fix}. Found in {c.path} of layer {c.layer_digest}."
        },
        "locations": [
            {
                "physicalLocation": {
                    # The file the package record was read from, relative to the image root filesystem.
                    "artifactLocation": {
                        "uri": quote(c.path, safe="/@+~,;="),
                        "description": {"text": f"{image}, layer {c.layer_digest}"},
                    }
                },
                "logicalLocations": [
                    {"name": c.name, "fullyQualifiedName": c.purl or c.name, "kind": "module"}
                ],
            }
        ],
        "partialFingerprints": {"dockyardFinding/v1": _fingerprint(finding)},
        "properties": {
            "purl": c.purl,
            "layer": c.layer_digest,
            "installedVersion": installed(finding),
            "sourceVersion": c.source_version,
            "fixedVersion": finding.fixed_version,
            "severityClass": name,
            "score": finding.score,
            "cvssVersion": getattr(finding, "cvss_version", None),
            "scoreSource": score_source(finding),
            "scoreRecord": score_record(finding),
            "aliases": list(finding.aliases),
        },
    }


def as_sarif(image: str, findings: Sequence[FindingLike]) -> str:
    """A SARIF 2.1.0 log: one rule per vulnerability id, one result per finding."""
    ordered = sort_findings(findings)
    groups: dict[str, list[FindingLike]] = {}
    for finding in ordered:
        groups.setdefault(finding.id, []).append(finding)
    rule_ids = list(groups)
    rule_index = {vuln_id: i for i, vuln_id in enumerate(rule_ids)}
    log = {
        "$schema": SARIF_SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "dockyard",
                        "version": tool_version(),
                        "informationUri": TOOL_URI,
                        "rules": [_rule(vuln_id, groups[vuln_id]) for vuln_id in rule_ids],
                    }
                },
                "results": [_result(image, f, rule_index[f.id]) for f in ordered],
                "properties": {"image": image, "counts": counts(findings)},
            }
        ],
    }
    return json.dumps(log, indent=2)
