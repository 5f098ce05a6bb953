"""Accounts: users, organisations, memberships, personal access tokens, robots, authentication."""

from __future__ import annotations

import datetime as dt
import functools
import re
import secrets
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.accounts.models import (
    AccessToken,
    BrowserSession,
    Membership,
    Namespace,
    NamespaceKind,
    Robot,
    Role,
    User,
)
from dockyard.accounts.passwords import (
    MAX_PASSWORD_LENGTH,
    hash_password,
    hash_secret,
    new_secret,
    verify_password,
    verify_secret,
)
from dockyard.accounts.throttle import LoginThrottle
from dockyard.authz import ALL_SCOPES, REGISTRY_SCOPES, Principal, Scope, parse_scopes
from dockyard.db import utcnow
from dockyard.errors import Conflict, Forbidden, Invalid, LoginFailed, NotFound, Unauthenticated
from dockyard.events import Actor, Event, EventBus, EventTag

# A namespace is the first component of repository names, so it follows that component's grammar.
NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
ROBOT_SEPARATOR = "+"
TOKEN_PREFIX = "dyt_"
MIN_PASSWORD_LENGTH = 8
MAX_TOKEN_DAYS = 3650
SESSION_TTL = dt.timedelta(hours=12)


@functools.cache
def _timing_dummy_hash() -> str:
    return hash_password("no user has this password")


def _int(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) < 19 else None


