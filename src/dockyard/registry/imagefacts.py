"""What the registry browser says about a manifest, read from its JSON and its image config: kind, platform,
compressed size, entrypoint and labels. Pure functions, no I/O: the browser hands them parsed documents.

Image configs are whatever the pusher wrote: every field is checked for its type and anything unexpected is
left out rather than trusted (a label value that is a list, an Env that is a string).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import Invalid
from dockyard.oci import mediatypes as mt
from dockyard.oci.manifest import Descriptor, ParsedManifest
from dockyard.spec import parse_manifest

IMAGE, INDEX, ARTIFACT = "image", "index", "artifact"


@dataclass(frozen=True)
class Platform:
    """os/architecture/variant of an image, with its digest and size where a list of platforms needs them."""

    os: str | None
    architecture: str | None
    variant: str | None = None
    digest: str | None = None
    size: int | None = None  # compressed: config + layers

    @property
    def label(self) -> str:
        parts = [p for p in (self.os, self.architecture, self.variant) if p]
        return "/".join(parts) if parts else "unknown"


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config a person looks for before pulling it."""

    created: dt.datetime | None
    platform: Platform
    entrypoint: list[str] | None
    cmd: list[str] | None
    working_dir: str | None
    user: str | None
    env_count: int
    exposed_ports: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    history: int = 0  # build steps recorded


def parse(payload: bytes, media_type: str) -> ParsedManifest | None:
    """A stored manifest, parsed; None for one this code cannot read (stored before a rule tightened)."""
    try:
        return parse_manifest(payload, media_type)
    except Invalid:
        return None


def kind_of(parsed: ParsedManifest | None) -> str:
    """index, image (a runnable image: an image config) or artifact (a signature, an SBOM, a chart...)."""
    if parsed is None:
        return ARTIFACT
    if parsed.is_index:
        return INDEX
    # artifact_type is the manifest's artifactType, else its config's media type (OCI 1.1 referrers).
    return IMAGE if parsed.artifact_type in mt.CONFIG_TYPES else ARTIFACT


def image_size(parsed: ParsedManifest | None) -> int | None:
    """Compressed size of an image: its config and layers as the manifest lists them (None for an index)."""
    if parsed is None or parsed.is_index:
        return None
    return (parsed.config.size if parsed.config else 0) + sum(layer.size for layer in parsed.layers)


def is_attestation(d: Descriptor) -> bool:
    """BuildKit's provenance/SBOM manifests sit in an index as platform unknown/unknown."""
    if (d.annotations or {}).get("vnd.docker.reference.type") == "attestation-manifest":
        return True
    return _text((d.platform or {}).get("os")) == "unknown"


def descriptor_platform(d: Descriptor, size: int | None = None) -> Platform:
    """The platform an index entry declares."""
    p = d.platform or {}
    return Platform(_text(p.get("os")), _text(p.get("architecture")), _text(p.get("variant")), d.digest, size)


def config_platform(
    doc: dict[str, Any] | None, digest: str | None = None, size: int | None = None
) -> Platform:
    """The platform an image config declares (unknown parts None)."""
    doc = doc or {}
    return Platform(
        _text(doc.get("os")), _text(doc.get("architecture")), _text(doc.get("variant")), digest, size
    )


def load_config(data: bytes) -> dict[str, Any] | None:
    """An image config's JSON object, None when it is not one."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def image_config(doc: dict[str, Any]) -> ImageConfig:
    """The facts of an image config, each checked for its type."""
    run = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    env = run.get("Env")
    labels = run.get("Labels")
    ports = run.get("ExposedPorts")
    history = doc.get("history")
    return ImageConfig(
        created=_time(doc.get("created")),
        platform=config_platform(doc),
        entrypoint=_strings(run.get("Entrypoint")),
        cmd=_strings(run.get("Cmd")),
        working_dir=_text(run.get("WorkingDir")),
        user=_text(run.get("User")),
        env_count=len(env) if isinstance(env, list) else 0,
        exposed_ports=sorted(str(p) for p in ports) if isinstance(ports, dict) else [],
        labels=(
            {str(k): v for k, v in sorted(labels.items()) if isinstance(v, str)}
            if isinstance(labels, dict)
            else {}
        ),
        history=len(history) if isinstance(history, list) else 0,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


# Go writes up to nine fractional digits and a "Z"; Python's fromisoformat reads six.
_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00"))
    except ValueError:
        return None
    # The page's filters take naive UTC, as the database stores times.
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
