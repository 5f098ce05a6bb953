"""Tests for dockyard.oci.mediatypes."""

from __future__ import annotations

import pytest

from dockyard.oci import mediatypes as mt


def test_supported_manifest_types() -> None:
    assert {mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST} == mt.MANIFEST_TYPES
    assert {mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST} == mt.INDEX_TYPES
    assert mt.INDEX_TYPES <= mt.MANIFEST_TYPES
    assert not mt.SCHEMA1_TYPES & mt.MANIFEST_TYPES
    assert isinstance(mt.MANIFEST_TYPES, frozenset)
    assert isinstance(mt.INDEX_TYPES, frozenset)


def test_values() -> None:
    assert mt.OCI_EMPTY == "application/vnd.oci.empty.v1+json"
    assert mt.OCI_CONFIG == "application/vnd.oci.image.config.v1+json"
    assert mt.DOCKER_CONFIG == "application/vnd.docker.container.image.v1+json"
    assert mt.DOCKER_LAYER == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert mt.OCI_LAYER_TAR_ZSTD == "application/vnd.oci.image.layer.v1.tar+zstd"
    assert mt.NONDISTRIBUTABLE_LAYER_TYPES <= mt.LAYER_TYPES


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        (" ; charset=utf-8", None),
        (mt.OCI_MANIFEST, mt.OCI_MANIFEST),
        (mt.OCI_MANIFEST + "; charset=utf-8", mt.OCI_MANIFEST),
        ("  Application/VND.OCI.image.index.v1+JSON ;q=1", mt.OCI_INDEX),
    ],
)
def test_base_type(header: str | None, expected: str | None) -> None:
    assert mt.base_type(header) == expected
