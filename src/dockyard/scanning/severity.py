"""CVSS scores recomputed from vectors, and the severity classes that drive remediation SLAs.

Feeds ship numbers that disagree with their own vectors (rounding bugs, v2 numbers next to v3 vectors), so a
stored score is never trusted: every score here is computed by the ``cvss`` library from a vector.

Where a finding's score comes from, in this order of preference:

1. the vectors of the finding's own records: the distribution's or the ecosystem's advisory (Debian, Alpine,
   PyPA, the Go and npm databases, GitHub's advisory for the package);
2. NVD's Primary score of its CVE (NVD's own analysis, ``nvd@nist.gov``);
3. a secondary source's: NVD's Secondary metrics (the CNA's or CISA ADP's), or another feed's record of the
   same vulnerability (a GitHub advisory, another distribution).

A borrowed score names its lender (``Advisory.score_from``): the record id, and for NVD whether the metric was
Primary or Secondary and whose it was (``borrowed_label``). Reports and the API say where each score came from
in two fields: ``score_record``, the record whose vector it is (``CVE-2024-1``, ``NVD-CVE-2024-1``,
``GHSA-...``), and ``score_source``, its feed and CVSS version (``source_label``): ``debian v3.1``,
``nvd (primary) v3.1``, ``nvd (secondary: cna@example.org) v4.0``, ``ghsa v3.1``.

When a record carries several vectors the class comes from one version, in the order v3 > v4 > v2:
CVSS v3.x is what NVD, the distros, GitHub and our SLA thresholds are calibrated on and what Trivy/Grype show;
v4 is newer and still sparse in the feeds (its scores run differently from v3's for the same flaw), so it is
used only when there is no v3 vector; v2 is deprecated and a last resort. Within one version the highest
score wins (the conservative choice when two sources score the same flaw differently).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cvss import CVSS2, CVSS3, CVSS4
from cvss.exceptions import CVSSError

__all__ = [
    "Score",
    "Severity",
    "best_score",
    "borrowed_label",
    "classify",
    "feed_name",
    "label_tier",
    "lender_record",
    "score_vector",
    "sla_hours",
    "source_label",
    "vector_version",
]


class Severity(StrEnum):
    CRITICAL = "Critical"  # 7.0-10.0, fix within 72 hours
    MAJOR = "Major"  # 4.0-6.9, fix within 7 days
    MINOR = "Minor"  # 0.1-3.9, best effort
    UNSCORED = "Unscored"  # no vector anywhere (or a 0.0 score: CVSS "None")


_SLA_HOURS = {Severity.CRITICAL: 72, Severity.MAJOR: 7 * 24}
_VERSION_RANK = {"v3": 0, "v4": 1, "v2": 2}  # lower is preferred; see the module docstring


def classify(score: float | None) -> Severity:
    """The class of a CVSS base score (None means unscored)."""
    if score is None:
        return Severity.UNSCORED
    if not 0.0 <= score <= 10.0:
        raise ValueError(f"CVSS scores run from 0.0 to 10.0, not {score}")
    tenths = round(score * 10)  # scores have one decimal; compare in tenths to stay clear of float noise
    if tenths >= 70:
        return Severity.CRITICAL
    if tenths >= 40:
        return Severity.MAJOR
    if tenths >= 1:
        return Severity.MINOR
    return Severity.UNSCORED


def sla_hours(severity: Severity) -> int | None:
    """Hours allowed to ship a fix for a finding of this class; None when there is no deadline."""
    return _SLA_HOURS.get(severity)


@dataclass(frozen=True)
class Score:
    score: float
    vector: str
    version: str  # v2 | v3 | v4

    @property
    def severity(self) -> Severity:
        return classify(self.score)

    def rank(self) -> tuple[int, float]:
        """Sort key: preferred CVSS version first, then the higher score."""
        return (_VERSION_RANK[self.version], -self.score)


def score_vector(kind: str | None, vector: str) -> Score | None:
    """The base score of one vector (OSV ``severity`` type + string), or None when it is not a valid CVSS
    vector. The version is read from the vector itself when it says (``CVSS:3.1/``, ``CVSS:4.0/``)."""
    vector = (vector or "").strip()
    kind = (kind or "").upper()
    try:
        if vector.startswith("CVSS:4.") or (kind == "CVSS_V4" and not vector.startswith("CVSS:3")):
            return Score(float(CVSS4(vector).base_score), vector, "v4")
        if vector.startswith("CVSS:3.") or kind == "CVSS_V3":
            return Score(float(CVSS3(vector).scores()[0]), vector, "v3")
        if kind in ("CVSS_V2", "") and vector.startswith(("AV:", "(AV:")):
            return Score(float(CVSS2(vector.strip("()")).scores()[0]), vector, "v2")
    except (CVSSError, ValueError, KeyError, IndexError):
        return None
    return None


def best_score(vectors: Iterable[Mapping[str, Any]]) -> Score | None:
    """The preferred score among ``[{type, vector}, ...]`` (invalid and non-CVSS entries are ignored)."""
    scores = [
        s for v in vectors if (s := score_vector(v.get("type"), str(v.get("vector") or ""))) is not None
    ]
    return min(scores, key=Score.rank) if scores else None


def borrowed_label(record_id: str, primary: bool, scorer: str) -> str:
    """How a lent NVD score is named: ``NVD-CVE-2024-1 (Primary: nvd@nist.gov)``."""
    return f"{record_id} ({'Primary' if primary else 'Secondary'}: {scorer or 'unknown'})"


def label_tier(label: str | None) -> int:
    """1 for NVD's Primary score, 2 for any other lender (see the module docstring); 0 for no lender (own)."""
    if label is None:
        return 0
    return 1 if label.startswith("NVD-") and "(Primary" in label else 2


