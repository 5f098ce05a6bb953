"""Response and request bodies of the scan API (pydantic v2), matching ``presenters.report_json``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, StringConstraints

from dockyard.scanning.models import SEVERITY_CLASSES
from dockyard.scanning.severity import Severity


def _class_name(value: Any) -> Any:
    """A class name in any casing ("critical") is that class, as the services read it."""
    if isinstance(value, str):
        return next((s for s in Severity if s.value.lower() == value.strip().lower()), value)
    return value


# Documented as the four names; other casings of them are accepted too.
SeverityClass = Annotated[Severity, BeforeValidator(_class_name)]


class Override(BaseModel):
    severity: str | None
    reason: str | None
    by: str | None
    at: str | None


class FindingComponent(BaseModel):
    name: str
    version: str | None
    ecosystem: str | None
    purl: str | None


class Finding(BaseModel):
    id: int
    vulnerability: str = Field(description="the CVE (or advisory) id")
    aliases: list[str]
    summary: str | None
    score: float | None = Field(description="CVSS base score, 0.0-10.0")
    vector: str | None = Field(description="the CVSS vector the score comes from")
    cvss_version: str | None = Field(description="the CVSS version of the vector: v2, v3 or v4")
    score_source: str | None = Field(
        description="where the score came from: the feed, NVD's Primary or Secondary metric and the vector's "
        'CVSS version ("debian v3.1", "nvd (primary) v3.1", "nvd (secondary: cna@example.org) v4.0", '
        "\"ghsa v3.1\"); the distribution's or ecosystem's own vector is preferred, then NVD's Primary "
        "score, then a secondary source's"
    )
    score_record: str | None = Field(
        description='the record whose vector scored the finding ("CVE-2024-1234", "NVD-CVE-2024-1234", '
        "a GHSA)"
    )
    url: str = Field(description="a page describing the vulnerability (NVD, GitHub, the Node.js WG, OSV)")
    severity: str = Field(description="the class in force: " + ", ".join(SEVERITY_CLASSES))
    computed_severity: str
    override: Override | None
    component: FindingComponent
    installed: str | None = Field(description="the version installed (the binary package's for OS packages)")
    source_version: str | None = Field(
        description="OS packages: the source package version the finding was matched under"
    )
    fixed_version: str | None
    layer: str | None
    path: str | None
    image: str | None
    platform: str | None
    state: str = Field(description="open or resolved")
    first_seen_at: str | None
    resolved_at: str | None
    reopened_at: str | None
    sla_due_at: str | None = Field(description="Critical: 72 h after first seen; Major: 7 days; else none")


class PlatformSummary(BaseModel):
    digest: str
    platform: str | None
    status: str
    error: str | None
    counts: dict[str, int]


class Report(BaseModel):
    repository: str
    digest: str
    kind: str | None
    media_type: str | None
    status: str = Field(description="queued, indexing, done, error or skipped")
    error: str | None
    platform: str | None
    os: dict[str, Any] | None
    layers: list[str]
    warnings: list[str]
    indexed_at: str | None
    matched_at: str | None
    counts: dict[str, int]
    platforms: list[PlatformSummary]
    findings: list[Finding]


class FindingList(BaseModel):
    repository: str
    digest: str
    state: str
    findings: list[Finding]


class Rescan(BaseModel):
    repository: str
    digest: str
    queued: bool


class ReclassifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: SeverityClass | None = Field(description="a class name, or null to clear the override")
    reason: Annotated[
        StrictStr, StringConstraints(min_length=1, max_length=2000, pattern=r"^[^\x00]*\S[^\x00]*$")
    ] = Field(description="why (required): shown with the finding and kept in the audit log")


class ReclassifyOut(BaseModel):
    id: int
    vulnerability: str
    severity: str
    computed_severity: str
    override: dict[str, str | None]
