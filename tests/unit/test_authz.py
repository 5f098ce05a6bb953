"""The permission table, written out: every role and credential against every ``Permission``.

``authz.allowed`` reads the grant tables (NAMESPACE_GRANTS, STAFF_GRANTS, USER_GRANTS, PUBLIC_GRANTS) and
REQUIRED_SCOPE. The expected answer of every cell is spelled out below, so changing a grant means
changing this table too; a permission without a row, a staff or namespace role without a column, fails.
``require`` must agree with ``allowed`` on every cell, and say why when it refuses.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from dockyard.accounts.models import Role
from dockyard.authz import (
    ANONYMOUS,
    NAMESPACE_GRANTS,
    REGISTRY_SCOPES,
    STAFF_GRANTS,
    Permission,
    Principal,
    Scope,
    StaffRole,
    allowed,
    require,
)
from dockyard.errors import Forbidden, Unauthenticated

P = Permission


@dataclass(frozen=True)
class Caller:
    """A principal, and what it has to do with the resource: its role in the namespace, a public repo."""

    principal: Principal
    namespace_role: str | None = None
    public: bool = False


def user(*staff: StaffRole, scopes: frozenset[Scope] = frozenset(Scope), via: str = "password") -> Principal:
    return Principal(kind="user", name="someone", user_id=7, staff=frozenset(staff), via=via, scopes=scopes)


ROBOT = Principal(kind="robot", name="org+ci", robot_id=3, via="robot", scopes=REGISTRY_SCOPES)
PULL, PUSH, API = Scope.PULL, Scope.PUSH, Scope.API
ADMIN_PULL_TOKEN = user(StaffRole.STORE_ADMIN, scopes=frozenset({PULL}), via="token")

# The columns of the table.
CALLERS: dict[str, Caller] = {
    "anonymous": Caller(ANONYMOUS),  # 1
    "anonymous, public repo": Caller(ANONYMOUS, public=True),  # 2
    "user": Caller(user()),  # 3
    "user, public repo": Caller(user(), public=True),  # 4
    "reader": Caller(user(), "reader"),  # 5
    "maintainer": Caller(user(), "maintainer"),  # 6
    "owner": Caller(user(), "owner"),  # 7
    "store-admin": Caller(user(StaffRole.STORE_ADMIN)),  # 8
    "store-reviewer": Caller(user(StaffRole.STORE_REVIEWER)),  # 9
    "store-support": Caller(user(StaffRole.STORE_SUPPORT)),  # 10
    "finance": Caller(user(StaffRole.FINANCE)),  # 11
    "robot reader": Caller(ROBOT, "reader"),  # 12
    "robot maintainer": Caller(ROBOT, "maintainer"),  # 13
    # An owner's personal access tokens, by their scopes; and a store-admin's pull-only token.
    "owner, pull token": Caller(user(scopes=frozenset({PULL}), via="token"), "owner"),  # 14
    "owner, pull+push token": Caller(user(scopes=frozenset({PULL, PUSH}), via="token"), "owner"),  # 15
    "owner, api token": Caller(user(scopes=frozenset({API}), via="token"), "owner"),  # 16
    "store-admin, pull token": Caller(ADMIN_PULL_TOKEN),  # 17
}
COLUMNS = tuple(CALLERS)

Y, N = True, False
# fmt: off
TABLE: dict[Permission, tuple[bool, ...]] = {
    # columns: the callers above, by number
    #                       1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16 17
    P.REPOSITORY_PULL:     (N, Y, N, Y, Y, Y, Y, Y, Y, N, N, Y, Y, Y, Y, N, Y),
    P.REPOSITORY_PUSH:     (N, N, N, N, N, Y, Y, Y, N, N, N, N, Y, N, Y, N, N),
    P.REPOSITORY_DELETE:   (N, N, N, N, N, Y, Y, Y, N, N, N, N, Y, N, Y, N, N),
    P.SCAN_READ:           (N, N, N, N, Y, Y, Y, Y, Y, N, N, Y, Y, Y, Y, N, Y),
    P.SCAN_RESCAN:         (N, N, N, N, N, Y, Y, Y, Y, N, N, N, Y, N, Y, N, N),
    P.NAMESPACE_READ:      (N, N, N, N, Y, Y, Y, Y, N, N, N, N, N, N, N, Y, N),
    P.NAMESPACE_MANAGE:    (N, N, N, N, N, N, Y, Y, N, N, N, N, N, N, N, Y, N),
    P.PUBLISHER_MANAGE:    (N, N, N, N, N, N, Y, N, N, N, N, N, N, N, N, Y, N),
    P.PRODUCT_READ:        (N, N, N, N, Y, Y, Y, Y, Y, N, N, N, N, N, N, Y, N),
    P.PRODUCT_EDIT:        (N, N, N, N, N, Y, Y, N, N, N, N, N, N, N, N, Y, N),
    P.ACCOUNT_MANAGE:      (N, N, Y, Y, Y, Y, Y, Y, Y, Y, Y, N, N, N, N, Y, N),
    P.ORG_CREATE:          (N, N, Y, Y, Y, Y, Y, Y, Y, Y, Y, N, N, N, N, Y, N),
    P.CATALOG_READ:        (N, N, N, N, N, N, N, Y, Y, Y, N, N, N, N, N, N, Y),
    P.FINDING_RECLASSIFY:  (N, N, N, N, N, N, N, Y, Y, N, N, N, N, N, N, N, N),
    P.REVIEW_DECIDE:       (N, N, N, N, N, N, N, Y, Y, N, N, N, N, N, N, N, N),
    P.PRODUCT_PUBLISH:     (N, N, N, N, N, N, N, Y, N, N, N, N, N, N, N, N, N),
    P.AUDIT_READ:          (N, N, N, N, N, N, N, Y, N, Y, N, N, N, N, N, N, N),
    P.REPORTS_READ:        (N, N, N, N, N, N, N, Y, N, N, Y, N, N, N, N, N, N),
    P.USER_MANAGE:         (N, N, N, N, N, N, N, Y, N, N, N, N, N, N, N, N, N),
    P.STAFF_MANAGE:        (N, N, N, N, N, N, N, Y, N, N, N, N, N, N, N, N, N),
    P.BADGE_MANAGE:        (N, N, N, N, N, N, N, Y, N, N, N, N, N, N, N, N, N),
    P.COMPLIANCE_MANAGE:   (N, N, N, N, N, N, N, Y, Y, N, N, N, N, N, N, N, N),
    P.ENTITLEMENT_MANAGE:  (N, N, Y, Y, Y, Y, Y, Y, Y, Y, Y, N, N, N, N, Y, N),
    P.ENTITLEMENT_REVOKE:  (N, N, N, N, N, N, N, Y, N, N, N, N, N, N, N, N, N),
}
# fmt: on


def test_every_permission_has_a_row() -> None:
    assert set(TABLE) == set(Permission), f"permissions without a row: {set(Permission) - set(TABLE)}"
    assert all(len(row) == len(COLUMNS) for row in TABLE.values())


def test_every_staff_and_namespace_role_has_a_column() -> None:
    staff = {role for c in CALLERS.values() for role in c.principal.staff}
    assert staff == set(StaffRole) == set(STAFF_GRANTS)
    roles = {c.namespace_role for c in CALLERS.values()} - {None}
    assert roles == {r.value for r in Role} == set(NAMESPACE_GRANTS)


CELLS = [
    pytest.param(permission, column, id=f"{permission.value} by {column}")
    for permission in TABLE
    for column in COLUMNS
]


@pytest.mark.parametrize("permission,column", CELLS)
def test_the_table(permission: Permission, column: str) -> None:
    caller, expected = CALLERS[column], TABLE[permission][COLUMNS.index(column)]
    where = {"namespace_role": caller.namespace_role, "public": caller.public}
    assert allowed(caller.principal, permission, **where) is expected
    if expected:
        require(caller.principal, permission, **where)  # does not raise
    elif caller.principal.is_anonymous:
        with pytest.raises(Unauthenticated):
            require(caller.principal, permission, **where)
    else:
        with pytest.raises(Forbidden) as refused:
            require(caller.principal, permission, **where)
        # Refused for the credential's scopes only when the same caller with every scope would pass.
        everything = Principal(**{**caller.principal.__dict__, "scopes": frozenset(Scope)})
        by_scope = allowed(everything, permission, **where)
        assert ("lacks the" in refused.value.message) is by_scope, refused.value.message
