"""The registry's domain rules: repositories, blob links, manifests, tags, referrers and access."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.accounts.models import Namespace
from dockyard.accounts.services import AccountService
from dockyard.authz import ACTION_PERMISSIONS, Permission, Principal, allowed
from dockyard.config import Settings
from dockyard.db import upsert, utcnow
from dockyard.entitlements.store import STORE_PREFIX, pinned_blobs, pinned_manifests, split_store_name
from dockyard.errors import Forbidden, Invalid, NotFound, TooLarge
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.oci import mediatypes as mt
from dockyard.oci.manifest import Descriptor, ParsedManifest
from dockyard.oci.reference import namespace_of
from dockyard.registry import statements as sql
from dockyard.registry.models import Blob, Manifest, Repository, RepositoryBlob, Tag
from dockyard.spec import compute, parse_digest, parse_manifest, split_reference, validate_name
from dockyard.storage.blobstore import BlobStore

ALL_ACTIONS = set(ACTION_PERMISSIONS)


@dataclass(frozen=True)
class StoredManifest:
    digest: str
    media_type: str
    payload: bytes
    subject_digest: str | None


def blob_lock(session: Session, digest: str) -> None:
    """Serialise work on one blob between pushes and gc (PostgreSQL; SQLite writers are serial already)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:d))"), {"d": digest})


def blob_locks(session: Session, digests: Iterable[str]) -> None:
    """``blob_lock`` on several blobs, taken in one fixed order so that two callers cannot deadlock."""
    wanted = sorted(set(digests))
    if wanted and session.get_bind().dialect.name == "postgresql":
        # A volatile function in the select list runs after ORDER BY (PostgreSQL >= 9.6): in hash order.
        session.execute(
            text(
                "SELECT pg_advisory_xact_lock(h) FROM "
                "(SELECT DISTINCT hashtext(d) AS h FROM unnest(CAST(:ds AS text[])) AS d) AS locks ORDER BY h"
            ),
            {"ds": wanted},
        )


def _checked_blobs(parsed: ParsedManifest) -> list[str]:
    """The blobs a manifest names that must be linked to its repository, in manifest order.

    Only the exact non-distributable layer types may name a blob the repository lacks (the scanner skips
    exactly those): a look-alike such as "...tar+gzip+foreign" must be linked like any layer.
    """
    return ([parsed.config.digest] if parsed.config else []) + [
        d.digest for d in parsed.layers if not mt.is_nondistributable(d.media_type)
    ]


def _raise_missing(blobs: list[str], linked: set[str], children: list[str], present: set[str]) -> None:
    """MANIFEST_BLOB_UNKNOWN naming the first blob, then the first child manifest, that is missing."""
    for digest in blobs:
        if digest not in linked:
            raise Invalid(
                "manifest references an unknown blob", code="MANIFEST_BLOB_UNKNOWN", detail={"digest": digest}
            )
    for child in children:
        if child not in present:
            raise Invalid(
                "index references an unknown manifest",
                code="MANIFEST_BLOB_UNKNOWN",
                detail={"digest": child},
            )


def _pinned(what: str, digest: str, product: str) -> Forbidden:
    """The refusal to delete what a store product pins (``what``: "manifest X is pinned", ...)."""
    return Forbidden(
        f"{what} by the store product {product}: publish a revision without it, or have it unpublished, "
        "before deleting it",
        code="DENIED",
        detail={"digest": digest, "product": product},
    )


