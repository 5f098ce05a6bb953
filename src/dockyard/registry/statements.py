"""The statements of the registry's hot paths (manifest push and pull, blob pull), built once.

Building a select costs more than SQLite takes to run it. Built at import, each statement is also compiled
once (SQLAlchemy caches compilations per statement), and they are executed on the session's connection,
past the ORM layer. Columns come from the tables, not the mapped classes, for the same reason.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select, text

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

# PostgreSQL: a manifest push in one statement (SQLite runs the steps one by one: in-process, each costs
# little). It takes the blob locks, checks that every blob (:blobs, distinct) is linked to the repository and
# every child manifest (:children, distinct) is in it, and only then inserts the manifest with its reference
# edges (when new) and points :tag at it. It returns the repository's id (NULL: no such repository), the
# manifest's id (NULL when the check failed, or when a concurrent push inserted the same manifest after this
# statement's snapshot was taken), and what the check found, so the caller can name a missing reference.
#
# Order inside the statement: the advisory locks are an InitPlan of `linked`'s one-time filter, so they are
# held before any row is read and locked; the insert waits for the check the same way. All sub-statements
# share the statement's snapshot, taken before the locks: a link that gc deleted while this statement
# waited for its lock is still visible to that snapshot, but FOR SHARE skips a row whose deletion has
# committed, so the check fails cleanly, as it does when run as a separate statement after the locks.
PUSH_MANIFEST = text(
    """
WITH repo AS (
    SELECT id FROM repository WHERE name = CAST(:name AS varchar)
), locks AS (
    SELECT pg_advisory_xact_lock(h)
    FROM (SELECT DISTINCT hashtext(d) AS h FROM unnest(CAST(:blobs AS text[])) AS d) AS wanted
    ORDER BY h
), linked AS (
    SELECT rb.digest FROM repository_blob AS rb
    WHERE rb.repository_id = (SELECT id FROM repo)
      AND rb.digest = ANY(CAST(:blobs AS text[]))
      AND (SELECT count(*) FROM locks) >= 0
    FOR SHARE OF rb
), children AS (
    SELECT m.digest FROM manifest AS m
    WHERE m.repository_id = (SELECT id FROM repo) AND m.digest = ANY(CAST(:children AS text[]))
), checked AS (
    SELECT (SELECT count(*) FROM linked) = cardinality(CAST(:blobs AS text[]))
       AND (SELECT count(*) FROM children) = cardinality(CAST(:children AS text[])) AS ok
), inserted AS (
    INSERT INTO manifest
        (repository_id, digest, media_type, artifact_type, subject_digest, size, payload, created_at)
    SELECT repo.id, CAST(:digest AS varchar), CAST(:media_type AS varchar), CAST(:artifact_type AS varchar),
           CAST(:subject_digest AS varchar), CAST(:size AS integer), CAST(:payload AS bytea),
           CAST(:now AS timestamp)
    FROM repo WHERE (SELECT ok FROM checked)
    ON CONFLICT (repository_id, digest) DO NOTHING
    RETURNING id
), edges AS (
    INSERT INTO manifest_reference (manifest_id, digest, kind)
    SELECT inserted.id, edge.digest, edge.kind
    FROM inserted, unnest(CAST(:edge_digests AS text[]), CAST(:edge_kinds AS text[])) AS edge(digest, kind)
), stored AS (
    SELECT id FROM inserted
    UNION ALL
    SELECT m.id FROM manifest AS m, repo
    WHERE m.repository_id = repo.id AND m.digest = CAST(:digest AS varchar) AND (SELECT ok FROM checked)
), tagged AS (
    INSERT INTO tag (repository_id, name, manifest_id, updated_at)
    SELECT repo.id, CAST(:tag AS varchar), stored.id, CAST(:now AS timestamp)
    FROM repo, stored WHERE CAST(:tag AS varchar) IS NOT NULL
    ON CONFLICT (repository_id, name)
    DO UPDATE SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at
)
SELECT (SELECT id FROM repo) AS repository_id,
       (SELECT id FROM stored LIMIT 1) AS manifest_id,
       (SELECT ok FROM checked) AS ok,
       ARRAY(SELECT digest FROM linked) AS linked,
       ARRAY(SELECT digest FROM children) AS children
"""
)
