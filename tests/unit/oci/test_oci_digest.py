"""Tests for dockyard.oci.digest."""

from __future__ import annotations

import hashlib

import pytest

from dockyard.oci.digest import ALGORITHMS, compute, is_digest, new_hasher, parse_digest
from dockyard.oci.errors import OciSpecError

SHA256 = "sha256:" + "a" * 64
SHA512 = "sha512:" + "0123456789abcdef" * 8


def test_algorithms_table() -> None:
    assert ALGORITHMS == {"sha256": 64, "sha512": 128}


@pytest.mark.parametrize(
    ("value", "expected"), [(SHA256, ("sha256", "a" * 64)), (SHA512, ("sha512", SHA512[7:]))]
)
def test_parse_valid(value: str, expected: tuple[str, str]) -> None:
    assert parse_digest(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256",
        "sha256:",
        ":" + "a" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "A" * 64,
        "sha256:" + "g" * 64,
        "sha512:" + "a" * 64,
        "SHA256:" + "a" * 64,
        "sha256:" + "a" * 64 + "\n",
        " sha256:" + "a" * 64,
        "sha256::" + "a" * 64,
        "sha256:" + "a" * 32 + ":" + "a" * 31,
    ],
)
def test_parse_invalid(value: str) -> None:
    with pytest.raises(OciSpecError) as exc:
        parse_digest(value)
    assert exc.value.code == "DIGEST_INVALID"
    assert not is_digest(value)


@pytest.mark.parametrize(
    "value",
    [
        "md5:" + "a" * 32,
        "sha384:" + "a" * 96,
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
    ],
)
def test_unknown_algorithm(value: str) -> None:
    with pytest.raises(OciSpecError, match="unsupported digest algorithm") as exc:
        parse_digest(value)
    assert exc.value.code == "DIGEST_INVALID"


@pytest.mark.parametrize("value", [None, 42, b"sha256:" + b"a" * 64])
def test_parse_non_string(value: object) -> None:
    with pytest.raises(OciSpecError):
        parse_digest(value)  # type: ignore[arg-type]
    assert not is_digest(value)  # type: ignore[arg-type]


def test_is_digest() -> None:
    assert is_digest(SHA256)
    assert is_digest(SHA512)
    assert not is_digest("latest")


def test_compute_sha256() -> None:
    assert compute(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert is_digest(compute(b"hello"))


def test_compute_sha512() -> None:
    assert compute(b"x", "sha512") == "sha512:" + hashlib.sha512(b"x").hexdigest()


def test_compute_unknown_algorithm() -> None:
    with pytest.raises(OciSpecError) as exc:
        compute(b"x", "md5")
    assert exc.value.code == "DIGEST_INVALID"


@pytest.mark.parametrize(("digest", "name"), [(SHA256, "sha256"), (SHA512, "sha512"), ("sha512", "sha512")])
def test_new_hasher(digest: str, name: str) -> None:
    hasher = new_hasher(digest)
    assert hasher.name == name
    hasher.update(b"abc")
    assert hasher.hexdigest() == hashlib.new(name, b"abc").hexdigest()


def test_new_hasher_matches_compute() -> None:
    data = b"some blob"
    hasher = new_hasher(compute(data))
    hasher.update(data)
    assert f"sha256:{hasher.hexdigest()}" == compute(data)


@pytest.mark.parametrize("digest", ["md5:" + "a" * 32, "nope", "sha256:short"])
def test_new_hasher_invalid(digest: str) -> None:
    with pytest.raises(OciSpecError) as exc:
        new_hasher(digest)
    assert exc.value.code == "DIGEST_INVALID"
