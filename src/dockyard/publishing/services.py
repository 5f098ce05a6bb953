"""Products: a publisher's listings, each a live revision and at most one working revision of its manifest.

The manifest's own form is checked by ``publishing.manifest``; this service adds what needs the database
(``reference_problems``: the repositories are the publisher's own, private unless allowed, the offered tags
exist; the logo and screenshots are the publisher's catalogue images). A draft may be incomplete and may
name what does not exist yet: those problems are answered with every save, as warnings, and become errors
when the revision is submitted (the review service calls ``check_submittable`` and ``reference_problems``).
From submission on a revision is frozen: only a draft, or one the store team sent back, is edited.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.accounts.reads import AccountReads
from dockyard.accounts.services import AccountService
from dockyard.authz import ALL_SCOPES, Permission, Principal, allowed, require
from dockyard.db import MAX_ID
from dockyard.errors import Conflict, NotFound, Unauthenticated
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.oci.reference import namespace_of
from dockyard.publishing.manifest import (
    ManifestInvalid,
    Problem,
    ProductManifest,
    dump_manifest,
    parse_manifest,
    submission_problems,
)
from dockyard.publishing.models import (
    CatalogImage,
    CatalogImageKind,
    Product,
    ProductRevision,
    Publisher,
    RevisionState,
)
from dockyard.publishing.reads import catalog_images, publisher_for
from dockyard.registry.reads import RegistryReads

# The working revision is edited in these states; in these others it is frozen (with the store team).
EDITABLE = frozenset({RevisionState.DRAFT, RevisionState.CHANGES_REQUESTED})
FROZEN = frozenset(
    {RevisionState.SUBMITTED, RevisionState.IN_REVIEW, RevisionState.RESUBMITTED, RevisionState.APPROVED}
)


@dataclass(frozen=True)
class RevisionInfo:
    number: int
    state: str
    manifest: dict[str, Any]
    updated_at: Any

    @property
    def editable(self) -> bool:
        return self.state in EDITABLE


@dataclass(frozen=True)
class ProductInfo:
    """A product as its publisher sees it, read in one go (the pages render it after the database work)."""

    org: str
    slug: str
    name: str
    working: RevisionInfo | None
    live: RevisionInfo | None
    problems: list[Problem]  # of the working revision: what submitting it would refuse

    @property
    def editable(self) -> bool:
        """Whether saving now edits a revision (a draft, one sent back, or a new one from the live one)."""
        return self.working is None or self.working.state not in FROZEN

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest being edited: the working revision's, else the live one's."""
        shown = self.working or self.live
        return dict(shown.manifest) if shown else {}


@dataclass(frozen=True)
class EditorChoices:
    repositories: list[tuple[str, bool]]  # (name, public)
    logos: list[CatalogImage]
    screenshots: list[CatalogImage]


def _info(revision: ProductRevision | None) -> RevisionInfo | None:
    if revision is None:
        return None
    return RevisionInfo(revision.number, revision.state, dict(revision.manifest), revision.updated_at)


