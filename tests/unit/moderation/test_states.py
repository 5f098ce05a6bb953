"""The transition table, exhaustively: every state x every action x every kind of caller, allowed (to the
expected state) or refused with Forbidden (never theirs) or Conflict (not from this state)."""

from __future__ import annotations

import pytest

from dockyard.authz import NAMESPACE_GRANTS, STAFF_GRANTS, Permission, StaffRole
from dockyard.errors import Conflict, Forbidden
from dockyard.moderation import states
from dockyard.moderation.states import Action
from dockyard.publishing.models import RevisionState as S

CALLERS = {
    "owner": NAMESPACE_GRANTS["owner"],
    "maintainer": NAMESPACE_GRANTS["maintainer"],
    "reader": NAMESPACE_GRANTS["reader"],
    "reviewer": STAFF_GRANTS[StaffRole.STORE_REVIEWER],
    "admin": STAFF_GRANTS[StaffRole.STORE_ADMIN],
    "customer": frozenset({Permission.ACCOUNT_MANAGE, Permission.ORG_CREATE}),
}
# The whole table, written out: (action, from) -> to.
ALLOWED = {
    (Action.SUBMIT, S.DRAFT): S.SUBMITTED,
    (Action.RESUBMIT, S.CHANGES_REQUESTED): S.RESUBMITTED,
    **{
        (Action.WITHDRAW, s): S.WITHDRAWN
        for s in (S.DRAFT, S.SUBMITTED, S.IN_REVIEW, S.CHANGES_REQUESTED, S.RESUBMITTED, S.APPROVED)
    },
    (Action.CLAIM, S.SUBMITTED): S.IN_REVIEW,
    (Action.CLAIM, S.RESUBMITTED): S.IN_REVIEW,
    (Action.REQUEST_CHANGES, S.IN_REVIEW): S.CHANGES_REQUESTED,
    (Action.APPROVE, S.IN_REVIEW): S.APPROVED,
    (Action.REJECT, S.IN_REVIEW): S.REJECTED,
    (Action.PUBLISH, S.APPROVED): S.PUBLISHED,
    (Action.UNPUBLISH, S.PUBLISHED): S.UNPUBLISHED,
}
WHO = {
    Action.SUBMIT: {"owner", "maintainer"},  # never the store team (issue 9)
    Action.RESUBMIT: {"owner", "maintainer"},  # never the store team (issue 9)
    Action.WITHDRAW: {"owner", "maintainer"},  # never the store team (issue 9)
    Action.CLAIM: {"reviewer", "admin"},
    Action.REQUEST_CHANGES: {"reviewer", "admin"},
    Action.APPROVE: {"reviewer", "admin"},
    Action.REJECT: {"reviewer", "admin"},
    Action.PUBLISH: {"admin"},
    Action.UNPUBLISH: {"admin"},
}


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("state", list(S))
def test_every_state_action_and_caller(state: S, action: Action, caller: str) -> None:
    granted = CALLERS[caller]
    if caller not in WHO[action]:
        with pytest.raises(Forbidden, match=f"only .* may {action.value.replace('-', ' ')}"):
            states.check(state, action, granted)
    elif (action, state) not in ALLOWED:
        with pytest.raises(Conflict, match=f"cannot {action.value.replace('-', ' ')} a revision that is"):
            states.check(state, action, granted)
    else:
        assert states.check(state, action, granted).target is ALLOWED[(action, state)]
    assert (action in states.actions_for(state, granted)) == (
        caller in WHO[action] and (action, state) in ALLOWED
    )


def test_comments_are_required_to_request_changes_and_reject_only() -> None:
    assert {a for a, m in states.MOVES.items() if m.needs_comment} == {Action.REQUEST_CHANGES, Action.REJECT}


def test_only_drafts_and_revisions_sent_back_are_editable() -> None:
    assert {s for s in S if states.is_editable(s)} == {S.DRAFT, S.CHANGES_REQUESTED}


def test_an_unknown_action_is_a_conflict() -> None:
    with pytest.raises(Conflict, match="unknown action"):
        states.check(S.DRAFT, "dance", CALLERS["admin"])
