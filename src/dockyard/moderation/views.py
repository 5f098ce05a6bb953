"""The review API: the publisher submits, withdraws and discusses a product; the store team works the
queue and moves revisions (claim, request changes, approve, reject; store-admins publish and unpublish).
Thin views: parse (the schemas), authenticate (``caller``), one service call (which checks the transition
table and who may see what), shape the answer."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Path

from dockyard.authz import Principal, Scope
from dockyard.db import MAX_ID, utcnow
from dockyard.moderation import schemas as s
from dockyard.moderation.reads import Context, ThreadItem
from dockyard.moderation.states import Action
from dockyard.publishing.models import ProductRevision, ReviewComment
from dockyard.web.api import AUTHENTICATED, Ctx, UnitOfWorkRoute, caller, errors

router = APIRouter(route_class=UnitOfWorkRoute, responses=AUTHENTICATED)

OrgName = Annotated[str, Path(min_length=1, max_length=64)]
Slug = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")]
RevisionId = Annotated[int, Path(ge=1, le=MAX_ID)]
CommentId = Annotated[int, Path(ge=1, le=MAX_ID)]
Account = Annotated[Principal, caller(Scope.API)]


class StoreAction(StrEnum):
    """The store team's moves (the publisher's are on the product)."""

    CLAIM = Action.CLAIM.value
    REQUEST_CHANGES = Action.REQUEST_CHANGES.value
    APPROVE = Action.APPROVE.value
    REJECT = Action.REJECT.value
    PUBLISH = Action.PUBLISH.value
    UNPUBLISH = Action.UNPUBLISH.value


def revision_out(sv: Any, r: ProductRevision) -> dict[str, Any]:
    return {
        "id": r.id,
        "product": r.product.slug,
        "number": r.number,
        "state": r.state,
        "submitted_at": r.submitted_at,
        "claimed_by": sv.reviews.username(r.claimed_by),
        "override_reason": r.override_reason,
        "pins": r.pins,
        "published_at": r.published_at,
    }


def comment_out(c: ReviewComment) -> dict[str, Any]:
    return {
        "id": c.id,
        "revision": c.revision_id,
        "parent_id": c.parent_id,
        "author": c.author_name,
        "from_store": c.from_store,
        "internal": c.internal,
        "anchor_kind": c.anchor_kind,
        "anchor": c.anchor,
        "body": c.body,
        "created_at": c.created_at,
        "resolved_at": c.resolved_at,
    }


def thread_out(sv: Any, ctx: Context, items: list[ThreadItem]) -> dict[str, Any]:
    comments = [c for item in items for c in (item.comment, *item.replies)]
    return {
        "product": ctx.product.slug,
        "revision": revision_out(sv, ctx.revision),
        "comments": [comment_out(c) for c in comments],
        "history": [
            {
                "revision": h.transition.revision_id,
                "from_state": h.transition.from_state,
                "to_state": h.transition.to_state,
                "actor": h.transition.actor_name,
                "comment": h.transition.comment,
                "at": h.transition.at,
            }
            for h in sv.reviews.history(ctx.product.id)
        ],
    }


# -- the publisher's side --------------------------------------------------------------------------------
@router.post(
    "/publishers/{org}/products/{slug}/submit",
    response_model=s.RevisionOut,
    tags=["review"],
    responses=errors(400, 403, 404, 409),
)
async def submit(
    org: OrgName, slug: Slug, ctx: Ctx, who: Account, body: s.MoveIn | None = None
) -> dict[str, Any]:
    """Submit the product's working revision for review (or resubmit it after changes were requested)."""
    comment = body.comment if body else ""
    return await ctx.call(lambda sv: revision_out(sv, sv.reviews.submit(org, slug, who, ctx.actor, comment)))


