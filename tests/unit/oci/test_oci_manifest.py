"""Tests for dockyard.oci.manifest."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import compute
from dockyard.oci.errors import OciSpecError
from dockyard.oci.manifest import Descriptor, ParsedManifest, build_index, parse_manifest

CONFIG = compute(b"config")
LAYER1 = compute(b"layer1")
LAYER2 = compute(b"layer2")
CHILD1 = compute(b"child1")
CHILD2 = compute(b"child2")
SUBJECT = compute(b"subject")


def desc(media_type: str, digest: str, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def image(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": desc(mt.OCI_CONFIG, CONFIG),
        "layers": [desc(mt.OCI_LAYER_TAR_GZIP, LAYER1), desc(mt.OCI_LAYER_TAR_GZIP, LAYER2)],
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not ...}


def index(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            desc(mt.OCI_MANIFEST, CHILD1, platform={"architecture": "amd64", "os": "linux"}),
            desc(mt.OCI_MANIFEST, CHILD2, platform={"architecture": "arm64", "os": "linux"}),
        ],
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not ...}


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def invalid(payload: bytes, content_type: str | None = None) -> OciSpecError:
    with pytest.raises(OciSpecError) as exc:
        parse_manifest(payload, content_type)
    assert exc.value.code == "MANIFEST_INVALID"
    return exc.value


# -- image manifests ---------------------------------------------------------------------------------


def test_parse_oci_image() -> None:
    parsed = parse_manifest(raw(image()), mt.OCI_MANIFEST)
    assert parsed.media_type == mt.OCI_MANIFEST
    assert not parsed.is_index
    assert parsed.config == Descriptor(mt.OCI_CONFIG, CONFIG, 10)
    assert [d.digest for d in parsed.layers] == [LAYER1, LAYER2]
    assert parsed.manifests == []
    assert parsed.blob_references == [CONFIG, LAYER1, LAYER2]
    assert parsed.manifest_references == []
    assert parsed.subject is None
    assert parsed.annotations is None
    assert parsed.artifact_type == mt.OCI_CONFIG


def test_parse_docker_image() -> None:
    doc = image(
        mediaType=mt.DOCKER_MANIFEST,
        config=desc(mt.DOCKER_CONFIG, CONFIG),
        layers=[desc(mt.DOCKER_LAYER, LAYER1)],
    )
    parsed = parse_manifest(raw(doc), mt.DOCKER_MANIFEST)
    assert parsed.media_type == mt.DOCKER_MANIFEST
    assert parsed.blob_references == [CONFIG, LAYER1]


def test_blob_references_deduplicated_in_order() -> None:
    layers = [desc(mt.OCI_LAYER_TAR, LAYER2), desc(mt.OCI_LAYER_TAR, CONFIG), desc(mt.OCI_LAYER_TAR, LAYER2)]
    parsed = parse_manifest(raw(image(layers=layers)), None)
    assert parsed.blob_references == [CONFIG, LAYER2]
    assert len(parsed.layers) == 3


def test_empty_layers_allowed() -> None:
    parsed = parse_manifest(raw(image(layers=[])), None)
    assert parsed.layers == []
    assert parsed.blob_references == [CONFIG]


def test_content_type_parameters_are_ignored() -> None:
    parsed = parse_manifest(raw(image()), mt.OCI_MANIFEST + "; charset=utf-8")
    assert parsed.media_type == mt.OCI_MANIFEST


def test_descriptor_optional_fields() -> None:
    layer = desc(
        mt.OCI_LAYER_TAR,
        LAYER1,
        0,
        annotations={"org.opencontainers.image.title": "a.txt"},
        artifactType="application/x-thing",
        urls=["https://example.com/a"],
    )
    parsed = parse_manifest(raw(image(layers=[layer])), None)
    assert parsed.layers[0] == Descriptor(
        mt.OCI_LAYER_TAR,
        LAYER1,
        0,
        annotations={"org.opencontainers.image.title": "a.txt"},
        artifact_type="application/x-thing",
    )


# -- media type resolution ----------------------------------------------------------------------------


def test_missing_media_type_uses_content_type() -> None:
    doc = image(mediaType=...)
    assert "mediaType" not in doc
    assert parse_manifest(raw(doc), mt.OCI_MANIFEST).media_type == mt.OCI_MANIFEST
    docker = image(mediaType=..., config=desc(mt.DOCKER_CONFIG, CONFIG))
    assert parse_manifest(raw(docker), mt.DOCKER_MANIFEST).media_type == mt.DOCKER_MANIFEST


def test_missing_media_type_index_uses_content_type() -> None:
    parsed = parse_manifest(raw(index(mediaType=...)), mt.DOCKER_MANIFEST_LIST)
    assert parsed.media_type == mt.DOCKER_MANIFEST_LIST
    assert parsed.is_index


@pytest.mark.parametrize("content_type", [None, "", "application/json", "application/octet-stream"])
def test_media_type_inferred_from_shape(content_type: str | None) -> None:
    assert parse_manifest(raw(image(mediaType=...)), content_type).media_type == mt.OCI_MANIFEST
    assert parse_manifest(raw(index(mediaType=...)), content_type).media_type == mt.OCI_INDEX


def test_payload_media_type_used_without_header() -> None:
    assert parse_manifest(raw(image()), None).media_type == mt.OCI_MANIFEST
    assert parse_manifest(raw(image()), "application/json").media_type == mt.OCI_MANIFEST


def test_media_type_undeterminable() -> None:
    err = invalid(raw({"schemaVersion": 2, "config": desc(mt.OCI_CONFIG, CONFIG)}))
    assert "media type" in err.message


@pytest.mark.parametrize(
    ("declared", "header"),
    [
        (mt.OCI_MANIFEST, mt.OCI_INDEX),
        (mt.OCI_MANIFEST, mt.DOCKER_MANIFEST),
        (mt.DOCKER_MANIFEST, mt.OCI_MANIFEST),
    ],
)
def test_mismatched_media_type(declared: str, header: str) -> None:
    err = invalid(raw(image(mediaType=declared)), header)
    assert "Content-Type" in err.message


def test_media_type_must_be_string() -> None:
    invalid(raw(image(mediaType=5)), None)


@pytest.mark.parametrize("media_type", [mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED])
def test_schema1_rejected(media_type: str) -> None:
    doc = {"schemaVersion": 1, "name": "x", "tag": "latest", "fsLayers": [], "history": []}
    err = invalid(raw(doc), media_type)
    assert err.message == "Docker schema 1 manifests are not supported"
    err = invalid(raw({**doc, "mediaType": media_type}), None)
    assert err.message == "Docker schema 1 manifests are not supported"


def test_schema1_detected_without_media_type() -> None:
    doc = {"schemaVersion": 1, "name": "x", "tag": "latest", "fsLayers": [], "history": []}
    assert invalid(raw(doc)).message == "Docker schema 1 manifests are not supported"


@pytest.mark.parametrize("media_type", ["application/vnd.example+json", "text/plain", "", mt.OCI_CONFIG])
def test_unknown_media_type(media_type: str) -> None:
    invalid(raw(image(mediaType=media_type)), None)


def test_unknown_content_type_without_field() -> None:
    invalid(raw(image(mediaType=...)), "text/plain")


# -- document level validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b"null",
        b'"str"',
        b"42",
        b"\xff\xfe{}",
        b'{"schemaVersion": NaN}',
        b"[" * 100000,
    ],
)
def test_not_a_json_object(payload: bytes) -> None:
    invalid(payload, mt.OCI_MANIFEST)


def test_utf16_rejected() -> None:
    invalid(json.dumps(image()).encode("utf-16"), mt.OCI_MANIFEST)


@pytest.mark.parametrize("version", [..., 1, 3, "2", 2.0, True, None])
def test_schema_version(version: Any) -> None:
    invalid(raw(image(schemaVersion=version)), mt.OCI_MANIFEST)


def test_config_required() -> None:
    err = invalid(raw(image(config=...)), mt.OCI_MANIFEST)
    assert err.detail == {"field": "config"}


@pytest.mark.parametrize("layers", [..., None, {}, "x", [None], [5]])
def test_layers_must_be_descriptor_list(layers: Any) -> None:
    invalid(raw(image(layers=layers)), mt.OCI_MANIFEST)


def test_image_with_manifests_rejected() -> None:
    invalid(raw(image(manifests=[])), mt.OCI_MANIFEST)


@pytest.mark.parametrize("extra", [{"config": desc(mt.OCI_CONFIG, CONFIG)}, {"layers": []}])
def test_index_with_image_fields_rejected(extra: dict[str, Any]) -> None:
    invalid(raw(index(**extra)), mt.OCI_INDEX)


@pytest.mark.parametrize("annotations", [[], "x", {"a": 1}, {"a": None}, {"a": ["b"]}, {"a": {"b": "c"}}])
def test_bad_annotations(annotations: Any) -> None:
    invalid(raw(image(annotations=annotations)), None)
    invalid(raw(index(annotations=annotations)), None)


def test_annotations_kept() -> None:
    parsed = parse_manifest(raw(image(annotations={"a": "b"})), None)
    assert parsed.annotations == {"a": "b"}


# -- descriptors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"size": True}, "size"),
        ({"size": False}, "size"),
        ({"size": -1}, "size"),
        ({"size": "10"}, "size"),
        ({"size": 1.0}, "size"),
        ({"size": None}, "size"),
        ({"digest": None}, "digest"),
        ({"digest": "sha256:abc"}, "digest"),
        ({"digest": "md5:" + "a" * 32}, "digest"),
        ({"digest": CONFIG.upper()}, "digest"),
        ({"mediaType": None}, "mediaType"),
        ({"mediaType": ""}, "mediaType"),
        ({"mediaType": 3}, "mediaType"),
        ({"platform": "linux/amd64"}, "platform"),
        ({"artifactType": 7}, "artifactType"),
        ({"annotations": {"a": 1}}, "annotations"),
    ],
)
def test_bad_config_descriptor(override: dict[str, Any], field: str) -> None:
    config = {k: v for k, v in {**desc(mt.OCI_CONFIG, CONFIG), **override}.items() if v is not None}
    err = invalid(raw(image(config=config)), None)
    assert err.detail["field"] == f"config.{field}"


def test_missing_digest_in_layer() -> None:
    layer = {"mediaType": mt.OCI_LAYER_TAR, "size": 1}
    err = invalid(raw(image(layers=[desc(mt.OCI_LAYER_TAR, LAYER1), layer])), None)
    assert err.detail["field"] == "layers[1].digest"
    assert err.detail["digest"] is None
    assert "reason" in err.detail


def test_bad_digest_detail() -> None:
    bad = "sha256:" + "z" * 64
    err = invalid(raw(image(layers=[desc(mt.OCI_LAYER_TAR, bad)])), None)
    assert err.detail["digest"] == bad
    assert err.detail["field"] == "layers[0].digest"


def test_descriptor_not_object() -> None:
    invalid(raw(image(config=CONFIG)), None)


# -- indexes ------------------------------------------------------------------------------------------


def test_parse_oci_index() -> None:
    parsed = parse_manifest(raw(index(annotations={"k": "v"})), mt.OCI_INDEX)
    assert parsed.is_index
    assert parsed.media_type == mt.OCI_INDEX
    assert parsed.config is None
    assert parsed.layers == []
    assert parsed.blob_references == []
    assert parsed.manifest_references == [CHILD1, CHILD2]
    assert parsed.manifests[0].platform == {"architecture": "amd64", "os": "linux"}
    assert parsed.artifact_type is None
    assert parsed.annotations == {"k": "v"}


def test_parse_docker_manifest_list() -> None:
    doc = index(mediaType=mt.DOCKER_MANIFEST_LIST)
    for child in doc["manifests"]:
        child["mediaType"] = mt.DOCKER_MANIFEST
    parsed = parse_manifest(raw(doc), mt.DOCKER_MANIFEST_LIST)
    assert parsed.is_index
    assert parsed.manifest_references == [CHILD1, CHILD2]


def test_index_empty_manifests() -> None:
    parsed = parse_manifest(raw(index(manifests=[])), None)
    assert parsed.manifests == []


def test_index_manifest_references_deduplicated() -> None:
    children = [desc(mt.OCI_MANIFEST, CHILD1), desc(mt.OCI_MANIFEST, CHILD2), desc(mt.OCI_MANIFEST, CHILD1)]
    parsed = parse_manifest(raw(index(manifests=children)), None)
    assert parsed.manifest_references == [CHILD1, CHILD2]


@pytest.mark.parametrize("manifests", [..., None, {}, [None], [{"mediaType": mt.OCI_MANIFEST}]])
def test_index_needs_manifest_list(manifests: Any) -> None:
    invalid(raw(index(manifests=manifests)), mt.OCI_INDEX)


def test_index_bad_child_size() -> None:
    err = invalid(raw(index(manifests=[desc(mt.OCI_MANIFEST, CHILD1, size=True)])), None)
    assert err.detail["field"] == "manifests[0].size"


def test_index_artifact_type() -> None:
    parsed = parse_manifest(raw(index(artifactType="application/x-bundle")), None)
    assert parsed.artifact_type == "application/x-bundle"


# -- artifacts and referrers ---------------------------------------------------------------------------


def test_artifact_type_field_wins() -> None:
    doc = image(artifactType="application/vnd.example.sbom", config=desc(mt.OCI_EMPTY, CONFIG, 2))
    assert parse_manifest(raw(doc), None).artifact_type == "application/vnd.example.sbom"


def test_artifact_type_falls_back_to_config_media_type() -> None:
    doc = image(config=desc("application/vnd.example.config+json", CONFIG))
    assert parse_manifest(raw(doc), None).artifact_type == "application/vnd.example.config+json"


def test_artifact_type_empty_config_without_field() -> None:
    doc = image(config=desc(mt.OCI_EMPTY, CONFIG, 2), layers=[])
    assert parse_manifest(raw(doc), None).artifact_type == mt.OCI_EMPTY


@pytest.mark.parametrize("value", [5, "", ["a"]])
def test_artifact_type_must_be_string(value: Any) -> None:
    invalid(raw(image(artifactType=value)), None)


def test_subject_parsed() -> None:
    doc = image(subject=desc(mt.OCI_MANIFEST, SUBJECT, 123), artifactType="application/x-sig")
    parsed = parse_manifest(raw(doc), mt.OCI_MANIFEST)
    assert parsed.subject == Descriptor(mt.OCI_MANIFEST, SUBJECT, 123)
    assert SUBJECT not in parsed.blob_references


def test_subject_on_index() -> None:
    parsed = parse_manifest(raw(index(subject=desc(mt.OCI_MANIFEST, SUBJECT))), None)
    assert parsed.subject is not None
    assert parsed.subject.digest == SUBJECT


@pytest.mark.parametrize("subject", ["x", [], {"mediaType": mt.OCI_MANIFEST, "digest": "bad", "size": 1}])
def test_bad_subject(subject: Any) -> None:
    err = invalid(raw(image(subject=subject)), None)
    assert err.detail["field"].startswith("subject")


# -- Descriptor.to_dict and build_index ---------------------------------------------------------------


def test_descriptor_to_dict_minimal() -> None:
    assert Descriptor(mt.OCI_MANIFEST, CHILD1, 5).to_dict() == {
        "mediaType": mt.OCI_MANIFEST,
        "digest": CHILD1,
        "size": 5,
    }


def test_descriptor_to_dict_full() -> None:
    d = Descriptor(
        mt.OCI_MANIFEST,
        CHILD1,
        5,
        platform={"os": "linux", "architecture": "amd64"},
        annotations={"a": "b"},
        artifact_type="application/x-sig",
    )
    assert d.to_dict() == {
        "mediaType": mt.OCI_MANIFEST,
        "digest": CHILD1,
        "size": 5,
        "artifactType": "application/x-sig",
        "annotations": {"a": "b"},
        "platform": {"os": "linux", "architecture": "amd64"},
    }


def test_build_index_round_trip() -> None:
    descriptors = [
        Descriptor(mt.OCI_MANIFEST, CHILD1, 100, artifact_type="application/x-sbom", annotations={"a": "b"}),
        Descriptor(mt.OCI_MANIFEST, CHILD2, 200, artifact_type="application/x-sig"),
    ]
    body = build_index(descriptors)
    doc = json.loads(body)
    assert doc["schemaVersion"] == 2
    assert doc["mediaType"] == mt.OCI_INDEX
    parsed = parse_manifest(body, mt.OCI_INDEX)
    assert parsed.is_index
    assert parsed.manifests == descriptors
    assert parsed.manifest_references == [CHILD1, CHILD2]


def test_build_index_empty() -> None:
    body = build_index([])
    assert json.loads(body) == {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    assert parse_manifest(body, None).manifests == []


def test_parsed_manifest_defaults() -> None:
    parsed = ParsedManifest(mt.OCI_INDEX, None, None, None)
    assert parsed.is_index
    assert parsed.blob_references == []
    assert parsed.manifest_references == []
