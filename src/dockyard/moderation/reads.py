"""What the review shows, read as plain values: who may see a product's unpublished revisions and what they
may do, the reviewers' queue, a publisher's dashboard, and one revision's review page (the manifest, its
diff against the live revision, each image's tags resolved to digests with their scan results, the thread
and the history).

Unpublished revisions, threads and scan results are shown only to the publisher organisation's members and
the store team (``product:read``): anyone else gets NotFound, as for a product that does not exist.
Internal notes are filtered here, once, for every caller without ``review:decide``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard.accounts.models import Namespace, User
from dockyard.accounts.services import AccountService
from dockyard.authz import Permission, Principal, allowed
from dockyard.db import MAX_ID, utcnow
from dockyard.errors import Forbidden, NotFound
from dockyard.events import EventBus
from dockyard.moderation import states
from dockyard.moderation.states import Action
from dockyard.oci.reference import namespace_of
from dockyard.publishing.manifest import ProductManifest, parse_manifest
from dockyard.publishing.models import (
    CatalogImage,
    Product,
    ProductRevision,
    Publisher,
    ReviewComment,
    RevisionState,
    RevisionTransition,
)
from dockyard.registry.reads import RegistryReads
from dockyard.scanning.models import SEVERITY_CLASSES
from dockyard.scanning.reads import FindingView, ScanReads, ScanSummary, sort_key

CHECKED = (
    Permission.PRODUCT_READ,
    Permission.PRODUCT_EDIT,
    Permission.REVIEW_DECIDE,
    Permission.PRODUCT_PUBLISH,
)
PATH_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d{1,4})\]|\.")


@dataclass
class Context:
    """A product (and one of its revisions) and what the caller may do to it."""

    org: str
    product: Product
    revision: ProductRevision
    granted: frozenset[Permission]
    # A store reviewer who is a member of the publisher: their review rights do not apply here.
    recused: bool = False

    @property
    def store(self) -> bool:
        return Permission.REVIEW_DECIDE in self.granted


@dataclass(frozen=True)
class ImageCheck:
    """One image of a manifest: its offered tags resolved to digests (pinned ones once approved), with the
    scanner's summary and open findings of each digest."""

    name: str
    repository: str
    tags: dict[str, str | None]  # tag -> digest (None: names nothing, or not the publisher's repository)
    summaries: dict[str, ScanSummary]
    findings: list[FindingView]  # open, worst first
    pinned: bool
    foreign: bool = False  # the repository is not in the publisher's namespace: nothing is resolved

    @property
    def critical(self) -> list[FindingView]:
        return [f for f in self.findings if f.severity == "Critical"]

    @property
    def counts(self) -> dict[str, int]:
        total = dict.fromkeys(SEVERITY_CLASSES, 0)
        for summary in self.summaries.values():
            for k, v in summary.counts.items():
                total[k] = total.get(k, 0) + v
        return total


@dataclass(frozen=True)
class FieldChange:
    path: str
    old: str | None  # None: absent in the live revision
    new: str | None  # None: absent now


@dataclass(frozen=True)
class ThreadItem:
    comment: ReviewComment
    revision_number: int
    replies: list[ReviewComment] = field(default_factory=list)


@dataclass(frozen=True)
class HistoryItem:
    revision_number: int
    transition: RevisionTransition


@dataclass(frozen=True)
class QueueItem:
    revision_id: int
    org: str
    slug: str
    name: str
    number: int
    state: str
    submitted_at: dt.datetime | None
    age: dt.timedelta
    claimant: str | None


@dataclass(frozen=True)
class RevisionBrief:
    id: int
    number: int
    state: str


@dataclass(frozen=True)
class DashboardRow:
    slug: str
    name: str
    live: RevisionBrief | None
    working: RevisionBrief | None
    revisions: list[RevisionBrief]
    open_threads: int
    scan_counts: dict[str, int]  # open findings per class in the shown revision's images


@dataclass(frozen=True)
class ReviewView:
    org: str
    product: Product
    revision: ProductRevision
    manifest: ProductManifest
    live: ProductRevision | None
    diff: list[FieldChange]
    images: list[ImageCheck]
    thread: list[ThreadItem]
    history: list[HistoryItem]
    actions: list[Action]
    claimant: str | None
    granted: frozenset[Permission]
    # The manifest's logo and screenshots, when they are catalogue images of this publisher (shown as
    # customers will see them; an id of anything else is left out, and submitting refuses it).
    logo: CatalogImage | None = None
    screenshots: list[CatalogImage] = field(default_factory=list)

    @property
    def critical(self) -> int:
        return sum(len(i.critical) for i in self.images)

    @property
    def store(self) -> bool:
        return Permission.REVIEW_DECIDE in self.granted

    @property
    def can_comment(self) -> bool:
        return bool(self.granted & {Permission.REVIEW_DECIDE, Permission.PRODUCT_EDIT})


