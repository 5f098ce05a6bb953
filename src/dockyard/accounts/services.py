"""Accounts: users, organisations, memberships, personal access tokens, robots, authentication."""

from __future__ import annotations

import datetime as dt
import re
import secrets

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.accounts.authentication import TOKEN_PREFIX, Authentication, staff_roles_of
from dockyard.accounts.credential_cache import VerifiedPasswords
from dockyard.accounts.models import (
    AccessToken,
    BrowserSession,
    Membership,
    Namespace,
    NamespaceKind,
    Robot,
    Role,
    StaffGrant,
    User,
)
from dockyard.accounts.passwords import (
    MAX_PASSWORD_LENGTH,
    hash_password,
    hash_secret,
    new_secret,
)
from dockyard.authz import (
    ALL_SCOPES,
    REGISTRY_SCOPES,
    Permission,
    Principal,
    Scope,
    StaffRole,
    allowed,
    require,
)
from dockyard.db import MAX_ID, utcnow
from dockyard.errors import Conflict, Invalid, NotFound
from dockyard.events import Actor, Event, EventBus, EventTag

# A namespace is the first component of repository names, so it follows that component's grammar.
NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
MIN_PASSWORD_LENGTH = 8
MAX_TOKEN_DAYS = 3650


def _staff_role(role: str) -> StaffRole:
    try:
        return StaffRole(role)
    except ValueError as exc:
        raise Invalid(f"staff role must be one of {', '.join(r.value for r in StaffRole)}") from exc


def validate_password(password: str) -> str:
    if not isinstance(password, str) or not (MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH):
        raise Invalid(
            f"password must have {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
            detail={"field": "password"},
        )
    if password.startswith(TOKEN_PREFIX):  # such a secret is checked as an access token, never a password
        raise Invalid(f"a password cannot start with {TOKEN_PREFIX!r}", detail={"field": "password"})
    if "\x00" in password:  # logins refuse NUL characters (web.identity.login): it could never be used
        raise Invalid("a password cannot contain NUL characters", detail={"field": "password"})
    return password


# Namespaces the store's own addresses use: /v2/store/... is where customers pull, and the storefront's
# pages live at /products, /publishers and /search. No user or organisation may take them.
STORE_NAMES = frozenset({"store", "products", "publishers", "search"})
# Names a stranger must not take (signing up, or creating an organisation, which may then become a
# publisher): they would pass for the store itself in a repository name or on the store's pages.
RESERVED_NAMES = frozenset(
    {"admin", "administrator", "root", "dockyard", "staff", "support", "security", "system", "abuse"}
    | {"postmaster", "webmaster", "help", "api", "www", "ui", "v2", "static", "library", "official"}
    | STORE_NAMES
)


def validate_account_name(name: str) -> str:
    if not (2 <= len(name) <= 64) or not NAME_RE.match(name):
        raise Invalid(f"invalid name {name!r}: lowercase letters, digits and . _ - separators, 2-64 chars")
    return name


