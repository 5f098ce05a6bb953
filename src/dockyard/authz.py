"""Who may do what: principals, repository actions and the check services call."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dockyard.errors import Forbidden, Unauthenticated


class Action(StrEnum):
    PULL = "pull"
    PUSH = "push"
    DELETE = "delete"


# What each namespace role may do to the namespace's repositories.
ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    "reader": frozenset({Action.PULL}),
    "maintainer": frozenset({Action.PULL, Action.PUSH, Action.DELETE}),
    "owner": frozenset({Action.PULL, Action.PUSH, Action.DELETE}),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated (or anonymous) caller."""

    kind: str = "anonymous"  # anonymous | user | robot
    name: str = "anonymous"
    user_id: int | None = None
    robot_id: int | None = None
    is_admin: bool = False
    via: str = "none"  # password | token | robot | bearer | session | none
    token_id: int | None = None  # the personal access token used, when one was

    @property
    def is_anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Principal()


def require_authenticated(principal: Principal) -> None:
    if principal.is_anonymous:
        raise Unauthenticated("authentication required")


def require_admin(principal: Principal) -> None:
    require_authenticated(principal)
    if not principal.is_admin:
        raise Forbidden("administrator only")
