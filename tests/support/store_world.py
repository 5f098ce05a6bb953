"""A product on the store: the review world (tests.support.review_world) taken through the real review
(submit, claim, approve with the Critical override, publish), plus a customer with no entitlement yet.

Tiers (tests.support.products): "Community" (free, the server image) and "Enterprise" (paid, server and
agent). ``anonymous=True`` lets anyone pull the Community tier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.accounts.authentication import staff_roles_of
from dockyard.accounts.models import User
from dockyard.authz import Principal
from dockyard.events import Actor
from dockyard.publishing.models import ProductRevision
from dockyard.web.context import AppState
from tests.support.factories import make_user, unique
from tests.support.review_world import World, build_world


def who(session: Session, username: str) -> Principal:
    """The principal of a user (with its store-team roles), as a password login gives it."""
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None, username
    return Principal(
        kind="user", name=username, user_id=user.id, staff=frozenset(staff_roles_of(session, user.id))
    )


def as_user(state: AppState, username: str, fn: Any) -> Any:
    """``fn(services, principal, actor)`` in a committed transaction of its own, as a request runs it."""
    with state.sessions.begin() as s:
        p = who(s, username)
        actor = Actor(user_id=p.user_id, name=p.name, kind="user")
        return fn(state.services(s), p, actor)


def publish(state: AppState, world: World, revision_id: int | None = None) -> None:
    """Submit (when a draft), claim, approve (overriding the Critical finding) and publish a revision."""
    rid = revision_id or world.revision
    u = world.users
    with state.sessions() as s:
        current = s.get(ProductRevision, rid).state
    if current == "draft":
        as_user(state, u["owner"], lambda sv, p, a: sv.reviews.submit(world.org, world.slug, p, a))
    as_user(state, u["reviewer"], lambda sv, p, a: sv.reviews.claim(rid, p, a))
    as_user(
        state,
        u["reviewer"],
        lambda sv, p, a: sv.reviews.approve(rid, p, a, override_reason="zlib is not reachable"),
    )
    as_user(state, u["admin"], lambda sv, p, a: sv.reviews.publish(rid, p, a))


def published_world(state: AppState, feed_dir: Path, *, anonymous: bool = False) -> World:
    """The review world's product live on the store, and a customer (``world.users["customer"]``)."""
    state.jobs  # noqa: B018 - the subscribers wired, as the server does
    world = build_world(state, feed_dir)
    with state.sessions.begin() as s:
        revision = s.get(ProductRevision, world.revision)
        manifest = dict(revision.manifest)
        manifest["tiers"] = [dict(t) for t in manifest["tiers"]]
        manifest["tiers"][0]["anonymous_pulls"] = anonymous
        revision.manifest = manifest
        customer = make_user(s, unique("customer"))
        customer.email = f"{customer.username}@example.org"
        world.users["customer"] = customer.username
    publish(state, world)
    return world


def principal(session: Session, username: str) -> tuple[Principal, Actor]:
    """A signed-in user as the services see one, with the actor its events name."""
    p = who(session, username)
    return p, Actor(user_id=p.user_id, name=username, kind="user")


MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"


def store_path(world: World, image: str = "server") -> str:
    """The store path of one of the world's product images, as customers pull it."""
    return f"store/{world.org}/{world.slug}/{image}"