class ProductService:
    def __init__(self, session: Session, bus: EventBus, accounts: AccountService) -> None:
        self.session = session
        self.bus = bus
        self.accounts = accounts

    # -- who may --------------------------------------------------------------------------------------
    def _authorize(self, org: str, principal: Principal, permission: Permission) -> None:
        """``permission`` on ``org``'s products. Those who may not even read them learn nothing: NotFound,
        as for an organisation that does not exist (Unauthenticated for anonymous callers)."""
        role = self.accounts.role_in(principal, org)
        if not allowed(replace(principal, scopes=ALL_SCOPES), Permission.PRODUCT_READ, namespace_role=role):
            if principal.is_anonymous:
                raise Unauthenticated("authentication required")
            raise NotFound(f"organisation {org!r} not found")
        require(principal, permission, namespace_role=role)

    def _product(self, publisher: Publisher | None, org: str, slug: str) -> Product:
        product = None
        if publisher is not None:
            product = self.session.scalar(
                select(Product).where(Product.publisher_id == publisher.id, Product.slug == slug)
            )
        if product is None:
            raise NotFound(f"product {org}/{slug} not found")
        return product

    # -- reads ----------------------------------------------------------------------------------------
    def get(self, org: str, slug: str, principal: Principal) -> Product:
        """One product of ``org`` (its drafts included), for its members and the store team."""
        self._authorize(org, principal, Permission.PRODUCT_READ)
        return self._product(publisher_for(self.session, org, create=False), org, slug)

    def list_for(self, org: str, principal: Principal) -> list[Product]:
        """Every product of ``org``, by slug."""
        self._authorize(org, principal, Permission.PRODUCT_READ)
        publisher = publisher_for(self.session, org, create=False)
        if publisher is None:
            return []
        return list(
            self.session.scalars(
                select(Product).where(Product.publisher_id == publisher.id).order_by(Product.slug)
            )
        )

    def info(self, org: str, product: Product) -> ProductInfo:
        """``product`` as plain values, with the problems its working revision would be refused for."""
        working, live = product.working_revision, product.live_revision
        shown = working or live
        problems: list[Problem] = []
        if working is not None and working.state in EDITABLE | FROZEN:
            problems = self.revision_problems(product.publisher, working.manifest)
        name = str((shown.manifest if shown else {}).get("name") or product.slug)
        return ProductInfo(org, product.slug, name, _info(working), _info(live), problems)

    def revision_problems(self, publisher: Publisher, stored: dict[str, Any]) -> list[Problem]:
        """What submitting a stored manifest would be refused for: incompleteness, then references."""
        try:
            manifest = parse_manifest(stored)
        except ManifestInvalid as exc:  # stored before a rule was tightened: say so, do not fail the read
            return exc.problems
        return submission_problems(manifest) + self.reference_problems(publisher, manifest)

    def can_edit(self, org: str, principal: Principal) -> bool:
        """Whether ``principal`` may create and edit ``org``'s products (the pages offer the forms)."""
        return self.accounts.allowed(principal, Permission.PRODUCT_EDIT, namespace=org)

    def editor_choices(self, org: str, principal: Principal) -> EditorChoices:
        """What the editor offers to pick from: the org's repositories and catalogue images."""
        self._authorize(org, principal, Permission.PRODUCT_READ)
        namespace_id = AccountReads(self.session).org_id(org)
        repositories = RegistryReads(self.session).repositories_of(namespace_id) if namespace_id else []
        publisher = publisher_for(self.session, org, create=False)
        images = catalog_images(self.session, publisher.id) if publisher is not None else []
        return EditorChoices(
            repositories,
            [i for i in images if i.kind == CatalogImageKind.LOGO.value],
            [i for i in images if i.kind == CatalogImageKind.SCREENSHOT.value],
        )

    # -- writes ---------------------------------------------------------------------------------------
    def _parse(self, org: str, data: dict[str, Any]) -> ProductManifest:
        manifest = parse_manifest(data)
        if manifest.publisher is not None and manifest.publisher != org:
            raise ManifestInvalid(
                [Problem("publisher", f"names {manifest.publisher!r}, but this is {org!r}'s product")]
            )
        return manifest.model_copy(update={"publisher": org})

    def create(self, org: str, manifest_data: dict[str, Any], principal: Principal, actor: Actor) -> Product:
        """A new product of ``org`` from a manifest (possibly incomplete): revision 1, a draft."""
        self._authorize(org, principal, Permission.PRODUCT_EDIT)
        manifest = self._parse(org, manifest_data)
        publisher = publisher_for(self.session, org)
        assert publisher is not None
        taken = select(Product.id).where(Product.publisher_id == publisher.id, Product.slug == manifest.slug)
        if self.session.scalar(taken) is not None:
            raise Conflict(f"{org} has a product {manifest.slug!r} already", detail=[_slug_taken(manifest)])
        product = Product(publisher_id=publisher.id, slug=manifest.slug, created_by=actor.user_id)
        try:
            with self.session.begin_nested():
                self.session.add(product)
                self.session.flush()
        except IntegrityError as exc:  # created at the same moment by another request
            raise Conflict(f"{org} has a product {manifest.slug!r} already") from exc
        revision = ProductRevision(
            product_id=product.id,
            number=1,
            state=RevisionState.DRAFT.value,
            manifest=dump_manifest(manifest),
            created_by=actor.user_id,
        )
        self.session.add(revision)
        self.session.flush()
        product.working_revision_id = revision.id
        self.session.flush()
        self.bus.publish(
            self.session,
            Event(EventTag.PRODUCT_CREATE, actor, namespace=org, data={"slug": product.slug, "revision": 1}),
        )
        return product

    def update_draft(
        self, org: str, slug: str, manifest_data: dict[str, Any], principal: Principal, actor: Actor
    ) -> ProductRevision:
        """Replace the working revision's manifest. A submitted revision is frozen (Conflict); with no
        working revision (or a closed one), a new one is started from the live revision."""
        self._authorize(org, principal, Permission.PRODUCT_EDIT)
        product = self._product(publisher_for(self.session, org, create=False), org, slug)
        manifest = self._parse(org, manifest_data)
        if manifest.slug != product.slug:
            raise ManifestInvalid(
                [Problem("slug", f"a product's slug does not change: this one is {product.slug!r}")]
            )
        revision = product.working_revision
        if revision is not None and revision.state in FROZEN:
            raise Conflict(
                f"revision {revision.number} of {org}/{slug} is {revision.state.replace('_', ' ')}: "
                "a submitted revision is frozen. Withdraw it to edit it, or wait for the store team's "
                "decision.",
                detail={"state": revision.state, "revision": revision.number},
            )
        if revision is None or revision.state not in EDITABLE:
            revision = self._new_working_revision(product, actor)
        before = dict(revision.manifest)
        revision.manifest = dump_manifest(manifest)
        self.session.flush()
        changed = sorted(
            k for k in set(before) | set(revision.manifest) if before.get(k) != revision.manifest.get(k)
        )
        self.bus.publish(
            self.session,
            Event(
                EventTag.PRODUCT_UPDATE,
                actor,
                namespace=org,
                data={"slug": slug, "revision": revision.number, "fields": changed},
            ),
        )
        return revision

    def _new_working_revision(self, product: Product, actor: Actor) -> ProductRevision:
        source = product.live_revision or product.working_revision
        number = self.session.scalar(
            select(func.max(ProductRevision.number)).where(ProductRevision.product_id == product.id)
        )
        revision = ProductRevision(
            product_id=product.id,
            number=(number or 0) + 1,
            state=RevisionState.DRAFT.value,
            manifest=dict(source.manifest) if source else {},
            created_by=actor.user_id,
        )
        self.session.add(revision)
        self.session.flush()
        product.working_revision_id = revision.id
        product.working_revision = revision
        return revision

    # -- references -----------------------------------------------------------------------------------
    def reference_problems(self, publisher: Publisher, manifest: ProductManifest) -> list[Problem]:
        """What the manifest names that is not the publisher's to offer: repositories of another namespace,
        missing ones, public ones (unless allowed), missing tags; catalogue images that are not this
        publisher's or not of the right kind. Each with its field's path."""
        org = AccountReads(self.session).namespace_name(publisher.namespace_id) or "this publisher"
        registry = RegistryReads(self.session)
        problems: list[Problem] = []
        for i, image in enumerate(manifest.images):
            path, repository = f"images[{i}].repository", image.repository
            if namespace_of(repository) != org:
                # Not looked up: whether another namespace's repository exists is not ours to learn.
                message = f"{repository!r} is not a repository of {org}: a product is made only of its "
                problems.append(Problem(path, message + "publisher's own repositories"))
                continue
            facts = registry.repository(repository)
            if facts is None or facts.namespace_id != publisher.namespace_id:
                problems.append(Problem(path, f"{repository!r} does not exist: push the image to it first"))
                continue
            if facts.public and not manifest.allow_public_repositories:
                message = f"{repository!r} is a public repository: set allow_public_repositories to offer it"
                problems.append(Problem(path, message))
            present = registry.tags_present(repository, image.tags)
            for j, tag in enumerate(image.tags):
                if tag not in present:
                    problems.append(Problem(f"images[{i}].tags[{j}]", f"{repository!r} has no tag {tag!r}"))
        problems += self._image_problems(publisher, org, "logo", [manifest.logo], CatalogImageKind.LOGO)
        problems += self._image_problems(
            publisher,
            org,
            "screenshots",
            list(manifest.screenshots),
            CatalogImageKind.SCREENSHOT,
            indexed=True,
        )
        return problems

    def _image_problems(
        self,
        publisher: Publisher,
        org: str,
        field: str,
        refs: list[int | str | None],
        kind: CatalogImageKind,
        *,
        indexed: bool = False,
    ) -> list[Problem]:
        # An id past the integer column names no image: looking it up would fail the request (a 500).
        ids = [ref for ref in refs if isinstance(ref, int) and 1 <= ref <= MAX_ID]
        found: dict[int, CatalogImage] = {}
        if ids:
            found = {
                i.id: i for i in self.session.scalars(select(CatalogImage).where(CatalogImage.id.in_(ids)))
            }
        problems = []
        for k, ref in enumerate(refs):
            if ref is None:
                continue
            path = f"{field}[{k}]" if indexed else field
            image = found.get(ref) if isinstance(ref, int) else None
            if isinstance(ref, str):
                message = f"{ref!r} is a file name: upload the image and give its id (dockyard product push "
                problems.append(Problem(path, message + "does both)"))
            elif image is None or image.publisher_id != publisher.id:
                problems.append(Problem(path, f"image {ref} is not one of {org}'s catalogue images"))
            elif image.kind != kind.value:
                problems.append(Problem(path, f"image {ref} is a {image.kind}, not a {kind.value}"))
        return problems


def _slug_taken(manifest: ProductManifest) -> dict[str, str]:
    return Problem("slug", f"{manifest.slug!r} is taken by another product of this publisher").as_detail()