@router.post(
    "/publishers/{org}/products/{slug}/withdraw",
    response_model=s.RevisionOut,
    tags=["review"],
    responses=errors(400, 403, 404, 409),
)
async def withdraw(
    org: OrgName, slug: Slug, ctx: Ctx, who: Account, body: s.MoveIn | None = None
) -> dict[str, Any]:
    """Withdraw the working revision (it ends; the product has none until the next edit)."""
    comment = body.comment if body else ""
    return await ctx.call(
        lambda sv: revision_out(sv, sv.reviews.withdraw(org, slug, who, ctx.actor, comment))
    )


@router.get(
    "/publishers/{org}/products/{slug}/thread",
    response_model=s.ThreadOut,
    tags=["review"],
    responses=errors(400, 403, 404),
)
async def thread(org: OrgName, slug: Slug, ctx: Ctx, who: Account) -> dict[str, Any]:
    """The product's review thread and history (internal notes only for the store team)."""

    def work(sv: Any) -> dict[str, Any]:
        context, items = sv.reviews.thread_of(org, slug, who)
        return thread_out(sv, context, items)

    return await ctx.call(work)


@router.post(
    "/publishers/{org}/products/{slug}/comments",
    response_model=s.CommentOut,
    status_code=201,
    tags=["review"],
    responses=errors(400, 403, 404, 409),
)
async def comment(org: OrgName, slug: Slug, body: s.CommentIn, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Add a message to the product's thread (on its current revision)."""

    def work(sv: Any) -> dict[str, Any]:
        c = sv.reviews.comment_on_product(
            org,
            slug,
            who,
            ctx.actor,
            body.body,
            anchor_kind=body.anchor_kind.value,
            anchor=body.anchor,
            internal=body.internal,
            parent_id=body.parent_id,
        )
        return comment_out(c)

    return await ctx.call(work)


@router.post(
    "/publishers/{org}/products/{slug}/comments/{comment_id}/resolve",
    response_model=s.CommentOut,
    tags=["review"],
    responses=errors(400, 403, 404, 409),
)
async def resolve(org: OrgName, slug: Slug, comment_id: CommentId, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Mark a thread resolved (the publisher's owners and maintainers, store reviewers); it stays in the
    thread, folded. Resolving a resolved thread changes nothing."""
    return await ctx.call(
        lambda sv: comment_out(sv.reviews.resolve_comment(org, slug, comment_id, who, ctx.actor))
    )


# -- the store team's side -------------------------------------------------------------------------------
@router.get("/review/queue", response_model=s.QueueOut, tags=["review"], responses=errors(403))
async def queue(ctx: Ctx, who: Account) -> dict[str, Any]:
    """Revisions waiting for review, oldest submission first (store reviewers)."""
    items = await ctx.call(lambda sv: sv.reviews.queue(who))
    now = utcnow()
    return {
        "items": [
            {
                "revision": i.revision_id,
                "org": i.org,
                "product": i.slug,
                "name": i.name,
                "number": i.number,
                "state": i.state,
                "submitted_at": i.submitted_at,
                "age_seconds": int((now - i.submitted_at).total_seconds()) if i.submitted_at else 0,
                "claimant": i.claimant,
            }
            for i in items
        ]
    }


@router.post(
    "/review/revisions/{revision_id}/{action}",
    response_model=s.RevisionOut,
    tags=["review"],
    responses=errors(400, 403, 404, 409),
)
async def move(
    revision_id: RevisionId, action: StoreAction, ctx: Ctx, who: Account, body: s.ApproveIn | None = None
) -> dict[str, Any]:
    """Claim, request changes (comment required), approve (override_reason required with open Critical
    findings), reject (comment required); store-admins publish and unpublish."""
    body = body or s.ApproveIn()

    def work(sv: Any) -> dict[str, Any]:
        revision = sv.reviews.act(
            revision_id,
            Action(action.value),
            who,
            ctx.actor,
            comment=body.comment,
            override_reason=body.override_reason,
            seen=body.seen,
        )
        return revision_out(sv, revision)

    return await ctx.call(work)
