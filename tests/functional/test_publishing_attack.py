"""The publishing and review features attacked as an outsider, a low-privilege user or a reviewer would:
each test is a hole found by probing a running server, kept so it stays closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient
from tests.support.accounts import browser
from tests.support.factories import PASSWORD
from tests.support.review_world import World, build_world

from dockyard.accounts.authentication import staff_roles_of
from dockyard.accounts.models import User
from dockyard.accounts.services import AccountService
from dockyard.authz import Principal
from dockyard.errors import Conflict
from dockyard.events import Actor, EventBus
from dockyard.moderation.services import ReviewService
from dockyard.publishing.models import ProductRevision
from dockyard.web.context import AppState

HUGE = "99999999999999999999"  # past every database's integer column


@pytest.fixture
def world(app, app_state: AppState, tmp_path: Path) -> World:
    return build_world(app_state, tmp_path / "feed")


def call(client: TestClient, world: World, role: str, method: str, path: str, json: dict | None = None):
    return client.request(method, f"/api/v1{path}", json=json, auth=(world.users[role], PASSWORD))


def product(world: World) -> str:
    return f"/publishers/{world.org}/products/{world.slug}"


def test_review_pages_answer_404_for_an_id_past_the_database_integer(app, world: World) -> None:
    """A revision id in the page URL is any run of digits: one too large for an integer column must be a
    404 page, not an Internal Server Error (the API bounds its ids; the pages did not)."""
    with browser(app, world.users["reviewer"], PASSWORD) as c:
        r = c.get(f"/ui/review/revisions/{HUGE}")
        assert r.status_code == 404, r.text[:300]
        token = c.get("/ui/review").text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        for action in ("move", "comments"):
            r = c.post(
                f"/ui/review/revisions/{HUGE}/{action}",
                data={"csrf_token": token, "action": "claim", "body": "x"},
            )
            assert r.status_code == 404, (action, r.status_code, r.text[:300])


@pytest.mark.parametrize("ref", [10**30, -(10**30), 2**31])
def test_a_manifest_naming_an_impossible_image_id_is_a_problem_not_a_500(
    client: TestClient, world: World, ref: int
) -> None:
    """The logo and screenshots are catalogue image ids: one past the integer column was looked up as is
    and crashed the request (500); it is simply not one of the publisher's images."""
    manifest = call(client, world, "maintainer", "GET", product(world)).json()["working"]["manifest"]
    for field, value in (("logo", ref), ("screenshots", [ref])):
        r = call(client, world, "maintainer", "PUT", product(world), {**manifest, field: value})
        assert r.status_code == 200, (field, r.status_code, r.text[:300])
        problems = {p["field"]: p["message"] for p in r.json()["problems"]}
        path = "logo" if field == "logo" else "screenshots[0]"
        assert "is not one of" in problems[path], problems


def test_a_reviewer_does_not_review_their_own_organisations_product(
    client: TestClient, app_state: AppState, world: World
) -> None:
    """A store reviewer who is also a member of the publisher organisation must not claim, approve or
    reject its products: the review is a check by someone other than the publisher."""
    with app_state.sessions.begin() as s:
        AccountService(s, EventBus()).set_member(world.org, world.users["reviewer"], "maintainer")
    assert call(client, world, "maintainer", "POST", product(world) + "/submit").status_code == 200
    rid = world.revision
    r = call(client, world, "reviewer", "POST", f"/review/revisions/{rid}/claim")
    assert r.status_code == 403, r.text
    assert "own organisation" in r.json()["error"]["message"]
    # Another reviewer claims it; the member still may not decide it, nor see its buttons on the page.
    assert call(client, world, "reviewer2", "POST", f"/review/revisions/{rid}/claim").status_code == 200
    for action, body in (("approve", {"override_reason": "fine"}), ("reject", {"comment": "no"})):
        r = call(client, world, "reviewer", "POST", f"/review/revisions/{rid}/{action}", body)
        assert r.status_code == 403, (action, r.text)
    # As a member they still read it and answer its thread, on the publisher's side.
    r = call(client, world, "reviewer", "POST", product(world) + "/comments", {"body": "we fixed it"})
    assert r.status_code == 201, r.text


# SQLite serialises writers (BEGIN IMMEDIATE): the interleaving cannot happen there.
@pytest.mark.postgresql_only
def test_a_move_made_on_a_stale_read_of_the_state_is_refused(
    app_state: AppState, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Approving checks the revision's state, then reads every pinned image's scans (slow), then writes
    the new state. On PostgreSQL (read committed) the publisher's withdrawal could commit in between, and
    the approval then overwrote it: a revision its publisher had withdrawn came out approved, ready to be
    published. A move applies only if the state is still the one it checked."""
    with app_state.sessions.begin() as s:
        revision = s.get(ProductRevision, world.revision)
        revision.state, revision.claimed_by = "in_review", None
    with app_state.sessions() as s:
        reviewer, owner = who(s, world.users["reviewer"]), who(s, world.users["owner"])
    checks = ReviewService.image_checks

    def withdrawn_meanwhile(self: ReviewService, *args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(ReviewService, "image_checks", checks)
        with app_state.sessions.begin() as s:  # the publisher's request, committed during the approval
            actor = Actor(user_id=owner.user_id, name=owner.name, kind="user")
            app_state.services(s).reviews.withdraw(world.org, world.slug, owner, actor)
        return checks(self, *args, **kwargs)

    monkeypatch.setattr(ReviewService, "image_checks", withdrawn_meanwhile)
    actor = Actor(user_id=reviewer.user_id, name=reviewer.name, kind="user")
    with app_state.sessions() as s, pytest.raises(Conflict):
        app_state.services(s).reviews.approve(world.revision, reviewer, actor, "", "accepted risk")
        s.commit()
    with app_state.sessions() as s:
        assert s.get(ProductRevision, world.revision).state == "withdrawn"


def who(session: Session, username: str) -> Principal:
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None
    return Principal(
        kind="user", name=username, user_id=user.id, staff=frozenset(staff_roles_of(session, user.id))
    )


def test_changing_the_company_email_back_and_forth_does_not_mail_without_limit(
    client: TestClient, app_state: AppState, world: World
) -> None:
    """Resending the confirmation link is limited per address and hour, but every change of the address
    mailed a link at once, unlimited: an owner alternating two addresses made the store mail a stranger's
    inbox as often as they liked. Changes count against the same limit."""
    from dockyard.publishing.models import PublisherEmailToken

    victim = "someone@victim.example"
    answers = []
    for i in range(8):
        address = victim if i % 2 == 0 else f"us{i}@acme.example"
        r = call(client, world, "owner", "PUT", f"/publishers/{world.org}", {"email": address})
        answers.append(r.status_code)
    with app_state.sessions() as s:
        mailed = s.scalars(select(PublisherEmailToken).where(PublisherEmailToken.email == victim)).all()
    assert len(mailed) <= 3, answers
    assert 429 in answers
