"""Software bills of materials for an indexed image: CycloneDX 1.6 JSON and SPDX 2.3 JSON.

Both documents are built through their reference libraries (cyclonedx-python-lib, spdx-tools). Either can
be validated before it is returned (``validate=True``: the bundled CycloneDX 1.6 schema, spdx-tools'
validator; a failure is a bug here, raised as SbomError). That is off by default because both validators
are quadratic in the component count; the unit tests validate realistic documents instead.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

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
from cyclonedx.schema import SchemaVersion
from packageurl import PackageURL

from dockyard.scanning.report import (
    FindingLike,
    advisory_url,
    score_record,
    score_source,
    severity_class,
    tool_version,
)
from dockyard.scanning.types import Component, ImageIndex, OSInfo

# spdx-tools (with beartype, about 0.45 s to import) only for SPDX documents: `dockyard scan --format
# cyclonedx` does not pay for it.
if TYPE_CHECKING:
    from spdx_tools.spdx.model import ExternalPackageRef, Package

CYCLONEDX_SCHEMA = SchemaVersion.V1_6
PROPERTY_PREFIX = "dockyard"
DEFAULT_NAMESPACE_BASE = "https://dockyard.invalid/spdx"
# Ecosystems whose purl namespace is what CycloneDX calls the group (Maven groupId, npm scope).
_GROUPED_PURL_TYPES = {"maven", "npm"}
_SPDX_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
_SHA256 = re.compile(r"^sha256:([0-9a-f]{64})$")


class SbomError(Exception):
    """The SBOM library produced a document that does not validate (a bug here, never bad input)."""


# -- shared helpers ---------------------------------------------------------------------------------------


def image_purl(image_name: str, image_digest: str, registry: str | None = None) -> str:
    """``pkg:oci/web@sha256:...?repository_url=registry/acme/web&tag=1.2`` for ``acme/web:1.2``."""
    name = image_name.split("@", 1)[0]
    tag = None
    last_slash = name.rfind("/")
    if ":" in name[last_slash + 1 :]:
        name, tag = name.rsplit(":", 1)
    qualifiers = {"repository_url": f"{registry.rstrip('/')}/{name}" if registry else name}
    if tag:
        qualifiers["tag"] = tag
    return PackageURL(
        type="oci", name=name.rsplit("/", 1)[-1].lower(), version=image_digest, qualifiers=qualifiers
    ).to_string()


def _parse_purl(purl: str) -> PackageURL | None:
    if not purl:
        return None
    try:
        return PackageURL.from_string(purl)
    except ValueError:
        return None


def _refs_for(components: Iterable[Component]) -> dict[Component, str]:
    """A unique, stable bom-ref for every component: its purl, disambiguated when a purl repeats."""
    refs: dict[Component, str] = {}
    taken: set[str] = set()
    for i, component in enumerate(components):
        if component in refs:
            continue
        base = component.purl or f"component-{i}"
        ref = base
        if ref in taken:  # the same package installed twice (e.g. two node_modules copies)
            ref = f"{base}|{component.layer_digest}|{component.path}"
        n = 2
        while ref in taken:
            ref = f"{base}|{n}"
            n += 1
        taken.add(ref)
        refs[component] = ref
    return refs


# -- CycloneDX ----------------------------------------------------------------------------------------------


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


def cyclonedx_json(
    image_name: str,
    image_digest: str,
    index: ImageIndex,
    findings: Sequence[FindingLike] | None = None,
    *,
    created: datetime | None = None,
    serial_number: uuid.UUID | None = None,
    registry: str | None = None,
    validate: bool = False,
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

    output = JsonV1Dot6(bom).output_as_string(indent=2)
    if validate:
        from cyclonedx.validation.json import JsonStrictValidator  # jsonschema: only when validating

        if (error := JsonStrictValidator(CYCLONEDX_SCHEMA).validate_str(output)) is not None:
            raise SbomError(f"CycloneDX output does not validate: {error}")
    return output


# -- SPDX ---------------------------------------------------------------------------------------------------


def spdx_id(*parts: str, unique: str) -> str:
    """``SPDXRef-<readable parts>-<8 hex of unique>``: valid characters only, distinct for distinct keys."""
    readable = _SPDX_ID_UNSAFE.sub("-", "-".join(p for p in parts if p)).strip("-")[:80]
    digest = hashlib.sha256(unique.encode()).hexdigest()[:12]
    return f"SPDXRef-{readable}-{digest}" if readable else f"SPDXRef-{digest}"


def _purl_ref(purl: str) -> list[ExternalPackageRef]:
    from spdx_tools.spdx.model import ExternalPackageRef, ExternalPackageRefCategory

    if _parse_purl(purl) is None:
        return []
    return [ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", purl)]


def _spdx_package(component: Component, spdxid: str) -> Package:
    from spdx_tools.spdx.model import Package, PackagePurpose, SpdxNoAssertion

    source = component.source_name
    if source and component.source_version:
        source = f"{source} {component.source_version}"
    return Package(
        spdx_id=spdxid,
        name=component.name,
        download_location=SpdxNoAssertion(),
        version=component.version,
        files_analyzed=False,
        license_concluded=SpdxNoAssertion(),
        license_declared=SpdxNoAssertion(),
        copyright_text=SpdxNoAssertion(),
        source_info=f"built from source package {source}" if source else None,
        comment=(
            f"ecosystem {component.ecosystem}; found in {component.path} of layer {component.layer_digest}"
        ),
        external_references=_purl_ref(component.purl),
        primary_package_purpose=PackagePurpose.LIBRARY,
    )


def spdx_json(
    image_name: str,
    image_digest: str,
    index: ImageIndex,
    *,
    created: datetime | None = None,
    namespace_base: str = DEFAULT_NAMESPACE_BASE,
    registry: str | None = None,
    validate: bool = False,
) -> str:
    """An SPDX 2.3 JSON document: the image package DESCRIBED, CONTAINING one package per component.

    ``validate`` runs spdx-tools' validator first; off by default as it is quadratic in the package count.
    """
    from spdx_tools.spdx.jsonschema.document_converter import DocumentConverter
    from spdx_tools.spdx.model import (
        Actor,
        ActorType,
        Checksum,
        ChecksumAlgorithm,
        CreationInfo,
        Document,
        Package,
        PackagePurpose,
        Relationship,
        RelationshipType,
        SpdxNoAssertion,
    )
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    created = (created or datetime.now(UTC)).replace(microsecond=0)
    namespace = (
        f"{namespace_base.rstrip('/')}/{quote(image_name.split('@', 1)[0], safe='')}/"
        f"{image_digest.replace(':', '-')}-{uuid.uuid4()}"
    )
    checksums = []
    if match := _SHA256.match(image_digest):
        checksums.append(Checksum(ChecksumAlgorithm.SHA256, match.group(1)))
    image_id = spdx_id("Image", unique=image_digest)
    packages = [
        Package(
            spdx_id=image_id,
            name=image_name.split("@", 1)[0],
            download_location=SpdxNoAssertion(),
            version=image_digest,
            files_analyzed=False,
            checksums=checksums,
            license_concluded=SpdxNoAssertion(),
            license_declared=SpdxNoAssertion(),
            copyright_text=SpdxNoAssertion(),
            external_references=_purl_ref(image_purl(image_name, image_digest, registry)),
            primary_package_purpose=PackagePurpose.CONTAINER,
            comment=f"platform {index.platform}" if index.platform else None,
        )
    ]
    if index.os is not None:
        packages.append(
            Package(
                spdx_id=spdx_id("OperatingSystem", index.os.id, unique=f"os\x00{index.os.id}"),
                name=index.os.id,
                download_location=SpdxNoAssertion(),
                version=index.os.version_id or None,
                files_analyzed=False,
                description=index.os.pretty_name or None,
                primary_package_purpose=PackagePurpose.OPERATING_SYSTEM,
            )
        )
    seen: set[str] = set()
    for component in index.components:
        key = "\x00".join((component.purl, component.name, component.version, component.path))
        key += "\x00" + component.layer_digest
        if key in seen:
            continue
        seen.add(key)
        packages.append(
            _spdx_package(component, spdx_id("Package", component.ecosystem, component.name, unique=key))
        )
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, image_id)]
    relationships += [
        Relationship(image_id, RelationshipType.CONTAINS, p.spdx_id)
        for p in packages
        if p.spdx_id != image_id
    ]
    document = Document(
        creation_info=CreationInfo(
            spdx_version="SPDX-2.3",
            spdx_id="SPDXRef-DOCUMENT",
            name=f"{image_name.split('@', 1)[0]}@{image_digest}",
            document_namespace=namespace,
            creators=[Actor(ActorType.TOOL, f"dockyard-{tool_version()}")],
            created=created,
        ),
        packages=packages,
        relationships=relationships,
    )
    if validate and (messages := validate_full_spdx_document(document)):
        raise SbomError(f"SPDX document does not validate: {[m.validation_message for m in messages]}")
    return json.dumps(_spec_enum_spelling(DocumentConverter().convert(document)), indent=2)


def _spec_enum_spelling(document: dict[str, Any]) -> dict[str, Any]:
    """Write enum values as the SPDX 2.3 spec spells them (spdx-tools 0.8 writes ``_``; tools-python#827).

    The 2.3.1 JSON schema accepts only ``OPERATING-SYSTEM`` and both spellings of ``PACKAGE-MANAGER``.
    """
    for package in document.get("packages", []):
        if package.get("primaryPackagePurpose") == "OPERATING_SYSTEM":
            package["primaryPackagePurpose"] = "OPERATING-SYSTEM"
        for ref in package.get("externalRefs", []):
            ref["referenceCategory"] = ref["referenceCategory"].replace("_", "-")
    return document
