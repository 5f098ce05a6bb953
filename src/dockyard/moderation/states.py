"""The review's transition table: which action moves a revision from which states to which, and who may.

A pure table and two pure functions (no database, no principal): ``check`` says what an action does to a
revision in a state for a caller holding some permissions, or raises Forbidden (the caller may never do it)
or Conflict (not from this state). ``actions_for`` lists what a caller may do now (the pages' buttons).

Who: the publisher organisation's owners and maintainers (``product:edit``, never a store-team grant)
submit, resubmit and withdraw; store reviewers (``review:decide``) claim, request changes, approve and
reject; store-admins (``product:publish``) publish and unpublish, and may decide a revision another
reviewer claimed (the service's override rule).

Withdrawing ends the working revision (state ``withdrawn``, kept with its thread and history); the product's
working revision becomes none, and the next edit starts a new one from the live revision (or from the
manifest sent). Only ``draft`` and ``changes_requested`` revisions may be edited: from submission on a
revision is frozen (``is_editable``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dockyard.authz import Permission
from dockyard.errors import Conflict, Forbidden
from dockyard.events import EventTag
from dockyard.publishing.models import RevisionState

S = RevisionState


class Action(StrEnum):
    SUBMIT = "submit"
    RESUBMIT = "resubmit"
    WITHDRAW = "withdraw"
    CLAIM = "claim"
    REQUEST_CHANGES = "request-changes"
    APPROVE = "approve"
    REJECT = "reject"
    PUBLISH = "publish"
    UNPUBLISH = "unpublish"


@dataclass(frozen=True)
class Move:
    action: Action
    sources: frozenset[RevisionState]
    target: RevisionState
    permission: Permission
    tag: EventTag
    who: str  # for messages: who may make this move
    needs_comment: bool = False


def _move(
    action: Action,
    sources: set[RevisionState],
    target: RevisionState,
    permission: Permission,
    tag: EventTag,
    who: str,
    *,
    needs_comment: bool = False,
) -> Move:
    return Move(action, frozenset(sources), target, permission, tag, who, needs_comment)


PUBLISHER = "the publisher's owners and maintainers"
REVIEWER = "store reviewers"
ADMIN = "store-admins"

MOVES: dict[Action, Move] = {
    m.action: m
    for m in (
        _move(
            Action.SUBMIT,
            {S.DRAFT},
            S.SUBMITTED,
            Permission.PRODUCT_EDIT,
            EventTag.REVISION_SUBMIT,
            PUBLISHER,
        ),
        _move(
            Action.RESUBMIT,
            {S.CHANGES_REQUESTED},
            S.RESUBMITTED,
            Permission.PRODUCT_EDIT,
            EventTag.REVISION_RESUBMIT,
            PUBLISHER,
        ),
        _move(
            Action.WITHDRAW,
            {S.DRAFT, S.SUBMITTED, S.IN_REVIEW, S.CHANGES_REQUESTED, S.RESUBMITTED, S.APPROVED},
            S.WITHDRAWN,
            Permission.PRODUCT_EDIT,
            EventTag.REVISION_WITHDRAW,
            PUBLISHER,
        ),
        _move(
            Action.CLAIM,
            {S.SUBMITTED, S.RESUBMITTED},
            S.IN_REVIEW,
            Permission.REVIEW_DECIDE,
            EventTag.REVISION_CLAIM,
            REVIEWER,
        ),
        _move(
            Action.REQUEST_CHANGES,
            {S.IN_REVIEW},
            S.CHANGES_REQUESTED,
            Permission.REVIEW_DECIDE,
            EventTag.REVISION_REQUEST_CHANGES,
            REVIEWER,
            needs_comment=True,
        ),
        _move(
            Action.APPROVE,
            {S.IN_REVIEW},
            S.APPROVED,
            Permission.REVIEW_DECIDE,
            EventTag.REVISION_APPROVE,
            REVIEWER,
        ),
        _move(
            Action.REJECT,
            {S.IN_REVIEW},
            S.REJECTED,
            Permission.REVIEW_DECIDE,
            EventTag.REVISION_REJECT,
            REVIEWER,
            needs_comment=True,
        ),
        _move(
            Action.PUBLISH,
            {S.APPROVED},
            S.PUBLISHED,
            Permission.PRODUCT_PUBLISH,
            EventTag.PRODUCT_PUBLISH,
            ADMIN,
        ),
        _move(
            Action.UNPUBLISH,
            {S.PUBLISHED},
            S.UNPUBLISHED,
            Permission.PRODUCT_PUBLISH,
            EventTag.PRODUCT_UNPUBLISH,
            ADMIN,
        ),
    )
}

EDITABLE = frozenset({S.DRAFT, S.CHANGES_REQUESTED})
# Waiting for a reviewer (the queue).
AWAITING_REVIEW = frozenset({S.SUBMITTED, S.RESUBMITTED, S.IN_REVIEW})
# The states of a working revision (not yet live, not ended).
OPEN = frozenset({S.DRAFT, S.SUBMITTED, S.IN_REVIEW, S.CHANGES_REQUESTED, S.RESUBMITTED, S.APPROVED})
LABELS = {
    S.DRAFT: "Draft",
    S.SUBMITTED: "Submitted",
    S.IN_REVIEW: "In review",
    S.CHANGES_REQUESTED: "Changes requested",
    S.RESUBMITTED: "Resubmitted",
    S.APPROVED: "Approved",
    S.PUBLISHED: "Published",
    S.SUPERSEDED: "Superseded",
    S.UNPUBLISHED: "Unpublished",
    S.REJECTED: "Rejected",
    S.WITHDRAWN: "Withdrawn",
}


def is_editable(state: str) -> bool:
    """Whether a revision in ``state`` may still be edited (a submitted revision is frozen)."""
    return state in EDITABLE


def check(state: str, action: Action | str, granted: frozenset[Permission]) -> Move:
    """The move ``action`` makes from ``state`` for a caller holding ``granted``: Forbidden when the caller
    may never make it, Conflict when the revision's state does not allow it."""
    try:
        move = MOVES[Action(action)]
    except ValueError:
        raise Conflict(f"unknown action {action!r}") from None
    if move.permission not in granted:
        raise Forbidden(f"only {move.who} may {move.action.value.replace('-', ' ')} a revision")
    current = RevisionState(state)
    if current not in move.sources:
        allowed_from = ", ".join(sorted(LABELS[s].lower() for s in move.sources))
        raise Conflict(
            f"cannot {move.action.value.replace('-', ' ')} a revision that is {LABELS[current].lower()} "
            f"(only one that is {allowed_from})"
        )
    return move


def actions_for(state: str, granted: frozenset[Permission]) -> list[Action]:
    """The actions a caller holding ``granted`` may take on a revision in ``state``, in table order."""
    current = RevisionState(state)
    return [a for a, m in MOVES.items() if current in m.sources and m.permission in granted]
