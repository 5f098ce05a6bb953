"""The fast path for fixes: a submitted revision of a live product that only moves pinned digests, resolves
findings and adds no Critical or Major one is approved and published at once, by the store itself (a store
setting, DOCKYARD_AUTO_APPROVE_FIXES, on by default), so a publisher lifts a hold within minutes of pushing a
fix. Anything else (a changed manifest, a new serious finding, a revoked product, a scan that failed) waits
for a reviewer as every revision does; a scan still running makes the job try again later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.accounts.models import Namespace
from dockyard.authz import Principal, StaffRole
from dockyard.compliance.findings import pinned_findings
from dockyard.config import Settings
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.publishing.manifest import dump_manifest, parse_manifest
from dockyard.publishing.models import Product, ProductRevision, Publisher, RevisionState
from dockyard.store.models import Listing, ListingStatus

if TYPE_CHECKING:
    from dockyard.services import Services

SERIOUS = frozenset({"Critical", "Major"})
EVERY_CLASS = frozenset({"Critical", "Major", "Minor", "Unscored"})
# The store acting on its own rule: a store-admin's rights, no account behind it.
STORE = Principal(kind="system", name="dockyard (fast path)", staff=frozenset({StaffRole.STORE_ADMIN}))
STORE_ACTOR = Actor(name="dockyard (fast path)", kind="system")


@dataclass(frozen=True)
class Verdict:
    approved: bool
    reason: str
    waiting: bool = False  # the new digests are still being scanned: ask again later


class FastPath:
    def __init__(self, session: Session, bus: EventBus, settings: Settings, services: Services) -> None:
        self.session = session
        self.bus = bus
        self.settings = settings
        self.services = services

    def try_revision(self, revision_id: int) -> Verdict:
        """Approve and publish ``revision_id`` when it qualifies; otherwise say why it waits for review."""
        verdict, org, pins = self._judge(revision_id)
        if not verdict.approved:
            return verdict
        revision = self.session.get(ProductRevision, revision_id)
        assert revision is not None and org is not None
        reviews = self.services.reviews
        reviews.claim(revision_id, STORE, STORE_ACTOR)
        critical_left = pinned_findings(self.session, pins).keys(frozenset({"Critical"}))
        override = (
            "fast path: a fix revision; its remaining Critical findings were live already"
            if critical_left
            else None
        )
        reviews.approve(revision_id, STORE, STORE_ACTOR, verdict.reason, override_reason=override)
        reviews.publish(revision_id, STORE, STORE_ACTOR, "published by the fast path for fixes")
        self.bus.publish(
            self.session,
            Event(
                EventTag.REVISION_AUTO_APPROVE,
                STORE_ACTOR,
                namespace=org,
                data={"revision": revision_id, "number": revision.number, "reason": verdict.reason},
            ),
        )
        return verdict

    def _judge(self, revision_id: int) -> tuple[Verdict, str | None, dict | None]:
        if not self.settings.auto_approve_fixes:
            return Verdict(False, "the fast path is turned off"), None, None
        revision = self.session.get(ProductRevision, revision_id)
        if revision is None or revision.state not in (RevisionState.SUBMITTED, RevisionState.RESUBMITTED):
            return Verdict(False, "not waiting for review"), None, None
        product = self.session.get(Product, revision.product_id)
        live = product.live_revision if product is not None else None
        if product is None or live is None:
            return Verdict(False, "a first publication is always reviewed"), None, None
        status = self.session.scalar(select(Listing.status).where(Listing.product_id == product.id))
        if status == ListingStatus.REVOKED.value:
            return Verdict(False, "a revoked product comes back only through a full review"), None, None
        if _normal(revision.manifest) != _normal(live.manifest):
            return Verdict(False, "the manifest changed: a reviewer looks at it"), None, None
        org = self.session.scalar(
            select(Namespace.name)
            .join(Publisher, Publisher.namespace_id == Namespace.id)
            .where(Publisher.id == product.publisher_id)
        )
        assert org is not None
        checks = self.services.reviews.image_checks(org, parse_manifest(revision.manifest), None)
        if any(digest is None for c in checks for digest in c.tags.values()):
            return Verdict(False, "a tag names nothing"), None, None
        pins = {c.name: {"repository": c.repository, "tags": dict(c.tags)} for c in checks}
        if pins == live.pins:
            return Verdict(False, "no pinned digest moved"), None, None
        new = pinned_findings(self.session, pins)
        if new.failed:
            return Verdict(False, "a scan of the new digests failed"), None, None
        if new.pending:
            return (
                Verdict(False, f"waiting for the scans of {', '.join(new.pending)}", waiting=True),
                None,
                None,
            )
        old = pinned_findings(self.session, live.pins)
        added = sorted(new.keys(SERIOUS) - old.keys(EVERY_CLASS))
        if added:
            names = ", ".join(f"{vuln} in {image}" for image, vuln, _ in added[:5])
            return Verdict(False, f"adds Critical or Major findings ({names})"), None, None
        fixed = old.keys(EVERY_CLASS) - new.keys(EVERY_CLASS)
        if not fixed:
            return Verdict(False, "resolves no finding"), None, None
        return Verdict(True, f"only repins digests and resolves {len(fixed)} finding(s)"), org, pins


def _normal(manifest: dict | None) -> dict:
    """A stored manifest as the editor would save it again (a resubmission of the same content compares
    equal whatever its key order or the defaults spelt out; the publisher is the product's either way)."""
    normal = dump_manifest(parse_manifest(manifest or {}))
    normal.pop("publisher", None)
    return normal
