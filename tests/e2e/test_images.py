"""The image builder itself: the layouts the other e2e tests push are real, complete OCI images."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from tests.e2e.clients import require_tools
from tests.support.images import (
    OCI_INDEX,
    Layer,
    check_complete_tar,
    check_layer_blob,
    make_layer_tar,
    read_blob,
)

require_tools("umoci")
pytestmark = pytest.mark.e2e


def test_image_has_complete_layers_with_a_whiteout(images):
    image = images.image("builder-check")
    manifest = image.manifest()
    assert "mediaType" not in manifest  # umoci writes image-spec 1.0 manifests without one
    assert [d["digest"] for d in manifest["layers"]] == image.layer_digests
    members = [check_layer_blob(image.layout, digest) for digest in image.layer_digests]
    assert "etc/obsolete.conf" in members[0]
    assert "app/data.bin" in members[1]
    assert "etc/.wh.obsolete.conf" in members[2]  # the third layer deletes a file of the first
    config = json.loads(read_blob(image.layout, image.config_digest))
    assert config["architecture"] == "amd64"
    assert len(config["rootfs"]["diff_ids"]) == 3
    # diff_ids are the digests of the uncompressed tars: umoci recorded the layers we gave it.
    for digest, diff_id in zip(image.layer_digests, config["rootfs"]["diff_ids"], strict=True):
        tar = gzip.decompress(read_blob(image.layout, digest))
        assert diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()


def test_index_names_one_manifest_per_platform(images):
    index = images.index("builder-multi")
    doc = json.loads(read_blob(index.layout, index.digest))
    assert doc["mediaType"] == OCI_INDEX
    platforms = {d["platform"]["architecture"]: d for d in doc["manifests"]}
    assert set(platforms) == {"amd64", "arm64"}
    for arch, image in index.images.items():
        assert platforms[arch]["digest"] == image.digest
        assert platforms[arch]["size"] == len(read_blob(index.layout, image.digest))
        config = json.loads(read_blob(index.layout, image.config_digest))
        assert config["architecture"] == arch
    assert set(index.images["amd64"].layer_digests).isdisjoint(index.images["arm64"].layer_digests)


def test_truncated_tars_are_detected(tmp_path):
    """The check the builder applies catches what ``umoci insert`` produces: no end-of-archive."""
    tar = make_layer_tar(Layer(files={"a/b.txt": b"x" * 1000}), tmp_path / "l.tar").read_bytes()
    assert check_complete_tar(tar) == ["a", "a/b.txt"]
    body = tar.rstrip(b"\0")
    truncated = body + bytes(-len(body) % 512)
    with pytest.raises(AssertionError, match="end-of-archive"):
        check_complete_tar(truncated)


def test_gnu_tar_and_tarfile_layers_agree(tmp_path):
    files = {"etc/x.conf": b"x=1\n", "usr/bin/tool": b"#!/bin/sh\n"}
    a = check_complete_tar(make_layer_tar(Layer(files=files), tmp_path / "a.tar").read_bytes())
    b = check_complete_tar(make_layer_tar(Layer(files=files, tool="gnutar"), tmp_path / "b.tar").read_bytes())
    assert sorted(a) == sorted(b) == ["etc", "etc/x.conf", "usr", "usr/bin", "usr/bin/tool"]
