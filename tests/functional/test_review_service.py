"""ReviewService on a real database, registry and scanner: every move of the back and forth, the refused
ones, who sees what (other publishers, customers, internal notes), the Critical-finding override, and pins
that later pushes do not change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.support.review_world import CVE, World, build_world
from tests.support.scanimages import Images, file_layer

from dockyard.accounts.models import User
from dockyard.audit.models import AuditEvent
from dockyard.authz import Principal
from dockyard.errors import Conflict, Forbidden, Invalid, NotFound
from dockyard.events import Actor
from dockyard.moderation.services import ReviewService
from dockyard.publishing.manifest import ManifestInvalid
from dockyard.publishing.models import Product, ProductRevision, Publisher, RevisionTransition
from dockyard.web.context import AppState


@pytest.fixture
def world(app_state: AppState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    app_state.jobs  # noqa: B018 - the subscribers (mail) wired, as the server does
    return build_world(app_state, tmp_path / "feed")


def who(session: Session, username: str) -> Principal:
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None
    from dockyard.accounts.authentication import staff_roles_of

    return Principal(
        kind="user", name=username, user_id=user.id, staff=frozenset(staff_roles_of(session, user.id))
    )


class Run:
    """Each call in a transaction of its own, committed (as requests are)."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    def __call__(
        self, role_or_name: str, fn: Callable[[ReviewService, Principal, Actor], Any], world: World
    ) -> Any:
        name = world.users.get(role_or_name, role_or_name)
        with self.state.sessions.begin() as s:
            p = who(s, name)
            actor = Actor(user_id=p.user_id, name=p.name, kind="user")
            result = fn(self.state.services(s).reviews, p, actor)
            if isinstance(result, ProductRevision):
                return {
                    "id": result.id,
                    "state": result.state,
                    "pins": result.pins,
                    "reason": result.override_reason,
                }
            return result


@pytest.fixture
def run(app_state: AppState) -> Run:
    return Run(app_state)


def state_of(state: AppState, revision_id: int) -> str:
    with state.sessions() as s:
        return s.get(ProductRevision, revision_id).state


def edit(state: AppState, revision_id: int, **changes: Any) -> None:
    """What the product service's update_draft does to an editable revision (STAND-IN)."""
    with state.sessions.begin() as s:
        revision = s.get(ProductRevision, revision_id)
        revision.manifest = {**revision.manifest, **changes}


