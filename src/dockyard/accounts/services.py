"""Accounts: users, organisations, memberships, personal access tokens, robots, authentication."""

from __future__ import annotations

import datetime as dt
import functools
import re
import secrets

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.accounts.models import AccessToken, Membership, Namespace, NamespaceKind, Robot, Role, User
from dockyard.accounts.passwords import (
    hash_password,
    hash_secret,
    new_secret,
    verify_password,
    verify_secret,
)
from dockyard.authz import Principal
from dockyard.db import utcnow
from dockyard.errors import Conflict, Forbidden, Invalid, LoginFailed, NotFound, Unauthenticated
from dockyard.events import Actor, Event, EventBus, EventTag

# A namespace is the first component of repository names, so it follows that component's grammar.
NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
ROBOT_SEPARATOR = "+"
TOKEN_PREFIX = "dyt_"


@functools.cache
def _timing_dummy_hash() -> str:
    return hash_password("no user has this password")


def validate_account_name(name: str) -> str:
    if not (2 <= len(name) <= 64) or not NAME_RE.match(name):
        raise Invalid(f"invalid name {name!r}: lowercase letters, digits and . _ - separators, 2-64 chars")
    return name


class AccountService:
    def __init__(self, session: Session, bus: EventBus) -> None:
        self.session = session
        self.bus = bus

    # -- users ---------------------------------------------------------------------------------
    def create_user(
        self,
        username: str,
        password: str,
        *,
        email: str | None = None,
        is_admin: bool = False,
        actor: Actor | None = None,
    ) -> User:
        """Create a user and the personal namespace named after it."""
        validate_account_name(username)
        if len(password) < 8:
            raise Invalid("password must have at least 8 characters")
        self._ensure_name_free(username)
        user = User(username=username, email=email, password_hash=hash_password(password), is_admin=is_admin)
        self.session.add(user)
        ns = Namespace(name=username, kind=NamespaceKind.USER.value)
        self.session.add(ns)
        self.session.flush()
        self.session.add(Membership(namespace_id=ns.id, user_id=user.id, role=Role.OWNER.value))
        self.session.flush()
        self.bus.publish(
            self.session,
            Event(
                EventTag.USER_CREATE, actor or Actor.system(), namespace=username, data={"admin": is_admin}
            ),
        )
        return user

    def set_password(self, username: str, password: str) -> None:
        """Replace a user's password."""
        if len(password) < 8:
            raise Invalid("password must have at least 8 characters")
        self.get_user(username).password_hash = hash_password(password)

    def get_user(self, username: str) -> User:
        """The user called ``username``."""
        user = self.session.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"user {username!r} not found")
        return user

    def list_users(self) -> list[User]:
        """Every user, by name."""
        return list(self.session.scalars(select(User).order_by(User.username)))

    def _ensure_name_free(self, name: str) -> None:
        if self.session.scalar(select(Namespace.id).where(Namespace.name == name)) is not None:
            raise Conflict(f"name {name!r} is taken")

    # -- organisations -------------------------------------------------------------------------
    def create_org(self, name: str, owner: str, *, actor: Actor | None = None) -> Namespace:
        """Create an organisation namespace with ``owner`` as its first owner."""
        validate_account_name(name)
        self._ensure_name_free(name)
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

    def require_owner(self, principal: Principal, namespace: str) -> None:
        """Raise Forbidden unless ``principal`` owns ``namespace`` (or is an administrator)."""
        if principal.is_admin:
            return
        if self.role_in(principal, namespace) != Role.OWNER:
            raise Forbidden(f"only owners of {namespace!r} may do this")

    # -- access tokens -------------------------------------------------------------------------
    def create_token(
        self, username: str, name: str, *, expires_in_days: int | None = None, actor: Actor | None = None
    ) -> tuple[AccessToken, str]:
        """Create a personal access token; the secret is returned once and stored only as a hash."""
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
        )
        self.session.add(token)
        self.session.flush()
        self.bus.publish(
            self.session,
            Event(
                EventTag.USER_TOKEN_CREATE, actor or Actor.system(), namespace=username, data={"name": name}
            ),
        )
        return token, f"{TOKEN_PREFIX}{lookup}_{secret}"

    def list_tokens(self, username: str) -> list[AccessToken]:
        """A user's access tokens (without secrets)."""
        user = self.get_user(username)
        return list(self.session.scalars(select(AccessToken).where(AccessToken.user_id == user.id)))

    def revoke_token(self, username: str, token_id: int, *, actor: Actor | None = None) -> None:
        """Revoke one of a user's access tokens."""
        user = self.get_user(username)
        token = self.session.get(AccessToken, token_id)
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

    # -- authentication ------------------------------------------------------------------------
    def authenticate(self, username: str, secret: str, *, actor: Actor | None = None) -> Principal:
        """Check a password, a personal access token or a robot secret; records the login either way."""
        return self.record_login(username, self.verify_credentials(username, secret), actor=actor)

    def verify_credentials(self, username: str, secret: str) -> Principal | None:
        """The principal these credentials prove, or None. Reads only: the slow argon2 check can run
        outside the request's write transaction."""
        return self._check_credentials(username, secret)

    def record_login(
        self, username: str, principal: Principal | None, *, actor: Actor | None = None
    ) -> Principal:
        """Record a login (or a failed one, then raise LoginFailed)."""
        base = actor or Actor()
        if principal is None:
            self.bus.publish(
                self.session,
                Event(
                    EventTag.USER_LOGIN_FAILED,
                    Actor(None, username[:64], base.ip, base.user_agent, "anonymous"),
                ),
            )
            raise LoginFailed("invalid username or password")
        if principal.token_id is not None:
            self.session.execute(
                update(AccessToken).where(AccessToken.id == principal.token_id).values(last_used_at=utcnow())
            )
        self.bus.publish(
            self.session,
            Event(
                EventTag.USER_LOGIN,
                Actor(principal.user_id, principal.name, base.ip, base.user_agent, principal.kind),
                data={"via": principal.via},
            ),
        )
        return principal

    def _check_credentials(self, username: str, secret: str) -> Principal | None:
        if ROBOT_SEPARATOR in username:
            org, _, name = username.partition(ROBOT_SEPARATOR)
            robot = self.session.scalar(
                select(Robot)
                .join(Namespace, Namespace.id == Robot.namespace_id)
                .where(Namespace.name == org, Robot.name == name)
            )
            if robot is None or not verify_secret(robot.secret_hash, secret):
                return None
            return Principal(kind="robot", name=username, robot_id=robot.id, via="robot")
        user = self.session.scalar(select(User).where(User.username == username))
        if user is None or not user.is_active:
            # Spend the same argon2 time as a real check, so response times do not tell which names exist.
            verify_password(_timing_dummy_hash(), secret)
            return None
        if secret.startswith(TOKEN_PREFIX):
            lookup, _, raw = secret[len(TOKEN_PREFIX) :].partition("_")
            token = self.session.scalar(select(AccessToken).where(AccessToken.lookup == lookup))
            if (
                token is not None
                and token.user_id == user.id
                and not token.revoked
                and (token.expires_at is None or token.expires_at > utcnow())
                and verify_secret(token.secret_hash, raw)
            ):
                return Principal(
                    kind="user",
                    name=user.username,
                    user_id=user.id,
                    is_admin=user.is_admin,
                    via="token",
                    token_id=token.id,
                )
        if verify_password(user.password_hash, secret):
            return Principal(
                kind="user", name=user.username, user_id=user.id, is_admin=user.is_admin, via="password"
            )
        return None

    def principal_for_refresh(self, subject: str, claims: dict) -> Principal:
        """Re-derive a principal from a refresh token, checking the account still exists and is active."""
        if claims.get("kind") == "robot":
            robot = self.session.get(Robot, claims.get("rid"))
            if robot is None:
                raise Unauthenticated("robot account no longer exists")
            return Principal(kind="robot", name=subject, robot_id=robot.id, via="refresh")
        user = self.session.scalar(select(User).where(User.username == subject))
        if user is None or not user.is_active:
            raise Unauthenticated("account no longer active")
        return Principal(
            kind="user", name=user.username, user_id=user.id, is_admin=user.is_admin, via="refresh"
        )

    def ensure_admin(self, password: str | None) -> str | None:
        """Create the ``admin`` user on first start; returns a generated password when none was given."""
        if self.session.scalar(select(User.id).where(User.username == "admin")) is not None:
            return None
        generated = None
        if not password:
            generated = password = new_secret(18)
        self.create_user("admin", password, is_admin=True)
        return generated
