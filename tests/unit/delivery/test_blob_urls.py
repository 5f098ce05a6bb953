"""Signed blob URLs: HMAC-SHA256 over digest and expiry, with a secret shared by every worker process."""

from __future__ import annotations

import hashlib
import stat
import threading
import time
from pathlib import Path

import pytest

from dockyard.delivery.urls import SECRET_FILE, BlobUrlSigner

DIGEST = "sha256:" + hashlib.sha256(bytes(range(256)) * 40).hexdigest()
OTHER = "sha256:" + hashlib.sha256(b"other").hexdigest()


@pytest.fixture
def signer(tmp_path: Path) -> BlobUrlSigner:
    return BlobUrlSigner.from_dir(tmp_path / "keys")


def test_a_signed_url_verifies_until_it_expires(signer: BlobUrlSigner) -> None:
    now = 1_700_000_000
    query = dict(part.split("=") for part in signer.query(DIGEST, now=now).split("&"))
    assert int(query["expires"]) == now + 300
    assert signer.verify(DIGEST, query["expires"], query["signature"], now=now)
    assert signer.verify(DIGEST, query["expires"], query["signature"], now=now + 300)
    assert not signer.verify(DIGEST, query["expires"], query["signature"], now=now + 301)


def test_tampering_with_digest_expiry_or_signature_is_refused(signer: BlobUrlSigner) -> None:
    now = time.time()
    query = dict(part.split("=") for part in signer.query(DIGEST, now=now).split("&"))
    expires, signature = query["expires"], query["signature"]
    assert signer.verify(DIGEST, expires, signature, now=now)
    assert not signer.verify(OTHER, expires, signature, now=now)
    assert not signer.verify(DIGEST, str(int(expires) + 3600), signature, now=now)
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    assert not signer.verify(DIGEST, expires, flipped, now=now)
    for bad_expiry in ("", "-1", "1e9", " 1", "\uff11\uff12", "9" * 13):
        assert not signer.verify(DIGEST, bad_expiry, signature, now=now)
    for bad_signature in ("", signature.upper(), signature[:-1], signature + "0", "é" * 64):
        assert not signer.verify(DIGEST, expires, bad_signature, now=now)


def test_another_secret_signs_differently(tmp_path: Path, signer: BlobUrlSigner) -> None:
    other = BlobUrlSigner.from_dir(tmp_path / "other-keys")
    query = dict(part.split("=") for part in other.query(DIGEST).split("&"))
    assert not signer.verify(DIGEST, query["expires"], query["signature"])


def test_the_secret_is_created_once_private_and_shared(tmp_path: Path) -> None:
    key_dir = tmp_path / "shared-keys"
    signers: list[BlobUrlSigner] = []
    threads = [
        threading.Thread(target=lambda: signers.append(BlobUrlSigner.from_dir(key_dir))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    path = key_dir / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in key_dir.iterdir()] == [SECRET_FILE]  # no temporary files left behind
    query = dict(part.split("=") for part in signers[0].query(DIGEST).split("&"))
    assert all(s.verify(DIGEST, query["expires"], query["signature"]) for s in signers)
    assert BlobUrlSigner.from_dir(key_dir).verify(DIGEST, query["expires"], query["signature"])


def test_url_is_the_base_url_and_the_query(signer: BlobUrlSigner) -> None:
    signer.base_url = "https://blobs.example"
    url = signer.url(DIGEST, now=1000)
    assert url == f"https://blobs.example/blobs/{DIGEST}?expires=1300&signature={signer._mac(DIGEST, 1300)}"
