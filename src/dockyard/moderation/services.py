"""The review back and forth: every move of a revision (``states.MOVES`` decides who and from where), the
thread between the publisher and the store team, and publishing (pinning each offered tag to its digest).

Each move writes a ``RevisionTransition`` row and publishes its ``EventTag`` (the audit row; email hangs off
it in ``notifications``). Approving while a pinned image has open Critical findings needs an override
reason. Approval pins the digests the reviewer saw; publishing makes those live, so later pushes to the
staging repositories change nothing customers get until another revision is published.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

from dockyard.authz import Permission, Principal
from dockyard.config import Settings
from dockyard.db import utcnow
from dockyard.errors import Conflict, Forbidden, Invalid, NotFound
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.moderation import states
from dockyard.moderation.reads import Context, ReviewReads, anchor_field_exists
from dockyard.moderation.states import Action
from dockyard.publishing.manifest import ManifestInvalid, Problem, parse_manifest, submission_problems
from dockyard.publishing.models import (
    CommentAnchor,
    Product,
    ProductRevision,
    ReviewComment,
    RevisionState,
    RevisionTransition,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from dockyard.services import Services

COMMENT_MAX = 20_000
REASON_MAX = 2_000
FINDING_ANCHOR = re.compile(r"^([a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?)@(sha256:[0-9a-f]{64})/(\S{1,200})$")


def _text(value: str | None, limit: int, field: str) -> str:
    value = (value or "").strip()
    if "\x00" in value:
        raise Invalid(f"{field}: NUL characters are not allowed", detail=[{"field": field, "message": "NUL"}])
    if len(value) > limit:
        message = f"at most {limit} characters ({len(value)} given)"
        raise Invalid(f"{field}: {message}", detail=[{"field": field, "message": message}])
    return value


class ReviewService(ReviewReads):
    def __init__(self, session: Session, bus: EventBus, settings: Settings, services: Services) -> None:
        super().__init__(session, bus)
        self.settings = settings
        # Other domains' services (products' reference checks, publishers' completeness), built on use.
        self.services = services

    # -- the publisher's moves -------------------------------------------------------------------------
    def submit(
        self, org: str, slug: str, principal: Principal, actor: Actor, comment: str = ""
    ) -> ProductRevision:
        """Submit the working revision for review (resubmit it after changes were requested); every
        problem of the manifest, its references and the publisher's profile is reported at once."""
        ctx = self.product_context(org, slug, principal)
        revision = self._working(ctx.product)
        action = Action.RESUBMIT if revision.state == RevisionState.CHANGES_REQUESTED else Action.SUBMIT
        move = states.check(revision.state, action, ctx.granted)
        comment = _text(comment, COMMENT_MAX, "comment")
        manifest = parse_manifest(revision.manifest)
        problems = submission_problems(manifest)
        problems += self.services.products.reference_problems(ctx.product.publisher, manifest)
        problems += [
            Problem(f"publisher.{p.path}" if p.path else "publisher", p.message)
            for p in self.services.publishers.completeness_problems(ctx.product.publisher)
        ]
        if problems:
            raise ManifestInvalid(problems)
        revision.submitted_at = utcnow()
        revision.claimed_by = None  # a resubmission waits in the queue for a reviewer again
        self._move(ctx, revision, move, actor, comment)
        return revision

    def withdraw(
        self, org: str, slug: str, principal: Principal, actor: Actor, comment: str = ""
    ) -> ProductRevision:
        """Withdraw the working revision: it ends (withdrawn) and the product has none until the next edit."""
        ctx = self.product_context(org, slug, principal)
        revision = self._working(ctx.product)
        move = states.check(revision.state, Action.WITHDRAW, ctx.granted)
        ctx.product.working_revision_id = None
        self._move(ctx, revision, move, actor, _text(comment, COMMENT_MAX, "comment"))
        return revision

    # -- the store team's moves ------------------------------------------------------------------------
    def claim(self, revision_id: int, principal: Principal, actor: Actor) -> ProductRevision:
        """Take a submitted or resubmitted revision into review (the claimant decides it)."""
        ctx = self.revision_context(revision_id, principal)
        move = self._check(ctx, Action.CLAIM)
        ctx.revision.claimed_by = principal.user_id
        self._move(ctx, ctx.revision, move, actor, "")
        return ctx.revision

    def request_changes(
        self, revision_id: int, principal: Principal, actor: Actor, comment: str
    ) -> ProductRevision:
        """Send the revision back to the publisher; the comment says what to change (required)."""
        return self._decide(revision_id, principal, actor, Action.REQUEST_CHANGES, comment)

    def reject(self, revision_id: int, principal: Principal, actor: Actor, comment: str) -> ProductRevision:
        """Refuse the revision for good; the comment says why (required)."""
        return self._decide(revision_id, principal, actor, Action.REJECT, comment)

    def approve(
        self,
        revision_id: int,
        principal: Principal,
        actor: Actor,
        comment: str = "",
        override_reason: str | None = None,
        seen: dict[str, dict[str, str]] | None = None,
    ) -> ProductRevision:
        """Approve the revision, pinning the digests its tags name now; open Critical findings in any of
        them need ``override_reason`` (kept on the revision and in the audit event). ``seen`` (image name ->
        tag -> digest, as the review page showed them) must still hold: a push between looking and
        approving would otherwise pin an image nobody reviewed."""
        ctx = self.revision_context(revision_id, principal)
        self._check(ctx, Action.APPROVE)  # refusals before the slow checks
        reason = _text(override_reason, REASON_MAX, "override_reason")
        manifest = parse_manifest(ctx.revision.manifest)
        checks = self.image_checks(ctx.org, manifest, None)
        unresolved = [
            f"image {c.name!r}: tag {tag!r} names nothing in its repository"
            for c in checks
            for tag, digest in c.tags.items()
            if digest is None
        ]
        if unresolved:
            raise Conflict("cannot approve: " + "; ".join(unresolved))
        if seen is not None:
            now = {c.name: {tag: digest or "" for tag, digest in c.tags.items()} for c in checks}
            moved = [
                f"{name}:{tag}"
                for name in sorted(set(now) | set(seen))
                for tag in sorted(set(now.get(name, {})) | set(seen.get(name, {})))
                if now.get(name, {}).get(tag) != seen.get(name, {}).get(tag)
            ]
            if moved:
                raise Conflict(
                    f"the images changed since the review page was loaded ({', '.join(moved)} now name "
                    "other digests): look at them again before approving",
                    detail={"moved": moved},
                )
        critical = sorted(
            {f"{c.name}@{f.image_digest}/{f.vulnerability}" for c in checks for f in c.critical}
        )
        data: dict[str, Any] = {}
        if critical:
            if not reason:
                message = (
                    f"{len(critical)} open Critical finding(s) in the offered images: approving needs an "
                    "override reason"
                )
                raise Invalid(message, detail=[{"field": "override_reason", "message": message}])
            ctx.revision.override_reason = reason
            data = {"override_reason": reason, "critical": critical}
        ctx.revision.pins = {c.name: {"repository": c.repository, "tags": dict(c.tags)} for c in checks}
        data["pins"] = ctx.revision.pins
        return self._decide(revision_id, principal, actor, Action.APPROVE, comment, data=data, ctx=ctx)

    def publish(
        self, revision_id: int, principal: Principal, actor: Actor, comment: str = ""
    ) -> ProductRevision:
        """Make an approved revision live with the digests pinned at approval (the live one is superseded)."""
        ctx = self.revision_context(revision_id, principal)
        move = states.check(ctx.revision.state, Action.PUBLISH, ctx.granted)
        revision, product = ctx.revision, ctx.product
        if not revision.pins:  # approved before pins were taken: pin now
            checks = self.image_checks(ctx.org, parse_manifest(revision.manifest), None)
            revision.pins = {c.name: {"repository": c.repository, "tags": dict(c.tags)} for c in checks}
        previous = product.live_revision
        now = utcnow()
        if previous is not None and previous.id != revision.id:
            self._record(
                ctx, previous, RevisionState.SUPERSEDED, actor, f"superseded by revision {revision.number}"
            )
        product.live_revision_id = revision.id
        if product.working_revision_id == revision.id:
            product.working_revision_id = None
        product.published_at = product.published_at or now
        revision.published_at = now
        self._move(
            ctx, revision, move, actor, _text(comment, COMMENT_MAX, "comment"), data={"pins": revision.pins}
        )
        return revision

    def unpublish(
        self, revision_id: int, principal: Principal, actor: Actor, comment: str = ""
    ) -> ProductRevision:
        """Take the live revision off the store (the product has no live revision until one is published)."""
        ctx = self.revision_context(revision_id, principal)
        move = states.check(ctx.revision.state, Action.UNPUBLISH, ctx.granted)
        if ctx.product.live_revision_id == ctx.revision.id:
            ctx.product.live_revision_id = None
        self._move(ctx, ctx.revision, move, actor, _text(comment, COMMENT_MAX, "comment"))
        return ctx.revision

    def act(
        self, revision_id: int, action: Action, principal: Principal, actor: Actor, **kw: Any
    ) -> ProductRevision:
        """Any store-team move by name (the API and the pages dispatch through it)."""
        if action is Action.CLAIM:
            return self.claim(revision_id, principal, actor)
        if action is Action.REQUEST_CHANGES:
            return self.request_changes(revision_id, principal, actor, kw.get("comment") or "")
        if action is Action.REJECT:
            return self.reject(revision_id, principal, actor, kw.get("comment") or "")
        if action is Action.APPROVE:
            return self.approve(
                revision_id,
                principal,
                actor,
                kw.get("comment") or "",
                kw.get("override_reason"),
                seen=kw.get("seen"),
            )
        if action is Action.PUBLISH:
            return self.publish(revision_id, principal, actor, kw.get("comment") or "")
        if action is Action.UNPUBLISH:
            return self.unpublish(revision_id, principal, actor, kw.get("comment") or "")
        raise Conflict(f"{action.value} is the publisher's to do, on the product")

    # -- the thread ------------------------------------------------------------------------------------
    def comment(
        self,
        revision_id: int,
        principal: Principal,
        actor: Actor,
        body: str,
        *,
        anchor_kind: str = CommentAnchor.NONE.value,
        anchor: str = "",
        internal: bool = False,
        parent_id: int | None = None,
    ) -> ReviewComment:
        """Add a message to the product's thread, optionally pointing at a manifest field, an image or a
        finding; ``internal`` notes are the store team's own and never reach the publisher."""
        ctx = self.revision_context(revision_id, principal)
        store = Permission.REVIEW_DECIDE in ctx.granted
        if not store and Permission.PRODUCT_EDIT not in ctx.granted:
            raise Forbidden("only the publisher's owners and maintainers and store reviewers comment")
        if internal and not store:
            raise Forbidden("only store reviewers write internal notes")
        body = _text(body, COMMENT_MAX, "body")
        if not body:
            raise Invalid("body: write something", detail=[{"field": "body", "message": "write something"}])
        parent = None
        if parent_id is not None:
            parent = self.session.get(ReviewComment, parent_id)
            if parent is None or parent.product_id != ctx.product.id or (parent.internal and not store):
                raise NotFound(f"comment {parent_id} not found")
            if parent.internal and not internal:
                message = "a reply to an internal note is internal too"
                raise Invalid(message, detail=[{"field": "internal", "message": message}])
        kind, anchor = self._anchor(ctx, anchor_kind, _text(anchor, 512, "anchor"))
        row = ReviewComment(
            product_id=ctx.product.id,
            revision_id=ctx.revision.id,
            parent_id=parent.id if parent else None,
            author_id=principal.user_id,
            author_name=principal.name[:255],
            from_store=store,
            internal=internal,
            anchor_kind=kind,
            anchor=anchor,
            body=body,
        )
        self.session.add(row)
        self.session.flush()
        # Never the body: an internal note must not reach the audit export a publisher may be shown.
        data = {
            "product": ctx.product.slug,
            "revision": ctx.revision.id,
            "comment": row.id,
            "internal": internal,
            "anchor_kind": kind,
            "anchor": anchor,
        }
        self.bus.publish(self.session, Event(EventTag.REVIEW_COMMENT, actor, namespace=ctx.org, data=data))
        return row

    def comment_on_product(
        self, org: str, slug: str, principal: Principal, actor: Actor, body: str, **kw: Any
    ) -> ReviewComment:
        """A message on the product's current revision (the working one, else the live one)."""
        ctx = self.product_context(org, slug, principal)
        revision_id = ctx.product.working_revision_id or ctx.product.live_revision_id
        if revision_id is None:
            raise Conflict(f"product {slug!r} has no revision to discuss")
        return self.comment(revision_id, principal, actor, body, **kw)

    def resolve_comment(
        self, org: str, slug: str, comment_id: int, principal: Principal, actor: Actor
    ) -> ReviewComment:
        """Mark a thread (a top-level message of the product's thread) resolved; resolving it again is a
        no-op. The publisher's owners and maintainers and store reviewers resolve threads."""
        ctx = self.product_context(org, slug, principal)
        row = self.session.get(ReviewComment, comment_id) if 1 <= comment_id < 2**31 else None
        # Another product's comment, or an internal note to a publisher: as if it did not exist.
        if row is None or row.product_id != ctx.product.id or (row.internal and not ctx.store):
            raise NotFound(f"comment {comment_id} not found")
        if not ctx.granted & {Permission.REVIEW_DECIDE, Permission.PRODUCT_EDIT}:
            raise Forbidden("only the publisher's owners and maintainers and store reviewers resolve threads")
        if row.parent_id is not None:
            raise Conflict("a reply is resolved with its thread: resolve the message it answers")
        if row.resolved_at is None:
            row.resolved_at = utcnow()
            data = {"product": ctx.product.slug, "comment": row.id, "internal": row.internal}
            self.bus.publish(
                self.session, Event(EventTag.REVIEW_COMMENT_RESOLVE, actor, namespace=ctx.org, data=data)
            )
        return row

    # -- internals -------------------------------------------------------------------------------------
    @staticmethod
    def _check(ctx: Context, action: Action) -> states.Move:
        """``states.check``, saying why to a store reviewer who is a member of the publisher."""
        if ctx.recused and states.MOVES[action].permission is Permission.REVIEW_DECIDE:
            raise Forbidden(
                f"store reviewers do not review their own organisation's products: {ctx.org} is yours, "
                "another reviewer decides this revision"
            )
        return states.check(ctx.revision.state, action, ctx.granted)

    def _anchor(self, ctx: Context, kind: str, anchor: str) -> tuple[str, str]:
        try:
            anchor_kind = CommentAnchor(kind or CommentAnchor.NONE.value)
        except ValueError:
            raise self._bad_anchor(f"unknown anchor kind {kind!r}") from None
        if anchor_kind is CommentAnchor.NONE:
            return anchor_kind.value, ""
        manifest = ctx.revision.manifest or {}
        images = {i.get("name"): i for i in manifest.get("images") or [] if isinstance(i, dict)}
        if anchor_kind is CommentAnchor.FIELD:
            if not anchor_field_exists(manifest, anchor):
                raise self._bad_anchor(f"{anchor!r} is not a field of this revision's manifest")
        elif anchor_kind is CommentAnchor.IMAGE:
            if anchor not in images:
                raise self._bad_anchor(f"this revision has no image named {anchor!r}")
        else:
            match = FINDING_ANCHOR.match(anchor)
            if match is None:
                raise self._bad_anchor("a finding is named <image>@<digest>/<vulnerability id>")
            name, digest, vuln = match.groups()
            image = images.get(name)
            repository = str(image.get("repository", "")) if image else ""
            # Only an image of this publisher's own repositories: never a probe of someone else's scans.
            if not self.owns(ctx.org, repository) or not self.registry.holds_manifest(repository, digest):
                raise self._bad_anchor(f"image {name!r} holds no manifest {digest}")
            if not self.scans.list_findings(digest=digest, vulnerability=vuln, state="all", limit=1):
                raise self._bad_anchor(f"no finding {vuln} in {name}@{digest}")
        return anchor_kind.value, anchor

    @staticmethod
    def _bad_anchor(message: str) -> Invalid:
        return Invalid(f"anchor: {message}", detail=[{"field": "anchor", "message": message}])

    def _working(self, product: Product) -> ProductRevision:
        revision = product.working_revision
        if revision is None:
            raise Conflict(f"product {product.slug!r} has no working revision: edit it first")
        return revision

    def _decide(
        self,
        revision_id: int,
        principal: Principal,
        actor: Actor,
        action: Action,
        comment: str,
        *,
        data: dict[str, Any] | None = None,
        ctx: Context | None = None,
    ) -> ProductRevision:
        ctx = ctx or self.revision_context(revision_id, principal)
        move = self._check(ctx, action)
        comment = _text(comment, COMMENT_MAX, "comment")
        if move.needs_comment and not comment:
            message = f"say what the publisher should know: {action.value.replace('-', ' ')} needs a comment"
            raise Invalid(message, detail=[{"field": "comment", "message": message}])
        extra = dict(data or {})
        claimant = ctx.revision.claimed_by
        if claimant is not None and claimant != principal.user_id:
            # The store-admin's override: deciding a revision another reviewer claimed.
            if Permission.PRODUCT_PUBLISH not in ctx.granted:
                raise Conflict(f"revision {ctx.revision.id} is claimed by {self.username(claimant)}")
            extra["override_claim"] = self.username(claimant)
        ctx.revision.decided_at = utcnow()
        ctx.revision.decided_by = principal.user_id
        self._move(ctx, ctx.revision, move, actor, comment, data=extra)
        return ctx.revision

    def _move(
        self,
        ctx: Context,
        revision: ProductRevision,
        move: states.Move,
        actor: Actor,
        comment: str,
        *,
        data: dict[str, Any] | None = None,
    ) -> None:
        before = revision.state
        self._record(ctx, revision, move.target, actor, comment)
        payload = {
            "product": ctx.product.slug,
            "revision": revision.id,
            "number": revision.number,
            "from": before,
            "to": move.target.value,
            "comment": comment,
            **(data or {}),
        }
        self.bus.publish(self.session, Event(move.tag, actor, namespace=ctx.org, data=payload))

    def _record(
        self, ctx: Context, revision: ProductRevision, target: RevisionState, actor: Actor, comment: str
    ) -> None:
        before = revision.state
        self.session.flush()  # the revision's other changes (claimant, pins...) first
        # Only if the state is still the one the move was checked against: two moves at once (an approval
        # while the publisher withdraws, two claims) otherwise both pass their check under read committed
        # and the later write wins. The UPDATE waits for the other transaction's row lock, then matches
        # nothing once that one has moved the revision.
        moved = self.session.execute(
            update(ProductRevision)
            .where(ProductRevision.id == revision.id, ProductRevision.state == before)
            .values(state=target.value, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:
            raise Conflict(
                f"revision {revision.number} of {ctx.org}/{ctx.product.slug} was moved by someone else "
                "meanwhile: reload it and try again"
            )
        set_committed_value(revision, "state", target.value)
        self.session.add(
            RevisionTransition(
                revision_id=revision.id,
                from_state=before,
                to_state=target.value,
                actor_id=actor.user_id,
                actor_name=actor.name[:255],
                comment=comment,
                at=utcnow(),
            )
        )
        self.session.flush()
