"""Factories for test data, built through the real services (so every rule applies)."""

from __future__ import annotations

import itertools

from sqlalchemy.orm import Session

from dockyard.accounts.models import User
from dockyard.accounts.services import AccountService
from dockyard.events import EventBus

PASSWORD = "correct-horse-battery"
_counter = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}"


def make_user(
    session: Session,
    username: str | None = None,
    *,
    admin: bool = False,
    staff: tuple[str, ...] = (),
    password: str = PASSWORD,
) -> User:
    """A user; ``admin`` makes them a store-admin, ``staff`` gives other store-team roles."""
    roles = (*staff, "store-admin") if admin else staff
    return AccountService(session, EventBus()).create_user(username or unique("user"), password, staff=roles)


def make_org(
    session: Session,
    name: str | None = None,
    *,
    owner: str | None = None,
    members: dict[str, str] | None = None,
) -> str:
    accounts = AccountService(session, EventBus())
    owner = owner or make_user(session).username
    org = accounts.create_org(name or unique("org"), owner)
    for username, role in (members or {}).items():
        accounts.set_member(org.name, username, role)
    return org.name


def make_robot(session: Session, org: str, name: str | None = None, role: str = "reader") -> tuple[str, str]:
    robot, secret = AccountService(session, EventBus()).create_robot(org, name or unique("bot"), role)
    return f"{org}+{robot.name}", secret
