"""What other domains may read of the registry: repositories, what their tags and digests name, stored
manifests and the blobs linked next to them.

The blob store is shared by every repository and keyed by digest alone, so knowing a digest must never be
enough to read a blob: a reader (the scanner) asks which blobs of a manifest a repository holding that
manifest was given (pushed or mounted), and opens only those.

Other domains never query the registry's models themselves. Where they filter their own tables by what the
registry holds, in bulk (every scan of a manifest no repository stores), the facade hands them a SQL
expression to put in their own statement: one statement, not a digest list carried through Python.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Exists, bindparam, exists, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement, Select

from dockyard.registry import statements as sql

# The registry's own resolution of a reference (what a pull runs), digest only. No row: no such repository;
# a row with a NULL digest: the repository exists, the reference names nothing in it.
_RESOLVE_TAG = sql.MANIFEST_BY_TAG.with_only_columns(sql.manifest.c.digest)
_RESOLVE_DIGEST = sql.MANIFEST_BY_DIGEST.with_only_columns(sql.manifest.c.digest)

_MANIFEST_PAYLOAD = (
    select(sql.manifest.c.media_type, sql.manifest.c.payload)
    .where(sql.manifest.c.digest == bindparam("digest"))
    .limit(1)
)

# Blobs linked to a repository that stores the manifest: the link and the manifest share the repository.
_LINKED_WITH_MANIFEST = (
    select(sql.repository_blob.c.digest)
    .join(sql.manifest, sql.manifest.c.repository_id == sql.repository_blob.c.repository_id)
    .where(
        sql.manifest.c.digest == bindparam("manifest"),
        sql.repository_blob.c.digest.in_(bindparam("digests", expanding=True)),
    )
    .distinct()
)
_LINKED_WITH_MANIFEST_IN = _LINKED_WITH_MANIFEST.join(
    sql.repository, sql.repository.c.id == sql.manifest.c.repository_id
).where(sql.repository.c.name == bindparam("repository"))


@dataclass(frozen=True)
class RepositoryFacts:
    name: str
    namespace_id: int
    public: bool


@dataclass(frozen=True)
class ManifestPayload:
    media_type: str
    payload: bytes


class RegistryReads:
    """Read-only questions other domains ask the registry, on the caller's session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def has_repository(self, name: str) -> bool:
        """Whether a repository called ``name`` exists."""
        return self.session.connection().execute(sql.REPOSITORY_ID, {"name": name}).first() is not None

    def resolve(self, repository: str, reference: str) -> str | None:
        """The digest of the manifest a tag or digest names in ``repository``, as a pull resolves it.

        None when the repository holds no such manifest or tag, or does not exist (``has_repository``
        tells the two apart). A reference with a ``:`` is a digest, anything else a tag; neither is
        validated here: a malformed one names nothing.
        """
        statement = _RESOLVE_DIGEST if ":" in reference else _RESOLVE_TAG
        params = {"name": repository, "reference": reference}
        row = self.session.connection().execute(statement, params).first()
        return None if row is None else row.digest

    def holds_manifest(self, repository: str, digest: str) -> bool:
        """Whether ``repository`` stores manifest ``digest``."""
        params = {"name": repository, "reference": digest}
        row = self.session.connection().execute(_RESOLVE_DIGEST, params).first()
        return row is not None and row.digest is not None

    def manifest(self, digest: str) -> ManifestPayload | None:
        """Media type and bytes of manifest ``digest`` as any repository stores it; None when none does.

        Manifests are content-addressed: every repository holding ``digest`` holds the same bytes.
        """
        row = self.session.connection().execute(_MANIFEST_PAYLOAD, {"digest": digest}).first()
        return None if row is None else ManifestPayload(row.media_type, bytes(row.payload))

    def linked_blobs(
        self, manifest_digest: str, digests: Iterable[str], repository: str | None = None
    ) -> set[str]:
        """Those of ``digests`` linked to a repository that stores manifest ``manifest_digest``.

        With ``repository``, only that repository counts. A digest missing from the answer may exist in
        other repositories or nowhere: callers must not tell the two apart.
        """
        wanted = sorted(set(digests))
        if not wanted:
            return set()
        params: dict[str, object] = {"manifest": manifest_digest, "digests": wanted}
        statement = _LINKED_WITH_MANIFEST
        if repository is not None:
            statement, params["repository"] = _LINKED_WITH_MANIFEST_IN, repository
        return set(self.session.connection().scalars(statement, params))

    def repository_counts(self, namespace_ids: Iterable[int]) -> dict[int, int]:
        """How many repositories each namespace (by id) holds; a namespace holding none is left out."""
        wanted = sorted(set(namespace_ids))
        if not wanted:
            return {}
        rows = self.session.connection().execute(
            select(sql.repository.c.namespace_id, func.count())
            .where(sql.repository.c.namespace_id.in_(wanted))
            .group_by(sql.repository.c.namespace_id)
        )
        return {namespace_id: int(count) for namespace_id, count in rows}

    def repository(self, name: str) -> RepositoryFacts | None:
        """Who holds repository ``name`` and whether it is public; None when there is no such repository."""
        row = (
            self.session.connection()
            .execute(
                select(sql.repository.c.namespace_id, sql.repository.c.is_public).where(
                    sql.repository.c.name == name
                )
            )
            .first()
        )
        return None if row is None else RepositoryFacts(name, int(row.namespace_id), bool(row.is_public))

    def tags_present(self, repository: str, tags: Iterable[str]) -> set[str]:
        """Those of ``tags`` that name a manifest in ``repository`` (none when it does not exist)."""
        wanted = sorted(set(tags))
        if not wanted:
            return set()
        statement = (
            select(sql.tag.c.name)
            .join(sql.repository, sql.repository.c.id == sql.tag.c.repository_id)
            .where(sql.repository.c.name == repository, sql.tag.c.name.in_(wanted))
        )
        return set(self.session.connection().scalars(statement))

    def repositories_of(self, namespace_id: int) -> list[tuple[str, bool]]:
        """(name, public) of every repository of a namespace (by id), by name."""
        rows = self.session.connection().execute(
            select(sql.repository.c.name, sql.repository.c.is_public)
            .where(sql.repository.c.namespace_id == namespace_id)
            .order_by(sql.repository.c.name)
        )
        return [(name, bool(public)) for name, public in rows]

    # -- SQL for other domains' own statements -------------------------------------------------------
    @staticmethod
    def manifest_stored(digest: ColumnElement[str]) -> Exists:
        """SQL condition: some repository stores manifest ``digest`` (a column of the caller's statement)."""
        return exists().where(sql.manifest.c.digest == digest)

    @staticmethod
    def blob_stored(digest: ColumnElement[str]) -> Exists:
        """SQL condition: a blob with digest ``digest`` (a column of the caller's statement) is stored."""
        return exists().where(sql.blob.c.digest == digest)

    @staticmethod
    def manifest_digests_in(repository: str) -> Select[Any]:
        """SQL subquery: the digests of the manifests ``repository`` stores (for the caller's ``IN``)."""
        return (
            select(sql.manifest.c.digest)
            .join(sql.repository, sql.repository.c.id == sql.manifest.c.repository_id)
            .where(sql.repository.c.name == repository)
        )
