"""Tests for dockyard.oci.reference."""

from __future__ import annotations

import pytest

from dockyard.oci.errors import OciSpecError
from dockyard.oci.reference import (
    NAME_RE,
    TAG_RE,
    is_tag,
    namespace_of,
    split_reference,
    validate_name,
    validate_tag,
)

DIGEST = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "library/ubuntu",
        "acme/team/app",
        "a.b/c_d/e__f",
        "foo-bar",
        "foo--bar",
        "foo---bar/x",
        "0/1/2",
        "my.registry-name_x/sub",
        "a" * 255,
        "/".join(["ab"] * 85),
    ],
)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name
    assert NAME_RE.fullmatch(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Library/ubuntu",
        "UPPER",
        "a//b",
        "a/",
        "/a",
        "a/b/",
        "a___b",
        "a_-b",
        "a..b",
        "a.-b",
        "-a",
        "a-",
        "_a",
        "a.",
        "a b",
        "a:b",
        "a@b",
        "café",
        "a\n",
        "a" * 256,
        "/".join(["ab"] * 85) + "/c",
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(OciSpecError) as exc:
        validate_name(name)
    assert exc.value.code == "NAME_INVALID"


def test_name_length_limit_counts_whole_name() -> None:
    name = "a" * 100 + "/" + "b" * 154
    assert len(name) == 255
    assert validate_name(name) == name
    with pytest.raises(OciSpecError):
        validate_name(name + "c")


def test_name_non_string() -> None:
    with pytest.raises(OciSpecError) as exc:
        validate_name(None)  # type: ignore[arg-type]
    assert exc.value.code == "NAME_INVALID"


@pytest.mark.parametrize("tag", ["latest", "v1.2.3", "_private", "1", "A-b_c.D", "a" * 128, "x" + "-" * 127])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag
    assert is_tag(tag)
    assert TAG_RE.fullmatch(tag)


@pytest.mark.parametrize("tag", ["", "a" * 129, ".hidden", "-dash", "a:b", "a/b", "a b", "tag\n", "é", "a@b"])
def test_invalid_tags(tag: str) -> None:
    assert not is_tag(tag)
    with pytest.raises(OciSpecError) as exc:
        validate_tag(tag)
    assert exc.value.code == "TAG_INVALID"


def test_is_tag_non_string() -> None:
    assert not is_tag(None)
    assert not is_tag(5)


def test_split_reference_tag() -> None:
    assert split_reference("latest") == ("tag", "latest")


def test_split_reference_digest() -> None:
    assert split_reference(DIGEST) == ("digest", DIGEST)


@pytest.mark.parametrize("ref", ["sha256:abc", "md5:" + "a" * 32, "a:b", ":", "sha256:" + "B" * 64])
def test_split_reference_bad_digest(ref: str) -> None:
    with pytest.raises(OciSpecError) as exc:
        split_reference(ref)
    assert exc.value.code == "DIGEST_INVALID"


@pytest.mark.parametrize("ref", ["", "a" * 129, "-x", "a/b"])
def test_split_reference_bad_tag(ref: str) -> None:
    with pytest.raises(OciSpecError) as exc:
        split_reference(ref)
    assert exc.value.code == "TAG_INVALID"


@pytest.mark.parametrize(("name", "ns"), [("library/ubuntu", "library"), ("a", "a"), ("acme/x/y", "acme")])
def test_namespace_of(name: str, ns: str) -> None:
    assert namespace_of(name) == ns
