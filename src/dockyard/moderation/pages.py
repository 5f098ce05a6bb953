"""The review's pages: the reviewers' queue, a revision's review page (the manifest as customers will see
it, the diff against the live revision, each image's digests with their scans, the thread and the moves the
viewer may make), and the publisher's side (their products, one product's review without internal notes,
resubmit and withdraw). Every form works without JavaScript; a refused move is shown beside its field."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.accounts.pages.forms import attempt, path
from dockyard.errors import Invalid
from dockyard.moderation import states
from dockyard.moderation.reads import ReviewView
from dockyard.moderation.states import Action
from dockyard.publishing.markdown import render_markdown
from dockyard.publishing.models import CommentAnchor
from dockyard.services import Services
from dockyard.web.context import RequestContext
from dockyard.web.identity import session_principal
from dockyard.web.pages import flash, form, page, redirect, render, safe_next, text_field

PUBLISHER_ACTIONS = {Action.SUBMIT, Action.RESUBMIT, Action.WITHDRAW}
DONE = {
    Action.SUBMIT: "Submitted for review.",
    Action.RESUBMIT: "Resubmitted for review.",
    Action.WITHDRAW: "Withdrawn.",
    Action.CLAIM: "Claimed: the revision is yours to review.",
    Action.REQUEST_CHANGES: "Changes requested: the publisher has been told.",
    Action.APPROVE: "Approved.",
    Action.REJECT: "Rejected.",
    Action.PUBLISH: "Published: the revision is live.",
    Action.UNPUBLISH: "Unpublished.",
}


def _render(
    request: Request,
    view: ReviewView,
    *,
    publisher_side: bool,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    here = (
        path(request, "product_review", org=view.org, slug=view.product.slug)
        if publisher_side
        else path(request, "review_revision", revision_id=view.revision.id)
    )
    actions = [a for a in view.actions if (a in PUBLISHER_ACTIONS) == publisher_side]
    context = {
        "view": view,
        "publisher_side": publisher_side,
        "actions": actions,
        "labels": states.LABELS,
        "markdown": render_markdown,
        "here": here,
        "anchor_kinds": [k.value for k in CommentAnchor],
        "errors": errors or {},
        "values": {"comment": "", "override_reason": "", "body": "", "anchor": ""} | (values or {}),
        "section": "review" if not publisher_side else "publishing",
    }
    return render(request, "moderation/review.html", context, status)


@page
async def queue_page(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    items = await ctx.call(lambda sv: sv.reviews.queue(principal))
    return render(
        request, "moderation/queue.html", {"items": items, "labels": states.LABELS, "section": "review"}
    )


@page
async def review_page(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    rid = request.path_params["revision_id"]
    view = await ctx.call(lambda sv: sv.reviews.review(rid, principal))
    return _render(request, view, publisher_side=False)


@page
async def product_review_page(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    org, slug = request.path_params["org"], request.path_params["slug"]
    view = await ctx.call(lambda sv: sv.reviews.product_review(org, slug, principal))
    return _render(request, view, publisher_side=True)


@page
async def dashboard_page(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    org = request.path_params["org"]
    rows = await ctx.call(lambda sv: sv.reviews.dashboard(org, principal))
    context = {"org": org, "rows": rows, "labels": states.LABELS, "section": "publishing"}
    return render(request, "moderation/dashboard.html", context)


def _action(value: str, allowed: set[Action]) -> Action:
    try:
        action = Action(value)
    except ValueError:
        raise Invalid(f"unknown action {value!r}") from None
    if action not in allowed:
        raise Invalid(f"{action.value} is not made on this page")
    return action


def _seen(data: Any) -> dict[str, dict[str, str]] | None:
    """The digests the review page showed (``seen``: "<image>:<tag>=<digest>"), to approve only those."""
    seen: dict[str, dict[str, str]] = {}
    for item in data.getlist("seen")[:400]:
        key, _, digest = str(item).partition("=")
        name, _, tag = key.partition(":")
        seen.setdefault(name, {})[tag] = digest
    return seen or None  # a form without them (an older page) approves what the tags name now


@page
async def move_page(request: Request, ctx: RequestContext) -> Response:
    data = await form(request)
    principal = await session_principal(ctx)
    rid = request.path_params["revision_id"]
    action = _action(text_field(data, "action", limit=40), set(Action) - PUBLISHER_ACTIONS)
    values = {
        "comment": text_field(data, "comment", limit=20_000),
        "override_reason": text_field(data, "override_reason", limit=2_000),
    }
    seen = _seen(data) if action is Action.APPROVE else None

    def act(sv: Services) -> Any:
        return sv.reviews.act(
            rid,
            action,
            principal,
            ctx.actor,
            comment=values["comment"],
            override_reason=values["override_reason"],
            seen=seen,
        )

    _, refusal = await attempt(ctx, act, field="comment")
    if refusal is not None:
        view = await ctx.call(lambda sv: sv.reviews.review(rid, principal))
        return _render(
            request, view, publisher_side=False, status=refusal.status, errors=_errors(refusal), values=values
        )
    flash(request, DONE[action])
    return redirect(path(request, "review_revision", revision_id=rid))


@page
async def product_move_page(request: Request, ctx: RequestContext) -> Response:
    data = await form(request)
    principal = await session_principal(ctx)
    org, slug = request.path_params["org"], request.path_params["slug"]
    action = _action(text_field(data, "action", limit=40), PUBLISHER_ACTIONS)
    comment = text_field(data, "comment", limit=20_000)

    def act(sv: Services) -> Any:
        if action is Action.WITHDRAW:
            return sv.reviews.withdraw(org, slug, principal, ctx.actor, comment)
        return sv.reviews.submit(org, slug, principal, ctx.actor, comment)

    _, refusal = await attempt(ctx, act, field="comment")
    if refusal is not None:
        view = await ctx.call(lambda sv: sv.reviews.product_review(org, slug, principal))
        return _render(
            request,
            view,
            publisher_side=True,
            status=refusal.status,
            errors=_errors(refusal),
            values={"comment": comment},
        )
    flash(request, DONE[action])
    return redirect(path(request, "product_review", org=org, slug=slug))


@page
async def comment_page(request: Request, ctx: RequestContext) -> Response:
    data = await form(request)
    principal = await session_principal(ctx)
    rid = request.path_params["revision_id"]
    publisher_side = text_field(data, "side", limit=20) == "publisher"
    parent = text_field(data, "parent_id", limit=12)
    values = {"body": text_field(data, "body", limit=20_000), "anchor": text_field(data, "anchor", limit=512)}
    kind = text_field(data, "anchor_kind", limit=16) or CommentAnchor.NONE.value

    def add(sv: Services) -> Any:
        return sv.reviews.comment(
            rid,
            principal,
            ctx.actor,
            values["body"],
            anchor_kind=kind,
            anchor=values["anchor"],
            internal=data.get("internal") == "on",
            parent_id=int(parent) if parent.isdigit() and len(parent) < 10 else None,
        )

    _, refusal = await attempt(ctx, add, field="body")
    if refusal is not None:

        def again(sv: Services) -> ReviewView:
            view = sv.reviews.review(rid, principal)
            return (
                sv.reviews.product_review(view.org, view.product.slug, principal) if publisher_side else view
            )

        view = await ctx.call(again)
        return _render(
            request,
            view,
            publisher_side=publisher_side,
            status=refusal.status,
            errors=_errors(refusal),
            values=values,
        )
    flash(request, "Comment added.")
    return redirect(safe_next(text_field(data, "next", limit=500), "/ui/") + "#thread")


@page
async def resolve_page(request: Request, ctx: RequestContext) -> Response:
    """Resolve a thread from the review page or the publisher's page; a refusal is the error page."""
    data = await form(request)
    principal = await session_principal(ctx)
    org, slug = request.path_params["org"], request.path_params["slug"]
    comment_id = request.path_params["comment_id"]
    await ctx.call(lambda sv: sv.reviews.resolve_comment(org, slug, comment_id, principal, ctx.actor))
    flash(request, "Thread resolved: it stays in the thread, folded.")
    back = path(request, "product_review", org=org, slug=slug)
    return redirect(safe_next(text_field(data, "next", limit=500), back) + f"#comment-{comment_id}")


