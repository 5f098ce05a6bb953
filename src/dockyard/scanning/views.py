"""The scan API: an image's report, its findings, its SBOM, rescans and the store team's reclassification.
Thin views over ``ScanService``; what a report looks like is in ``presenters``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response

from dockyard.authz import Permission, Principal, Scope
from dockyard.db import MAX_ID
from dockyard.errors import Forbidden
from dockyard.scanning import schemas as s
from dockyard.scanning.presenters import (
    finding_json,
    render_sbom,
    report_json,
    require_visible,
    sbom_source,
    visible_report,
)
from dockyard.scanning.reads import MAX_FINDINGS
from dockyard.web.api import AUTHENTICATED, Ctx, UnitOfWorkRoute, caller, errors

# Scans of repositories the caller may not see are 404s, as for repositories that do not exist.
router = APIRouter(
    route_class=UnitOfWorkRoute, tags=["scans"], responses={**AUTHENTICATED, **errors(403, 404)}
)

RepoName = Annotated[str, Path(min_length=1, max_length=255)]
Reference = Annotated[str, Path(min_length=1, max_length=160, description="a tag or a digest")]
Reader = Annotated[Principal, caller(Scope.PULL)]
Staff = Annotated[Principal, caller(Scope.API)]


@router.get("/repositories/{name:path}/scans/{reference}", response_model=s.Report)
async def scan_report(name: RepoName, reference: Reference, ctx: Ctx, who: Reader) -> dict[str, Any]:
    """Counts per class and every open finding of the image a tag or digest names."""
    report = await ctx.call(lambda sv: visible_report(sv.scans, who, name, reference))
    return report_json(report)


@router.post("/repositories/{name:path}/scans/{reference}", response_model=s.Rescan, status_code=202)
async def rescan(name: RepoName, reference: Reference, ctx: Ctx, who: Reader) -> dict[str, Any]:
    """Scan the image again now (needs push access to the repository)."""

    def work(sv: Any) -> tuple[str, bool]:
        report = visible_report(sv.scans, who, name, reference)
        if "push" not in sv.registry.allowed_actions(who, name):
            raise Forbidden("rescanning needs push access to the repository")
        return report.digest, sv.scans.enqueue_scan(name, report.digest, force=True)

    digest, queued = await ctx.call(work)
    return {"repository": name, "digest": digest, "queued": queued}


@router.get("/repositories/{name:path}/scans/{reference}/findings", response_model=s.FindingList)
async def scan_findings(
    name: RepoName,
    reference: Reference,
    ctx: Ctx,
    who: Reader,
    state: Literal["open", "resolved", "all"] = "open",
    severity: s.SeverityClass | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_FINDINGS)] = MAX_FINDINGS,
) -> dict[str, Any]:
    """The image's findings, filtered by state and class."""

    def work(sv: Any) -> tuple[str, list[Any]]:
        require_visible(sv.scans, who, name)
        digest = sv.scans.image_report(name, reference).digest
        return digest, sv.scans.list_findings(digest=digest, severity=severity, state=state, limit=limit)

    digest, found = await ctx.call(work)
    return {
        "repository": name,
        "digest": digest,
        "state": state,
        "findings": [finding_json(f) for f in found],
    }


@router.get(
    "/repositories/{name:path}/scans/{reference}/sbom",
    responses={200: {"content": {"application/vnd.cyclonedx+json": {}, "application/spdx+json": {}}}},
)
async def scan_sbom(
    name: RepoName,
    reference: Reference,
    ctx: Ctx,
    who: Reader,
    format: Literal["cyclonedx", "spdx"] = "cyclonedx",
    platform: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """A software bill of materials of the image (CycloneDX 1.6 or SPDX 2.3 JSON)."""
    source = await ctx.call(
        lambda sv: sbom_source(sv.scans, visible_report(sv.scans, who, name, reference), platform)
    )
    text = await ctx.io(render_sbom, name, source, format, registry=ctx.state.settings.registry_host or None)
    media = "application/vnd.cyclonedx+json" if format == "cyclonedx" else "application/spdx+json"
    return Response(text, media_type=media)


@router.post("/findings/{finding_id}/reclassify", response_model=s.ReclassifyOut, responses=errors(400))
async def reclassify(
    finding_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: s.ReclassifyIn, ctx: Ctx, who: Staff
) -> dict[str, Any]:
    """Set (or with null clear) a finding's class on the store team's word; a reason is required."""

    def work(sv: Any) -> Any:
        sv.accounts.require(who, Permission.FINDING_RECLASSIFY)
        return sv.scans.reclassify(finding_id, body.severity, body.reason, who, ctx.actor)

    finding = await ctx.call(work)
    return {
        "id": finding.id,
        "vulnerability": finding.vuln_id,
        "severity": finding.effective_severity,
        "computed_severity": finding.severity,
        "override": {"severity": finding.override_severity, "reason": finding.override_reason},
    }
