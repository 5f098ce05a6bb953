"""CycloneDX and SPDX SBOMs of a realistic image index, validated against their schemas and read back."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import jsonschema
import pytest
from cyclonedx.model.vulnerability import VulnerabilityScoreSource
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
from tests.support.cdx_library import library_cyclonedx_json

from dockyard.scanning import sbom
from dockyard.scanning.types import Component, ImageIndex, OSInfo

BASE = "sha256:" + "1" * 64
PYTHON = "sha256:" + "2" * 64
APP = "sha256:" + "3" * 64
IMAGE_DIGEST = "sha256:" + "d" * 64
CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SERIAL = uuid.UUID("00000000-0000-4000-8000-000000000001")


def deb(name: str, version: str, source: str | None = None, source_version: str | None = None) -> Component:
    purl = PackageURL("deb", "debian", name, version, {"arch": "amd64", "distro": "debian-12"}).to_string()
    return Component(
        name, version, "Debian:12", purl, BASE, "var/lib/dpkg/status", source, source_version, "amd64"
    )


def apk(name: str, version: str, origin: str) -> Component:
    purl = PackageURL("apk", "alpine", name, version, {"arch": "x86_64", "distro": "3.19.1"}).to_string()
    return Component(
        name, version, "Alpine:v3.19", purl, BASE, "lib/apk/db/installed", origin, version, "x86_64"
    )


def lang(ecosystem: str, ptype: str, namespace: str | None, name: str, version: str, path: str) -> Component:
    purl = PackageURL(ptype, namespace, name, version).to_string()
    display = f"{namespace}/{name}" if ptype in {"npm", "golang"} and namespace else name
    if ptype == "maven":
        display = f"{namespace}:{name}"
    return Component(display, version, ecosystem, purl, APP, path)


LANGUAGE = [
    lang(
        "PyPI",
        "pypi",
        None,
        "requests",
        "2.31.0",
        "usr/lib/python3/site-packages/requests-2.31.0.dist-info/METADATA",
    ),
    lang("PyPI", "pypi", None, "urllib3", "1.26.18", "app/.venv/urllib3-1.26.18.dist-info/METADATA"),
    lang("PyPI", "pypi", None, "django", "4.2.7", "app/.venv/Django-4.2.7.dist-info/METADATA"),
    lang("PyPI", "pypi", None, "pyyaml", "6.0.1", "app/.venv/PyYAML-6.0.1.dist-info/METADATA"),
    lang("npm", "npm", "@babel", "core", "7.23.2", "app/node_modules/@babel/core/package.json"),
    lang("npm", "npm", "@types", "node", "20.8.10", "app/node_modules/@types/node/package.json"),
    lang("npm", "npm", None, "lodash", "4.17.20", "app/node_modules/lodash/package.json"),
    lang("npm", "npm", None, "express", "4.18.2", "app/node_modules/express/package.json"),
    # The same package twice, in two node_modules trees: two components, one purl.
    lang(
        "npm", "npm", None, "lodash", "4.17.20", "app/node_modules/express/node_modules/lodash/package.json"
    ),
    lang("Go", "golang", "github.com/gin-gonic", "gin", "v1.9.1", "app/server"),
    lang("Go", "golang", "golang.org/x", "net", "v0.17.0", "app/server"),
    lang("Go", "golang", None, "stdlib", "v1.21.3", "app/server"),
    lang(
        "Maven", "maven", "org.apache.logging.log4j", "log4j-core", "2.14.1", "app/lib/log4j-core-2.14.1.jar"
    ),
    lang("Maven", "maven", "com.fasterxml.jackson.core", "jackson-databind", "2.13.0", "app/lib/app.jar"),
    lang("Maven", "maven", "org.springframework", "spring-core", "5.3.20", "app/lib/app.jar"),
]

DEBIAN_PACKAGES = [
    deb("base-files", "12.4+deb12u5"),
    deb("libc6", "2.36-9+deb12u4", "glibc", "2.36-9+deb12u4"),
    deb("libc-bin", "2.36-9+deb12u4", "glibc", "2.36-9+deb12u4"),
    deb("libssl3", "3.0.11-1~deb12u2", "openssl", "3.0.11-1~deb12u2"),
    deb("openssl", "3.0.11-1~deb12u2"),
    deb("zlib1g", "1:1.2.13.dfsg-1", "zlib", "1:1.2.13.dfsg-1"),
    deb("libstdc++6", "12.2.0-14", "gcc-12", "12.2.0-14"),
    deb("libgcc-s1", "12.2.0-14", "gcc-12", "12.2.0-14"),
    deb("curl", "7.88.1-10+deb12u4"),
    deb("libcurl4", "7.88.1-10+deb12u4", "curl", "7.88.1-10+deb12u4"),
    deb("perl-base", "5.36.0-7+deb12u1", "perl", "5.36.0-7+deb12u1"),
    deb("bash", "5.2.15-2+b2", "bash", "5.2.15-2"),
    deb("coreutils", "9.1-1"),
    deb("tar", "1.34+dfsg-1.2+deb12u1"),
    deb("util-linux", "2.38.1-5+b1"),
    deb("libsystemd0", "252.19-1~deb12u1", "systemd", "252.19-1~deb12u1"),
    deb("ca-certificates", "20230311"),
    deb("python3.11-minimal", "3.11.2-6", "python3.11", "3.11.2-6"),
]

ALPINE_PACKAGES = [
    apk("musl", "1.2.4_git20230717-r4", "musl"),
    apk("busybox", "1.36.1-r15", "busybox"),
    apk("ssl_client", "1.36.1-r15", "busybox"),
    apk("libcrypto3", "3.1.4-r2", "openssl"),
    apk("libssl3", "3.1.4-r2", "openssl"),
    apk("zlib", "1.3-r2", "zlib"),
    apk("apk-tools", "2.14.0-r5", "apk-tools"),
    apk("ca-certificates-bundle", "20230506-r0", "ca-certificates"),
]


def debian_index() -> ImageIndex:
    components = [*DEBIAN_PACKAGES, *LANGUAGE]
    # A binary with no package-manager identity: listed, but without a purl.
    components.append(Component("mystery-tool", "1.0", "Go", "", APP, "usr/local/bin/mystery-tool"))
    return ImageIndex(
        os=OSInfo("debian", "12", "Debian GNU/Linux 12 (bookworm)", "bookworm"),
        components=components,
        layers=[BASE, PYTHON, APP],
        platform="linux/amd64",
    )


def alpine_index() -> ImageIndex:
    return ImageIndex(
        os=OSInfo("alpine", "3.19.1", "Alpine Linux v3.19"),
        components=[*ALPINE_PACKAGES, *LANGUAGE],
        layers=[BASE, APP],
        platform="linux/arm64",
    )


@dataclass(frozen=True)
class Finding:
    id: str
    component: Component
    installed_version: str
    fixed_version: str | None
    score: float | None
    vector: str | None
    severity: str
    summary: str = "a vulnerability"
    aliases: tuple[str, ...] = field(default=())


def by_name(index: ImageIndex, name: str) -> Component:
    return next(c for c in index.components if c.name == name)


def findings_for(index: ImageIndex) -> list[Finding]:
    log4j = by_name(index, "org.apache.logging.log4j:log4j-core")
    babel = by_name(index, "@babel/core")
    libssl = by_name(index, "libssl3")
    lodash = [c for c in index.components if c.name == "lodash"]
    return [
        Finding(
            "CVE-2021-44228",
            log4j,
            "2.14.1",
            "2.15.0",
            10.0,
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H",
            "Critical",
            "Log4Shell",
            ("GHSA-jfh8-c2jp-5v3q",),
        ),
        Finding(
            "CVE-2023-45133",
            babel,
            "7.23.2",
            "7.23.2-fixed",
            9.3,
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            "Critical",
            "Arbitrary code execution when compiling crafted code",
            ("GHSA-67hx-6x53-jw92",),
        ),
        Finding(
            "CVE-2023-5678",
            libssl,
            libssl.version,
            None,
            5.3,
            "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L",
            "Major",
            "Excessive time in DH checks",
        ),
        Finding("CVE-2008-0001", libssl, libssl.version, None, 7.5, "AV:N/AC:L/Au:N/C:P/I:P/A:P", "Critical"),
        *(
            Finding("CVE-2021-23337", c, "4.17.20", "4.17.21", None, None, "Unscored", "Command injection")
            for c in lodash
        ),
    ]


def cdx(index: ImageIndex, findings: list[Finding] | None = None) -> dict:
    text = sbom.cyclonedx_json(
        "acme/web:1.2", IMAGE_DIGEST, index, findings, created=CREATED, serial_number=SERIAL
    )
    return json.loads(text)


# -- CycloneDX ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make_index", [debian_index, alpine_index])
@pytest.mark.parametrize("with_findings", [False, True])
def test_cyclonedx_validates_against_the_1_6_schema(make_index, with_findings):
    index = make_index()
    findings = findings_for(index) if with_findings else None
    text = sbom.cyclonedx_json("acme/web:1.2", IMAGE_DIGEST, index, findings, validate=True)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    assert json.loads(text)["specVersion"] == "1.6"


def test_the_cyclonedx_validator_used_above_rejects_a_broken_document():
    doc = cdx(debian_index(), findings_for(debian_index()))
    doc["components"][0]["type"] = "package"
    doc["vulnerabilities"][0]["ratings"][0]["method"] = "CVSSv5"
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc)) is not None


def test_cyclonedx_metadata_component_is_the_image_with_its_digest():
    doc = cdx(debian_index())
    root = doc["metadata"]["component"]
    assert root["type"] == "container"
    assert root["name"] == "acme/web:1.2"
    assert root["version"] == IMAGE_DIGEST
    purl = PackageURL.from_string(root["purl"])
    assert (purl.type, purl.name, purl.version) == ("oci", "web", IMAGE_DIGEST)
    assert purl.qualifiers == {"repository_url": "acme/web", "tag": "1.2"}
    assert {"name": "dockyard:platform", "value": "linux/amd64"} in root["properties"]
    assert doc["metadata"]["timestamp"].startswith("2026-01-02T03:04:05")
    assert doc["metadata"]["tools"]["components"][0]["name"] == "dockyard"
    assert doc["serialNumber"] == f"urn:uuid:{SERIAL}"


def test_cyclonedx_lists_every_component_once_with_its_properties():
    index = debian_index()
    doc = cdx(index)
    libraries = [c for c in doc["components"] if c["type"] == "library"]
    assert len(libraries) == len(index.components)
    refs = [c["bom-ref"] for c in doc["components"]]
    assert len(refs) == len(set(refs))

    libssl = next(c for c in libraries if c["name"] == "libssl3")
    assert libssl["version"] == "3.0.11-1~deb12u2"
    assert libssl["purl"] == "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12"
    props = {p["name"]: p["value"] for p in libssl["properties"]}
    assert props == {
        "dockyard:ecosystem": "Debian:12",
        "dockyard:layer_digest": BASE,
        "dockyard:path": "var/lib/dpkg/status",
        "dockyard:source_name": "openssl",
        "dockyard:source_version": "3.0.11-1~deb12u2",
        "dockyard:arch": "amd64",
    }
    zlib = next(c for c in libraries if c["name"] == "zlib1g")
    assert PackageURL.from_string(zlib["purl"]).version == "1:1.2.13.dfsg-1"  # the epoch survives


def test_cyclonedx_groups_npm_scopes_and_maven_group_ids():
    libraries = cdx(debian_index())["components"]
    babel = next(c for c in libraries if c.get("group") == "@babel")
    assert (babel["name"], babel["version"], babel["purl"]) == (
        "core",
        "7.23.2",
        "pkg:npm/%40babel/core@7.23.2",
    )
    log4j = next(c for c in libraries if c["name"] == "log4j-core")
    assert log4j["group"] == "org.apache.logging.log4j"
    gin = next(c for c in libraries if c["name"] == "github.com/gin-gonic/gin")
    assert "group" not in gin and gin["purl"] == "pkg:golang/github.com/gin-gonic/gin@v1.9.1"
    assert next(c for c in libraries if c["name"] == "requests")["purl"] == "pkg:pypi/requests@2.31.0"


def test_cyclonedx_keeps_duplicate_packages_apart_and_omits_missing_purls():
    libraries = cdx(debian_index())["components"]
    lodash = [c for c in libraries if c["name"] == "lodash"]
    assert len(lodash) == 2 and lodash[0]["bom-ref"] != lodash[1]["bom-ref"]
    paths = {next(p["value"] for p in c["properties"] if p["name"] == "dockyard:path") for c in lodash}
    assert paths == {
        "app/node_modules/lodash/package.json",
        "app/node_modules/express/node_modules/lodash/package.json",
    }
    mystery = next(c for c in libraries if c["name"] == "mystery-tool")
    assert "purl" not in mystery


def test_cyclonedx_describes_the_os_and_the_dependency_graph():
    doc = cdx(debian_index())
    os_components = [c for c in doc["components"] if c["type"] == "operating-system"]
    assert len(os_components) == 1
    assert (os_components[0]["name"], os_components[0]["version"]) == ("debian", "12")
    assert os_components[0]["description"] == "Debian GNU/Linux 12 (bookworm)"
    root_ref = doc["metadata"]["component"]["bom-ref"]
    root_deps = next(d for d in doc["dependencies"] if d["ref"] == root_ref)
    assert set(root_deps["dependsOn"]) == {c["bom-ref"] for c in doc["components"]}


def test_cyclonedx_without_findings_has_no_vulnerabilities_section():
    assert "vulnerabilities" not in cdx(debian_index())
    assert "vulnerabilities" not in cdx(debian_index(), [])


def test_cyclonedx_vulnerabilities_carry_ratings_affects_and_fixes():
    index = debian_index()
    findings = findings_for(index)
    doc = cdx(index, findings)
    vulns = doc["vulnerabilities"]
    assert len(vulns) == len(findings)
    ref_by_path = {
        (
            c.get("purl", ""),
            next(p["value"] for p in c["properties"] if p["name"] == "dockyard:path"),
        ): c["bom-ref"]
        for c in doc["components"]
        if c["type"] == "library"
    }

    log4shell = next(v for v in vulns if v["id"] == "CVE-2021-44228")
    assert log4shell["ratings"] == [
        {
            "method": "CVSSv31",
            "score": 10.0,
            "severity": "critical",
            "source": {"name": "NVD", "url": "https://nvd.nist.gov/vuln/detail/CVE-2021-44228"},
            "vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H",
        }
    ]
    log4j = by_name(index, "org.apache.logging.log4j:log4j-core")
    assert log4shell["affects"] == [
        {
            "ref": ref_by_path[(log4j.purl, log4j.path)],
            "versions": [{"version": "2.14.1", "status": "affected"}],
        }
    ]
    assert "2.15.0" in log4shell["recommendation"]
    assert log4shell["references"][0]["id"] == "GHSA-jfh8-c2jp-5v3q"
    assert log4shell["description"] == "Log4Shell"
    props = {p["name"]: p["value"] for p in log4shell["properties"]}
    assert props == {"dockyard:severity_class": "Critical", "dockyard:fixed_version": "2.15.0"}

    methods = {v["id"]: v["ratings"][0]["method"] for v in vulns if v.get("ratings")}
    assert methods == {
        "CVE-2021-44228": "CVSSv31",
        "CVE-2023-45133": "CVSSv4",
        "CVE-2023-5678": "CVSSv3",
        "CVE-2008-0001": "CVSSv2",
    }
    severities = {v["id"]: v["ratings"][0]["severity"] for v in vulns if v.get("ratings")}
    assert severities["CVE-2023-5678"] == "medium" and severities["CVE-2008-0001"] == "high"

    lodash_vulns = [v for v in vulns if v["id"] == "CVE-2021-23337"]
    assert len(lodash_vulns) == 2
    assert all(
        "ratings" not in v and "fixed in" not in v.get("recommendation", "fixed in") for v in lodash_vulns
    )
    assert {v["affects"][0]["ref"] for v in lodash_vulns} == {
        ref for (purl, _), ref in ref_by_path.items() if purl.startswith("pkg:npm/lodash@")
    }
    unfixed = next(v for v in vulns if v["id"] == "CVE-2023-5678")
    assert "recommendation" not in unfixed


def test_a_finding_for_a_component_missing_from_the_index_is_still_resolvable():
    index = debian_index()
    stray = replace(by_name(index, "curl"), path="opt/curl/status", layer_digest=APP)
    doc = cdx(index, [Finding("CVE-2023-38545", stray, stray.version, None, 9.8, None, "Critical")])
    refs = {c["bom-ref"] for c in doc["components"]}
    assert doc["vulnerabilities"][0]["affects"][0]["ref"] in refs
    assert len([c for c in doc["components"] if c["name"] == "curl"]) == 2


def test_an_exact_duplicate_component_is_listed_once():
    index = debian_index()
    index.components.append(by_name(index, "curl"))
    assert len([p for p in spdx(index)["packages"] if p["name"] == "curl"]) == 1
    assert len([c for c in cdx(index)["components"] if c["name"] == "curl"]) == 1


def test_repeated_findings_get_distinct_vulnerability_refs():
    index = debian_index()
    twice = findings_for(index)[:1] * 3
    text = sbom.cyclonedx_json("acme/web:1.2", IMAGE_DIGEST, index, twice, validate=True)
    refs = [v["bom-ref"] for v in json.loads(text)["vulnerabilities"]]
    assert len(refs) == 3 and len(set(refs)) == 3
    assert all(r.startswith("vuln:CVE-2021-44228|pkg:maven/") for r in refs)


def test_cyclonedx_output_is_reproducible_given_time_and_serial():
    index = debian_index()
    assert sbom.cyclonedx_json(
        "acme/web:1.2", IMAGE_DIGEST, index, findings_for(index), created=CREATED, serial_number=SERIAL
    ) == sbom.cyclonedx_json(
        "acme/web:1.2", IMAGE_DIGEST, index, findings_for(index), created=CREATED, serial_number=SERIAL
    )


@pytest.mark.parametrize(
    ("vector", "method"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", VulnerabilityScoreSource.CVSS_V3_1),
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", VulnerabilityScoreSource.CVSS_V3),
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", VulnerabilityScoreSource.CVSS_V4),
        ("AV:N/AC:L/Au:N/C:P/I:P/A:P", VulnerabilityScoreSource.CVSS_V2),
        (None, VulnerabilityScoreSource.OTHER),
        ("", VulnerabilityScoreSource.OTHER),
    ],
)
def test_score_method_from_vector(vector, method):
    assert sbom.score_method(vector) == method.value


@pytest.mark.parametrize(
    ("name", "registry", "expected"),
    [
        ("acme/web:1.2", None, f"pkg:oci/web@{IMAGE_DIGEST}?repository_url=acme/web&tag=1.2"),
        (
            "acme/web",
            "reg.example:5000",
            f"pkg:oci/web@{IMAGE_DIGEST}?repository_url=reg.example:5000/acme/web",
        ),
        (f"acme/team/API@{IMAGE_DIGEST}", None, f"pkg:oci/api@{IMAGE_DIGEST}?repository_url=acme/team/API"),
    ],
)
def test_image_purl(name, registry, expected):
    assert PackageURL.from_string(sbom.image_purl(name, IMAGE_DIGEST, registry)) == PackageURL.from_string(
        expected
    )


# -- SPDX ---------------------------------------------------------------------------------------------------

_DATE = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T(([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]|23:59:60)Z$"
)
_STR = {"type": "string"}
# An excerpt of the official SPDX 2.3(.1) JSON schema (spdx/spdx-spec schemas/spdx-schema.json): the document,
# creationInfo, packages and relationships as published (descriptions dropped), with the sections we never
# write (files, snippets, licensing infos...) reduced to their type. No installed package ships it. Note that
# 2.3.1 spells OPERATING-SYSTEM with a dash, as the spec text does; spdx-tools 0.8 writes an underscore.
# fmt: off
SPDX_2_3_SCHEMA_EXCERPT = {
    "$schema": "https://json-schema.org/draft/2019-09/schema",
    "type": "object",
    "properties": {
        "$schema": _STR,
        "SPDXID": _STR,
        "annotations": {"type": "array"},
        "comment": _STR,
        "creationInfo": {
            "type": "object",
            "properties": {
                "comment": _STR,
                "created": {"type": "string", "pattern": _DATE},
                "creators": {"minItems": 1, "type": "array", "items": _STR},
                "licenseListVersion": _STR,
            },
            "required": ["created", "creators"],
            "additionalProperties": False,
        },
        "dataLicense": _STR,
        "externalDocumentRefs": {"type": "array"},
        "hasExtractedLicensingInfos": {"type": "array"},
        "name": _STR,
        "revieweds": {"type": "array"},
        "spdxVersion": _STR,
        "documentNamespace": _STR,
        "documentDescribes": {"type": "array", "items": _STR},
        "packages": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "SPDXID": {"type": "string", "pattern": "^SPDXRef-[a-zA-Z0-9.-]+$"},
                    "annotations": {"type": "array"},
                    "attributionTexts": {"type": "array", "items": _STR},
                    "builtDate": {"type": "string", "pattern": _DATE},
                    "checksums": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "algorithm": {
                                    "type": "string",
                                    "enum": [
                                        "SHA1", "BLAKE3", "SHA3-384", "SHA256", "SHA384", "BLAKE2b-512",
                                        "BLAKE2b-256", "SHA3-512", "MD2", "ADLER32", "MD4", "SHA3-256",
                                        "BLAKE2b-384", "SHA512", "MD6", "MD5", "SHA224",
                                    ],
                                },
                                "checksumValue": {"pattern": "^[0-9a-fA-F]+$", "type": "string"},
                            },
                            "required": ["algorithm", "checksumValue"],
                            "additionalProperties": False,
                        },
                    },
                    "comment": _STR,
                    "copyrightText": _STR,
                    "description": _STR,
                    "downloadLocation": _STR,
                    "externalRefs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "comment": _STR,
                                "referenceCategory": {
                                    "type": "string",
                                    "enum": [
                                        "OTHER", "PERSISTENT-ID", "PERSISTENT_ID", "SECURITY",
                                        "PACKAGE-MANAGER", "PACKAGE_MANAGER",
                                    ],
                                },
                                "referenceLocator": _STR,
                                "referenceType": _STR,
                            },
                            "required": ["referenceCategory", "referenceLocator", "referenceType"],
                            "additionalProperties": False,
                        },
                    },
                    "filesAnalyzed": {"type": "boolean"},
                    "hasFiles": {"type": "array", "items": _STR},
                    "homepage": _STR,
                    "licenseComments": _STR,
                    "licenseConcluded": _STR,
                    "licenseDeclared": _STR,
                    "licenseInfoFromFiles": {"type": "array", "items": _STR},
                    "name": _STR,
                    "originator": _STR,
                    "packageFileName": _STR,
                    "packageVerificationCode": {"type": "object"},
                    "primaryPackagePurpose": {
                        "type": "string",
                        "enum": [
                            "OTHER", "INSTALL", "ARCHIVE", "FIRMWARE", "APPLICATION", "FRAMEWORK",
                            "LIBRARY", "CONTAINER", "SOURCE", "DEVICE", "OPERATING-SYSTEM", "FILE",
                        ],
                    },
                    "releaseDate": {"type": "string", "pattern": _DATE},
                    "sourceInfo": _STR,
                    "summary": _STR,
                    "supplier": _STR,
                    "validUntilDate": {"type": "string", "pattern": _DATE},
                    "versionInfo": _STR,
                },
                "required": ["SPDXID", "downloadLocation", "name"],
                "additionalProperties": False,
            },
        },
        "files": {"type": "array"},
        "snippets": {"type": "array"},
        "relationships": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "spdxElementId": _STR,
                    "comment": _STR,
                    "relatedSpdxElement": _STR,
                    # Only the values we write, out of the published list of 45.
                    "relationshipType": {"type": "string", "enum": ["DESCRIBES", "CONTAINS"]},
                },
                "required": ["spdxElementId", "relatedSpdxElement", "relationshipType"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["SPDXID", "creationInfo", "dataLicense", "name", "spdxVersion", "documentNamespace"],
    "additionalProperties": False,
}
# fmt: on


def spdx(index: ImageIndex) -> dict:
    return json.loads(sbom.spdx_json("acme/web:1.2", IMAGE_DIGEST, index, created=CREATED))


@pytest.mark.parametrize("make_index", [debian_index, alpine_index])
def test_spdx_validates_with_spdx_tools_and_the_schema(make_index):
    doc = json.loads(sbom.spdx_json("acme/web:1.2", IMAGE_DIGEST, make_index(), validate=True))
    jsonschema.Draft201909Validator(SPDX_2_3_SCHEMA_EXCERPT).validate(doc)
    parsed = JsonLikeDictParser().parse(doc)
    assert validate_full_spdx_document(parsed) == []


def test_the_spdx_checks_used_above_reject_a_broken_document():
    doc = spdx(debian_index())
    doc["packages"][1]["SPDXID"] = doc["packages"][2]["SPDXID"]  # duplicate ids
    doc["relationships"].append(
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relatedSpdxElement": "SPDXRef-nowhere",
            "relationshipType": "CONTAINS",
        }
    )
    assert validate_full_spdx_document(JsonLikeDictParser().parse(doc)) != []
    doc["packages"][0]["SPDXID"] = "SPDXRef-has space"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft201909Validator(SPDX_2_3_SCHEMA_EXCERPT).validate(doc)


def test_spdx_document_header():
    doc = spdx(debian_index())
    assert doc["spdxVersion"] == "SPDX-2.3"
    assert doc["dataLicense"] == "CC0-1.0"
    assert doc["SPDXID"] == "SPDXRef-DOCUMENT"
    assert doc["name"] == f"acme/web:1.2@{IMAGE_DIGEST}"
    assert doc["creationInfo"] == {
        "created": "2026-01-02T03:04:05Z",
        "creators": [doc["creationInfo"]["creators"][0]],
    }
    assert doc["creationInfo"]["creators"][0].startswith("Tool: dockyard-")
    assert doc["documentNamespace"].startswith("https://")
    assert "#" not in doc["documentNamespace"]
    # Two documents are two namespaces, even for the same image at the same second.
    assert spdx(debian_index())["documentNamespace"] != doc["documentNamespace"]


def test_spdx_packages_for_image_os_and_every_component():
    index = debian_index()
    doc = spdx(index)
    packages = doc["packages"]
    ids = [p["SPDXID"] for p in packages]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"SPDXRef-[A-Za-z0-9.-]+", i) for i in ids)
    assert all(p["downloadLocation"] == "NOASSERTION" for p in packages)
    assert len(packages) == len(index.components) + 2  # the image and the OS

    image = next(p for p in packages if p.get("primaryPackagePurpose") == "CONTAINER")
    assert image["versionInfo"] == IMAGE_DIGEST
    assert image["checksums"] == [{"algorithm": "SHA256", "checksumValue": "d" * 64}]
    assert image["externalRefs"][0]["referenceLocator"].startswith("pkg:oci/web@sha256")
    os_package = next(p for p in packages if p.get("primaryPackagePurpose") == "OPERATING-SYSTEM")
    assert (os_package["name"], os_package["versionInfo"]) == ("debian", "12")

    purls = {
        ref["referenceLocator"]
        for p in packages
        for ref in p.get("externalRefs", [])
        if ref["referenceCategory"] == "PACKAGE-MANAGER" and ref["referenceType"] == "purl"
    }
    assert {c.purl for c in index.components if c.purl} <= purls
    babel = next(p for p in packages if p["name"] == "@babel/core")
    assert babel["versionInfo"] == "7.23.2"
    assert babel["externalRefs"] == [
        {
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceLocator": "pkg:npm/%40babel/core@7.23.2",
            "referenceType": "purl",
        }
    ]
    libstdcpp = next(p for p in packages if p["name"] == "libstdc++6")
    assert libstdcpp["sourceInfo"] == "built from source package gcc-12 12.2.0-14"
    assert "externalRefs" not in next(p for p in packages if p["name"] == "mystery-tool")


def test_spdx_relationships_describe_the_image_which_contains_the_rest():
    doc = spdx(debian_index())
    ids = {p["SPDXID"] for p in doc["packages"]}
    image_id = next(p["SPDXID"] for p in doc["packages"] if p.get("primaryPackagePurpose") == "CONTAINER")
    describes = [r for r in doc["relationships"] if r["relationshipType"] == "DESCRIBES"]
    assert describes == [
        {"spdxElementId": "SPDXRef-DOCUMENT", "relatedSpdxElement": image_id, "relationshipType": "DESCRIBES"}
    ]
    contains = [r for r in doc["relationships"] if r["relationshipType"] == "CONTAINS"]
    assert {r["spdxElementId"] for r in contains} == {image_id}
    assert {r["relatedSpdxElement"] for r in contains} == ids - {image_id}


def test_spdx_id_is_valid_and_distinguishes_keys():
    a = sbom.spdx_id("Package", "npm", "@scope/na me++", unique="k1")
    b = sbom.spdx_id("Package", "npm", "@scope/na me++", unique="k2")
    assert a != b
    assert re.fullmatch(r"SPDXRef-[A-Za-z0-9.-]+", a)
    assert re.fullmatch(r"SPDXRef-[A-Za-z0-9.-]+", sbom.spdx_id("", unique="x"))


def _canonical(value):
    """The document with every array sorted: CycloneDX gives no meaning to their order."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _stray_finding(index: ImageIndex) -> list[Finding]:
    stray = replace(by_name(index, "curl"), path="opt/curl/status", layer_digest=APP)
    return [Finding("CVE-2023-38545", stray, stray.version, None, 9.8, None, "Critical")]


