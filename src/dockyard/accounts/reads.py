"""What the account pages show, read in one go as plain values (templates render them after the
database work is done): a user's settings, the organisations they belong to, one organisation."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard.accounts.models import (
    AccessToken,
    EmailToken,
    Membership,
    Namespace,
    NamespaceKind,
    Robot,
    Role,
    TokenPurpose,
    User,
)
from dockyard.authz import Permission, Principal, allowed
from dockyard.db import utcnow
from dockyard.errors import NotFound


@dataclass(frozen=True)
class TokenRow:
    id: int
    name: str
    scopes: list[str]
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    expires_at: dt.datetime | None

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()


@dataclass(frozen=True)
class AccountSettings:
    username: str
    email: str | None
    email_verified: bool
    pending_email: str | None  # a new address asked for, awaiting its link
    created_at: dt.datetime
    tokens: list[TokenRow]


@dataclass(frozen=True)
class OrgSummary:
    id: int
    name: str
    role: str
    members: int
    created_at: dt.datetime


@dataclass(frozen=True)
class RobotRow:
    name: str
    role: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None


@dataclass(frozen=True)
class Organisation:
    id: int
    name: str
    created_at: dt.datetime
    role: str | None  # the viewer's role (None: a store-admin who is no member)
    can_manage: bool
    members: list[tuple[str, str]]  # (username, role), by name
    robots: list[RobotRow]

    @property
    def owners(self) -> int:
        return sum(1 for _, role in self.members if role == Role.OWNER)


class AccountReads:
    def __init__(self, session: Session) -> None:
        self.session = session

    def settings_of(self, username: str) -> AccountSettings:
        """A user's profile, pending address change and live access tokens (newest first)."""
        user = self.session.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"user {username!r} not found")
        pending = self.session.scalar(
            select(EmailToken.email)
            .where(
                EmailToken.user_id == user.id,
                EmailToken.purpose == TokenPurpose.VERIFY.value,
                EmailToken.used_at.is_(None),
                EmailToken.expires_at > utcnow(),
                EmailToken.email != (user.email or "").lower(),
            )
            .order_by(EmailToken.created_at.desc())
            .limit(1)
        )
        tokens = self.session.scalars(
            select(AccessToken)
            .where(AccessToken.user_id == user.id, AccessToken.revoked.is_(False))
            .order_by(AccessToken.created_at.desc(), AccessToken.id.desc())
        )
        return AccountSettings(
            username=user.username,
            email=user.email,
            email_verified=user.email_verified_at is not None,
            pending_email=pending,
            created_at=user.created_at,
            tokens=[
                TokenRow(t.id, t.name, t.scopes.split(","), t.created_at, t.last_used_at, t.expires_at)
                for t in tokens
            ],
        )

    def organisations_of(self, username: str) -> list[OrgSummary]:
        """The organisations ``username`` belongs to, with their role and the member count, by name."""
        members = (
            select(Membership.namespace_id, func.count().label("n"))
            .group_by(Membership.namespace_id)
            .subquery()
        )
        rows = self.session.execute(
            select(Namespace.id, Namespace.name, Membership.role, members.c.n, Namespace.created_at)
            .join(Membership, Membership.namespace_id == Namespace.id)
            .join(User, User.id == Membership.user_id)
            .join(members, members.c.namespace_id == Namespace.id)
            .where(User.username == username, Namespace.kind == NamespaceKind.ORG.value)
            .order_by(Namespace.name)
        )
        return [OrgSummary(i, name, role, int(n), created) for i, name, role, n, created in rows]

    def org_id(self, name: str) -> int | None:
        """The id of the organisation (not a personal namespace) called ``name``; None when none is."""
        return self.session.scalar(
            select(Namespace.id).where(Namespace.name == name, Namespace.kind == NamespaceKind.ORG.value)
        )

    def namespace(self, name: str) -> tuple[int, str] | None:
        """The id and kind ("user" or "org") of the namespace called ``name``; None when there is none."""
        row = self.session.execute(select(Namespace.id, Namespace.kind).where(Namespace.name == name)).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def username(self, user_id: int) -> str | None:
        """The name of the user with id ``user_id``."""
        return self.session.scalar(select(User.username).where(User.id == user_id))

    def namespace_name(self, namespace_id: int) -> str | None:
        """The name of the namespace with id ``namespace_id``."""
        return self.session.scalar(select(Namespace.name).where(Namespace.id == namespace_id))

    def organisation(self, name: str, viewer: Principal) -> Organisation:
        """One organisation as ``viewer`` may see it: NotFound, as for one that does not exist, unless the
        viewer is a member (or store staff allowed to manage every namespace)."""
        ns = self.session.scalar(
            select(Namespace).where(Namespace.name == name, Namespace.kind == NamespaceKind.ORG.value)
        )
        role = None
        if ns is not None and viewer.user_id is not None:
            role = self.session.scalar(
                select(Membership.role).where(
                    Membership.namespace_id == ns.id, Membership.user_id == viewer.user_id
                )
            )
        if ns is None or not allowed(viewer, Permission.NAMESPACE_READ, namespace_role=role):
            raise NotFound(f"organisation {name!r} not found")
        members = self.session.execute(
            select(User.username, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.namespace_id == ns.id)
            .order_by(User.username)
        )
        robots = self.session.scalars(select(Robot).where(Robot.namespace_id == ns.id).order_by(Robot.name))
        return Organisation(
            id=ns.id,
            name=ns.name,
            created_at=ns.created_at,
            role=role,
            can_manage=allowed(viewer, Permission.NAMESPACE_MANAGE, namespace_role=role),
            members=[(u, r) for u, r in members],
            robots=[RobotRow(r.name, r.role, r.created_at, r.last_used_at) for r in robots],
        )