def test_the_back_and_forth_from_draft_to_published(run: Run, world: World, app_state: AppState) -> None:
    org, slug, rid = world.org, world.slug, world.revision
    assert (
        run("maintainer", lambda r, p, a: r.submit(org, slug, p, a, "first go"), world)["state"]
        == "submitted"
    )
    assert run("reviewer", lambda r, p, a: r.claim(rid, p, a), world)["state"] == "in_review"
    # Another reviewer may not decide what one claimed; the store-admin may (the override).
    with pytest.raises(Conflict, match="claimed by"):
        run("reviewer2", lambda r, p, a: r.approve(rid, p, a, override_reason="x"), world)
    with pytest.raises(Invalid, match="needs a comment"):
        run("reviewer", lambda r, p, a: r.request_changes(rid, p, a, ""), world)
    run("reviewer", lambda r, p, a: r.request_changes(rid, p, a, "Shorten the short description."), world)
    assert state_of(app_state, rid) == "changes_requested"
    edit(app_state, rid, short_description="Fast SQL.")
    assert run("owner", lambda r, p, a: r.submit(org, slug, p, a), world)["state"] == "resubmitted"
    run("reviewer", lambda r, p, a: r.claim(rid, p, a), world)
    # The server image has an open Critical finding: approving needs a reason.
    with pytest.raises(Invalid, match="override reason") as refused:
        run("reviewer", lambda r, p, a: r.approve(rid, p, a), world)
    assert refused.value.detail[0]["field"] == "override_reason"
    approved = run(
        "reviewer", lambda r, p, a: r.approve(rid, p, a, override_reason="zlib is not reachable"), world
    )
    assert approved["state"] == "approved" and approved["reason"] == "zlib is not reachable"
    assert approved["pins"] == {
        "server": {"repository": f"{org}/db-server", "tags": {"16": world.server}},
        "agent": {"repository": f"{org}/db-agent", "tags": {"1.4": world.agent}},
    }
    with pytest.raises(Forbidden, match="only store-admins may publish"):
        run("reviewer", lambda r, p, a: r.publish(rid, p, a), world)
    assert run("admin", lambda r, p, a: r.publish(rid, p, a), world)["state"] == "published"
    with app_state.sessions() as s:
        product = s.get(ProductRevision, rid).product
        assert (product.live_revision_id, product.working_revision_id) == (rid, None)
        moves = [
            (t.from_state, t.to_state, t.actor_name)
            for t in s.scalars(
                select(RevisionTransition)
                .where(RevisionTransition.revision_id == rid)
                .order_by(RevisionTransition.id)
            )
        ]
        assert [m[1] for m in moves] == [
            "submitted",
            "in_review",
            "changes_requested",
            "resubmitted",
            "in_review",
            "approved",
            "published",
        ]
        assert moves[0][2] == world.users["maintainer"] and moves[-1][2] == world.users["admin"]
        events = {e.tag: e for e in s.scalars(select(AuditEvent).where(AuditEvent.namespace == org))}
        approve = events["revision:approve"]
        assert approve.data["override_reason"] == "zlib is not reachable"
        assert approve.data["critical"] == [f"server@{world.server}/{CVE}"]
        assert approve.actor_name == world.users["reviewer"]
        assert events["revision:request_changes"].data["comment"] == "Shorten the short description."
        assert events["product:publish"].data["pins"]["server"]["tags"] == {"16": world.server}


def test_pins_stay_after_a_later_push_and_the_live_revision_stays_live_while_the_next_is_reviewed(
    run: Run, world: World, app_state: AppState
) -> None:
    org, slug, rid = world.org, world.slug, world.revision
    run("owner", lambda r, p, a: r.submit(org, slug, p, a), world)
    run("reviewer", lambda r, p, a: r.claim(rid, p, a), world)
    run("reviewer", lambda r, p, a: r.approve(rid, p, a, override_reason="accepted"), world)
    run("admin", lambda r, p, a: r.publish(rid, p, a), world)
    with app_state.sessions.begin() as s:
        newer = Images(s, app_state.blobs, app_state.bus).image(
            f"{org}/db-agent", "1.4", [file_layer("a", "v2")]
        )
    assert newer.digest != world.agent
    with app_state.sessions() as s:
        revision = s.get(ProductRevision, rid)
        assert revision.pins["agent"]["tags"]["1.4"] == world.agent  # what customers get did not move
        view = app_state.services(s).reviews.review(rid, who(s, world.users["owner"]))
        assert {i.name: i.tags for i in view.images}["agent"] == {"1.4": world.agent}
    # A second revision is edited and reviewed while the first stays live.
    with app_state.sessions.begin() as s:
        product = s.get(ProductRevision, rid).product
        second = ProductRevision(
            product_id=product.id, number=2, state="draft", manifest=dict(product.live_revision.manifest)
        )
        s.add(second)
        s.flush()
        product.working_revision_id = second.id
        second_id = second.id
    run("owner", lambda r, p, a: r.submit(org, slug, p, a), world)
    run("reviewer", lambda r, p, a: r.claim(second_id, p, a), world)
    with app_state.sessions() as s:
        assert s.get(ProductRevision, rid).product.live_revision_id == rid
    run("reviewer", lambda r, p, a: r.approve(second_id, p, a, override_reason="still fine"), world)
    assert (
        run("admin", lambda r, p, a: r.publish(second_id, p, a), world)["pins"]["agent"]["tags"]["1.4"]
        == newer.digest
    )
    assert state_of(app_state, rid) == "superseded"
    run("admin", lambda r, p, a: r.unpublish(second_id, p, a, "pulled"), world)
    with app_state.sessions() as s:
        assert s.get(ProductRevision, second_id).product.live_revision_id is None