def anchor_field_exists(manifest: dict[str, Any], path: str) -> bool:
    """Whether ``path`` (``tiers[1].price.currency``) names a field of the stored ``manifest``."""
    if not path or len(path) > 200:
        return False
    parts: list[str | int] = []
    pos = 0
    for m in PATH_PART.finditer(path):
        if m.start() != pos:
            return False
        pos = m.end()
        if m.group(1):
            parts.append(m.group(1))
        elif m.group(2):
            parts.append(int(m.group(2)))
    if pos != len(path) or not parts or not isinstance(parts[0], str):
        return False
    node: Any = manifest
    for part in parts:
        in_mapping = isinstance(part, str) and isinstance(node, dict) and part in node
        in_list = isinstance(part, int) and isinstance(node, list) and part < len(node)
        if not (in_mapping or in_list):
            return False
        node = node[part]
    return True


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A manifest as {path: shown value}: lists of plain values whole, lists of mappings item by item."""
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
    elif value not in (None, "", []):
        out[prefix] = value if isinstance(value, str) else json.dumps(value)
    return out


def manifest_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> list[FieldChange]:
    """Field by field: what changed from ``old`` (the live manifest, None when there is none) to ``new``."""
    before, after = _flatten(old or {}), _flatten(new)
    return [
        FieldChange(path, before.get(path), after.get(path))
        for path in sorted(set(before) | set(after))
        if before.get(path) != after.get(path)
    ]


class ReviewReads:
    def __init__(self, session: Session, bus: EventBus) -> None:
        self.session = session
        self.bus = bus
        self.registry = RegistryReads(session)
        self.scans = ScanReads(session)

    # -- who may see what --------------------------------------------------------------------------------
    def _granted(self, principal: Principal, org: str) -> frozenset[Permission]:
        return self._access(principal, org)[0]

    def _access(self, principal: Principal, org: str) -> tuple[frozenset[Permission], bool]:
        """What ``principal`` may do to ``org``'s products, and whether they are recused: a store reviewer
        who is a member of the organisation does not review its products (nor read the store's internal
        notes on them); they see them as the publisher does. Store-admins hold every right anyway."""
        role = AccountService(self.session, self.bus).role_in(principal, org)
        granted = frozenset(p for p in CHECKED if allowed(principal, p, namespace_role=role))
        recused = role is not None and Permission.REVIEW_DECIDE in granted and not principal.is_admin
        return (granted - {Permission.REVIEW_DECIDE} if recused else granted), recused

    def _publisher(self, org: str) -> Publisher | None:
        return self.session.scalar(
            select(Publisher)
            .join(Namespace, Namespace.id == Publisher.namespace_id)
            .where(Namespace.name == org)
        )

    def product_context(self, org: str, slug: str, principal: Principal) -> Context:
        """The product's current revision (working, else live) and the caller's rights: NotFound unless the
        caller may read the product's unpublished revisions."""
        granted, recused = self._access(principal, org)
        publisher = self._publisher(org) if Permission.PRODUCT_READ in granted else None
        product = None
        if publisher is not None:
            product = self.session.scalar(
                select(Product).where(Product.publisher_id == publisher.id, Product.slug == slug)
            )
        if product is None:
            raise NotFound(f"product {org}/{slug} not found")
        revision = product.working_revision or product.live_revision
        if revision is None:  # every revision ended (withdrawn, rejected, unpublished): the latest
            revision = self.session.scalar(
                select(ProductRevision)
                .where(ProductRevision.product_id == product.id)
                .order_by(ProductRevision.number.desc())
                .limit(1)
            )
        if revision is None:
            raise NotFound(f"product {org}/{slug} has no revision")
        return Context(org, product, revision, granted, recused)

    def revision_context(self, revision_id: int, principal: Principal) -> Context:
        """A revision by id and the caller's rights: NotFound unless the caller may read it."""
        # The pages take any run of digits as an id: one past the integer column is no revision (not a 500).
        revision = self.session.get(ProductRevision, revision_id) if 1 <= revision_id <= MAX_ID else None
        if revision is not None:
            product = revision.product
            org = self.session.get(Namespace, product.publisher.namespace_id)
            granted, recused = self._access(principal, org.name) if org is not None else (frozenset(), False)
            if org is not None and Permission.PRODUCT_READ in granted:
                return Context(org.name, product, revision, granted, recused)
        raise NotFound(f"revision {revision_id} not found")

    @staticmethod
    def owns(org: str, repository: str) -> bool:
        """Whether ``repository`` is in ``org``'s namespace (only those are resolved, their scans shown)."""
        return "/" in repository and namespace_of(repository) == org

    def username(self, user_id: int | None) -> str | None:
        if user_id is None:
            return None
        return self.session.scalar(select(User.username).where(User.id == user_id))

    # -- images and their scans --------------------------------------------------------------------------
    def image_checks(
        self, org: str, manifest: ProductManifest, pins: dict[str, Any] | None
    ) -> list[ImageCheck]:
        """Every image of ``manifest``: its tags' digests (``pins`` when given), scan summaries, findings."""
        checks = []
        for image in manifest.images:
            pinned = (pins or {}).get(image.name)
            foreign = not self.owns(org, image.repository)
            if pinned:
                tags = {t: pinned.get("tags", {}).get(t) for t in image.tags}
            elif foreign:
                tags = dict.fromkeys(image.tags)
            else:
                tags = {t: self.registry.resolve(image.repository, t) for t in image.tags}
            digests = sorted({d for d in tags.values() if d})
            summaries = self.scans.summaries(digests)
            findings: dict[tuple[str, str, str], FindingView] = {}
            for digest in digests:
                for f in self.scans.list_findings(digest=digest, state="open", limit=1000):
                    findings.setdefault((digest, f.vulnerability, f.purl), f)
            checks.append(
                ImageCheck(
                    image.name,
                    image.repository,
                    tags,
                    summaries,
                    sorted(findings.values(), key=sort_key),
                    pinned=bool(pinned),
                    foreign=foreign,
                )
            )
        return checks

    # -- the thread and the history ------------------------------------------------------------------------
    def thread(self, ctx: Context) -> list[ThreadItem]:
        """The product's thread, oldest first, replies under their message; internal notes only for the
        store team."""
        query = (
            select(ReviewComment, ProductRevision.number)
            .join(ProductRevision, ProductRevision.id == ReviewComment.revision_id)
            .where(ReviewComment.product_id == ctx.product.id)
            .order_by(ReviewComment.created_at, ReviewComment.id)
        )
        if not ctx.store:
            query = query.where(ReviewComment.internal.is_(False))
        rows = list(self.session.execute(query))
        items: dict[int, ThreadItem] = {}
        for comment, number in rows:
            if comment.parent_id is None:
                items[comment.id] = ThreadItem(comment, number, [])
        for comment, _ in rows:
            if comment.parent_id is not None and comment.parent_id in items:
                items[comment.parent_id].replies.append(comment)
        return list(items.values())

    def history(self, product_id: int) -> list[HistoryItem]:
        """Every transition of every revision of the product, oldest first."""
        rows = self.session.execute(
            select(RevisionTransition, ProductRevision.number)
            .join(ProductRevision, ProductRevision.id == RevisionTransition.revision_id)
            .where(ProductRevision.product_id == product_id)
            .order_by(RevisionTransition.at, RevisionTransition.id)
        )
        return [HistoryItem(number, t) for t, number in rows]

    # -- the pages' reads ----------------------------------------------------------------------------------
    def review(self, revision_id: int, principal: Principal) -> ReviewView:
        """Everything the review page shows of one revision, as ``principal`` may see it."""
        return self._view(self.revision_context(revision_id, principal), principal)

    def product_review(self, org: str, slug: str, principal: Principal) -> ReviewView:
        """The review page of the product's current revision (the publisher's side)."""
        return self._view(self.product_context(org, slug, principal), principal)

    def thread_of(self, org: str, slug: str, principal: Principal) -> tuple[Context, list[ThreadItem]]:
        """The product's thread as ``principal`` may see it."""
        ctx = self.product_context(org, slug, principal)
        return ctx, self.thread(ctx)

    def _view(self, ctx: Context, principal: Principal) -> ReviewView:
        revision, product = ctx.revision, ctx.product
        live = product.live_revision if product.live_revision_id != revision.id else None
        manifest = parse_manifest(revision.manifest)
        actions = states.actions_for(revision.state, ctx.granted)
        claimant = self.username(revision.claimed_by)
        if (
            revision.claimed_by not in (None, principal.user_id)
            and Permission.PRODUCT_PUBLISH not in ctx.granted
        ):
            decisions = {Action.REQUEST_CHANGES, Action.APPROVE, Action.REJECT}
            actions = [a for a in actions if a not in decisions]
        # The publisher's moves are made on the product's working revision only.
        if product.working_revision_id != revision.id:
            actions = [a for a in actions if a not in (Action.SUBMIT, Action.RESUBMIT, Action.WITHDRAW)]
        return ReviewView(
            org=ctx.org,
            product=product,
            revision=revision,
            manifest=manifest,
            live=live,
            diff=manifest_diff(live.manifest if live else None, revision.manifest),
            images=self.image_checks(ctx.org, manifest, revision.pins),
            thread=self.thread(ctx),
            history=self.history(product.id),
            actions=actions,
            claimant=claimant,
            granted=ctx.granted,
            logo=self._catalogue(product, "logo", [manifest.logo]).get(manifest.logo or 0),
            screenshots=list(self._catalogue(product, "screenshot", manifest.screenshots).values()),
        )

    def _catalogue(self, product: Product, kind: str, ids: list[Any]) -> dict[int, CatalogImage]:
        """The publisher's catalogue images of ``kind`` among ``ids``, in that order (others left out)."""
        wanted = [i for i in ids if isinstance(i, int)]
        if not wanted:
            return {}
        rows = self.session.scalars(
            select(CatalogImage).where(
                CatalogImage.publisher_id == product.publisher_id,
                CatalogImage.kind == kind,
                CatalogImage.id.in_(wanted),
            )
        )
        found = {r.id: r for r in rows}
        return {i: found[i] for i in wanted if i in found}

    def queue(self, principal: Principal) -> list[QueueItem]:
        """Revisions waiting for the store team, oldest submission first, with their age and claimant."""
        if not allowed(principal, Permission.REVIEW_DECIDE):
            raise Forbidden("only store reviewers see the review queue")
        claimant = User.__table__.alias("claimant")
        rows = self.session.execute(
            select(ProductRevision, Product.slug, Namespace.name, claimant.c.username)
            .join(Product, Product.id == ProductRevision.product_id)
            .join(Publisher, Publisher.id == Product.publisher_id)
            .join(Namespace, Namespace.id == Publisher.namespace_id)
            .outerjoin(claimant, claimant.c.id == ProductRevision.claimed_by)
            .where(ProductRevision.state.in_([s.value for s in states.AWAITING_REVIEW]))
            .order_by(ProductRevision.submitted_at, ProductRevision.id)
        )
        now = utcnow()
        return [
            QueueItem(
                r.id,
                org,
                slug,
                str((r.manifest or {}).get("name") or slug),
                r.number,
                r.state,
                r.submitted_at,
                now - (r.submitted_at or now),
                who if r.state == RevisionState.IN_REVIEW else None,
            )
            for r, slug, org, who in rows
        ]

    def dashboard(self, org: str, principal: Principal) -> list[DashboardRow]:
        """The publisher's products: each revision's state, open threads, scan counts."""
        granted = self._granted(principal, org)
        publisher = self._publisher(org) if Permission.PRODUCT_READ in granted else None
        if publisher is None:
            raise NotFound(f"publisher {org!r} not found")
        products = self.session.scalars(
            select(Product).where(Product.publisher_id == publisher.id).order_by(Product.slug)
        ).all()
        threads = select(ReviewComment.product_id, func.count()).where(
            ReviewComment.parent_id.is_(None),
            ReviewComment.resolved_at.is_(None),
            ReviewComment.product_id.in_([p.id for p in products] or [0]),
        )
        if Permission.REVIEW_DECIDE not in granted:
            threads = threads.where(ReviewComment.internal.is_(False))
        open_threads = dict(self.session.execute(threads.group_by(ReviewComment.product_id)).all())
        rows = []
        for product in products:
            revisions = self.session.scalars(
                select(ProductRevision)
                .where(ProductRevision.product_id == product.id)
                .order_by(ProductRevision.number)
            ).all()
            # The working revision, else the live one, else the latest (withdrawn, rejected...).
            shown = (
                product.working_revision or product.live_revision or (revisions[-1] if revisions else None)
            )
            counts = dict.fromkeys(SEVERITY_CLASSES, 0)
            if shown is not None:
                for check in self.image_checks(org, parse_manifest(shown.manifest), shown.pins):
                    for k, v in check.counts.items():
                        counts[k] = counts.get(k, 0) + v
            brief = {r.id: RevisionBrief(r.id, r.number, r.state) for r in revisions}
            name = str((shown.manifest or {}).get("name") if shown else "") or product.slug
            rows.append(
                DashboardRow(
                    product.slug,
                    name,
                    brief.get(product.live_revision_id or -1),
                    brief.get(product.working_revision_id or -1),
                    list(brief.values()),
                    int(open_threads.get(product.id, 0)),
                    counts,
                )
            )
        return rows
