"""What other domains may read of the registry: stored manifests and the blobs linked next to them.

The blob store is shared by every repository and keyed by digest alone, so knowing a digest must never be
enough to read a blob: a reader (the scanner) asks which blobs of a manifest a repository holding that
manifest was given (pushed or mounted), and opens only those.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from dockyard.registry import statements as sql

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
class ManifestPayload:
    media_type: str
    payload: bytes


class RegistryReads:
    """Read-only questions other domains ask the registry, on the caller's session."""

    def __init__(self, session: Session) -> None:
        self.session = session

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