# Advisory.source -> the short feed name reports show (``osv:<feed>`` otherwise lower-cased).
_FEED_NAMES = {
    "osv:PyPI": "pypa",
    "osv:GitHub": "ghsa",
    "ghsa": "ghsa",
    "osv:Go": "go",
    "npm-legacy": "nodejs-security-wg",
    "node-core": "nodejs-security-wg",
    "alpine-secdb": "alpine",
    "nvd": "nvd",
}


def feed_name(source: str | None) -> str:
    """The short name of the feed an advisory came from: ``osv:Debian`` -> ``debian``. A record spanning
    several ecosystems (``osv:Alpine+Debian``) is osv.dev's conversion of the CVE record, whose vector is
    NVD's copy, not any one distribution's: it is named ``osv.dev``, not after the distributions."""
    if not source:
        return "unknown"
    if "+" in source:
        return "osv.dev"
    return _FEED_NAMES.get(source) or source.removeprefix("osv:").lower() or "osv"


def vector_version(vector: str | None) -> str | None:
    """The CVSS version a vector states: ``v3.1``, ``v3.0``, ``v4.0``; ``v2.0`` for the unprefixed v2 form."""
    if not vector:
        return None
    match = re.match(r"CVSS:(\d+\.\d+)/", vector)
    return f"v{match.group(1)}" if match else "v2.0"


_LENT = re.compile(r"^(?P<record>\S+) \((?P<kind>Primary|Secondary): (?P<scorer>.*)\)$")


def lender_record(label: str) -> str:
    """The record id of a lender's label: ``NVD-CVE-2024-1 (Primary: nvd@nist.gov)`` -> ``NVD-CVE-2024-1``."""
    match = _LENT.match(label)
    return match.group("record") if match else label


def source_label(source: str | None, vector: str | None, lender: str | None = None) -> str:
    """Where a score came from, as reports show it: the feed of the record whose vector it is (``source``:
    its ``Advisory.source``), NVD's Primary or Secondary metric when NVD lent it (``lender``: the
    ``score_from`` label), and the vector's CVSS version. ``nvd (primary) v3.1``, ``ghsa v3.1``."""
    name = feed_name(source)
    match = _LENT.match(lender or "")
    if match and name == "nvd":
        if match.group("kind") == "Primary":
            name = "nvd (primary)"
        else:
            name = f"nvd (secondary: {match.group('scorer') or 'unknown'})"
    version = vector_version(vector)
    return f"{name} {version}" if version else name
