"""Who may do what: principals, repository actions and the check services call."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dockyard.errors import Forbidden, Unauthenticated


class Action(StrEnum):
    PULL = "pull"
    PUSH = "push"
    DELETE = "delete"


class Scope(StrEnum):
    """What a credential may be used for, whatever its owner may do: a personal access token carries the
    scopes chosen when it was made; passwords and browser sessions carry all of them."""

    PULL = "pull"  # read repositories (and their scan results) through /v2 and the API
    PUSH = "push"  # write and delete in repositories
    API = "api"  # manage the account through /api/v1: tokens, organisations, members, robots, visibility


ALL_SCOPES = frozenset(Scope)
REGISTRY_SCOPES = frozenset({Scope.PULL, Scope.PUSH})


def parse_scopes(
    value: str | list[str] | None, *, default: frozenset[Scope] = REGISTRY_SCOPES
) -> frozenset[Scope]:
    """Scopes from "pull,push" or a list; an unknown one is an error, none at all the default."""
    from dockyard.errors import Invalid

    raw = [value] if isinstance(value, str) else list(value or [])
    items = [part.strip() for item in raw for part in str(item).split(",") if part.strip()]
    if not items:
        return default
    try:
        return frozenset(Scope(i) for i in items)
    except ValueError as exc:
        raise Invalid(f"scopes must be among {', '.join(s.value for s in Scope)}") from exc


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
    via: str = "none"  # password | token | robot | bearer | session | refresh | none
    token_id: int | None = None  # the personal access token used, when one was
    scopes: frozenset[Scope] = ALL_SCOPES  # what the credential used may do (see Scope)
    # The user's credential generation when the credential was checked: refresh tokens carry it.
    generation: int | None = None

    @property
    def is_anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Principal()


def require_authenticated(principal: Principal) -> None:
    if principal.is_anonymous:
        raise Unauthenticated("authentication required")


def require_scope(principal: Principal, scope: Scope) -> None:
    """Forbidden unless the credential in use carries ``scope``."""
    require_authenticated(principal)
    if scope not in principal.scopes:
        raise Forbidden(f"this credential lacks the {scope.value!r} scope")


def require_admin(principal: Principal) -> None:
    require_authenticated(principal)
    if not principal.is_admin:
        raise Forbidden("administrator only")
