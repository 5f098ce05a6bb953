"""RegistryReads: what other domains (the scanner) may ask of the registry, answered as a pull would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import String, literal, select, union_all
from sqlalchemy.orm import Session
from tests.support.factories import make_user
from tests.support.scanimages import ACTOR, Images, Stored, debian_layer

from dockyard.registry.reads import RegistryReads
from dockyard.storage.blobstore import BlobStore
from dockyard.storage.local import LocalDriver

NOWHERE = "sha256:" + "0" * 64


@pytest.fixture
def images(db_session: Session, tmp_path: Path) -> Images:
    return Images(db_session, BlobStore(LocalDriver(tmp_path / "storage"), tmp_path / "uploads"))


@pytest.fixture
def reads(db_session: Session) -> RegistryReads:
    return RegistryReads(db_session)


def repository(db_session: Session, images: Images, name: str = "app") -> str:
    full = f"{make_user(db_session).username}/{name}"
    images.registry.ensure_repository(full, ACTOR)
    return full


def pushed(images: Images, repo: str, tag: str = "v1") -> Stored:
    return images.image(repo, tag, [debian_layer([("zlib1g", "1:1.2.13.dfsg-1", "zlib")])])


def test_resolve_answers_a_tag_or_a_digest_as_a_pull_does(db_session: Session, images: Images, reads) -> None:
    repo, other = repository(db_session, images), repository(db_session, images, "other")
    image = pushed(images, repo)
    assert reads.resolve(repo, "v1") == image.digest
    assert reads.resolve(repo, image.digest) == image.digest
    assert reads.resolve(repo, "v2") is None  # no such tag
    assert reads.resolve(repo, NOWHERE) is None
    assert (
        reads.resolve(other, "v1") is None and reads.resolve(other, image.digest) is None
    )  # another repository's
    assert reads.resolve(f"{repo}-none", "v1") is None
    assert reads.has_repository(repo) and reads.has_repository(other)
    assert not reads.has_repository(f"{repo}-none")


def test_holds_manifest(db_session: Session, images: Images, reads: RegistryReads) -> None:
    repo, other = repository(db_session, images), repository(db_session, images, "other")
    image = pushed(images, repo)
    assert reads.holds_manifest(repo, image.digest)
    assert not reads.holds_manifest(other, image.digest)
    assert not reads.holds_manifest(repo, NOWHERE)
    assert not reads.holds_manifest(f"{repo}-none", image.digest)


def test_sql_for_other_domains_statements(db_session: Session, images: Images, reads: RegistryReads) -> None:
    repo, other = repository(db_session, images), repository(db_session, images, "other")
    image = pushed(images, repo)
    config = json.loads(image.payload)["config"]["digest"]
    # A table of the caller's (here a literal one) filtered by what the registry stores.
    rows = [select(literal(d, String).label("digest")) for d in (image.digest, NOWHERE, config)]
    candidates = union_all(*rows).subquery("candidates")
    digest = candidates.c.digest
    assert set(db_session.scalars(select(digest).where(reads.manifest_stored(digest)))) == {image.digest}
    assert set(db_session.scalars(select(digest).where(~reads.manifest_stored(digest)))) == {NOWHERE, config}
    assert set(db_session.scalars(select(digest).where(reads.blob_stored(digest)))) == {config}
    assert set(db_session.scalars(reads.manifest_digests_in(repo))) == {image.digest}
    assert set(db_session.scalars(reads.manifest_digests_in(other))) == set()
