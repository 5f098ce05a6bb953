"""ProductService on a real database: creating and editing drafts, what references are refused (another
namespace's repository, a public one unless allowed, a missing tag, another publisher's image), the frozen
submitted revision, and who may see and edit what."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.support.factories import make_org, make_user
from tests.support.products import ACTOR, catalog_image, manifest, product_service
from tests.support.scanimages import Images

from dockyard.audit.models import AuditEvent
from dockyard.authz import ANONYMOUS, Principal, Scope, StaffRole
from dockyard.errors import Conflict, Forbidden, NotFound, Unauthenticated
from dockyard.publishing.manifest import ManifestInvalid, parse_manifest
from dockyard.publishing.models import RevisionState
from dockyard.publishing.reads import publisher_for
from dockyard.registry.services import RegistryService
from dockyard.storage.blobstore import BlobStore
from dockyard.storage.local import LocalDriver


def user(session: Session, name: str, **kw: object) -> Principal:
    u = make_user(session, name) if not kw else make_user(session, name, **kw)  # type: ignore[arg-type]
    return Principal(kind="user", name=u.username, user_id=u.id, via="session")


@pytest.fixture
def world(db_session: Session, tmp_path: Path) -> dict:
    """Org "acme" (owner, maintainer, reader) with db-server (16.2, 16) and db-agent (1.4) pushed, and org
    "rival" with a repository of its own; each publisher with a logo and a screenshot."""
    s = db_session
    people = {n: user(s, f"u{n}") for n in ("owner", "maint", "reader", "rival", "outsider")}
    make_org(s, "acme", owner="uowner", members={"umaint": "maintainer", "ureader": "reader"})
    make_org(s, "rival", owner="urival")
    images = Images(s, BlobStore(LocalDriver(tmp_path / "st"), tmp_path / "up"))
    for repo, tags in (("acme/db-server", ["16.2", "16"]), ("acme/db-agent", ["1.4"]), ("rival/db", ["1"])):
        for i, tag in enumerate(tags):
            images.image(repo, tag, [f"{repo}{i}".encode()])
    ids = {
        f"{org}-{kind}": catalog_image(s, org, kind)
        for org in ("acme", "rival")
        for kind in ("logo", "screenshot")
    }
    return {"s": s, **people, **ids, "svc": product_service(s)}


def good(world: dict, **changes: object) -> dict:
    images = {"logo": world["acme-logo"], "screenshots": [world["acme-screenshot"]]}
    return manifest("acme", **{**images, **changes})  # type: ignore[arg-type]


def problems(world: dict, data: dict) -> list[str]:
    publisher = publisher_for(world["s"], "acme")
    return [str(p) for p in world["svc"].reference_problems(publisher, parse_manifest(data))]


# -- creating and editing ----------------------------------------------------------------------------------
def test_create_makes_revision_one_a_draft_and_an_audit_event(world: dict) -> None:
    product = world["svc"].create("acme", good(world), world["maint"], ACTOR)
    revision = product.working_revision
    assert (product.slug, revision.number, revision.state) == ("acme-db", 1, "draft")
    assert revision.manifest["tiers"][0]["price"] == "free" and revision.manifest["publisher"] == "acme"
    assert product.live_revision is None
    info = world["svc"].info("acme", product)
    assert info.problems == [] and info.name == "Acme Database"
    tags = (
        world["s"]
        .scalars(select(AuditEvent.tag).where(AuditEvent.namespace == "acme").order_by(AuditEvent.id))
        .all()
    )
    assert "product:create" in tags


def test_a_draft_may_be_incomplete(world: dict) -> None:
    product = world["svc"].create("acme", {"name": "Acme", "slug": "acme"}, world["owner"], ACTOR)
    info = world["svc"].info("acme", product)
    assert "logo: is required before submitting" in [str(p) for p in info.problems]


def test_an_invalid_manifest_is_refused_with_every_field(world: dict) -> None:
    data = good(world, slug="Bad Slug", license_url="nope")
    with pytest.raises(ManifestInvalid) as caught:
        world["svc"].create("acme", data, world["owner"], ACTOR)
    assert [d["field"] for d in caught.value.detail] == ["slug", "license_url"]


def test_the_slug_is_unique_per_publisher_and_the_publisher_must_match(world: dict) -> None:
    world["svc"].create("acme", good(world), world["owner"], ACTOR)
    with pytest.raises(Conflict, match="has a product 'acme-db' already"):
        world["svc"].create("acme", good(world), world["owner"], ACTOR)
    with pytest.raises(ManifestInvalid, match="publisher: names 'rival', but this is 'acme'"):
        world["svc"].create("acme", good(world, publisher="rival", slug="x"), world["owner"], ACTOR)
    # Another publisher may use the same slug.
    world["svc"].create("rival", manifest("rival", images=[], tiers=[]), world["rival"], ACTOR)


def test_update_draft_edits_the_working_revision_and_keeps_the_slug(world: dict) -> None:
    world["svc"].create("acme", good(world), world["owner"], ACTOR)
    revision = world["svc"].update_draft(
        "acme", "acme-db", good(world, name="Acme DB 2"), world["maint"], ACTOR
    )
    assert (revision.number, revision.manifest["name"]) == (1, "Acme DB 2")
    with pytest.raises(ManifestInvalid, match="a product's slug does not change"):
        world["svc"].update_draft("acme", "acme-db", good(world, slug="other"), world["maint"], ACTOR)
    event = world["s"].scalars(select(AuditEvent).where(AuditEvent.tag == "product:update")).one()
    assert event.data["fields"] == ["name"]


@pytest.mark.parametrize("state", ["submitted", "in_review", "resubmitted", "approved"])
def test_a_submitted_revision_is_frozen(world: dict, state: str) -> None:
    product = world["svc"].create("acme", good(world), world["owner"], ACTOR)
    product.working_revision.state = state
    world["s"].flush()
    with pytest.raises(Conflict, match="a submitted revision is frozen") as caught:
        world["svc"].update_draft("acme", "acme-db", good(world, name="Sneaky"), world["owner"], ACTOR)
    assert caught.value.detail == {"state": state, "revision": 1}
    assert product.working_revision.manifest["name"] == "Acme Database"


def test_changes_requested_is_edited_in_place(world: dict) -> None:
    product = world["svc"].create("acme", good(world), world["owner"], ACTOR)
    product.working_revision.state = RevisionState.CHANGES_REQUESTED.value
    revision = world["svc"].update_draft("acme", "acme-db", good(world, name="Fixed"), world["owner"], ACTOR)
    assert (revision.number, revision.state, revision.manifest["name"]) == (1, "changes_requested", "Fixed")


def test_with_only_a_live_revision_editing_starts_a_new_draft_from_it(world: dict) -> None:
    product = world["svc"].create("acme", good(world), world["owner"], ACTOR)
    live = product.working_revision
    live.state = RevisionState.PUBLISHED.value
    product.live_revision_id, product.working_revision_id = live.id, None
    world["s"].flush()
    world["s"].expire(product)
    revision = world["svc"].update_draft("acme", "acme-db", good(world, name="Next"), world["owner"], ACTOR)
    assert (revision.number, revision.state) == (2, "draft")
    assert live.manifest["name"] == "Acme Database" and product.live_revision_id == live.id
    assert product.working_revision_id == revision.id


# -- references --------------------------------------------------------------------------------------------
def test_good_references_have_no_problem(world: dict) -> None:
    assert problems(world, good(world)) == []


def test_someone_elses_repository_is_refused_without_looking_it_up(world: dict) -> None:
    data = good(world)
    data["images"][1]["repository"] = "rival/db"
    data["images"][1]["tags"] = ["1"]
    assert problems(world, data) == [
        "images[1].repository: 'rival/db' is not a repository of acme: a product is made only of its "
        "publisher's own repositories"
    ]


def test_a_missing_repository_and_missing_tags(world: dict) -> None:
    data = good(world)
    data["images"][0]["tags"] = ["16.2", "17", "latest"]
    data["images"][1]["repository"] = "acme/nothing"
    assert problems(world, data) == [
        "images[0].tags[1]: 'acme/db-server' has no tag '17'",
        "images[0].tags[2]: 'acme/db-server' has no tag 'latest'",
        "images[1].repository: 'acme/nothing' does not exist: push the image to it first",
    ]


def test_a_public_repository_needs_the_allow_flag(world: dict) -> None:
    RegistryService(world["s"], None, world["svc"].bus, None).set_visibility("acme/db-agent", True, ACTOR)  # type: ignore[arg-type]
    assert problems(world, good(world)) == [
        "images[1].repository: 'acme/db-agent' is a public repository: set allow_public_repositories to "
        "offer it"
    ]
    assert problems(world, good(world, allow_public_repositories=True)) == []


def test_images_must_be_this_publishers_and_of_the_right_kind(world: dict) -> None:
    data = good(
        world, logo=world["rival-logo"], screenshots=[world["acme-screenshot"], world["acme-logo"], 999999]
    )
    assert problems(world, data) == [
        f"logo: image {world['rival-logo']} is not one of acme's catalogue images",
        f"screenshots[1]: image {world['acme-logo']} is a logo, not a screenshot",
        "screenshots[2]: image 999999 is not one of acme's catalogue images",
    ]
    assert problems(world, good(world, logo="logo.png")) == [
        "logo: 'logo.png' is a file name: upload the image and give its id (dockyard product push does both)"
    ]


def test_reference_problems_are_warnings_on_save(world: dict) -> None:
    data = good(world)
    data["images"][0]["tags"] = ["nope"]
    product = world["svc"].create("acme", data, world["owner"], ACTOR)
    assert [str(p) for p in world["svc"].info("acme", product).problems] == [
        "images[0].tags[0]: 'acme/db-server' has no tag 'nope'"
    ]


# -- who may -----------------------------------------------------------------------------------------------
def test_a_reader_sees_but_cannot_edit(world: dict) -> None:
    world["svc"].create("acme", good(world), world["owner"], ACTOR)
    assert world["svc"].get("acme", "acme-db", world["reader"]).slug == "acme-db"
    assert [p.slug for p in world["svc"].list_for("acme", world["reader"])] == ["acme-db"]
    with pytest.raises(Forbidden):
        world["svc"].update_draft("acme", "acme-db", good(world), world["reader"], ACTOR)
    with pytest.raises(Forbidden):
        world["svc"].create("acme", good(world, slug="other"), world["reader"], ACTOR)


def test_another_publisher_never_sees_the_drafts(world: dict) -> None:
    world["svc"].create("acme", good(world), world["owner"], ACTOR)
    for who in (world["rival"], world["outsider"]):
        with pytest.raises(NotFound):
            world["svc"].get("acme", "acme-db", who)
        with pytest.raises(NotFound):
            world["svc"].list_for("acme", who)
        with pytest.raises(NotFound):
            world["svc"].update_draft("acme", "acme-db", good(world), who, ACTOR)
        with pytest.raises(NotFound):
            world["svc"].create("acme", good(world, slug="x"), who, ACTOR)


def test_anonymous_callers_must_sign_in_and_missing_things_are_not_found(world: dict) -> None:
    with pytest.raises(Unauthenticated):
        world["svc"].list_for("acme", ANONYMOUS)
    with pytest.raises(NotFound):
        world["svc"].get("acme", "nothing", world["owner"])
    with pytest.raises(NotFound):
        world["svc"].list_for("no-such-org", world["owner"])


def test_a_token_without_the_api_scope_is_told_so(world: dict) -> None:
    from dataclasses import replace

    pull_only = replace(world["owner"], via="token", scopes=frozenset({Scope.PULL}))
    with pytest.raises(Forbidden, match="lacks the 'api' scope"):
        world["svc"].list_for("acme", pull_only)


def test_store_reviewers_read_and_store_admins_edit(world: dict) -> None:
    world["svc"].create("acme", good(world), world["owner"], ACTOR)
    reviewer = Principal(kind="user", name="rev", user_id=None, staff=frozenset({StaffRole.STORE_REVIEWER}))
    assert world["svc"].get("acme", "acme-db", reviewer).slug == "acme-db"
    with pytest.raises(Forbidden):
        world["svc"].update_draft("acme", "acme-db", good(world), reviewer, ACTOR)
