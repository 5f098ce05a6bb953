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
Primary or Secondary and whose it was (``borrowed_label``).

When a record carries several vectors the class comes from one version, in the order v3 > v4 > v2:
CVSS v3.x is what NVD, the distros, GitHub and our SLA thresholds are calibrated on and what Trivy/Grype show;
v4 is newer and still sparse in the feeds (its scores run differently from v3's for the same flaw), so it is
used only when there is no v3 vector; v2 is deprecated and a last resort. Within one version the highest
score wins (the conservative choice when two sources score the same flaw differently).
"""

from __future__ import annotations

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
    "label_tier",
    "score_vector",
    "sla_hours",
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