def _errors(refusal: Any) -> dict[str, str]:
    """A refusal's messages by field (a manifest's problems under "manifest", one line each)."""
    detail = refusal.exc.detail
    if isinstance(detail, list):
        fields = {str(d.get("field")) for d in detail if isinstance(d, dict)}
        if fields <= {"comment", "override_reason", "body", "anchor", "internal"}:
            return {str(d["field"]): str(d["message"]) for d in detail}
        return {"manifest": "\n".join(f"{d['field'] or 'manifest'}: {d['message']}" for d in detail)}
    return refusal.errors


routes = [
    Route("/ui/review", queue_page, methods=["GET"], name="review_queue"),
    Route("/ui/review/revisions/{revision_id:int}", review_page, methods=["GET"], name="review_revision"),
    Route("/ui/review/revisions/{revision_id:int}/move", move_page, methods=["POST"], name="review_move"),
    Route(
        "/ui/review/revisions/{revision_id:int}/comments",
        comment_page,
        methods=["POST"],
        name="review_comment",
    ),
    Route("/ui/orgs/{org}/dashboard", dashboard_page, methods=["GET"], name="publisher_dashboard"),
    Route(
        "/ui/orgs/{org}/products/{slug}/review", product_review_page, methods=["GET"], name="product_review"
    ),
    Route(
        "/ui/orgs/{org}/products/{slug}/move", product_move_page, methods=["POST"], name="product_review_move"
    ),
    Route(
        "/ui/orgs/{org}/products/{slug}/comments/{comment_id:int}/resolve",
        resolve_page,
        methods=["POST"],
        name="review_comment_resolve",
    ),
]
