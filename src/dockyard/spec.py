"""The OCI spec checks as domain code calls them: where ``dockyard.oci`` raises ``OciSpecError``, these raise
``Invalid`` with the same code, message and detail.

``dockyard.oci`` is pure spec code and knows nothing of dockyard's errors; services, views, the blob store and
the scanner need a ``DockyardError`` (what ``web/errors.py`` turns into a response, what a job treats as a
refusal that no retry will change). Translating here, once, keeps every call site as it was. Only the checks
that can fail are here; everything else (media types, descriptors, ``namespace_of``) comes from
``dockyard.oci`` directly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from dockyard.errors import Invalid
from dockyard.oci import digest, manifest, reference
from dockyard.oci.errors import OciSpecError

P = ParamSpec("P")
R = TypeVar("R")


def invalid(exc: OciSpecError) -> Invalid:
    """The domain error for a spec error: its OCI code, message and detail, unchanged."""
    return Invalid(exc.message, code=exc.code, detail=exc.detail)


def _domain(check: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(check)
    def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return check(*args, **kwargs)
        except OciSpecError as exc:
            raise invalid(exc) from exc

    return translated


parse_digest = _domain(digest.parse_digest)
new_hasher = _domain(digest.new_hasher)
compute = _domain(digest.compute)
parse_manifest = _domain(manifest.parse_manifest)
validate_name = _domain(reference.validate_name)
validate_tag = _domain(reference.validate_tag)
split_reference = _domain(reference.split_reference)

__all__ = [
    "compute",
    "invalid",
    "new_hasher",
    "parse_digest",
    "parse_manifest",
    "split_reference",
    "validate_name",
    "validate_tag",
]
