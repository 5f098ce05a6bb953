"""The CycloneDX document as cyclonedx-python-lib builds it: the reference ``dockyard.scanning.sbom`` writes
its own documents against (the library's model costs a scan a quarter of a second for a hundred components;
the writer builds the same JSON directly). The code is what ``sbom.cyclonedx_json`` was before that."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from cyclonedx.contrib.vulnerability.cvss import vs_from_cvss_scores
from cyclonedx.model import Property, XsUri
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component as CdxComponent
from cyclonedx.model.component import ComponentType
from cyclonedx.model.dependency import Dependency
from cyclonedx.model.impact_analysis import ImpactAnalysisAffectedStatus
from cyclonedx.model.vulnerability import (
    BomTarget,
    BomTargetVersionRange,
    Vulnerability,
    VulnerabilityRating,
    VulnerabilityReference,
    VulnerabilityScoreSource,
    VulnerabilitySource,
)
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from dockyard.scanning.report import (
    FindingLike,
    advisory_url,
    score_record,
    score_source,
    severity_class,
    tool_version,
)
from dockyard.scanning.sbom import _GROUPED_PURL_TYPES, PROPERTY_PREFIX, _parse_purl, _refs_for, image_purl
from dockyard.scanning.types import Component, ImageIndex, OSInfo


def _properties(component: Component) -> list[Property]:
    values = {
        "ecosystem": component.ecosystem,
        "layer_digest": component.layer_digest,
        "path": component.path,
        "source_name": component.source_name,
        "source_version": component.source_version,
        "arch": component.arch,
    }
    return [Property(name=f"{PROPERTY_PREFIX}:{k}", value=v) for k, v in values.items() if v]


def _cdx_component(component: Component, ref: str) -> CdxComponent:
    purl = _parse_purl(component.purl)
    name, group = component.name, None
    if purl is not None and purl.type in _GROUPED_PURL_TYPES and purl.namespace:
        name, group = purl.name, purl.namespace
    return CdxComponent(
        type=ComponentType.LIBRARY,
        name=name,
        group=group,
        version=component.version,
        purl=purl,
        bom_ref=ref,
        properties=_properties(component),
    )


def _cdx_os(os_info: OSInfo) -> CdxComponent:
    props = [Property(name=f"{PROPERTY_PREFIX}:os_id", value=os_info.id)]
    if os_info.codename:
        props.append(Property(name=f"{PROPERTY_PREFIX}:codename", value=os_info.codename))
    return CdxComponent(
        type=ComponentType.OPERATING_SYSTEM,
        name=os_info.id,
        version=os_info.version_id or None,
        description=os_info.pretty_name or None,
        bom_ref=f"os:{os_info.id}@{os_info.version_id}",
        properties=props,
    )


def score_method(vector: str | None) -> VulnerabilityScoreSource:
    """The CycloneDX rating method for a CVSS vector (v2 vectors carry no ``CVSS:2.0/`` prefix)."""
    if not vector:
        return VulnerabilityScoreSource.OTHER
    method = VulnerabilityScoreSource.get_from_vector(vector)
    if method is VulnerabilityScoreSource.OTHER and "Au:" in vector:
        return VulnerabilityScoreSource.CVSS_V2
    return method


def _vuln_source(vuln_id: str) -> VulnerabilitySource:
    name = "NVD" if vuln_id.startswith("CVE-") else "GitHub" if vuln_id.startswith("GHSA-") else "OSV"
    return VulnerabilitySource(name=name, url=XsUri(advisory_url(vuln_id)))


def _rating(finding: FindingLike) -> VulnerabilityRating | None:
    if finding.score is None and not finding.vector:
        return None
    record, label = score_record(finding), score_source(finding)
    # The rating's source is the record whose vector it is (NVD's, a GHSA, the distribution's), by its feed.
    source = (
        VulnerabilitySource(name=label, url=XsUri(advisory_url(record.removeprefix("NVD-"))))
        if record and label
        else _vuln_source(finding.id)
    )
    rating = VulnerabilityRating(
        source=source,
        score=None if finding.score is None else Decimal(str(finding.score)),
        severity=vs_from_cvss_scores(finding.score),
        method=score_method(finding.vector),
    )
    # Keep the full vector ("CVSS:3.1/AV:N/..."): the library would strip the version prefix, which is the
    # only place CVSS 3.0 and 3.1 differ, and OSV and NVD publish it with the prefix.
    rating.vector = finding.vector
    return rating


def _cdx_vulnerability(finding: FindingLike, ref: str, vuln_ref: str) -> Vulnerability:
    aliases = [a for a in dict.fromkeys(finding.aliases) if a != finding.id]
    props = [Property(name=f"{PROPERTY_PREFIX}:severity_class", value=severity_class(finding))]
    if finding.fixed_version:
        props.append(Property(name=f"{PROPERTY_PREFIX}:fixed_version", value=finding.fixed_version))
    rating = _rating(finding)
    return Vulnerability(
        bom_ref=vuln_ref,
        id=finding.id,
        source=_vuln_source(finding.id),
        references=[VulnerabilityReference(id=a, source=_vuln_source(a)) for a in aliases],
        ratings=[rating] if rating else [],
        description=finding.summary or None,
        recommendation=(
            f"Upgrade {finding.component.name} to {finding.fixed_version} or later."
            if finding.fixed_version
            else None
        ),
        affects=[
            BomTarget(
                ref=ref,
                versions=[
                    BomTargetVersionRange(
                        version=finding.component.version, status=ImpactAnalysisAffectedStatus.AFFECTED
                    )
                ],
            )
        ],
        properties=props,
    )


def library_cyclonedx_json(
    image_name: str,
    image_digest: str,
    index: ImageIndex,
    findings: Sequence[FindingLike] | None = None,
    *,
    created: datetime | None = None,
    serial_number: uuid.UUID | None = None,
    registry: str | None = None,
) -> str:
    """A CycloneDX 1.6 JSON SBOM of the image, with a vulnerabilities section when findings are given.

    ``validate`` checks the output against the bundled schema first; it is off by default because the
    schema's uniqueItems check is quadratic (tens of seconds for a few thousand components).
    """
    bom = Bom(serial_number=serial_number or uuid.uuid4())
    bom.metadata.timestamp = created or datetime.now(UTC)
    bom.metadata.tools.components.add(
        CdxComponent(type=ComponentType.APPLICATION, name="dockyard", version=tool_version())
    )
    root = CdxComponent(
        type=ComponentType.CONTAINER,
        name=image_name.split("@", 1)[0],
        version=image_digest,
        purl=PackageURL.from_string(image_purl(image_name, image_digest, registry)),
        bom_ref=f"image:{image_digest}",
        properties=[Property(name=f"{PROPERTY_PREFIX}:platform", value=index.platform)]
        if index.platform
        else [],
    )
    bom.metadata.component = root

    findings = list(findings or [])
    # A finding's component is normally one of the index's; an extra one is listed too rather than dangling.
    refs = _refs_for([*index.components, *(f.component for f in findings)])
    contained = [_cdx_component(c, ref) for c, ref in refs.items()]
    if index.os is not None:
        contained.append(_cdx_os(index.os))
    for component in contained:
        bom.components.add(component)
    # Built directly: Bom.register_dependency scans the graph linearly per call, which is quadratic here.
    bom.dependencies.add(
        Dependency(ref=root.bom_ref, dependencies=[Dependency(ref=c.bom_ref) for c in contained])
    )
    for component in contained:
        bom.dependencies.add(Dependency(ref=component.bom_ref))
    vuln_refs: set[str] = set()
    for finding in findings:
        # Stable across runs (the library's default bom-ref is random) and unique even for repeated findings.
        vuln_ref = base = f"vuln:{finding.id}|{refs[finding.component]}"
        n = 2
        while vuln_ref in vuln_refs:
            vuln_ref, n = f"{base}|{n}", n + 1
        vuln_refs.add(vuln_ref)
        bom.vulnerabilities.add(_cdx_vulnerability(finding, refs[finding.component], vuln_ref))

    return JsonV1Dot6(bom).output_as_string(indent=2)