def _with_duplicate(index: ImageIndex) -> ImageIndex:
    index.components.append(by_name(index, "curl"))
    return index


def _odd_component(index: ImageIndex) -> ImageIndex:
    """A version-less package under a directory whose name is not UTF-8 (tar names are decoded with
    surrogateescape: a lone surrogate reaches the SBOM)."""
    path = "opt/caf\udce9/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA"
    index.components.append(Component("requests", "", "PyPI", "pkg:pypi/requests", APP, path))
    return index


def _precise_scores(index: ImageIndex) -> list[Finding]:
    return [replace(f, score=f.score + 0.0123456) if f.score else f for f in findings_for(index)]


@pytest.mark.parametrize(
    ("make_index", "make_findings"),
    [
        (debian_index, lambda index: None),
        (debian_index, findings_for),
        (alpine_index, findings_for),
        (debian_index, _stray_finding),
        (lambda: _with_duplicate(debian_index()), lambda index: findings_for(index)[:1] * 3),
        (lambda: replace(debian_index(), os=None, platform=None), findings_for),
        (lambda: replace(debian_index(), components=[], os=None), lambda index: None),
        (lambda: _odd_component(debian_index()), findings_for),
        (debian_index, _precise_scores),
    ],
    ids=[
        "debian",
        "debian-findings",
        "alpine-findings",
        "stray",
        "repeats",
        "no-os-or-platform",
        "empty",
        "odd-component",
        "precise-scores",
    ],
)
@pytest.mark.parametrize("created", [CREATED, CREATED.replace(tzinfo=None)], ids=["aware", "naive"])
def test_cyclonedx_is_the_document_the_reference_library_builds(make_index, make_findings, created):
    """Written directly, the document is the one cyclonedx-python-lib builds from the same index and
    findings (the code that built it before), arrays' order aside; and ASCII as the library's, so that any
    name read from a layer can be written."""
    index = make_index()
    findings = make_findings(index)
    args = ("acme/team/web:1.2", IMAGE_DIGEST, index, findings)
    options = {"created": created, "serial_number": SERIAL, "registry": "reg.example:5000"}
    text = sbom.cyclonedx_json(*args, **options, validate=True)
    assert text.isascii()
    theirs = json.loads(library_cyclonedx_json(*args, **options))
    assert _canonical(json.loads(text)) == _canonical(theirs)