class RegistryService:
    def __init__(
        self, session: Session, blobs: BlobStore, bus: EventBus, settings: Settings, pulls: Any = None
    ) -> None:
        self.session = session
        self.blobs = blobs
        self.bus = bus
        self.settings = settings
        self.pulls = pulls  # a PullRecorder: pull events batched off the request path
        # (principal, publisher, product, image) -> may pull store/<publisher>/<product>/<image>; set by the
        # services factory (entitlements decide); None: store paths grant nothing.
        self.store_grant: Callable[[Principal, str, str, str], bool] | None = None

    # -- access --------------------------------------------------------------------------------
    def allowed_actions(self, principal: Principal, name: str) -> set[str]:
        """The token actions ``principal`` may take on repository ``name``, whether or not it exists yet:
        what its store-team roles and namespace role allow (anyone may pull a public repository),
        narrowed to what the credential in use may do (a pull-only token never pushes)."""
        try:
            validate_name(name)
        except Invalid:
            return set()
        if name.startswith(STORE_PREFIX):
            # A store path is only ever pulled, and only as the entitlement rules say (never push/delete).
            parts = split_store_name(name)
            if parts is None or self.store_grant is None:
                return set()
            return {"pull"} if self.store_grant(principal, *parts) else set()
        role = AccountService(self.session, self.bus).role_in(principal, namespace_of(name))
        public = bool(self.session.scalar(select(Repository.is_public).where(Repository.name == name)))
        return {
            action
            for action, permission in ACTION_PERMISSIONS.items()
            if allowed(principal, permission, namespace_role=role, public=public)
        }

    # -- repositories --------------------------------------------------------------------------
    def find_repository(self, name: str) -> Repository | None:
        """The repository called ``name``, or None."""
        return self.session.scalar(select(Repository).where(Repository.name == name))

    def repository(self, name: str) -> Repository:
        """The repository called ``name``; NAME_UNKNOWN when absent."""
        repo = self.find_repository(validate_name(name))
        if repo is None:
            raise NotFound(f"repository {name!r} not known", code="NAME_UNKNOWN")
        return repo

    def ensure_repository(self, name: str, actor: Actor) -> Repository:
        """The repository ``name``, created (private) in its namespace on first push."""
        validate_name(name)
        repo = self.find_repository(name)
        if repo is not None:
            return repo
        ns = self.session.scalar(select(Namespace).where(Namespace.name == namespace_of(name)))
        if ns is None:
            raise NotFound(f"namespace {namespace_of(name)!r} does not exist", code="NAME_UNKNOWN")
        repo = Repository(namespace_id=ns.id, name=name, is_public=False)
        try:
            with self.session.begin_nested():
                self.session.add(repo)
        except IntegrityError:
            return self.repository(name)
        self.bus.publish(self.session, Event(EventTag.REPOSITORY_CREATE, actor, ns.name, name))
        return repo

    def set_visibility(self, name: str, public: bool, actor: Actor) -> Repository:
        """Make a repository public (anyone may pull) or private (members only)."""
        repo = self.repository(name)
        repo.is_public = public
        self.bus.publish(
            self.session,
            Event(EventTag.REPOSITORY_VISIBILITY, actor, namespace_of(name), name, data={"public": public}),
        )
        return repo

    def list_repositories(self, namespace: str | None = None) -> list[Repository]:
        """Repositories, optionally of one namespace, by name."""
        query = select(Repository).order_by(Repository.name)
        if namespace:
            query = query.join(Namespace, Namespace.id == Repository.namespace_id).where(
                Namespace.name == namespace
            )
        return list(self.session.scalars(query))

    def catalog(self, n: int | None, last: str | None) -> tuple[list[str], bool]:
        """Repository names after ``last``, at most ``n``; and whether more follow."""
        query = select(Repository.name).order_by(Repository.name)
        if last:
            query = query.where(Repository.name > last)
        if n is not None:
            query = query.limit(n + 1)
        names = list(self.session.scalars(query))
        more = n is not None and len(names) > n
        return names[:n] if n is not None else names, more

    # -- units of work -------------------------------------------------------------------------
    def autocommit_read(self) -> None:
        """Make this unit of work a read in autocommit on PostgreSQL: one statement, one round trip.

        For requests whose database work is a single SELECT (manifest and blob GET/HEAD): a statement is
        its own transaction, so BEGIN and COMMIT (two more round trips) buy nothing. Only at the start of
        a unit of work on an engine-bound session (so never inside a test's savepoint); a no-op on SQLite,
        whose BEGIN and COMMIT are not round trips.
        """
        session = self.session
        bind = session.get_bind()
        if bind.dialect.name == "postgresql" and isinstance(bind, Engine) and not session.in_transaction():
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})

    # -- blobs ---------------------------------------------------------------------------------
    def blob_size(self, name: str, digest: str) -> int:
        """Size of a blob this repository was given; BLOB_UNKNOWN otherwise."""
        parse_digest(digest)
        size = self.session.connection().scalar(sql.LINKED_BLOB_SIZE, {"name": name, "digest": digest})
        if size is None:
            raise NotFound("blob unknown to registry", code="BLOB_UNKNOWN", detail={"digest": digest})
        return size

    def record_blob(self, name: str, digest: str, size: int, actor: Actor) -> None:
        """Register a verified blob now in the store and link it to the repository."""
        repo = self.ensure_repository(name, actor)
        blob_lock(self.session, digest)
        if self.blobs.size(digest) != size:
            # gc removed the file between the upload's rename and this transaction: ask for a retry.
            raise Invalid(
                "blob vanished while it was being stored; retry the upload", code="BLOB_UPLOAD_INVALID"
            )
        self._link(repo, digest, size)
        self.bus.publish(
            self.session,
            Event(EventTag.BLOB_PUSH, actor, namespace_of(name), name, digest=digest, data={"size": size}),
        )

    def _link(self, repo: Repository, digest: str, size: int) -> None:
        upsert(
            self.session, Blob.__table__, {"digest": digest, "size": size, "created_at": utcnow()}, ["digest"]
        )
        # Refresh an existing link so gc's grace period counts from the latest push.
        now = utcnow()
        upsert(
            self.session,
            RepositoryBlob.__table__,
            {"repository_id": repo.id, "digest": digest, "created_at": now},
            ["repository_id", "digest"],
            update=("created_at",),
        )

    def mount_blob(self, name: str, source: str, digest: str, actor: Actor) -> int | None:
        """Link a blob of ``source`` into ``name`` without an upload; the caller checked pull on source."""
        parse_digest(digest)
        try:
            size = self.blob_size(validate_name(source), digest)
        except (NotFound, Invalid):
            return None
        repo = self.ensure_repository(name, actor)
        blob_lock(self.session, digest)
        if self.blobs.size(digest) is None:
            return None
        self._link(repo, digest, size)
        self.bus.publish(
            self.session,
            Event(EventTag.BLOB_MOUNT, actor, namespace_of(name), name, digest=digest, data={"from": source}),
        )
        return size

    def existing_blob(self, name: str, digest: str) -> int | None:
        """Size of a blob already linked to ``name``, for uploads that can be skipped."""
        try:
            return self.blob_size(name, digest)
        except NotFound:
            return None

    def delete_blob(self, name: str, digest: str, actor: Actor) -> None:
        """Unlink a blob from a repository; gc frees its bytes once nothing uses them."""
        repo = self.repository(name)
        self.blob_size(name, digest)
        pinned_by = pinned_blobs(self.session, name).get(digest)
        if pinned_by is not None:
            # A pinned image's config or layer: customers pull it at the store path (see delete_manifest).
            raise _pinned(f"blob {digest} belongs to an image pinned", digest, pinned_by)
        self.session.execute(
            delete(RepositoryBlob).where(
                RepositoryBlob.repository_id == repo.id, RepositoryBlob.digest == digest
            )
        )
        self.bus.publish(
            self.session, Event(EventTag.BLOB_DELETE, actor, namespace_of(name), name, digest=digest)
        )

    # -- manifests -----------------------------------------------------------------------------
    def put_manifest(
        self, name: str, reference: str, payload: bytes, content_type: str | None, actor: Actor
    ) -> StoredManifest:
        """Store a manifest after checking every blob and manifest it references is in the repository."""
        kind, ref = split_reference(reference)
        if len(payload) > self.settings.max_manifest_bytes:
            raise TooLarge("manifest too large", code="MANIFEST_TOO_LARGE")
        parsed = parse_manifest(payload, content_type)
        algorithm = parse_digest(ref)[0] if kind == "digest" else "sha256"
        digest = compute(payload, algorithm)
        if kind == "digest" and digest != ref:
            raise Invalid(
                "manifest digest does not match its content",
                code="DIGEST_INVALID",
                detail={"expected": ref, "actual": digest},
            )
        subject = parsed.subject.digest if parsed.subject else None
        tag = ref if kind == "tag" else None
        if not self._push_in_one_statement(name, digest, parsed, payload, subject, tag):
            repository_id = self.session.connection().scalar(sql.REPOSITORY_ID, {"name": name})
            if repository_id is None:
                repository_id = self.ensure_repository(name, actor).id
            self._check_references(repository_id, parsed)
            manifest_id = self._store_manifest(repository_id, digest, parsed, payload, subject)
            if tag is not None:
                self._set_tag(repository_id, tag, manifest_id)
        self.bus.publish(
            self.session,
            Event(
                EventTag.MANIFEST_PUSH,
                actor,
                namespace_of(name),
                name,
                digest=digest,
                reference=ref if kind == "tag" else None,
                data={"media_type": parsed.media_type, "size": len(payload)},
            ),
        )
        return StoredManifest(digest, parsed.media_type, payload, subject)

    def _push_in_one_statement(
        self,
        name: str,
        digest: str,
        parsed: ParsedManifest,
        payload: bytes,
        subject: str | None,
        tag: str | None,
    ) -> bool:
        """PostgreSQL: lock, check, store and tag in one statement (``statements.PUSH_MANIFEST``).

        True when done; False when the steps must run one by one: on SQLite, and when the repository
        does not exist yet (the first push creates it). Raises the reference check's error.
        """
        connection = self.session.connection()
        if connection.dialect.name != "postgresql":
            return False
        blobs = _checked_blobs(parsed)
        children = sorted(set(parsed.manifest_references))
        edges = [(d, "blob") for d in parsed.blob_references]
        edges += [(d, "manifest") for d in parsed.manifest_references]
        row = connection.execute(
            sql.PUSH_MANIFEST,
            {
                "name": name,
                "blobs": sorted(set(blobs)),
                "children": children,
                "digest": digest,
                "media_type": parsed.media_type,
                "artifact_type": parsed.artifact_type,
                "subject_digest": subject,
                "size": len(payload),
                "payload": payload,
                "now": utcnow(),
                "edge_digests": [d for d, _ in edges],
                "edge_kinds": [k for _, k in edges],
                "tag": tag,
            },
        ).one()
        if row.repository_id is None:
            return False
        if not row.ok:
            _raise_missing(blobs, set(row.linked), parsed.manifest_references, set(row.children))
            raise AssertionError(f"reference check of {digest} failed, yet nothing is missing")
        if row.manifest_id is None:
            # A concurrent push of the same manifest committed after this statement's snapshot was taken
            # (its insert waited for that push): the manifest is stored; look it up and tag it.
            params = {"repository_id": row.repository_id, "digest": digest}
            manifest_id = int(connection.scalar(sql.MANIFEST_ID, params))
            if tag is not None:
                self._set_tag(row.repository_id, tag, manifest_id)
        return True

    def _set_tag(self, repository_id: int, tag: str, manifest_id: int) -> None:
        upsert(
            self.session,
            sql.tag,
            {"repository_id": repository_id, "name": tag, "manifest_id": manifest_id, "updated_at": utcnow()},
            ["repository_id", "name"],
            update=("manifest_id", "updated_at"),
        )

    def _store_manifest(
        self, repository_id: int, digest: str, parsed: ParsedManifest, payload: bytes, subject: str | None
    ) -> int:
        """The id of the repository's manifest ``digest``, inserted with its reference edges if new."""
        values = {
            "repository_id": repository_id,
            "digest": digest,
            "media_type": parsed.media_type,
            "artifact_type": parsed.artifact_type,
            "subject_digest": subject,
            "size": len(payload),
            "payload": payload,
            "created_at": utcnow(),
        }
        connection = self.session.connection()
        # Insert first: a new manifest (the usual case) costs one statement; a known one two.
        inserted = upsert(
            self.session, sql.manifest, values, ["repository_id", "digest"], returning=sql.manifest.c.id
        ).scalar()
        if inserted is None:  # pushed before (or by a concurrent push, which wrote the edges too)
            return int(connection.scalar(sql.MANIFEST_ID, {"repository_id": repository_id, "digest": digest}))
        references = [{"manifest_id": inserted, "digest": d, "kind": "blob"} for d in parsed.blob_references]
        references += [
            {"manifest_id": inserted, "digest": d, "kind": "manifest"} for d in parsed.manifest_references
        ]
        if references:
            connection.execute(sql.INSERT_REFERENCES, references)
        return int(inserted)

    def _check_references(self, repository_id: int, parsed: ParsedManifest) -> None:
        connection = self.session.connection()
        wanted = _checked_blobs(parsed)
        present: set[str] = set()
        if wanted:
            # Held until commit: gc, which takes the same locks before unlinking unreferenced blobs, either
            # sees this manifest's references or unlinks first, and then this check fails cleanly.
            blob_locks(self.session, wanted)
            present = set(
                connection.scalars(
                    sql.LINKED_BLOBS, {"repository_id": repository_id, "digests": sorted(set(wanted))}
                )
            )
        children = parsed.manifest_references
        present_manifests: set[str] = set()
        if children:
            present_manifests = set(
                connection.scalars(
                    sql.PRESENT_MANIFESTS, {"repository_id": repository_id, "digests": sorted(set(children))}
                )
            )
        _raise_missing(wanted, present, children, present_manifests)

    def get_manifest(self, name: str, reference: str) -> StoredManifest:
        """The manifest a tag or digest names in a repository."""
        validate_name(name)
        if ":" in reference:
            kind, ref = split_reference(reference)  # a malformed digest stays DIGEST_INVALID
        else:
            # A tag is looked up without checking its grammar: nothing can be stored under a malformed
            # one, so the answer is the 404 the spec (and the conformance suite's ".INVALID_MANIFEST_NAME"
            # pull) asks for. Pushing to a malformed tag is still TAG_INVALID.
            kind, ref = "tag", reference
        statement = sql.MANIFEST_BY_DIGEST if kind == "digest" else sql.MANIFEST_BY_TAG
        row = self.session.connection().execute(statement, {"name": name, "reference": ref}).first()
        if row is None:
            raise NotFound(f"repository {name!r} not known", code="NAME_UNKNOWN")
        if row.digest is None:
            raise NotFound("manifest unknown", code="MANIFEST_UNKNOWN", detail={"reference": ref})
        return StoredManifest(row.digest, row.media_type, row.payload, row.subject_digest)

    def record_pull(self, name: str, reference: str, digest: str, actor: Actor) -> None:
        """Record a manifest download (the basis of download reports)."""
        event = Event(
            EventTag.MANIFEST_PULL,
            actor,
            namespace_of(name),
            name,
            digest=digest,
            reference=None if reference.startswith(digest) else reference,
        )
        if self.pulls is not None:
            self.pulls.record(event)
        else:
            self.bus.publish(self.session, event)

    def delete_manifest(self, name: str, reference: str, actor: Actor) -> None:
        """Delete a manifest by digest (with its tags), or just a tag."""
        kind, ref = split_reference(reference)
        repo = self.repository(name)
        if kind == "tag":
            tag = self.session.scalar(select(Tag).where(Tag.repository_id == repo.id, Tag.name == ref))
            if tag is None:
                raise NotFound("tag unknown", code="MANIFEST_UNKNOWN", detail={"tag": ref})
            self.session.delete(tag)
            self.bus.publish(
                self.session, Event(EventTag.TAG_DELETE, actor, namespace_of(name), name, reference=ref)
            )
            return
        manifest = self.session.scalar(
            select(Manifest).where(Manifest.repository_id == repo.id, Manifest.digest == ref)
        )
        if manifest is None:
            raise NotFound("manifest unknown", code="MANIFEST_UNKNOWN", detail={"digest": ref})
        pinned_by = pinned_manifests(self.session, name).get(ref)
        if pinned_by is not None:
            # Customers pull this digest at the store path (or will, once an approved revision is live):
            # refused rather than taken from under them. Deleting a tag is fine: the store serves pins.
            raise _pinned(f"manifest {ref} is pinned", ref, pinned_by)
        self.session.execute(delete(Tag).where(Tag.manifest_id == manifest.id))
        self.session.delete(manifest)
        self.bus.publish(
            self.session, Event(EventTag.MANIFEST_DELETE, actor, namespace_of(name), name, digest=ref)
        )

    def list_tags(self, name: str, n: int | None, last: str | None) -> tuple[list[str], bool]:
        """Tags of a repository in lexical order after ``last``, at most ``n``; and whether more follow."""
        repo = self.repository(name)
        query = select(Tag.name).where(Tag.repository_id == repo.id).order_by(Tag.name)
        if last:
            query = query.where(Tag.name > last)
        if n is not None:
            query = query.limit(n + 1)
        tags = list(self.session.scalars(query))
        more = n is not None and len(tags) > n
        return (tags[:n] if n is not None else tags), more

    def referrers(self, name: str, digest: str, artifact_type: str | None) -> list[Descriptor]:
        """Descriptors of the manifests whose ``subject`` is ``digest``, optionally of one artifact type."""
        parse_digest(digest)
        repo = self.find_repository(validate_name(name))
        if repo is None:
            return []
        query = select(Manifest).where(Manifest.repository_id == repo.id, Manifest.subject_digest == digest)
        if artifact_type:
            query = query.where(Manifest.artifact_type == artifact_type)
        result = []
        for m in self.session.scalars(query.order_by(Manifest.created_at, Manifest.id)):
            annotations = json.loads(m.payload).get("annotations") or None
            result.append(Descriptor(m.media_type, m.digest, m.size, None, annotations, m.artifact_type))
        return result

    def counts(self) -> dict[str, int]:
        """Numbers of repositories, manifests and blobs (for metrics and the CLI)."""
        return {
            "repositories": self.session.scalar(select(func.count()).select_from(Repository)) or 0,
            "manifests": self.session.scalar(select(func.count()).select_from(Manifest)) or 0,
            "blobs": self.session.scalar(select(func.count()).select_from(Blob)) or 0,
        }


def grant(registry: RegistryService, principal: Principal, scopes: list) -> list[dict]:
    """Token ``access`` claims: what was asked, intersected with what ``principal`` may do."""
    access = []
    for scope in scopes:
        if scope.type == "repository":
            permitted = registry.allowed_actions(principal, scope.name)
            wanted = set(ALL_ACTIONS) if "*" in scope.actions else set(scope.actions)
            access.append(scope.to_claim(wanted & permitted))
        elif scope.type == "registry" and scope.name == "catalog":
            catalog = "*" in scope.actions and allowed(principal, Permission.CATALOG_READ)
            access.append(scope.to_claim({"*"} if catalog else set()))
        else:
            access.append(scope.to_claim(set()))
    return access
