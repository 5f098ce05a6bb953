"""The review world (tests.support.review_world) with its product taken through review and published by
the real services, so that the store has a live product: listing, store paths, entitlements."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.accounts.authentication import staff_roles_of
from dockyard.accounts.models import User
from dockyard.authz import Principal
from dockyard.events import Actor
from dockyard.web.context import AppState
from tests.support.review_world import World, build_world


def principal(session: Session, username: str) -> tuple[Principal, Actor]:
    """A signed-in user as the services see one, with the actor its events name."""
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None, username
    p = Principal(
        kind="user", name=username, user_id=user.id, staff=frozenset(staff_roles_of(session, user.id))
    )
    return p, Actor(user_id=user.id, name=username, kind="user")


def publish(state: AppState, world: World, revision_id: int | None = None) -> int:
    """Submit, claim, approve (with the override the world's Critical finding needs) and publish a revision
    of the world's product, each step committed as a request would be; returns the revision's id."""
    rid = revision_id or world.revision
    steps = [
        ("maintainer", lambda r, p, a: r.submit(world.org, world.slug, p, a, "ready")),
        ("reviewer", lambda r, p, a: r.claim(rid, p, a)),
        ("reviewer", lambda r, p, a: r.approve(rid, p, a, override_reason="not reachable in this image")),
        ("admin", lambda r, p, a: r.publish(rid, p, a)),
    ]
    for role, step in steps:
        with state.sessions.begin() as s:
            p, actor = principal(s, world.users[role])
            step(state.services(s).reviews, p, actor)
    return rid


def published_world(state: AppState, feed_dir: Path) -> World:
    """build_world, then its product published."""
    state.jobs  # noqa: B018 - the subscribers wired, as the server does
    world = build_world(state, feed_dir)
    publish(state, world)
    return world
