"""``dockyard.spec``: the OCI checks as domain code calls them, raising Invalid where ``dockyard.oci`` raises
OciSpecError, with the same code, message and detail (what the OCI envelopes and the API show)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dockyard import spec
from dockyard.errors import DockyardError, Invalid
from dockyard.oci import digest, manifest, reference
from dockyard.oci.errors import OCI_ERRORS, OciSpecError

GOOD = "sha256:" + "a" * 64

CASES: list[tuple[Callable[..., Any], Callable[..., Any], tuple[Any, ...], str]] = [
    (digest.parse_digest, spec.parse_digest, ("sha256:abc",), "DIGEST_INVALID"),
    (digest.parse_digest, spec.parse_digest, ("md5:" + "a" * 32,), "DIGEST_INVALID"),
    (digest.new_hasher, spec.new_hasher, ("sha256:ABC",), "DIGEST_INVALID"),
    (digest.compute, spec.compute, (b"x", "md5"), "DIGEST_INVALID"),
    (manifest.parse_manifest, spec.parse_manifest, (b"[]", None), "MANIFEST_INVALID"),
    (
        manifest.parse_manifest,
        spec.parse_manifest,
        (b'{"schemaVersion": 2, "config": {}}', None),
        "MANIFEST_INVALID",
    ),
    (reference.validate_name, spec.validate_name, ("Upper/Case",), "NAME_INVALID"),
    (reference.validate_tag, spec.validate_tag, ("-tag",), "TAG_INVALID"),
    (reference.split_reference, spec.split_reference, ("-tag",), "TAG_INVALID"),
    (reference.split_reference, spec.split_reference, ("sha256:short",), "DIGEST_INVALID"),
]


@pytest.mark.parametrize(("pure", "domain", "args", "code"), CASES)
def test_a_spec_error_becomes_invalid_with_the_same_code_message_and_detail(
    pure: Callable[..., Any], domain: Callable[..., Any], args: tuple[Any, ...], code: str
) -> None:
    with pytest.raises(OciSpecError) as raised:
        pure(*args)
    assert not isinstance(raised.value, DockyardError)  # oci/ knows nothing of the domain's errors
    assert raised.value.code == code and code in OCI_ERRORS
    with pytest.raises(Invalid) as translated:
        domain(*args)
    assert (translated.value.code, translated.value.message, translated.value.detail) == (
        raised.value.code,
        raised.value.message,
        raised.value.detail,
    )
    assert translated.value.__cause__ is not None and type(translated.value.__cause__) is OciSpecError


def test_valid_values_pass_through_unchanged() -> None:
    assert spec.parse_digest(GOOD) == ("sha256", "a" * 64)
    assert spec.validate_name("org/app") == "org/app"
    assert spec.validate_tag("v1.0") == "v1.0"
    assert spec.split_reference(GOOD) == ("digest", GOOD)
    assert spec.compute(b"") == digest.compute(b"")
    assert spec.new_hasher(GOOD).name == "sha256"
    assert (
        spec.parse_digest.__name__ == "parse_digest"
        and spec.parse_digest.__doc__ == digest.parse_digest.__doc__
    )
