"""Who may do what: principals, credential scopes, store-team roles, permissions and the one check."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from dockyard.errors import Forbidden, Unauthenticated


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


class StaffRole(StrEnum):
    """Global roles of the store team, granted with `dockyard staff grant` or the API."""

    STORE_ADMIN = "store-admin"  # everything (who is staff too) but a publisher's own part: see STAFF_GRANTS
    STORE_REVIEWER = "store-reviewer"  # reviews images and metadata: pulls and reads scans of any repository
    STORE_SUPPORT = "store-support"  # helps customers and publishers: reads the catalogue and the audit log
    FINANCE = "finance"  # reports and payouts


class Permission(StrEnum):
    """Everything that is checked, named ``subject:action``. Grants are the tables below; ``allowed`` is the
    one function that reads them."""

    # a repository (resource: its namespace role, and whether it is public)
    REPOSITORY_PULL = "repository:pull"
    REPOSITORY_PUSH = "repository:push"
    REPOSITORY_DELETE = "repository:delete"
    SCAN_READ = "scan:read"
    SCAN_RESCAN = "scan:rescan"
    # a namespace: see its members and robots (its members); manage them and repository visibility (owners)
    NAMESPACE_READ = "namespace:read"
    NAMESPACE_MANAGE = "namespace:manage"
    # a publisher (resource: the organisation's namespace role): its profile; its products' drafts
    PUBLISHER_MANAGE = "publisher:manage"  # the profile, the agreement (owners)
    PRODUCT_READ = "product:read"  # unpublished revisions, the review thread, their scan results
    PRODUCT_EDIT = "product:edit"  # create and edit drafts, submit, withdraw, answer the thread
    # one's own account
    ACCOUNT_MANAGE = "account:manage"  # password, access tokens, sign out everywhere
    ORG_CREATE = "org:create"
    # store-wide
    CATALOG_READ = "catalog:read"
    REVIEW_DECIDE = "review:decide"  # claim, request changes, approve, reject; internal notes
    PRODUCT_PUBLISH = "product:publish"  # publish, unpublish, override a review
    FINDING_RECLASSIFY = "finding:reclassify"
    AUDIT_READ = "audit:read"
    REPORTS_READ = "reports:read"
    USER_MANAGE = "user:manage"
    STAFF_MANAGE = "staff:manage"
    # the store's customers (issue 10)
    ENTITLEMENT_MANAGE = "entitlement:manage"  # get a free tier, list and cancel one's own entitlements
    ENTITLEMENT_REVOKE = "entitlement:revoke"  # revoke anyone's (store-admins; publishers: PRODUCT_EDIT)
    BADGE_MANAGE = "badge:manage"  # grant and withdraw store badges (store-admin: every permission but own)
    # extend fix due times, decide publishers' VEX statements, see every product's compliance (issue 11)
    COMPLIANCE_MANAGE = "compliance:manage"


P = Permission

# What each namespace role may do within its namespace (each includes the one below it).
NAMESPACE_GRANTS: dict[str, frozenset[Permission]] = {
    "reader": frozenset({P.NAMESPACE_READ, P.REPOSITORY_PULL, P.SCAN_READ, P.PRODUCT_READ}),
    "maintainer": frozenset(
        {
            P.NAMESPACE_READ,
            P.REPOSITORY_PULL,
            P.SCAN_READ,
            P.PRODUCT_READ,
            P.REPOSITORY_PUSH,
            P.REPOSITORY_DELETE,
            P.SCAN_RESCAN,
            P.PRODUCT_EDIT,
        }
    ),
    "owner": frozenset(
        {
            P.NAMESPACE_READ,
            P.REPOSITORY_PULL,
            P.SCAN_READ,
            P.PRODUCT_READ,
            P.REPOSITORY_PUSH,
            P.REPOSITORY_DELETE,
            P.SCAN_RESCAN,
            P.PRODUCT_EDIT,
            P.NAMESPACE_MANAGE,
            P.PUBLISHER_MANAGE,
        }
    ),
}

# What only a publisher's own people do (issue 9): its owners edit the profile and accept the agreement, its
# owners and maintainers edit, submit and withdraw products. The store team reads them and decides; a
# store-admin does not write a publisher's profile or drafts, nor submit or withdraw for it.
PUBLISHER_OWN = frozenset({P.PUBLISHER_MANAGE, P.PRODUCT_EDIT})

# What each store-team role may do everywhere.
STAFF_GRANTS: dict[StaffRole, frozenset[Permission]] = {
    StaffRole.STORE_ADMIN: frozenset(Permission) - PUBLISHER_OWN,
    StaffRole.STORE_REVIEWER: frozenset(
        {
            P.REPOSITORY_PULL,
            P.SCAN_READ,
            P.SCAN_RESCAN,
            P.FINDING_RECLASSIFY,
            P.CATALOG_READ,
            P.PRODUCT_READ,
            P.REVIEW_DECIDE,
            P.COMPLIANCE_MANAGE,
        }
    ),
    StaffRole.STORE_SUPPORT: frozenset({P.CATALOG_READ, P.AUDIT_READ}),
    StaffRole.FINANCE: frozenset({P.REPORTS_READ}),
}

# What any signed-in user may do for themself (robots manage no account).
USER_GRANTS = frozenset({P.ACCOUNT_MANAGE, P.ORG_CREATE, P.ENTITLEMENT_MANAGE})

# What anyone may do to a public repository.
PUBLIC_GRANTS = frozenset({P.REPOSITORY_PULL})

# The credential scope each permission needs: a pull-only token never pushes, whatever its owner may do.
REQUIRED_SCOPE: dict[Permission, Scope] = {
    P.REPOSITORY_PULL: Scope.PULL,
    P.SCAN_READ: Scope.PULL,
    P.CATALOG_READ: Scope.PULL,
    P.REPOSITORY_PUSH: Scope.PUSH,
    P.REPOSITORY_DELETE: Scope.PUSH,
    P.SCAN_RESCAN: Scope.PUSH,
}

# The registry's token actions and the permissions they stand for.
ACTION_PERMISSIONS: dict[str, Permission] = {
    "pull": P.REPOSITORY_PULL,
    "push": P.REPOSITORY_PUSH,
    "delete": P.REPOSITORY_DELETE,
}


@dataclass(frozen=True)
class Principal:
    """An authenticated (or anonymous) caller."""

    kind: str = "anonymous"  # anonymous | user | robot
    name: str = "anonymous"
    user_id: int | None = None
    robot_id: int | None = None
    staff: frozenset[StaffRole] = frozenset()
    via: str = "none"  # password | token | robot | bearer | session | refresh | none
    token_id: int | None = None  # the personal access token used, when one was
    scopes: frozenset[Scope] = ALL_SCOPES  # what the credential used may do (see Scope)
    # The user's credential generation when the credential was checked: refresh tokens carry it.
    generation: int | None = None

    @property
    def is_anonymous(self) -> bool:
        return self.kind == "anonymous"

    @property
    def is_staff(self) -> bool:
        return bool(self.staff)

    @property
    def is_admin(self) -> bool:
        return StaffRole.STORE_ADMIN in self.staff


ANONYMOUS = Principal()


def allowed(
    principal: Principal,
    permission: Permission,
    *,
    namespace_role: str | None = None,
    public: bool = False,
) -> bool:
    """Whether ``principal`` may do ``permission``: granted by its store-team roles, its role in the
    resource's namespace (``namespace_role``), being a signed-in user, or the resource being public; and
    allowed by the scopes of the credential it used. The only function that reads the grant tables."""
    granted = public and permission in PUBLIC_GRANTS
    if not principal.is_anonymous:
        granted = (
            granted
            or any(permission in STAFF_GRANTS[role] for role in principal.staff)
            or permission in NAMESPACE_GRANTS.get(namespace_role or "", frozenset())
            or (principal.kind == "user" and permission in USER_GRANTS)
        )
        if granted and REQUIRED_SCOPE.get(permission, Scope.API) not in principal.scopes:
            return False
    return granted


def require(
    principal: Principal,
    permission: Permission,
    *,
    namespace_role: str | None = None,
    public: bool = False,
) -> None:
    """Unauthenticated for anonymous callers, Forbidden for others, unless ``allowed``."""
    if allowed(principal, permission, namespace_role=namespace_role, public=public):
        return
    if principal.is_anonymous:
        raise Unauthenticated("authentication required")
    scope = REQUIRED_SCOPE.get(permission, Scope.API)
    if scope not in principal.scopes and allowed(
        replace(principal, scopes=ALL_SCOPES), permission, namespace_role=namespace_role, public=public
    ):
        raise Forbidden(f"this credential lacks the {scope.value!r} scope")
    raise Forbidden(f"not allowed: {permission.value}")


def require_authenticated(principal: Principal) -> None:
    if principal.is_anonymous:
        raise Unauthenticated("authentication required")


def require_scope(principal: Principal, scope: Scope) -> None:
    """Forbidden unless the credential in use carries ``scope``."""
    require_authenticated(principal)
    if scope not in principal.scopes:
        raise Forbidden(f"this credential lacks the {scope.value!r} scope")