def validate_password(password: str) -> str:
    if not isinstance(password, str) or not (MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH):
        raise Invalid(
            f"password must have {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
            detail={"field": "password"},
        )
    return password


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
        validate_password(password)
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

    def set_password(self, username: str, password: str, *, actor: Actor | None = None) -> None:
        """Replace a user's password: every browser session and refresh token of the user ends with it."""
        validate_password(password)
        user = self.get_user(username)
        user.password_hash = hash_password(password)
        self._new_generation(user)
        self.bus.publish(
            self.session, Event(EventTag.USER_PASSWORD_CHANGE, actor or Actor.system(), namespace=username)
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

    def revoke_token(self, username: str, token_id: int, *, actor: Actor | None = None) -> None:
        """Revoke one of a user's access tokens."""
        user = self.get_user(username)
        token = self.session.get(AccessToken, token_id) if 0 < token_id < 2**63 else None
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
    # A login is three steps, so that the slow one holds no write lock: check_throttle (reads),
    # verify_credentials (reads; argon2), record_login (writes the audit row and the throttle's count).
    def authenticate(self, username: str, secret: str, *, actor: Actor | None = None) -> Principal:
        """Check a password, a personal access token or a robot secret; records the login either way."""
        ip = actor.ip if actor else None
        self.check_throttle(username, ip)
        return self.record_login(username, self.verify_credentials(username, secret), actor=actor)

    def check_throttle(self, username: str, ip: str | None) -> None:
        """TooManyRequests while this account or address has failed too often (see throttle.py)."""
        LoginThrottle(self.session).check(username, ip)

    def verify_credentials(self, username: str, secret: str) -> Principal | None:
        """The principal these credentials prove, or None. Reads only: the slow argon2 check can run
        outside the request's write transaction."""
        return self._check_credentials(username, secret)

    def record_login(
        self, username: str, principal: Principal | None, *, actor: Actor | None = None
    ) -> Principal:
        """Record a login (or a failed one, then raise LoginFailed)."""
        base = actor or Actor()
        throttle = LoginThrottle(self.session)
        if principal is None:
            throttle.failed(username, base.ip)
            self.bus.publish(
                self.session,
                Event(
                    EventTag.USER_LOGIN_FAILED,
                    Actor(None, username[:64], base.ip, base.user_agent, "anonymous"),
                ),
            )
            raise LoginFailed("invalid username or password")
        throttle.succeeded(username, base.ip)
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
            return self._robot_principal(robot, username, via="robot")
        user = self.session.scalar(select(User).where(User.username == username))
        if user is None or not user.is_active:
            # Spend the same argon2 time as a real check, so response times do not tell which names exist.
            verify_password(_timing_dummy_hash(), secret)
            return None
        if secret.startswith(TOKEN_PREFIX):
            token = self._live_token(secret)
            if token is not None and token.user_id == user.id:
                return self._token_principal(user, token)
        if verify_password(user.password_hash, secret):
            return self._user_principal(user, via="password")
        return None

    def token_principal(self, secret: str) -> Principal | None:
        """The principal of a personal access token given on its own (``Authorization: Bearer dyt_...``)."""
        token = self._live_token(secret) if secret.startswith(TOKEN_PREFIX) else None
        if token is None:
            return None
        user = self.session.get(User, token.user_id)
        if user is None or not user.is_active:
            return None
        return self._token_principal(user, token)

    def _live_token(self, secret: str) -> AccessToken | None:
        lookup, _, raw = secret[len(TOKEN_PREFIX) :].partition("_")
        token = self.session.scalar(select(AccessToken).where(AccessToken.lookup == lookup[:32]))
        if (
            token is not None
            and not token.revoked
            and (token.expires_at is None or token.expires_at > utcnow())
            and verify_secret(token.secret_hash, raw)
        ):
            return token
        return None

    @staticmethod
    def _user_principal(user: User, *, via: str) -> Principal:
        return Principal(
            kind="user",
            name=user.username,
            user_id=user.id,
            is_admin=user.is_admin,
            via=via,
            generation=user.credential_generation or 0,
        )

    @staticmethod
    def _token_principal(user: User, token: AccessToken) -> Principal:
        return Principal(
            kind="user",
            name=user.username,
            user_id=user.id,
            is_admin=user.is_admin,
            via="token",
            token_id=token.id,
            scopes=parse_scopes(token.scopes),
            generation=user.credential_generation or 0,
        )

    @staticmethod
    def _robot_principal(robot: Robot, name: str, *, via: str) -> Principal:
        # A robot pulls (and pushes, as a maintainer); it never manages the account.
        return Principal(kind="robot", name=name, robot_id=robot.id, via=via, scopes=REGISTRY_SCOPES)

    # -- refresh tokens --------------------------------------------------------------------------
    @staticmethod
    def refresh_claims(principal: Principal) -> dict[str, Any]:
        """What a refresh token must carry to be checked again later: the credential that minted it and,
        for users, the credential generation it was minted in."""
        if principal.kind == "robot":
            credential = f"robot:{principal.robot_id}"
        elif principal.token_id is not None:
            credential = f"token:{principal.token_id}"
        else:
            credential = "password"
        return {"cred": credential, "gen": principal.generation}

    def principal_for_refresh(self, subject: str, claims: dict[str, Any]) -> Principal:
        """Re-derive a principal from a refresh token: refused once the credential that minted it is gone
        (token revoked or expired, robot deleted) or the user's credential generation has moved on
        (password changed, signed out everywhere)."""
        credential = str(claims.get("cred") or "")
        kind, _, ident = credential.partition(":")
        if claims.get("kind") == "robot":
            robot = self.session.get(Robot, _int(ident)) if kind == "robot" else None
            if robot is None or robot.id != claims.get("rid"):
                raise Unauthenticated("robot account no longer exists")
            ns = self.session.get(Namespace, robot.namespace_id)
            if ns is None or f"{ns.name}{ROBOT_SEPARATOR}{robot.name}" != subject:
                raise Unauthenticated("robot account no longer exists")
            return self._robot_principal(robot, subject, via="refresh")
        user = self.session.scalar(select(User).where(User.username == subject))
        if user is None or not user.is_active:
            raise Unauthenticated("account no longer active")
        if claims.get("gen") != (user.credential_generation or 0):
            raise Unauthenticated("this refresh token was revoked: log in again")
        if kind == "token":
            token = self.session.get(AccessToken, _int(ident))
            if (
                token is None
                or token.user_id != user.id
                or token.revoked
                or (token.expires_at is not None and token.expires_at <= utcnow())
            ):
                raise Unauthenticated("the access token this refresh token came from is revoked")
            principal = self._token_principal(user, token)
        elif kind == "password":
            principal = self._user_principal(user, via="password")
        else:
            raise Unauthenticated("this refresh token was revoked: log in again")
        return Principal(**{**principal.__dict__, "via": "refresh"})

    # -- browser sessions ------------------------------------------------------------------------
    def start_session(self, principal: Principal, *, actor: Actor | None = None) -> str:
        """A new browser session for a user who has just logged in; returns the cookie's secret."""
        user = self.session.get(User, principal.user_id)
        if user is None or principal.kind != "user":
            raise Unauthenticated("only users sign in to the pages")
        secret = new_secret(32)
        now = utcnow()
        self.session.execute(delete(BrowserSession).where(BrowserSession.expires_at <= now))
        self.session.add(
            BrowserSession(
                id=hash_secret(secret),
                user_id=user.id,
                generation=user.credential_generation or 0,
                created_at=now,
                expires_at=now + SESSION_TTL,
                ip=(actor.ip if actor else None),
                user_agent=((actor.user_agent or "")[:512] or None) if actor else None,
            )
        )
        self.session.flush()
        return secret

    def session_principal(self, secret: str) -> Principal:
        """The user of a live browser session (Unauthenticated once it has ended)."""
        row = self.session.get(BrowserSession, hash_secret(secret)) if secret else None
        if row is None or row.expires_at <= utcnow():
            raise Unauthenticated("login required")
        user = self.session.get(User, row.user_id)
        if user is None or not user.is_active or row.generation != (user.credential_generation or 0):
            raise Unauthenticated("login required")
        return self._user_principal(user, via="session")

    def end_session(self, secret: str) -> None:
        """Log a browser out: its cookie stops working everywhere at once."""
        if secret:
            self.session.execute(delete(BrowserSession).where(BrowserSession.id == hash_secret(secret)))

    def ensure_admin(self, password: str | None) -> str | None:
        """Create the ``admin`` user on first start; returns a generated password when none was given."""
        if self.session.scalar(select(User.id).where(User.username == "admin")) is not None:
            return None
        generated = None
        if not password:
            generated = password = new_secret(18)
        self.create_user("admin", password, is_admin=True)
        return generated
