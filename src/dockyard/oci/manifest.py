"""Parsing and validation of OCI / Docker v2 image manifests and indexes (no I/O)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import parse_digest
from dockyard.oci.errors import OciSpecError

# Content-Type headers that say nothing about the manifest type; treated like a missing header.
_GENERIC_TYPES = frozenset({"application/json", "application/octet-stream"})


@dataclass
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None
    annotations: dict[str, str] | None = None
    artifact_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the descriptor as OCI JSON (optional fields only when set)."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        if self.annotations is not None:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = dict(self.platform)
        return out


@dataclass
class ParsedManifest:
    """The parts of a manifest or index the registry cares about."""

    media_type: str
    artifact_type: str | None
    subject: Descriptor | None
    config: Descriptor | None
    layers: list[Descriptor] = field(default_factory=list)
    manifests: list[Descriptor] = field(default_factory=list)
    annotations: dict[str, str] | None = None

    @property
    def is_index(self) -> bool:
        """True for an OCI image index or a Docker manifest list."""
        return self.media_type in mt.INDEX_TYPES

    @property
    def blob_references(self) -> list[str]:
        """Digests of the config and layer blobs, de-duplicated in order."""
        refs = ([self.config.digest] if self.config else []) + [d.digest for d in self.layers]
        return list(dict.fromkeys(refs))

    @property
    def manifest_references(self) -> list[str]:
        """Digests of the child manifests of an index, de-duplicated in order."""
        return list(dict.fromkeys(d.digest for d in self.manifests))


def _fail(message: str, **detail: Any) -> OciSpecError:
    return OciSpecError(message, code="MANIFEST_INVALID", detail=detail or None)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # With a key twice, parsers disagree on which value counts (Python and Go keep the last): a registry
    # that checked one "layers" list while a client pulls the other would have checked nothing.
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {duplicate!r}")
    return doc


def _load(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(
            bytes(payload).decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_keys
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _fail("manifest is not valid UTF-8 JSON", reason=str(exc)) from exc
    if not isinstance(doc, dict):
        raise _fail("manifest must be a JSON object")
    return doc


def _media_type(doc: dict[str, Any], content_type: str | None) -> str:
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _fail("mediaType must be a string", field="mediaType")
    header = mt.base_type(content_type)
    if header in _GENERIC_TYPES:
        header = None
    if declared is not None and header is not None and declared != header:
        raise _fail("manifest mediaType does not match Content-Type", mediaType=declared, contentType=header)
    media_type = declared if declared is not None else header
    if media_type is None:
        version = doc.get("schemaVersion")
        if type(version) is int and version == 1:
            media_type = mt.DOCKER_SCHEMA1
        elif "manifests" in doc:
            media_type = mt.OCI_INDEX
        elif "config" in doc and "layers" in doc:
            media_type = mt.OCI_MANIFEST
        else:
            raise _fail("cannot determine the manifest media type")
    if media_type in mt.SCHEMA1_TYPES:
        raise _fail("Docker schema 1 manifests are not supported", mediaType=media_type)
    if media_type not in mt.MANIFEST_TYPES:
        raise _fail("unsupported manifest media type", mediaType=media_type)
    return media_type


def _annotations(value: Any, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _fail(f"{where} must map strings to strings", field=where)
    return value


# RFC 6838 type/subtype (the grammar the OCI spec refers to): ASCII only, so nothing stored from a manifest
# can hold what a database cannot encode (a JSON "\ud800" decodes to a lone surrogate).
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


def _media_type_value(value: Any, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not _MEDIA_TYPE.fullmatch(value):
        raise _fail(f"{where} must be a media type (type/subtype, RFC 6838)", field=where)
    return value


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _fail(f"{where} must be a descriptor object", field=where)
    media_type = _media_type_value(value.get("mediaType"), f"{where}.mediaType")
    digest = value.get("digest")
    try:
        parse_digest(digest)
    except OciSpecError as exc:
        raise _fail(
            f"{where}.digest is invalid", field=f"{where}.digest", digest=digest, reason=exc.message
        ) from exc
    size = value.get("size")
    if type(size) is not int or size < 0:
        raise _fail(f"{where}.size must be a non-negative integer", field=f"{where}.size", size=size)
    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise _fail(f"{where}.platform must be an object", field=f"{where}.platform")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        platform=platform,
        annotations=_annotations(value.get("annotations"), f"{where}.annotations"),
        artifact_type=_media_type_value(value.get("artifactType"), f"{where}.artifactType", optional=True),
    )


def _descriptors(value: Any, where: str) -> list[Descriptor]:
    if not isinstance(value, list):
        raise _fail(f"{where} must be a list of descriptors", field=where)
    return [_descriptor(item, f"{where}[{i}]") for i, item in enumerate(value)]


def parse_manifest(payload: bytes, content_type: str | None) -> ParsedManifest:
    """Parse and validate a manifest or index; raise OciSpecError(MANIFEST_INVALID) when unacceptable."""
    doc = _load(payload)
    media_type = _media_type(doc, content_type)
    version = doc.get("schemaVersion")
    if type(version) is not int or version != 2:
        raise _fail("schemaVersion must be 2", field="schemaVersion")
    artifact_type = _media_type_value(doc.get("artifactType"), "artifactType", optional=True)
    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None
    annotations = _annotations(doc.get("annotations"), "annotations")
    # Rejecting documents that look like both kinds closes the manifest/index confusion
    # (GHSA-qq97-vm5h-rrhg) the same way the Go distribution registry does.
    if media_type in mt.INDEX_TYPES:
        if doc.get("config") is not None or doc.get("layers") is not None:
            raise _fail("expected an index but found a manifest")
        manifests = _descriptors(doc.get("manifests"), "manifests")
        return ParsedManifest(media_type, artifact_type, subject, None, [], manifests, annotations)
    if doc.get("manifests") is not None:
        raise _fail("expected a manifest but found an index")
    if doc.get("config") is None:
        raise _fail("config descriptor is required", field="config")
    config = _descriptor(doc["config"], "config")
    layers = _descriptors(doc.get("layers"), "layers")
    # OCI 1.1 referrers: the artifact type is artifactType, falling back to config.mediaType.
    effective = artifact_type if artifact_type is not None else config.media_type
    return ParsedManifest(media_type, effective, subject, config, layers, [], annotations)


def build_index(descriptors: list[Descriptor]) -> bytes:
    """Serialise descriptors as an OCI image index (the referrers API response body)."""
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [d.to_dict() for d in descriptors]}
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")