class AccountService(Authentication):
    def __init__(self, session: Session, bus: EventBus, verified: VerifiedPasswords | None = None) -> None:
        self.session = session
        self.bus = bus
        self.verified = verified

    # -- users ---------------------------------------------------------------------------------
    def create_user(
        self,
        username: str,
        password: str,
        *,
        email: str | None = None,
        staff: tuple[str, ...] = (),
        email_verified: bool = True,
        actor: Actor | None = None,
    ) -> User:
        """Create a user and the personal namespace named after it. Users an administrator makes count as
        verified; sign-up (selfservice.py) makes them unverified until their link is opened."""
        validate_account_name(username)
        validate_password(password)
        self._ensure_name_free(username)
        roles = [_staff_role(r) for r in staff]
        user = User(
            username=username,
            email=email,
            password_hash=hash_password(password),
            email_verified_at=utcnow() if email_verified else None,
        )
        self.session.add(user)
        ns = Namespace(name=username, kind=NamespaceKind.USER.value)
        self.session.add(ns)
        self.session.flush()
        self.session.add(Membership(namespace_id=ns.id, user_id=user.id, role=Role.OWNER.value))
        self.session.flush()
        self.bus.publish(
            self.session,
            Event(
                EventTag.USER_CREATE,
                actor or Actor.system(),
                namespace=username,
                data={"staff": [r.value for r in roles], **({} if email_verified else {"signup": True})},
            ),
        )
        for role in roles:
            self.grant_staff(username, role, actor=actor)
        return user

    def set_password(
        self, username: str, password: str, *, via: str = "admin", actor: Actor | None = None
    ) -> None:
        """Replace a user's password: every browser session and refresh token of the user ends with it.
        ``via`` (admin, account, reset) says how, in the event (and the notice mailed to the user)."""
        validate_password(password)
        user = self.get_user(username)
        user.password_hash = hash_password(password)
        self._new_generation(user)
        self.bus.publish(
            self.session,
            Event(
                EventTag.USER_PASSWORD_CHANGE,
                actor or Actor.system(),
                namespace=username,
                data={"via": via},
            ),
        )

    def sign_out_everywhere(self, username: str, *, actor: Actor | None = None) -> None:
        """End every browser session and refresh token of the user (access tokens and robots stay)."""
        self._new_generation(self.get_user(username))
        self.bus.publish(
            self.session,
            Event(EventTag.USER_SIGN_OUT_EVERYWHERE, actor or Actor.system(), namespace=username),
        )

    def _new_generation(self, user: User) -> None:
        user.credential_generation = (user.credential_generation or 0) + 1
        self.session.execute(delete(BrowserSession).where(BrowserSession.user_id == user.id))
        self.session.flush()

    def get_user(self, username: str) -> User:
        """The user called ``username``."""
        user = self.session.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"user {username!r} not found")
        return user

    def list_users(self) -> list[User]:
        """Every user, by name."""
        return list(self.session.scalars(select(User).order_by(User.username)))

    def _ensure_name_free(self, name: str, reserved: frozenset[str] = STORE_NAMES) -> None:
        if name in reserved:
            raise Conflict(f"name {name!r} is reserved for the store")
        if self.session.scalar(select(Namespace.id).where(Namespace.name == name)) is not None:
            raise Conflict(f"name {name!r} is taken")

    # -- organisations -------------------------------------------------------------------------
    def create_org(self, name: str, owner: str, *, actor: Actor | None = None) -> Namespace:
        """Create an organisation namespace with ``owner`` as its first owner."""
        validate_account_name(name)
        # Users are created by sign-up (which refuses every reserved name) or by an administrator (who may
        # name one "admin"); an organisation is anyone's to create, so it gets the whole list here.
        self._ensure_name_free(name, RESERVED_NAMES)
        user = self.get_user(owner)
        ns = Namespace(name=name, kind=NamespaceKind.ORG.value)
        self.session.add(ns)
        try:
            self.session.flush()
        except IntegrityError as exc:
            raise Conflict(f"name {name!r} is taken") from exc
        self.session.add(Membership(namespace_id=ns.id, user_id=user.id, role=Role.OWNER.value))
        self.session.flush()
        self.bus.publish(self.session, Event(EventTag.ORG_CREATE, actor or Actor.system(), namespace=name))
        return ns

    def get_namespace(self, name: str) -> Namespace:
        """The namespace (personal or organisation) called ``name``."""
        ns = self.session.scalar(select(Namespace).where(Namespace.name == name))
        if ns is None:
            raise NotFound(f"namespace {name!r} not found")
        return ns

    def set_member(self, org: str, username: str, role: str, *, actor: Actor | None = None) -> Membership:
        """Add ``username`` to ``org`` in ``role`` or change their role."""
        try:
            role = Role(role).value
        except ValueError as exc:
            raise Invalid(f"role must be one of {', '.join(r.value for r in Role)}") from exc
        ns = self._org(org)
        user = self.get_user(username)
        membership = self.session.scalar(
            select(Membership).where(Membership.namespace_id == ns.id, Membership.user_id == user.id)
        )
        if membership is None:
            membership = Membership(namespace_id=ns.id, user_id=user.id, role=role)
            self.session.add(membership)
        else:
            if membership.role == Role.OWNER and role != Role.OWNER:
                self._keep_an_owner(ns, user.id)
            membership.role = role
        self.session.flush()
        self.bus.publish(
            self.session,
            Event(
                EventTag.ORG_MEMBER_SET,
                actor or Actor.system(),
                namespace=org,
                data={"user": username, "role": role},
            ),
        )
        return membership

    def remove_member(self, org: str, username: str, *, actor: Actor | None = None) -> None:
        """Remove ``username`` from ``org`` (the last owner cannot leave)."""
        ns = self._org(org)
        user = self.get_user(username)
        membership = self.session.scalar(
            select(Membership).where(Membership.namespace_id == ns.id, Membership.user_id == user.id)
        )
        if membership is None:
            raise NotFound(f"{username!r} is not a member of {org!r}")
        if membership.role == Role.OWNER:
            self._keep_an_owner(ns, user.id)
        self.session.delete(membership)
        self.session.flush()
        self.bus.publish(
            self.session,
            Event(
                EventTag.ORG_MEMBER_REMOVE, actor or Actor.system(), namespace=org, data={"user": username}
            ),
        )

    def _keep_an_owner(self, ns: Namespace, leaving_user_id: int) -> None:
        owners = self.session.scalars(
            select(Membership.user_id).where(Membership.namespace_id == ns.id, Membership.role == Role.OWNER)
        ).all()
        if set(owners) <= {leaving_user_id}:
            raise Conflict("an organisation must keep at least one owner")

    def _org(self, name: str) -> Namespace:
        ns = self.get_namespace(name)
        if ns.kind != NamespaceKind.ORG:
            raise Invalid(f"{name!r} is a personal namespace, not an organisation")
        return ns

    def members(self, name: str) -> list[tuple[str, str]]:
        """(username, role) of every member of a namespace."""
        ns = self.get_namespace(name)
        rows = self.session.execute(
            select(User.username, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.namespace_id == ns.id)
            .order_by(User.username)
        )
        return [(u, r) for u, r in rows]

    def role_in(self, principal: Principal, namespace: str) -> str | None:
        """The role ``principal`` holds in ``namespace``, None when it has none."""
        if principal.kind == "user" and principal.user_id is not None:
            return self.session.scalar(
                select(Membership.role)
                .join(Namespace, Namespace.id == Membership.namespace_id)
                .where(Namespace.name == namespace, Membership.user_id == principal.user_id)
            )
        if principal.kind == "robot" and principal.robot_id is not None:
            return self.session.scalar(
                select(Robot.role)
                .join(Namespace, Namespace.id == Robot.namespace_id)
                .where(Robot.id == principal.robot_id, Namespace.name == namespace)
            )
        return None

    def roles_of(self, principal: Principal) -> list[tuple[Namespace, str]]:
        """The namespaces ``principal`` holds a role in, with the role: a user's own first, then by name."""
        if principal.kind == "user" and principal.user_id is not None:
            query = (
                select(Namespace, Membership.role)
                .join(Membership, Membership.namespace_id == Namespace.id)
                .where(Membership.user_id == principal.user_id)
            )
        elif principal.kind == "robot" and principal.robot_id is not None:
            query = (
                select(Namespace, Robot.role)
                .join(Robot, Robot.namespace_id == Namespace.id)
                .where(Robot.id == principal.robot_id)
            )
        else:
            return []
        rows = [(ns, role) for ns, role in self.session.execute(query)]
        return sorted(rows, key=lambda row: (row[0].name != principal.name, row[0].name))

    def require(self, principal: Principal, permission: Permission, *, namespace: str | None = None) -> None:
        """authz.require, with ``principal``'s role in ``namespace`` looked up (when one is named)."""
        role = self.role_in(principal, namespace) if namespace is not None else None
        require(principal, permission, namespace_role=role)

    def allowed(self, principal: Principal, permission: Permission, *, namespace: str | None = None) -> bool:
        role = self.role_in(principal, namespace) if namespace is not None else None
        return allowed(principal, permission, namespace_role=role)

    # -- the store team ------------------------------------------------------------------------
    def grant_staff(self, username: str, role: str, *, actor: Actor | None = None) -> None:
        """Give ``username`` a store-team role (idempotent)."""
        staff_role = _staff_role(role)
        user = self.get_user(username)
        held = self.session.scalar(
            select(StaffGrant.id).where(StaffGrant.user_id == user.id, StaffGrant.role == staff_role.value)
        )
        if held is None:
            by = (actor or Actor.system()).name
            self.session.add(StaffGrant(user_id=user.id, role=staff_role.value, granted_by=by[:255]))
            self.session.flush()
            self.bus.publish(
                self.session,
                Event(
                    EventTag.STAFF_GRANT,
                    actor or Actor.system(),
                    namespace=username,
                    data={"user": username, "role": staff_role.value},
                ),
            )

    def revoke_staff(self, username: str, role: str, *, actor: Actor | None = None) -> None:
        """Take a store-team role away; the last store-admin cannot be removed."""
        staff_role = _staff_role(role)
        user = self.get_user(username)
        grant = self.session.scalar(
            select(StaffGrant).where(StaffGrant.user_id == user.id, StaffGrant.role == staff_role.value)
        )
        if grant is None:
            raise NotFound(f"{username!r} is not {staff_role.value}")
        if staff_role is StaffRole.STORE_ADMIN:
            admins = self.session.scalar(
                select(func.count()).where(StaffGrant.role == StaffRole.STORE_ADMIN.value)
            )
            if (admins or 0) <= 1:
                raise Conflict("the store must keep at least one store-admin")
        self.session.delete(grant)
        self.session.flush()
        self.bus.publish(
            self.session,
            Event(
                EventTag.STAFF_REVOKE,
                actor or Actor.system(),
                namespace=username,
                data={"user": username, "role": staff_role.value},
            ),
        )

    def staff(self) -> list[tuple[str, str]]:
        """(username, role) of every store-team grant."""
        rows = self.session.execute(
            select(User.username, StaffGrant.role)
            .join(StaffGrant, StaffGrant.user_id == User.id)
            .order_by(User.username, StaffGrant.role)
        )
        return [(u, r) for u, r in rows]

    def staff_roles(self, user_id: int) -> frozenset[StaffRole]:
        return staff_roles_of(self.session, user_id)

    # -- access tokens -------------------------------------------------------------------------
    def create_token(
        self,
        username: str,
        name: str,
        *,
        expires_in_days: int | None = None,
        scopes: frozenset[Scope] = REGISTRY_SCOPES,
        actor: Actor | None = None,
    ) -> tuple[AccessToken, str]:
        """Create a personal access token; the secret is returned once and stored only as a hash."""
        if expires_in_days is not None and (
            isinstance(expires_in_days, bool)
            or not isinstance(expires_in_days, int)
            or not 1 <= expires_in_days <= MAX_TOKEN_DAYS
        ):
            raise Invalid(
                f"expires_in_days must be a whole number of days from 1 to {MAX_TOKEN_DAYS}",
                detail={"field": "expires_in_days"},
            )
        if not scopes or not scopes <= ALL_SCOPES:
            raise Invalid("a token needs at least one known scope", detail={"field": "scopes"})
        user = self.get_user(username)
        lookup = secrets.token_hex(8)
        secret = new_secret()
        expires = utcnow() + dt.timedelta(days=expires_in_days) if expires_in_days else None
        token = AccessToken(
            user_id=user.id,
            name=name[:100] or "token",
            lookup=lookup,
            secret_hash=hash_secret(secret),
            expires_at=expires,
            scopes=",".join(sorted(scopes)),
        )
        self.session.add(token)
        self.session.flush()
        self.bus.publish(
            self.session,
            Event(
                EventTag.USER_TOKEN_CREATE,
                actor or Actor.system(),
                namespace=username,
                data={"name": name, "scopes": sorted(scopes)},
            ),
        )
        return token, f"{TOKEN_PREFIX}{lookup}_{secret}"

    def list_tokens(self, username: str) -> list[AccessToken]:
        """A user's access tokens (without secrets)."""
        user = self.get_user(username)
        return list(self.session.scalars(select(AccessToken).where(AccessToken.user_id == user.id)))

    def revoke_token(self, username: str, token_id: int, *, actor: Actor | None = None) -> AccessToken:
        """Revoke one of a user's access tokens."""
        user = self.get_user(username)
        token = self.session.get(AccessToken, token_id) if 0 < token_id <= MAX_ID else None
        if token is None or token.user_id != user.id:
            raise NotFound("token not found")
        token.revoked = True
        self.bus.publish(
            self.session,
            Event(
                EventTag.USER_TOKEN_REVOKE,
                actor or Actor.system(),
                namespace=username,
                data={"name": token.name},
            ),
        )
        return token

    # -- robots --------------------------------------------------------------------------------
    def create_robot(
        self, org: str, name: str, role: str = Role.READER.value, *, actor: Actor | None = None
    ) -> tuple[Robot, str]:
        """Create a robot account ``<org>+<name>``; its secret is returned once."""
        validate_account_name(name)
        if role not in (Role.READER, Role.MAINTAINER):
            raise Invalid("a robot's role is reader or maintainer")
        ns = self._org(org)
        if self.session.scalar(select(Robot.id).where(Robot.namespace_id == ns.id, Robot.name == name)):
            raise Conflict(f"robot {org}+{name} exists")
        secret = new_secret(32)
        robot = Robot(namespace_id=ns.id, name=name, role=role, secret_hash=hash_secret(secret))
        self.session.add(robot)
        self.session.flush()
        self.bus.publish(
            self.session,
            Event(
                EventTag.ROBOT_CREATE,
                actor or Actor.system(),
                namespace=org,
                data={"robot": name, "role": role},
            ),
        )
        return robot, secret

    def list_robots(self, org: str) -> list[Robot]:
        """An organisation's robot accounts."""
        ns = self._org(org)
        return list(
            self.session.scalars(select(Robot).where(Robot.namespace_id == ns.id).order_by(Robot.name))
        )

    def delete_robot(self, org: str, name: str, *, actor: Actor | None = None) -> None:
        """Delete a robot account; its secret stops working at once."""
        ns = self._org(org)
        robot = self.session.scalar(select(Robot).where(Robot.namespace_id == ns.id, Robot.name == name))
        if robot is None:
            raise NotFound(f"robot {org}+{name} not found")
        self.session.delete(robot)
        self.bus.publish(
            self.session,
            Event(EventTag.ROBOT_DELETE, actor or Actor.system(), namespace=org, data={"robot": name}),
        )

    def ensure_admin(self, password: str | None) -> str | None:
        """Create the ``admin`` user on first start; returns a generated password when none was given."""
        if self.session.scalar(select(User.id).where(User.username == "admin")) is not None:
            return None
        generated = None
        if not password:
            generated = password = new_secret(18)
        self.create_user("admin", password, staff=(StaffRole.STORE_ADMIN.value,))
        return generated
