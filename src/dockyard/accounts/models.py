"""Users, namespaces (personal and organisations), memberships, access tokens and robot accounts."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dockyard.db import Base, utcnow


class Role(StrEnum):
    """Roles in a namespace, each including the ones below it."""

    READER = "reader"  # pull
    MAINTAINER = "maintainer"  # pull + push + delete
    OWNER = "owner"  # + manage members, robots and visibility

    @property
    def rank(self) -> int:
        return {"reader": 1, "maintainer": 2, "owner": 3}[self.value]


class NamespaceKind(StrEnum):
    USER = "user"
    ORG = "org"


class User(Base):
    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    email_verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # Bumped by a password change and by "sign out everywhere": browser sessions and refresh tokens carry
    # the generation they were made in and stop working once it moves on.
    credential_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class StaffGrant(Base):
    """A store-team role held by a user (see authz.StaffRole)."""

    __tablename__ = "staff_grant"
    __table_args__ = (UniqueConstraint("user_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    granted_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    granted_by: Mapped[str] = mapped_column(String(255))


class Namespace(Base):
    __tablename__ = "namespace"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    memberships: Mapped[list[Membership]] = relationship(back_populates="namespace", cascade="all")


class Membership(Base):
    __tablename__ = "membership"
    __table_args__ = (UniqueConstraint("namespace_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespace.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))

    namespace: Mapped[Namespace] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship()


class AccessToken(Base):
    """A personal access token: usable as a password for registry login and the API."""

    __tablename__ = "access_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # The secret is "dyt_<lookup>_<secret>": the lookup part finds the row, the secret is verified by hash.
    lookup: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    # What the token may do: "pull", "push" (registry) and "api" (manage the account through /api/v1).
    scopes: Mapped[str] = mapped_column(String(64), default="pull,push", server_default="pull,push")

    user: Mapped[User] = relationship()


class Robot(Base):
    """An organisation's robot account for CI: logs in as ``<org>+<name>`` with its secret."""

    __tablename__ = "robot"
    __table_args__ = (UniqueConstraint("namespace_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespace.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16), default=Role.READER.value)
    secret_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    namespace: Mapped[Namespace] = relationship()


class TokenPurpose(StrEnum):
    VERIFY = "verify"  # confirm an email address (at sign-up, or a new one)
    RESET = "reset"  # choose a new password


class EmailToken(Base):
    """A single-use link sent by email: only the SHA-256 of its secret is stored, with the address it was
    sent to (a link proves access to that address, and no other)."""

    __tablename__ = "email_token"
    __table_args__ = (Index("ix_email_token_email_purpose_created_at", "email", "purpose", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    email: Mapped[str] = mapped_column(String(320))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class BrowserSession(Base):
    """A signed-in browser: the cookie carries the secret, only its hash is stored, so logging out (or a
    password change, which moves the user's credential generation on) ends it on the server at once."""

    __tablename__ = "browser_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the cookie's secret
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(512), nullable=True)


class LoginFailure(Base):
    """One failed login, kept for the throttle's window: per account, per client address and per both."""

    __tablename__ = "login_failure"
    __table_args__ = (
        Index("ix_login_failure_username_at", "username", "occurred_at"),
        Index("ix_login_failure_ip_at", "ip", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # True while the attempt's password is being checked (counted in advance, see throttle.reserve).
    pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
