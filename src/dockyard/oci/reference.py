"""Repository names, tags and references as defined by the OCI distribution spec."""

from __future__ import annotations

import re

from dockyard.oci.digest import parse_digest
from dockyard.oci.errors import OciSpecError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_PATTERN = rf"{_COMPONENT}(?:/{_COMPONENT})*"
TAG_PATTERN = r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
NAME_RE = re.compile(NAME_PATTERN)
TAG_RE = re.compile(TAG_PATTERN)
NAME_MAX_LENGTH = 255


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name; raise OciSpecError(NAME_INVALID) otherwise."""
    if not isinstance(name, str) or len(name) > NAME_MAX_LENGTH or not NAME_RE.fullmatch(name):
        raise OciSpecError("invalid repository name", code="NAME_INVALID", detail={"name": name})
    return name


def is_tag(s: object) -> bool:
    """Return True when ``s`` is a valid tag."""
    return isinstance(s, str) and TAG_RE.fullmatch(s) is not None


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tag; raise OciSpecError(TAG_INVALID) otherwise."""
    if not is_tag(tag):
        raise OciSpecError("invalid tag", code="TAG_INVALID", detail={"tag": tag})
    return tag


def split_reference(ref: str) -> tuple[str, str]:
    """Classify a manifest reference as ``("digest", ref)`` or ``("tag", ref)`` after validating it."""
    if isinstance(ref, str) and ":" in ref:
        parse_digest(ref)
        return "digest", ref
    return "tag", validate_tag(ref)


def namespace_of(name: str) -> str:
    """Return the first path component of a repository name (its namespace)."""
    return name.split("/", 1)[0]
