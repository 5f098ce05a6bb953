"""The statements of the registry's hot paths (manifest push and pull, blob pull), built once.

Building a select costs more than SQLite takes to run it. Built at import, each statement is also compiled
once (SQLAlchemy caches compilations per statement), and they are executed on the session's connection,
past the ORM layer. Columns come from the tables, not the mapped classes, for the same reason.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select

from dockyard.registry.models import Blob, Manifest, ManifestReference, Repository, RepositoryBlob, Tag

repository = Repository.__table__
blob = Blob.__table__
repository_blob = RepositoryBlob.__table__
manifest = Manifest.__table__
manifest_reference = ManifestReference.__table__
tag = Tag.__table__

REPOSITORY_ID = select(repository.c.id).where(repository.c.name == bindparam("name"))

_MANIFEST_COLUMNS = select(
    repository.c.id,
    manifest.c.digest,
    manifest.c.media_type,
    manifest.c.payload,
    manifest.c.subject_digest,
).select_from(repository)

# One query per pull, repository and manifest together: no row means no repository, a row without a
# digest means the repository exists but the reference does not.
MANIFEST_BY_TAG = (
    _MANIFEST_COLUMNS.outerjoin(
        tag, (tag.c.repository_id == repository.c.id) & (tag.c.name == bindparam("reference"))
    )
    .outerjoin(manifest, manifest.c.id == tag.c.manifest_id)
    .where(repository.c.name == bindparam("name"))
)
MANIFEST_BY_DIGEST = _MANIFEST_COLUMNS.outerjoin(
    manifest, (manifest.c.repository_id == repository.c.id) & (manifest.c.digest == bindparam("reference"))
).where(repository.c.name == bindparam("name"))

MANIFEST_ID = select(manifest.c.id).where(
    manifest.c.repository_id == bindparam("repository_id"), manifest.c.digest == bindparam("digest")
)

# FOR SHARE on PostgreSQL (SQLite ignores it): the links cannot be removed until the manifest commits.
LINKED_BLOBS = (
    select(repository_blob.c.digest)
    .where(
        repository_blob.c.repository_id == bindparam("repository_id"),
        repository_blob.c.digest.in_(bindparam("digests", expanding=True)),
    )
    .with_for_update(read=True)
)

PRESENT_MANIFESTS = select(manifest.c.digest).where(
    manifest.c.repository_id == bindparam("repository_id"),
    manifest.c.digest.in_(bindparam("digests", expanding=True)),
)

INSERT_REFERENCES = manifest_reference.insert()

LINKED_BLOB_SIZE = (
    select(blob.c.size)
    .join(repository_blob, repository_blob.c.digest == blob.c.digest)
    .join(repository, repository.c.id == repository_blob.c.repository_id)
    .where(repository.c.name == bindparam("name"), blob.c.digest == bindparam("digest"))
)