def test_approval_pins_only_what_the_reviewer_saw(run: Run, world: World, app_state: AppState) -> None:
    """A push between loading the review page and approving must not slip an unreviewed image in the pins."""
    org, slug, rid = world.org, world.slug, world.revision
    run("owner", lambda r, p, a: r.submit(org, slug, p, a), world)
    run("reviewer", lambda r, p, a: r.claim(rid, p, a), world)
    seen = {"server": {"16": world.server}, "agent": {"1.4": world.agent}}
    with app_state.sessions.begin() as s:
        newer = Images(s, app_state.blobs, app_state.bus).image(
            f"{org}/db-agent", "1.4", [file_layer("a", "pushed meanwhile")]
        )
    with pytest.raises(Conflict, match=r"changed since the review page was loaded \(agent:1.4 now name"):
        run("reviewer", lambda r, p, a: r.approve(rid, p, a, override_reason="ok", seen=seen), world)
    assert state_of(app_state, rid) == "in_review"
    seen["agent"]["1.4"] = newer.digest  # looked again
    pins = run("reviewer", lambda r, p, a: r.approve(rid, p, a, override_reason="ok", seen=seen), world)
    assert pins["pins"]["agent"]["tags"] == {"1.4": newer.digest}


def test_submission_reports_every_problem_at_once(run: Run, world: World, app_state: AppState) -> None:
    edit(
        app_state,
        world.revision,
        install="",
        images=[
            {"name": "server", "repository": f"{world.org}/db-server", "tags": ["nope"]},
            {"name": "agent", "repository": f"{world.org}/db-agent", "tags": ["1.4"]},
        ],
    )
    with app_state.sessions.begin() as s:
        publisher = s.scalar(select(Publisher).join(Product).where(Product.slug == world.slug))
        publisher.legal_name = None
    with pytest.raises(ManifestInvalid) as refused:
        run("owner", lambda r, p, a: r.submit(world.org, world.slug, p, a), world)
    fields = {d["field"] for d in refused.value.detail}
    assert {"install", "images[0].tags[0]", "publisher.legal_name"} <= fields
    assert state_of(app_state, world.revision) == "draft"


def test_withdraw_ends_the_working_revision(run: Run, world: World, app_state: AppState) -> None:
    run("owner", lambda r, p, a: r.submit(world.org, world.slug, p, a), world)
    assert (
        run("maintainer", lambda r, p, a: r.withdraw(world.org, world.slug, p, a), world)["state"]
        == "withdrawn"
    )
    with app_state.sessions() as s:
        assert s.get(ProductRevision, world.revision).product.working_revision_id is None
    with pytest.raises(Conflict, match="no working revision"):
        run("owner", lambda r, p, a: r.submit(world.org, world.slug, p, a), world)


@pytest.mark.parametrize(
    "role, action, error",
    [
        ("reader", "submit", Forbidden),
        ("reviewer", "submit-as-store", None),
        ("outsider", "submit", NotFound),
        ("other", "submit", NotFound),
        ("maintainer", "claim", Forbidden),
        ("owner", "approve", Forbidden),
        ("reviewer", "publish", Forbidden),
        ("outsider", "claim", NotFound),
    ],
)
def test_who_may_move(run: Run, world: World, role: str, action: str, error: type | None) -> None:
    org, slug, rid = world.org, world.slug, world.revision
    calls = {
        "submit": lambda r, p, a: r.submit(org, slug, p, a),
        "claim": lambda r, p, a: r.claim(rid, p, a),
        "approve": lambda r, p, a: r.approve(rid, p, a, override_reason="x"),
        "publish": lambda r, p, a: r.publish(rid, p, a),
    }
    if action == "submit-as-store":  # reviewers read, never submit for a publisher
        with pytest.raises(Forbidden):
            run(role, calls["submit"], world)
        return
    with pytest.raises(error):
        run(role, calls[action], world)


