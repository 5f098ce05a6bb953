"""One manifest in full for the registry browser (config, layers, platforms, tags, referrers, the indexes
that list it), and what deleting a tag or a manifest would take away, shown before it is done.

Deleting is ``RegistryService.delete_manifest``, the service /v2's DELETE calls, after the same permission
check; these views only say what it will do. It removes the manifest and its tags, nothing else: referrers
(signatures, SBOMs) and the children of an index stay, and an index that lists a deleted manifest keeps
listing it (pulls of that platform then fail), as in the Distribution registry.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from dockyard.authz import Principal
from dockyard.errors import Invalid, NotFound
from dockyard.oci.manifest import Descriptor
from dockyard.registry import imagefacts as facts
from dockyard.registry import statements as sql
from dockyard.registry.imagefacts import ImageConfig, Platform
from dockyard.spec import parse_digest

if TYPE_CHECKING:
    from dockyard.registry.browse import Access, RegistryBrowser

tag, manifest, reference = sql.tag, sql.manifest, sql.manifest_reference


@dataclass(frozen=True)
class Child:
    """An entry of an index."""

    descriptor: Descriptor
    platform: Platform
    attestation: bool  # BuildKit's provenance/SBOM entry, not a runnable platform
    stored: bool  # the repository holds it (an index may name manifests pushed elsewhere... or deleted)


@dataclass(frozen=True)
class ManifestView:
    repository: str
    is_public: bool
    access: Access
    digest: str
    media_type: str
    kind: str  # image | index | artifact
    artifact_type: str | None
    payload_size: int
    size: int | None  # compressed: config + layers; for an index, the sum over the platforms it holds
    pushed_at: dt.datetime
    config_descriptor: Descriptor | None
    config: ImageConfig | None  # None: not an image, or its config could not be read
    layers: list[Descriptor]
    children: list[Child]
    tags: list[str]
    annotations: dict[str, str]
    referrers: list[Descriptor]
    subject: Descriptor | None
    subject_stored: bool
    parents: list[str]  # indexes of the repository that list this manifest


@dataclass(frozen=True)
class TagDeletion:
    repository: str
    tag: str
    digest: str
    kind: str
    other_tags: list[str]  # tags that keep the manifest reachable by name


@dataclass(frozen=True)
class ManifestDeletion:
    repository: str
    digest: str
    kind: str
    tags: list[str]  # deleted with it
    referrers: list[Descriptor]  # stay, pointing at nothing
    parents: list[str]  # indexes that will list a manifest that is gone
    children: int  # an index's entries: they stay, untagged


class ManifestInspector:
    def __init__(self, browser: RegistryBrowser) -> None:
        self.browser = browser
        self.registry = browser.registry

    def view(self, principal: Principal, name: str, digest: str) -> ManifestView:
        """Manifest ``digest`` of repository ``name`` in full, when ``principal`` may pull it."""
        repo, access = self.browser.access(principal, name)
        row = self._manifest(repo.id, name, digest)
        parsed = facts.parse(row.payload, row.media_type)
        kind = facts.kind_of(parsed)
        children: list[Child] = []
        config = None
        size = facts.image_size(parsed)
        if parsed is not None and parsed.is_index:
            stored = self.browser.stored_manifests(repo.id, (d.digest for d in parsed.manifests))
            platforms = {p.digest: p for p in self.browser.index_platforms(parsed, stored)}
            for d in parsed.manifests:
                platform = platforms.get(d.digest) or facts.descriptor_platform(d)
                children.append(Child(d, platform, facts.is_attestation(d), d.digest in stored))
            known = [p.size for p in platforms.values() if p.size is not None]
            size = sum(known) if known else None
        elif kind == facts.IMAGE and parsed is not None and parsed.config is not None:
            doc = self.browser.read_config(repo.id, parsed.config.digest)
            config = facts.image_config(doc) if doc is not None else None
        subject = parsed.subject if parsed is not None else None
        return ManifestView(
            repository=repo.name,
            is_public=repo.is_public,
            access=access,
            digest=row.digest,
            media_type=row.media_type,
            kind=kind,
            artifact_type=row.artifact_type,
            payload_size=row.size,
            size=size,
            pushed_at=row.created_at,
            config_descriptor=parsed.config if parsed is not None else None,
            config=config,
            layers=list(parsed.layers) if parsed is not None else [],
            children=children,
            tags=self._tags(row.id),
            annotations=dict((parsed.annotations if parsed is not None else None) or {}),
            referrers=self.registry.referrers(name, row.digest, None),
            subject=subject,
            subject_stored=subject is not None
            and bool(self.browser.stored_manifests(repo.id, [subject.digest])),
            parents=self._parents(repo.id, row.digest),
        )

    def tag_deletion(self, principal: Principal, name: str, tag_name: str) -> TagDeletion:
        """What deleting tag ``tag_name`` does, when ``principal`` may delete in the repository."""
        repo = self.browser.require(principal, name, "delete")
        row = (
            self.browser.session.connection()
            .execute(
                select(tag.c.manifest_id, manifest.c.digest, manifest.c.media_type, manifest.c.payload)
                .join(manifest, manifest.c.id == tag.c.manifest_id)
                .where(tag.c.repository_id == repo.id, tag.c.name == tag_name)
            )
            .first()
        )
        if row is None:
            raise NotFound(f"tag {tag_name!r} not known in {name}")
        others = [t for t in self._tags(row.manifest_id) if t != tag_name]
        kind = facts.kind_of(facts.parse(row.payload, row.media_type))
        return TagDeletion(repo.name, tag_name, row.digest, kind, others)

    def manifest_deletion(self, principal: Principal, name: str, digest: str) -> ManifestDeletion:
        """What deleting manifest ``digest`` does, when ``principal`` may delete in the repository."""
        repo = self.browser.require(principal, name, "delete")
        row = self._manifest(repo.id, name, digest)
        parsed = facts.parse(row.payload, row.media_type)
        return ManifestDeletion(
            repo.name,
            row.digest,
            facts.kind_of(parsed),
            self._tags(row.id),
            self.registry.referrers(name, row.digest, None),
            self._parents(repo.id, row.digest),
            len(parsed.manifests) if parsed is not None else 0,
        )

    # -- internals -----------------------------------------------------------------------------------------
    def _manifest(self, repository_id: int, name: str, digest: str) -> Any:
        try:
            parse_digest(digest)
        except Invalid:
            raise NotFound(f"manifest {digest!r} not known in {name}") from None
        row = (
            self.browser.session.connection()
            .execute(
                select(
                    manifest.c.id,
                    manifest.c.digest,
                    manifest.c.media_type,
                    manifest.c.artifact_type,
                    manifest.c.size,
                    manifest.c.payload,
                    manifest.c.created_at,
                ).where(manifest.c.repository_id == repository_id, manifest.c.digest == digest)
            )
            .first()
        )
        if row is None:
            raise NotFound(f"manifest {digest} not known in {name}")
        return row

    def _tags(self, manifest_id: int) -> list[str]:
        return list(
            self.browser.session.connection().scalars(
                select(tag.c.name).where(tag.c.manifest_id == manifest_id).order_by(tag.c.name)
            )
        )

    def _parents(self, repository_id: int, digest: str) -> list[str]:
        return list(
            self.browser.session.connection().scalars(
                select(manifest.c.digest)
                .join(reference, reference.c.manifest_id == manifest.c.id)
                .where(
                    manifest.c.repository_id == repository_id,
                    reference.c.digest == digest,
                    reference.c.kind == "manifest",
                )
                .distinct()
                .order_by(manifest.c.digest)
            )
        )
