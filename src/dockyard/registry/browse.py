"""What the registry browser shows: the caller's namespaces, a namespace's repositories, a repository's tags
and who may do what there, each page read in a handful of batched statements (never one per row).

Access is decided as /v2 decides it (``RegistryService.allowed_actions``): a repository the caller may not
pull is answered exactly like a missing one, and so is a namespace where it may see nothing.

Sizes are compressed sizes, as registries and `podman images` print them: an image's config and layers as
its manifest lists them; an index's, the sum over its platforms; a repository's or a namespace's, the
distinct blobs its manifests reference (a layer shared by ten tags is counted once).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import ColumnElement, func, select, union_all

from dockyard.accounts.services import AccountService
from dockyard.authz import Permission, Principal, allowed
from dockyard.errors import Forbidden, NotFound, Unauthenticated
from dockyard.oci.manifest import ParsedManifest
from dockyard.oci.reference import namespace_of
from dockyard.registry import imagefacts as facts
from dockyard.registry import statements as sql
from dockyard.registry.imagefacts import Platform
from dockyard.registry.models import Repository
from dockyard.registry.services import RegistryService

if TYPE_CHECKING:
    from dockyard.registry.inspect import ManifestInspector

T = TypeVar("T")

TAGS_PER_PAGE = 50
REPOSITORIES_PER_PAGE = 25
RECENT_REPOSITORIES = 8
MAX_PAGE = 100_000
# A config is read to show an image's platform; one larger than this is not (a page must not read megabytes).
CONFIG_LIMIT = 1 << 20
TAG_SORTS = ("pushed", "name")
REPOSITORY_SORTS = ("name", "pushed")

repository, tag, manifest = sql.repository, sql.tag, sql.manifest
reference, blob, repository_blob = sql.manifest_reference, sql.blob, sql.repository_blob


@dataclass(frozen=True)
class Access:
    """What the caller may do in a repository (it may always pull: otherwise it would not see it)."""

    pull: bool
    push: bool
    delete: bool
    manage: bool  # switch its visibility: the namespace's owners and store admins


@dataclass(frozen=True)
class Paged(Generic[T]):
    items: list[T]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def first(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.items else 0

    @property
    def last(self) -> int:
        return self.first + len(self.items) - 1 if self.items else 0


@dataclass(frozen=True)
class NamespaceCard:
    name: str
    kind: str  # user | org
    role: str | None
    repositories: int
    size: int
    last_push: dt.datetime | None


@dataclass(frozen=True)
class RepositoryRow:
    name: str
    is_public: bool
    tags: int
    size: int
    last_push: dt.datetime | None
    newest_tag: str | None
    newest_digest: str | None

    @property
    def short_name(self) -> str:
        return self.name.split("/", 1)[-1]

    @property
    def namespace(self) -> str:
        return namespace_of(self.name)


@dataclass(frozen=True)
class Dashboard:
    namespaces: list[NamespaceCard]
    recent: list[RepositoryRow]


@dataclass(frozen=True)
class NamespaceView:
    name: str
    kind: str
    role: str | None
    public_only: bool  # the caller sees only the namespace's public repositories
    sort: str
    repositories: Paged[RepositoryRow]


@dataclass(frozen=True)
class TagRow:
    name: str
    digest: str
    media_type: str
    kind: str  # image | index | artifact
    artifact_type: str | None
    pushed_at: dt.datetime
    size: int | None  # an image: config + layers; an index: the sum over the platforms it holds
    platforms: list[Platform]


@dataclass(frozen=True)
class RepositoryView:
    name: str
    is_public: bool
    access: Access
    tag_count: int
    size: int
    last_push: dt.datetime | None
    newest_tag: str | None
    query: str
    sort: str
    tags: Paged[TagRow]

    @property
    def namespace(self) -> str:
        return namespace_of(self.name)


def page_number(value: str | None) -> int:
    """A page number from a query string: anything that is not one is the first page."""
    return min(int(value), MAX_PAGE) if value and value.isdigit() and int(value) > 0 else 1


class RegistryBrowser:
    """Read-only views of the registry for its pages, on the caller's session."""

    def __init__(self, registry: RegistryService, accounts: AccountService) -> None:
        self.registry = registry
        self.accounts = accounts
        self.session = registry.session

    @cached_property
    def manifests(self) -> ManifestInspector:
        """The manifest pages' views: a manifest in full, and what deleting a tag or a manifest takes away."""
        from dockyard.registry.inspect import ManifestInspector

        return ManifestInspector(self)

    # -- access ------------------------------------------------------------------------------------------
    def access(self, principal: Principal, name: str) -> tuple[Repository, Access]:
        """The repository ``name`` and what ``principal`` may do there; NotFound unless it may pull it."""
        actions = self.registry.allowed_actions(principal, name)  # the decision /v2's tokens carry
        repo = self.registry.find_repository(name) if "pull" in actions else None
        if repo is None:
            raise NotFound(f"repository {name!r} not known")
        manage = self.accounts.allowed(principal, Permission.NAMESPACE_MANAGE, namespace=namespace_of(name))
        return repo, Access(True, "push" in actions, "delete" in actions, manage)

    def require(self, principal: Principal, name: str, action: str) -> Repository:
        """The repository, when ``principal`` may take ``action`` (an ``Access`` field) there: NotFound when
        it may not even pull, a sign-in for the anonymous caller, Forbidden for others."""
        repo, access = self.access(principal, name)
        if not getattr(access, action):
            if principal.is_anonymous:
                raise Unauthenticated("sign in to change this repository")
            raise Forbidden(
                f"you may not {'change the visibility of' if action == 'manage' else action} {name}"
            )
        return repo

    # -- the dashboard -----------------------------------------------------------------------------------
    def dashboard(self, principal: Principal) -> Dashboard:
        """The namespaces ``principal`` holds a role in, with their totals, and their latest pushes."""
        roles = self.accounts.roles_of(principal)
        ids = [ns.id for ns, _ in roles]
        where = repository.c.namespace_id.in_(ids)
        key = repository.c.namespace_id
        counts = {k: n for k, n in self._execute(select(key, func.count()).where(where).group_by(key))}
        sizes, pushes = self._sizes(key, where), self._last_pushes(key, where)
        cards = [
            NamespaceCard(
                ns.name, ns.kind, role, counts.get(ns.id, 0), sizes.get(ns.id, 0), pushes.get(ns.id)
            )
            for ns, role in roles
        ]
        recent = self._repository_rows(where, "pushed", RECENT_REPOSITORIES, 0) if ids else []
        return Dashboard(cards, [r for r in recent if r.last_push is not None])

    # -- a namespace -------------------------------------------------------------------------------------
    def namespace(
        self, principal: Principal, name: str, *, sort: str = "name", page: int = 1
    ) -> NamespaceView:
        """The repositories of namespace ``name`` that ``principal`` may pull, a page of them."""
        ns = self.accounts.get_namespace(name)
        role = self.accounts.role_in(principal, name)
        everything = allowed(principal, Permission.REPOSITORY_PULL, namespace_role=role)
        where: ColumnElement[bool] = repository.c.namespace_id == ns.id
        if not everything:
            where = where & repository.c.is_public.is_(True)
        total = self._execute(select(func.count()).where(where)).scalar() or 0
        if not total and not everything:
            # Nothing here it may see: as for a namespace that does not exist.
            raise NotFound(f"namespace {name!r} not found")
        sort = sort if sort in REPOSITORY_SORTS else "name"
        page = min(page, max(1, math.ceil(total / REPOSITORIES_PER_PAGE)))
        offset = (page - 1) * REPOSITORIES_PER_PAGE
        rows = self._repository_rows(where, sort, REPOSITORIES_PER_PAGE, offset)
        listed = Paged(rows, page, REPOSITORIES_PER_PAGE, total)
        return NamespaceView(ns.name, ns.kind, role, not everything, sort, listed)

    # -- a repository ------------------------------------------------------------------------------------
    def repository(
        self, principal: Principal, name: str, *, query: str = "", sort: str = "pushed", page: int = 1
    ) -> RepositoryView:
        """A repository with a page of its tags (those containing ``query``), newest push first or by name."""
        repo, access = self.access(principal, name)
        where = repository.c.id == repo.id
        tag_count = self._execute(select(func.count()).where(tag.c.repository_id == repo.id)).scalar() or 0
        size = self._sizes(repository.c.id, where).get(repo.id, 0)
        last_push = self._last_pushes(repository.c.id, where).get(repo.id)
        newest = self._newest_tags([repo.id]).get(repo.id)
        query = query.strip()[:128]
        sort = sort if sort in TAG_SORTS else "pushed"
        matching = tag.c.repository_id == repo.id
        if query:
            matching = matching & func.lower(tag.c.name).contains(query.lower(), autoescape=True)
        total = (
            tag_count
            if not query
            else self._execute(select(func.count()).select_from(tag).where(matching)).scalar() or 0
        )
        page = min(page, max(1, math.ceil(total / TAGS_PER_PAGE)))
        order = (tag.c.updated_at.desc(), tag.c.name) if sort == "pushed" else (tag.c.name,)
        rows = self._execute(
            select(
                tag.c.name,
                tag.c.updated_at,
                manifest.c.digest,
                manifest.c.media_type,
                manifest.c.artifact_type,
                manifest.c.payload,
            )
            .join(manifest, manifest.c.id == tag.c.manifest_id)
            .where(matching)
            .order_by(*order)
            .limit(TAGS_PER_PAGE)
            .offset((page - 1) * TAGS_PER_PAGE)
        ).all()
        tags = Paged(self._tag_rows(repo.id, rows), page, TAGS_PER_PAGE, total)
        return RepositoryView(
            repo.name,
            repo.is_public,
            access,
            tag_count,
            size,
            last_push,
            newest[0] if newest else None,
            query,
            sort,
            tags,
        )

    def _tag_rows(self, repository_id: int, rows: list[Any]) -> list[TagRow]:
        """Tag rows with their platforms and sizes: the indexes' children and the images' configs are read
        once for the whole page (two statements, and one small file per distinct config)."""
        parsed = {r.digest: facts.parse(r.payload, r.media_type) for r in rows}
        children = self.stored_manifests(
            repository_id, {d.digest for p in parsed.values() if p and p.is_index for d in p.manifests}
        )
        configs = {
            p.config.digest
            for p in parsed.values()
            if facts.kind_of(p) == facts.IMAGE and p is not None and p.config is not None
        }
        platforms = self._linked_configs(repository_id, configs)
        result = []
        for r in rows:
            p = parsed[r.digest]
            kind = facts.kind_of(p)
            size = facts.image_size(p)
            found: list[Platform] = []
            if p is not None and p.is_index:
                found = self.index_platforms(p, children)
                known = [f.size for f in found if f.size is not None]
                size = sum(known) if known else None
            elif kind == facts.IMAGE and p is not None and p.config is not None:
                found = [platforms.get(p.config.digest) or Platform(None, None)]
            result.append(
                TagRow(r.name, r.digest, r.media_type, kind, r.artifact_type, r.updated_at, size, found)
            )
        return result

    # -- shared by the manifest pages --------------------------------------------------------------------
    def stored_manifests(
        self, repository_id: int, digests: Iterable[str]
    ) -> dict[str, ParsedManifest | None]:
        """Those of ``digests`` the repository stores, parsed, in one statement."""
        wanted = sorted(set(digests))
        if not wanted:
            return {}
        rows = self._execute(
            select(manifest.c.digest, manifest.c.media_type, manifest.c.payload).where(
                manifest.c.repository_id == repository_id, manifest.c.digest.in_(wanted)
            )
        )
        return {r.digest: facts.parse(r.payload, r.media_type) for r in rows}

    @staticmethod
    def index_platforms(index: ParsedManifest, children: dict[str, ParsedManifest | None]) -> list[Platform]:
        """The platforms of an index (attestations left out), each sized when the repository stores it."""
        return [
            facts.descriptor_platform(d, facts.image_size(children.get(d.digest)))
            for d in index.manifests
            if not facts.is_attestation(d)
        ]

    def read_config(self, repository_id: int, digest: str) -> dict[str, Any] | None:
        """An image config's JSON, when the repository was given that blob and it is small enough.

        The blob store is shared by every repository: only a blob linked to this one is ever opened.
        """
        linked = self._linked(repository_id, [digest])
        return self._read_config(digest) if linked else None

    def _linked_configs(self, repository_id: int, digests: set[str]) -> dict[str, Platform]:
        """The platform each config declares, for the configs linked to the repository."""
        return {
            digest: facts.config_platform(self._read_config(digest))
            for digest in sorted(self._linked(repository_id, digests))
        }

    def _linked(self, repository_id: int, digests: Iterable[str]) -> set[str]:
        wanted = sorted(set(digests))
        if not wanted:
            return set()
        return set(
            self._execute(
                select(repository_blob.c.digest).where(
                    repository_blob.c.repository_id == repository_id, repository_blob.c.digest.in_(wanted)
                )
            ).scalars()
        )

    def _read_config(self, digest: str) -> dict[str, Any] | None:
        try:
            with self.registry.blobs.open(digest) as fh:
                data = fh.read(CONFIG_LIMIT + 1)
        except OSError:  # gc removed it since: the page says "unknown"
            return None
        return facts.load_config(data) if len(data) <= CONFIG_LIMIT else None

    # -- aggregates, grouped by repository or by namespace -----------------------------------------------
    def _execute(self, statement: Any) -> Any:
        return self.session.connection().execute(statement)

    def _repository_rows(
        self, where: ColumnElement[bool], sort: str, limit: int, offset: int
    ) -> list[RepositoryRow]:
        """A page of repositories, with their tag counts, sizes, last pushes and newest tags."""
        last = self._last_push_query(repository.c.id, where).subquery()
        order = (
            (last.c.at.desc().nulls_last(), repository.c.name) if sort == "pushed" else (repository.c.name,)
        )
        rows = self._execute(
            select(repository.c.id, repository.c.name, repository.c.is_public, last.c.at)
            .outerjoin(last, last.c.key == repository.c.id)
            .where(where)
            .order_by(*order)
            .limit(limit)
            .offset(offset)
        ).all()
        ids = [r.id for r in rows]
        if not ids:
            return []
        chosen = repository.c.id.in_(ids)
        counted = select(tag.c.repository_id, func.count()).where(tag.c.repository_id.in_(ids))
        tags = {k: n for k, n in self._execute(counted.group_by(tag.c.repository_id))}
        sizes = self._sizes(repository.c.id, chosen)
        newest = self._newest_tags(ids)
        return [
            RepositoryRow(
                r.name,
                bool(r.is_public),
                tags.get(r.id, 0),
                sizes.get(r.id, 0),
                r.at,
                *(newest.get(r.id) or (None, None)),
            )
            for r in rows
        ]

    def _sizes(self, key: Any, where: ColumnElement[bool]) -> dict[int, int]:
        """Sizes of the distinct blobs the picked repositories' manifests reference, summed by ``key``."""
        used = (
            select(key.label("key"), reference.c.digest)
            .select_from(
                repository.join(manifest, manifest.c.repository_id == repository.c.id).join(
                    reference, reference.c.manifest_id == manifest.c.id
                )
            )
            .where(where, reference.c.kind == "blob")
            .distinct()
            .subquery()
        )
        rows = self._execute(
            select(used.c.key, func.sum(blob.c.size))
            .join(blob, blob.c.digest == used.c.digest)
            .group_by(used.c.key)
        )
        return {k: int(total or 0) for k, total in rows}

    @staticmethod
    def _last_push_query(key: Any, where: ColumnElement[bool]) -> Any:
        """The latest push by ``key``: a tag set (a push by tag, even of a known manifest) or a manifest
        stored (a push by digest: index children, signatures)."""
        pushes = union_all(
            select(key.label("key"), tag.c.updated_at.label("at"))
            .select_from(repository.join(tag, tag.c.repository_id == repository.c.id))
            .where(where),
            select(key.label("key"), manifest.c.created_at.label("at"))
            .select_from(repository.join(manifest, manifest.c.repository_id == repository.c.id))
            .where(where),
        ).subquery()
        return select(pushes.c.key, func.max(pushes.c.at).label("at")).group_by(pushes.c.key)

    def _last_pushes(self, key: Any, where: ColumnElement[bool]) -> dict[int, dt.datetime]:
        rows = self._execute(self._last_push_query(key, where))
        return {k: at for k, at in rows if at is not None}

    def _newest_tags(self, repository_ids: list[int]) -> dict[int, tuple[str, str]]:
        """(tag, digest) of the most recently pushed tag of each repository, in one statement."""
        if not repository_ids:
            return {}
        ranked = (
            select(
                tag.c.repository_id,
                tag.c.name,
                manifest.c.digest,
                func.row_number()
                .over(partition_by=tag.c.repository_id, order_by=(tag.c.updated_at.desc(), tag.c.name))
                .label("rank"),
            )
            .join(manifest, manifest.c.id == tag.c.manifest_id)
            .where(tag.c.repository_id.in_(repository_ids))
            .subquery()
        )
        rows = self._execute(
            select(ranked.c.repository_id, ranked.c.name, ranked.c.digest).where(ranked.c.rank == 1)
        )
        return {r.repository_id: (r.name, r.digest) for r in rows}
