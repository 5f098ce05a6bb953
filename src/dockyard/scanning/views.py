"""JSON API for scan results: an image's report, its findings, its SBOM, rescans and staff reclassification.

Scan results are visible to the owning namespace's members (robots too) and to store staff only; anyone
else authenticated gets the same 404 as for a repository that does not exist, so existence is not revealed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dockyard.accounts.views import authenticate, field, json_body
from dockyard.authz import Principal, Scope
from dockyard.errors import Forbidden, Invalid, NotFound
from dockyard.registry.services import RegistryService
from dockyard.scanning import sbom
from dockyard.scanning.reads import ComponentView, FindingView, ImageReport
from dockyard.scanning.services import ScanService
from dockyard.scanning.types import Component, ImageIndex, OSInfo
from dockyard.web.context import AppState, RequestContext, endpoint
from dockyard.web.errors import api_error_response

api = endpoint(api_error_response)
SBOM_FORMATS = ("cyclonedx", "spdx")


def scan_service(state: AppState, session: Session) -> ScanService:
    return ScanService(session, state.blobs, state.bus, state.settings)


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
        "severity": f.severity,
        "computed_severity": f.computed_severity,
        "override": override,
        "component": {
            "name": f.component,
            "version": f.component_version,
            "ecosystem": f.ecosystem,
            "purl": f.purl,
        },
        "installed": f.installed,
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


# -- views ---------------------------------------------------------------------------------------------------


def _names(request: Request) -> tuple[str, str]:
    return request.path_params["name"], request.path_params["reference"]


@api
async def scan_report(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx, Scope.PULL)
    name, reference = _names(request)
    scans = scan_service(ctx.state, ctx.session)
    if request.method == "POST":
        return await _rescan(ctx, scans, name, reference)
    report = await ctx.run(visible_report, scans, ctx.principal, name, reference)
    return JSONResponse(report_json(report))


async def _rescan(ctx: RequestContext, scans: ScanService, name: str, reference: str) -> Response:
    def work() -> tuple[str, bool]:
        report = visible_report(scans, ctx.principal, name, reference)
        registry = RegistryService(ctx.session, ctx.state.blobs, ctx.state.bus, ctx.state.settings)
        if "push" not in registry.allowed_actions(ctx.principal, name):
            raise Forbidden("rescanning needs push access to the repository")
        return report.digest, scans.enqueue_scan(name, report.digest, force=True)

    digest, queued = await ctx.run(work)
    return JSONResponse({"repository": name, "digest": digest, "queued": queued}, status_code=202)


@api
async def scan_findings(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx, Scope.PULL)
    name, reference = _names(request)
    q = request.query_params
    state = q.get("state", "open")
    severity = q.get("severity") or None
    try:
        limit = int(q.get("limit", "1000"))
    except ValueError as exc:
        raise Invalid("limit must be a number") from exc
    scans = scan_service(ctx.state, ctx.session)

    def work() -> tuple[str, list[FindingView]]:
        require_visible(scans, ctx.principal, name)
        digest = scans.image_report(name, reference).digest
        found = scans.list_findings(digest=digest, severity=severity, state=state, limit=limit)
        return digest, found

    digest, found = await ctx.run(work)
    return JSONResponse(
        {"repository": name, "digest": digest, "state": state, "findings": [finding_json(f) for f in found]}
    )


@api
async def scan_sbom(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx, Scope.PULL)
    name, reference = _names(request)
    fmt = request.query_params.get("format", "cyclonedx")
    if fmt not in SBOM_FORMATS:
        raise Invalid(f"format must be one of {', '.join(SBOM_FORMATS)}")
    platform = request.query_params.get("platform") or None
    scans = scan_service(ctx.state, ctx.session)

    def work() -> SbomSource:
        return sbom_source(scans, visible_report(scans, ctx.principal, name, reference), platform)

    source = await ctx.run(work)
    text = await ctx.io(render_sbom, name, source, fmt, registry=ctx.state.settings.registry_host or None)
    media = "application/vnd.cyclonedx+json" if fmt == "cyclonedx" else "application/spdx+json"
    return Response(text, media_type=media)


@api
async def reclassify(request: Request, ctx: RequestContext) -> Response:
    await authenticate(ctx)
    data = await json_body(request)
    if "severity" not in data:
        raise Invalid("'severity' is required (a class name, or null to clear the override)")
    severity = field(data, "severity", default=None)
    reason = field(data, "reason", default="")
    raw_id = request.path_params["id"]
    if not raw_id.isdigit() or len(raw_id) > 18:  # beyond a 64-bit id: no such finding, not a 500
        raise NotFound("finding not found")
    finding_id = int(raw_id)
    scans = scan_service(ctx.state, ctx.session)
    finding = await ctx.run(scans.reclassify, finding_id, severity, reason, ctx.principal, ctx.actor)
    return JSONResponse(
        {
            "id": finding.id,
            "vulnerability": finding.vuln_id,
            "severity": finding.effective_severity,
            "computed_severity": finding.severity,
            "override": {"severity": finding.override_severity, "reason": finding.override_reason},
        }
    )


routes = [
    Route("/repositories/{name:path}/scans/{reference}/findings", scan_findings, methods=["GET"]),
    Route("/repositories/{name:path}/scans/{reference}/sbom", scan_sbom, methods=["GET"]),
    Route("/repositories/{name:path}/scans/{reference}", scan_report, methods=["GET", "POST"]),
    Route("/findings/{id}/reclassify", reclassify, methods=["POST"]),
]
