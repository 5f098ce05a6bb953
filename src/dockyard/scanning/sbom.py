"""Software bills of materials for an indexed image: CycloneDX 1.6 JSON and SPDX 2.3 JSON.

SPDX is built through its reference library (spdx-tools); CycloneDX is written as JSON directly, held equal
by the tests to what its reference library (cyclonedx-python-lib) builds. Either can be validated before
it is returned (``validate=True``: the CycloneDX 1.6 schema bundled with that library, spdx-tools'
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
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

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
# Written as JSON directly. cyclonedx-python-lib's model (sorted sets of comparable objects, a serialiser
# that walks them) took a quarter of a second for a hundred components and 0.2 s to import, on the path of
# every `dockyard scan --format cyclonedx`; tests/support/cdx_library.py builds the same document through
# the library, and the tests hold the two equal, and this one to the 1.6 schema.

_URI_ESCAPES = str.maketrans(
    {
        " ": "%20",
        '"': "%22",
        "'": "%27",
        "[": "%5B",
        "]": "%5D",
        "<": "%3C",
        ">": "%3E",
        "{": "%7B",
        "}": "%7D",
    }
)


def _uri(text: str) -> str:
    """An iri-reference as the schema wants it (the characters CycloneDX's own library escapes)."""
    return text.translate(_URI_ESCAPES)


def _properties(values: dict[str, str | None]) -> list[dict[str, str]]:
    return [{"name": f"{PROPERTY_PREFIX}:{k}", "value": v} for k, v in sorted(values.items()) if v]


def _utc(moment: datetime) -> datetime:
    """Naive times are UTC here (``db.utcnow``)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _cdx_component(component: Component, ref: str) -> dict[str, Any]:
    purl = _parse_purl(component.purl)
    name, group = component.name, None
    if purl is not None and purl.type in _GROUPED_PURL_TYPES and purl.namespace:
        name, group = purl.name, purl.namespace
    doc: dict[str, Any] = {"bom-ref": ref, "type": "library"}
    if group:
        doc["group"] = group
    doc["name"] = name
    doc["version"] = component.version  # "" too, as the library writes it
    if purl is not None:
        doc["purl"] = purl.to_string()
    props = _properties(
        {
            "ecosystem": component.ecosystem,
            "layer_digest": component.layer_digest,
            "path": component.path,
            "source_name": component.source_name,
            "source_version": component.source_version,
            "arch": component.arch,
        }
    )
    if props:
        doc["properties"] = props
    return doc


def _cdx_os(os_info: OSInfo) -> dict[str, Any]:
    doc: dict[str, Any] = {"bom-ref": f"os:{os_info.id}@{os_info.version_id}", "type": "operating-system"}
    doc["name"] = os_info.id
    if os_info.version_id:
        doc["version"] = os_info.version_id
    if os_info.pretty_name:
        doc["description"] = os_info.pretty_name
    doc["properties"] = _properties({"os_id": os_info.id, "codename": os_info.codename})
    return doc


def score_method(vector: str | None) -> str:
    """The CycloneDX rating method for a CVSS vector (v2 vectors carry no ``CVSS:2.0/`` prefix)."""
    if not vector:
        return "other"
    for prefix, method in (("CVSS:4.", "CVSSv4"), ("CVSS:3.1", "CVSSv31"), ("CVSS:3.", "CVSSv3")):
        if vector.startswith(prefix):
            return method
    if vector.startswith("CVSS:2.") or "Au:" in vector:
        return "CVSSv2"
    return "OWASP" if vector.startswith("OWASP") else "other"


def _cvss_severity(score: float | None) -> str:
    """CycloneDX's severity words for a CVSS score (its own scale: 9 critical, 7 high, 4 medium)."""
    if score is None:
        return "unknown"
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low" if score > 0.0 else "none"


def _vuln_source(vuln_id: str) -> dict[str, str]:
    name = "NVD" if vuln_id.startswith("CVE-") else "GitHub" if vuln_id.startswith("GHSA-") else "OSV"
    return {"name": name, "url": _uri(advisory_url(vuln_id))}


def _rating(finding: FindingLike) -> dict[str, Any] | None:
    if finding.score is None and not finding.vector:
        return None
    record, label = score_record(finding), score_source(finding)
    # The rating's source is the record whose vector it is (NVD's, a GHSA, the distribution's), by its feed.
    source = (
        {"name": label, "url": _uri(advisory_url(record.removeprefix("NVD-")))}
        if record and label
        else _vuln_source(finding.id)
    )
    rating: dict[str, Any] = {"source": source}
    if finding.score is not None:
        rating["score"] = round(float(finding.score), 1)  # CVSS scores have one decimal (the library's too)
    rating["severity"] = _cvss_severity(finding.score)
    rating["method"] = score_method(finding.vector)
    if finding.vector:  # whole, "CVSS:3.1/..." included: the prefix is where CVSS 3.0 and 3.1 differ
        rating["vector"] = finding.vector
    return rating


def _cdx_vulnerability(finding: FindingLike, ref: str, vuln_ref: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"bom-ref": vuln_ref, "id": finding.id, "source": _vuln_source(finding.id)}
    aliases = [a for a in dict.fromkeys(finding.aliases) if a != finding.id]
    if aliases:
        doc["references"] = [{"id": a, "source": _vuln_source(a)} for a in sorted(aliases)]
    rating = _rating(finding)
    if rating:
        doc["ratings"] = [rating]
    if finding.summary:
        doc["description"] = finding.summary
    if finding.fixed_version:
        doc["recommendation"] = f"Upgrade {finding.component.name} to {finding.fixed_version} or later."
    doc["affects"] = [
        {"ref": ref, "versions": [{"version": finding.component.version, "status": "affected"}]}
    ]
    doc["properties"] = _properties(
        {"severity_class": severity_class(finding), "fixed_version": finding.fixed_version}
    )
    return doc


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
    root: dict[str, Any] = {
        "bom-ref": f"image:{image_digest}",
        "type": "container",
        "name": image_name.split("@", 1)[0],
        "version": image_digest,
        "purl": image_purl(image_name, image_digest, registry),
    }
    if index.platform:
        root["properties"] = _properties({"platform": index.platform})
    findings = list(findings or [])
    # A finding's component is normally one of the index's; an extra one is listed too rather than dangling.
    refs = _refs_for([*index.components, *(f.component for f in findings)])
    contained = [_cdx_component(c, ref) for c, ref in refs.items()]
    if index.os is not None:
        contained.append(_cdx_os(index.os))
    dependencies: list[dict[str, Any]] = [{"ref": root["bom-ref"]}]
    if contained:
        dependencies[0]["dependsOn"] = sorted(c["bom-ref"] for c in contained)
    dependencies += [{"ref": c["bom-ref"]} for c in contained]
    vulnerabilities = []
    vuln_refs: set[str] = set()
    for finding in findings:
        # Stable across runs and unique even for repeated findings.
        vuln_ref = base = f"vuln:{finding.id}|{refs[finding.component]}"
        n = 2
        while vuln_ref in vuln_refs:
            vuln_ref, n = f"{base}|{n}", n + 1
        vuln_refs.add(vuln_ref)
        vulnerabilities.append(_cdx_vulnerability(finding, refs[finding.component], vuln_ref))
    document: dict[str, Any] = {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": (serial_number or uuid.uuid4()).urn,
        "version": 1,
        "metadata": {
            "timestamp": _utc(created or datetime.now(UTC)).isoformat(),
            "tools": {"components": [{"type": "application", "name": "dockyard", "version": tool_version()}]},
            "component": root,
        },
    }
    if contained:
        document["components"] = contained
    document["dependencies"] = dependencies
    if vulnerabilities:
        document["vulnerabilities"] = vulnerabilities
    # ASCII, as the library writes it: a name read from a layer may hold a lone surrogate (an undecodable
    # byte of a tar member's name), which only an escape can carry into UTF-8.
    output = json.dumps(document, indent=2)
    if validate:
        from cyclonedx.schema import SchemaVersion  # the library and jsonschema: only when validating
        from cyclonedx.validation.json import JsonStrictValidator

        if (error := JsonStrictValidator(SchemaVersion.V1_6).validate_str(output)) is not None:
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
