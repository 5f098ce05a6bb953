"""The scan report page of an image: findings by class, with a class filter."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.errors import Invalid
from dockyard.scanning.models import SEVERITY_CLASSES
from dockyard.scanning.presenters import visible_report
from dockyard.web.context import RequestContext
from dockyard.web.identity import session_principal
from dockyard.web.pages import page, render


@page
async def scan_page(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    name, reference = request.path_params["name"], request.path_params["reference"]
    severity = request.query_params.get("severity") or None
    if severity is not None and severity not in SEVERITY_CLASSES:
        raise Invalid(f"unknown class {severity!r}")
    report = await ctx.call(lambda sv: visible_report(sv.scans, principal, name, reference))
    findings = [f for f in report.findings if severity is None or f.severity == severity]
    context = {
        "report": report,
        "reference": reference,
        "findings": findings,
        "severity": severity,
        "classes": SEVERITY_CLASSES,
    }
    return render(request, "scanning/scan.html", context)


routes = [
    Route("/ui/repositories/{name:path}/-/scans/{reference}", scan_page, methods=["GET"], name="scan"),
]
