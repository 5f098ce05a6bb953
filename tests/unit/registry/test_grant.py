"""grant(): the access a token carries is what was asked for, intersected with what the caller may do."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.support.factories import make_org, make_robot, make_user

from dockyard.accounts.models import Robot
from dockyard.authz import ANONYMOUS, Principal, StaffRole
from dockyard.config import Settings
from dockyard.events import Actor, EventBus
from dockyard.registry.auth import parse_scopes
from dockyard.registry.services import RegistryService, grant
from dockyard.storage.blobstore import BlobStore
from dockyard.storage.memory import MemoryDriver


@pytest.fixture
def registry(db_session: Session, settings: Settings, tmp_path: Path) -> RegistryService:
    return RegistryService(db_session, BlobStore(MemoryDriver(), tmp_path / "uploads"), EventBus(), settings)


@pytest.fixture
def org(db_session: Session) -> dict:
    """An organisation with an owner, a maintainer, a reader, two robots; a stranger and an admin."""
    users = {role: make_user(db_session) for role in ("owner", "maintainer", "reader", "stranger")}
    users["admin"] = make_user(db_session, admin=True)
    name = make_org(
        db_session,
        owner=users["owner"].username,
        members={users["maintainer"].username: "maintainer", users["reader"].username: "reader"},
    )
    who = {
        role: Principal(
            kind="user",
            name=u.username,
            user_id=u.id,
            staff=frozenset({StaffRole.STORE_ADMIN}) if role == "admin" else frozenset(),
        )
        for role, u in users.items()
    }
    for role in ("reader", "maintainer"):
        login, _secret = make_robot(db_session, name, f"{role[:4]}bot", role)
        robot_id = db_session.scalar(select(Robot.id).where(Robot.name == f"{role[:4]}bot"))
        who[f"robot-{role}"] = Principal(kind="robot", name=login, robot_id=robot_id)
    who["anonymous"] = ANONYMOUS
    return {"name": name, "who": who}


def actions(registry: RegistryService, who: Principal, scope: str) -> list[list[str]]:
    return [claim["actions"] for claim in grant(registry, who, parse_scopes([scope]))]


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("owner", ["pull", "push"]),
        ("maintainer", ["pull", "push"]),
        ("reader", ["pull"]),
        ("robot-maintainer", ["pull", "push"]),
        ("robot-reader", ["pull"]),
        ("stranger", []),
        ("anonymous", []),
        ("admin", ["pull", "push"]),
    ],
)
def test_pull_push_on_a_private_repository(registry, org, role: str, expected: list[str]) -> None:
    assert actions(registry, org["who"][role], f"repository:{org['name']}/app:pull,push") == [expected]


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("owner", ["delete", "pull", "push"]),
        ("maintainer", ["delete", "pull", "push"]),
        ("reader", ["pull"]),
        ("stranger", []),
        ("admin", ["delete", "pull", "push"]),
    ],
)
def test_wildcard_means_everything_the_caller_may_do(registry, org, role: str, expected: list[str]) -> None:
    assert actions(registry, org["who"][role], f"repository:{org['name']}/app:*") == [expected]


def test_public_repository_grants_pull_to_anyone(registry, org) -> None:
    name = f"{org['name']}/public"
    registry.ensure_repository(name, Actor.system())
    registry.set_visibility(name, True, Actor.system())
    for role in ("stranger", "anonymous"):
        assert actions(registry, org["who"][role], f"repository:{name}:pull,push,delete") == [["pull"]]
    assert actions(registry, org["who"]["reader"], f"repository:{name}:pull,push") == [["pull"]]
    assert actions(registry, org["who"]["maintainer"], f"repository:{name}:pull,push") == [["pull", "push"]]
    registry.set_visibility(name, False, Actor.system())
    assert actions(registry, org["who"]["anonymous"], f"repository:{name}:pull") == [[]]


def test_nothing_is_granted_that_was_not_asked_for(registry, org) -> None:
    assert actions(registry, org["who"]["owner"], f"repository:{org['name']}/app:pull") == [["pull"]]
    assert actions(registry, org["who"]["owner"], f"repository:{org['name']}/app:") == [[]]


def test_unknown_actions_are_dropped(registry, org) -> None:
    scope = f"repository:{org['name']}/app:pull,frobnicate,admin"
    assert actions(registry, org["who"]["owner"], scope) == [["pull"]]
    assert actions(registry, org["who"]["admin"], scope) == [["pull"]]


def test_personal_namespace(registry, db_session) -> None:
    user = make_user(db_session)
    me = Principal(kind="user", name=user.username, user_id=user.id)
    other = make_user(db_session)
    assert actions(registry, me, f"repository:{user.username}/app:pull,push") == [["pull", "push"]]
    assert actions(registry, me, f"repository:{other.username}/app:pull,push") == [[]]


def test_robot_has_no_access_outside_its_organisation(registry, org, db_session) -> None:
    elsewhere = make_org(db_session)
    assert actions(registry, org["who"]["robot-maintainer"], f"repository:{elsewhere}/app:pull,push") == [[]]


def test_invalid_or_unknown_names_grant_nothing(registry, org) -> None:
    for name in ("Bad/Name", "no-such-namespace/app", f"{org['name']}//app"):
        assert actions(registry, org["who"]["owner"], f"repository:{name}:pull") == [[]], name
    assert actions(registry, org["who"]["admin"], "repository:Bad/Name:pull") == [[]]


def test_catalog_only_for_administrators(registry, org) -> None:
    claim = grant(registry, org["who"]["admin"], parse_scopes(["registry:catalog:*"]))
    assert claim == [{"type": "registry", "name": "catalog", "actions": ["*"]}]
    for role in ("owner", "stranger", "anonymous"):
        assert actions(registry, org["who"][role], "registry:catalog:*") == [[]]
    assert actions(registry, org["who"]["admin"], "registry:catalog:pull") == [[]]
    assert actions(registry, org["who"]["admin"], "registry:other:*") == [[]]


def test_unknown_resource_types_grant_nothing(registry, org) -> None:
    assert actions(registry, org["who"]["admin"], f"repository(plugin):{org['name']}/p:pull") == [["pull"]]
    assert actions(registry, org["who"]["admin"], f"image:{org['name']}/app:pull") == [[]]


def test_several_scopes_in_one_request(registry, org) -> None:
    n = org["name"]
    scopes = parse_scopes([f"repository:{n}/a:pull,push repository:{n}/b:pull", "registry:catalog:*"])
    claims = grant(registry, org["who"]["reader"], scopes)
    assert claims == [
        {"type": "repository", "name": f"{n}/a", "actions": ["pull"]},
        {"type": "repository", "name": f"{n}/b", "actions": ["pull"]},
        {"type": "registry", "name": "catalog", "actions": []},
    ]