def test_visibility_other_publishers_customers_and_internal_notes(
    run: Run, world: World, app_state: AppState
) -> None:
    org, slug, rid = world.org, world.slug, world.revision
    run("owner", lambda r, p, a: r.submit(org, slug, p, a), world)
    run("reviewer", lambda r, p, a: r.claim(rid, p, a), world)
    run("reviewer", lambda r, p, a: r.comment(rid, p, a, "Looks risky: zlib.", internal=True), world)
    run(
        "reviewer",
        lambda r, p, a: r.comment(
            rid, p, a, "Please shorten.", anchor_kind="field", anchor="short_description"
        ),
        world,
    )
    anchor = f"server@{world.server}/{CVE}"
    run(
        "maintainer",
        lambda r, p, a: r.comment(rid, p, a, "Fixed upstream.", anchor_kind="finding", anchor=anchor),
        world,
    )
    # The publisher's members see two messages, never the note; reviewers see three.
    for role in ("owner", "maintainer", "reader"):
        bodies = run(role, lambda r, p, a: [i.comment.body for i in r.thread_of(org, slug, p)[1]], world)
        assert bodies == ["Please shorten.", "Fixed upstream."], role
        view_bodies = run(role, lambda r, p, a: [i.comment.body for i in r.review(rid, p).thread], world)
        assert "Looks risky: zlib." not in view_bodies
    assert len(run("reviewer2", lambda r, p, a: r.thread_of(org, slug, p)[1], world)) == 3
    # Another publisher, a customer: nothing, as if there were no such product.
    for role in ("other", "outsider"):
        with pytest.raises(NotFound):
            run(role, lambda r, p, a: r.review(rid, p), world)
        with pytest.raises(NotFound):
            run(role, lambda r, p, a: r.thread_of(org, slug, p), world)
        with pytest.raises(NotFound):
            run(role, lambda r, p, a: r.dashboard(org, p), world)
    with pytest.raises(Forbidden):
        run("outsider", lambda r, p, a: r.queue(p), world)
    # Publishers write no internal notes, and cannot point at another publisher's scan results.
    with pytest.raises(Forbidden):
        run("owner", lambda r, p, a: r.comment(rid, p, a, "psst", internal=True), world)
    with pytest.raises(Invalid, match="anchor"):
        run(
            "owner",
            lambda r, p, a: r.comment(rid, p, a, "x", anchor_kind="field", anchor="tiers[7].name"),
            world,
        )
    with pytest.raises(Invalid, match="anchor"):
        run("owner", lambda r, p, a: r.comment(rid, p, a, "x", anchor_kind="image", anchor="nope"), world)
    with pytest.raises(Invalid, match="anchor"):
        run(
            "owner",
            lambda r, p, a: r.comment(
                rid, p, a, "x", anchor_kind="finding", anchor=f"server@{world.server}/CVE-1999-0001"
            ),
            world,
        )


def test_a_draft_pointing_at_another_publishers_repository_shows_none_of_its_scans(
    run: Run, world: World, app_state: AppState
) -> None:
    edit(
        app_state,
        world.revision,
        images=[{"name": "server", "repository": f"{world.other_org}/db-server", "tags": ["16"]}],
        tiers=[{"name": "Free", "description": "", "price": "free", "images": ["server"]}],
    )
    images = run("owner", lambda r, p, a: r.review(world.revision, p).images, world)
    assert images[0].foreign and images[0].tags == {"16": None} and images[0].findings == []


def test_the_queue_oldest_first_with_claimant(run: Run, world: World) -> None:
    run("owner", lambda r, p, a: r.submit(world.org, world.slug, p, a), world)
    run("reviewer", lambda r, p, a: r.claim(world.revision, p, a), world)
    items = run(
        "reviewer2", lambda r, p, a: [(i.revision_id, i.state, i.claimant) for i in r.queue(p)], world
    )
    assert items == [
        (world.other_revision, "submitted", None),
        (world.revision, "in_review", world.users["reviewer"]),
    ]
