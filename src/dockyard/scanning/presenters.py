"""What the scan API and pages both show: who may see a report, its JSON shape, and SBOMs.

Scan results are visible to the owning namespace's members (robots too) and to store staff only; anyone
else gets the same 404 as for a repository that does not exist, so existence is not revealed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dockyard.authz import Principal
from dockyard.errors import NotFound
from dockyard.scanning import sbom
from dockyard.scanning.reads import ComponentView, FindingView, ImageReport, ScanSummary
from dockyard.scanning.report import advisory_url
from dockyard.scanning.services import ScanService
from dockyard.scanning.types import Component, ImageIndex, OSInfo

SBOM_FORMATS = ("cyclonedx", "spdx")


def require_visible(scans: ScanService, principal: Principal, repository: str) -> None:
    """404 (never 403) for callers who may not see the repository's scans: existence stays private."""
    if not scans.visible_to(principal, repository):
        raise NotFound(f"repository {repository!r} not known")


def visible_report(
    scans: ScanService,
    principal: Principal,
    repository: str,
    reference: str,
    *,
    include_resolved: bool = False,
) -> ImageReport:
    """The report of ``repository:reference`` when ``principal`` may see it."""
    require_visible(scans, principal, repository)
    return scans.image_report(repository, reference, include_resolved=include_resolved)


def visible_summaries(
    scans: ScanService, principal: Principal, repository: str, digests: Iterable[str]
) -> dict[str, ScanSummary] | None:
    """Scan summaries of ``digests`` for lists of a repository's tags (or a namespace's repositories: any
    repository name of the namespace decides); None when ``principal`` may not see scan results there, so
    the page shows no scan column rather than a 404 (it may list what it can pull)."""
    if not scans.visible_to(principal, repository):
        return None
    return scans.summaries(digests)


def visible_layer_components(
    scans: ScanService, principal: Principal, repository: str, digest: str
) -> dict[str, int] | None:
    """Components per layer of image ``digest``; None when ``principal`` may not see scan results."""
    if not scans.visible_to(principal, repository):
        return None
    return scans.layer_components(digest)


# -- rendering -----------------------------------------------------------------------------------------------


def _time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat().replace("+00:00", "Z")


def finding_json(f: FindingView) -> dict[str, Any]:
    override = None
    if f.override is not None:
        override = {
            "severity": f.override.severity,
            "reason": f.override.reason,
            "by": f.override.by,
            "at": _time(f.override.at),
        }
    return {
        "id": f.id,
        "vulnerability": f.vulnerability,
        "aliases": list(f.aliases),
        "summary": f.summary,
        "score": f.score,
        "vector": f.vector,
        "cvss_version": cvss_version(f.vector),
        "score_source": f.score_source,
        "score_record": f.score_record,
        "url": advisory_url(f.vulnerability),
        "severity": f.severity,
        "computed_severity": f.computed_severity,
        "override": override,
        "component": {
            "name": f.component,
            "version": f.component_version,
            "ecosystem": f.ecosystem,
            "purl": f.purl,
        },
        "installed": f.component_version or f.installed,
        "source_version": f.installed if f.ecosystem in _OS_ECOSYSTEMS else None,
        "fixed_version": f.fixed_version,
        "layer": f.layer,
        "path": f.path,
        "image": f.image_digest,
        "platform": f.platform,
        "state": "open" if f.is_open else "resolved",
        "first_seen_at": _time(f.first_seen_at),
        "resolved_at": _time(f.resolved_at),
        "reopened_at": _time(f.reopened_at),
        "sla_due_at": _time(f.due_at),
    }


_OS_ECOSYSTEMS = frozenset({"Debian", "Alpine", "RPM"})


def cvss_version(vector: str | None) -> str | None:
    """v2, v3 or v4, read from the vector itself."""
    if not vector:
        return None
    if vector.startswith("CVSS:4."):
        return "v4"
    return "v3" if vector.startswith("CVSS:3.") else "v2"


def report_json(r: ImageReport) -> dict[str, Any]:
    return {
        "repository": r.repository,
        "digest": r.digest,
        "kind": r.kind,
        "media_type": r.media_type,
        "status": r.status,
        "error": r.error,
        "platform": r.platform,
        "os": r.os,
        "layers": r.layers,
        "warnings": r.warnings,
        "indexed_at": _time(r.indexed_at),
        "matched_at": _time(r.matched_at),
        "counts": r.counts,
        "platforms": [
            {
                "digest": p.digest,
                "platform": p.platform,
                "status": p.status,
                "error": p.error,
                "counts": p.counts,
            }
            for p in r.platforms
        ],
        "findings": [finding_json(f) for f in r.findings],
    }


# -- SBOM ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SbomSource:
    """What an SBOM of one image (one platform) is built from."""

    digest: str
    index: ImageIndex


def _component(c: ComponentView) -> Component:
    return Component(
        name=c.name,
        version=c.version,
        ecosystem=c.ecosystem,
        purl=c.purl,
        layer_digest=c.layer or "",
        path=c.path or "",
        source_name=c.source_name,
        source_version=c.source_version,
        arch=c.arch,
    )


def sbom_source(scans: ScanService, report: ImageReport, platform: str | None) -> SbomSource:
    """The image an SBOM describes: the manifest, or one platform of an index (the first by default)."""
    if report.status not in ("done",):
        raise NotFound(f"no finished scan of {report.digest} yet (status {report.status})")
    digest, os_info, layers, plat = report.digest, report.os, report.layers, report.platform
    if report.kind == "index":
        chosen = [p for p in report.platforms if platform is None or p.platform == platform]
        if not chosen:
            raise NotFound(f"platform {platform!r} not in this index")
        child = scans.report(report.repository, chosen[0].digest)
        digest, os_info, layers, plat = child.digest, child.os, child.layers, child.platform
    os = None
    if os_info:
        os = OSInfo(
            id=os_info.get("id") or "",
            version_id=os_info.get("version") or "",
            pretty_name=os_info.get("pretty_name") or "",
        )
    components = [_component(c) for c in scans.components(digest)]
    return SbomSource(digest, ImageIndex(os=os, components=components, layers=layers, platform=plat))


def render_sbom(
    repository: str, source: SbomSource, fmt: str, *, registry: str | None, validate: bool = False
) -> str:
    if fmt == "spdx":
        return sbom.spdx_json(repository, source.digest, source.index, registry=registry, validate=validate)
    return sbom.cyclonedx_json(repository, source.digest, source.index, registry=registry, validate=validate)
