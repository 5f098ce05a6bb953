"""AccountService: users, organisations, members and roles, access tokens, robots, authentication."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.support.factories import PASSWORD, make_org, make_robot, make_user, unique

from dockyard.accounts.models import AccessToken, Membership, Namespace, Robot, User
from dockyard.accounts.services import AccountService
from dockyard.audit.models import AuditEvent
from dockyard.authz import Permission, Principal, Scope, StaffRole
from dockyard.db import utcnow
from dockyard.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from dockyard.events import Actor, EventBus


@pytest.fixture
def accounts(db_session: Session) -> AccountService:
    return AccountService(db_session, EventBus())


def events(session: Session, tag: str) -> list[AuditEvent]:
    session.flush()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.id)))


def principal_of(user: User, session: Session | None = None) -> Principal:
    staff = AccountService(session, EventBus()).staff_roles(user.id) if session is not None else frozenset()
    return Principal(kind="user", name=user.username, user_id=user.id, staff=staff)


# -- users ----------------------------------------------------------------------------------------
def test_create_user_makes_a_personal_namespace_it_owns(accounts, db_session) -> None:
    name = unique("alice")
    user = accounts.create_user(name, PASSWORD, email="a@example.com")
    assert user.id is not None and user.is_active and not accounts.staff_roles(user.id)
    assert user.email == "a@example.com"
    ns = accounts.get_namespace(name)
    assert ns.kind == "user"
    assert accounts.members(name) == [(name, "owner")]
    assert accounts.role_in(principal_of(user), name) == "owner"
    [event] = [e for e in events(db_session, "user:create") if e.namespace == name]
    assert event.data == {"staff": []}


def test_passwords_are_stored_as_argon2id(accounts) -> None:
    user = accounts.create_user(unique("hash"), PASSWORD)
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash


@pytest.mark.parametrize(
    "name", ["A", "a", "Upper", "-lead", "trail-", "a..b", "a b", "x" * 65, "ünï", "a/b"]
)
def test_invalid_usernames(accounts, name: str) -> None:
    with pytest.raises(Invalid):
        accounts.create_user(name, PASSWORD)


@pytest.mark.parametrize("name", ["ab", "a1", "a.b", "a_b", "a-b", "x" * 64, "0day"])
def test_valid_usernames(accounts, name: str) -> None:
    assert accounts.create_user(name, PASSWORD).username == name


def test_short_password_is_refused(accounts) -> None:
    with pytest.raises(Invalid):
        accounts.create_user(unique("short"), "1234567")


def test_duplicate_user_and_name_taken_by_an_org(accounts, db_session) -> None:
    name = make_user(db_session).username
    with pytest.raises(Conflict):
        accounts.create_user(name, PASSWORD)
    org = make_org(db_session)
    with pytest.raises(Conflict):
        accounts.create_user(org, PASSWORD)


def test_set_password(accounts, db_session) -> None:
    user = make_user(db_session)
    accounts.set_password(user.username, "a brand new password")
    with pytest.raises(Unauthenticated):
        accounts.authenticate(user.username, PASSWORD)
    assert accounts.authenticate(user.username, "a brand new password").user_id == user.id
    with pytest.raises(Invalid):
        accounts.set_password(user.username, "short")


def test_get_user_and_list_users(accounts, db_session) -> None:
    a = make_user(db_session, unique("zed"))
    b = make_user(db_session, unique("amy"))
    assert accounts.get_user(a.username).id == a.id
    names = [u.username for u in accounts.list_users()]
    assert names == sorted(names)
    assert {a.username, b.username} <= set(names)
    with pytest.raises(NotFound):
        accounts.get_user("nobody-here")


def test_ensure_admin(accounts, db_session) -> None:
    existing = db_session.scalar(select(User).where(User.username == "admin"))
    if existing is not None:  # another test's server created it: start from a database without one
        db_session.delete(db_session.scalar(select(Namespace).where(Namespace.name == "admin")))
        db_session.delete(existing)
        db_session.flush()
    assert accounts.ensure_admin("chosen-admin-pass") is None
    admin = accounts.get_user("admin")
    assert accounts.staff_roles(admin.id) == {StaffRole.STORE_ADMIN}
    assert accounts.authenticate("admin", "chosen-admin-pass").staff == {StaffRole.STORE_ADMIN}
    assert accounts.ensure_admin("another-password") is None  # only on first start
    assert accounts.authenticate("admin", "chosen-admin-pass").is_admin


def test_ensure_admin_generates_a_password(accounts, db_session) -> None:
    existing = db_session.scalar(select(User).where(User.username == "admin"))
    if existing is not None:
        db_session.delete(db_session.scalar(select(Namespace).where(Namespace.name == "admin")))
        db_session.delete(existing)
        db_session.flush()
    generated = accounts.ensure_admin(None)
    assert generated and len(generated) >= 16
    assert accounts.authenticate("admin", generated).is_admin


# -- organisations, members and roles --------------------------------------------------------------
def test_create_org_with_its_owner(accounts, db_session) -> None:
    owner = make_user(db_session)
    name = unique("acme")
    ns = accounts.create_org(name, owner.username)
    assert ns.kind == "org"
    assert accounts.members(name) == [(owner.username, "owner")]
    assert [e.namespace for e in events(db_session, "org:create")][-1] == name


def test_create_org_errors(accounts, db_session) -> None:
    owner = make_user(db_session)
    org = make_org(db_session, owner=owner.username)
    with pytest.raises(Conflict):
        accounts.create_org(org, owner.username)
    with pytest.raises(Conflict):
        accounts.create_org(owner.username, owner.username)  # a user's personal namespace
    with pytest.raises(NotFound):
        accounts.create_org(unique("org"), "no-such-user")
    with pytest.raises(Invalid):
        accounts.create_org("Bad Name", owner.username)


def test_add_members_and_change_roles(accounts, db_session) -> None:
    owner, reader = make_user(db_session), make_user(db_session)
    org = make_org(db_session, owner=owner.username)
    accounts.set_member(org, reader.username, "reader")
    assert accounts.role_in(principal_of(reader), org) == "reader"
    accounts.set_member(org, reader.username, "maintainer")
    assert accounts.role_in(principal_of(reader), org) == "maintainer"
    assert dict(accounts.members(org)) == {owner.username: "owner", reader.username: "maintainer"}
    rows = db_session.scalars(select(Membership).join(Namespace).where(Namespace.name == org)).all()
    assert len(rows) == 2  # changing a role does not add a membership
    assert [e.data for e in events(db_session, "org:member_set") if e.namespace == org] == [
        {"user": reader.username, "role": "reader"},
        {"user": reader.username, "role": "maintainer"},
    ]


def test_set_member_errors(accounts, db_session) -> None:
    owner, other = make_user(db_session), make_user(db_session)
    org = make_org(db_session, owner=owner.username)
    with pytest.raises(Invalid):
        accounts.set_member(org, other.username, "emperor")
    with pytest.raises(Invalid):
        accounts.set_member(owner.username, other.username, "reader")  # personal namespace
    with pytest.raises(NotFound):
        accounts.set_member(org, "no-such-user", "reader")
    with pytest.raises(NotFound):
        accounts.set_member("no-such-org", other.username, "reader")


def test_remove_member(accounts, db_session) -> None:
    owner, reader = make_user(db_session), make_user(db_session)
    org = make_org(db_session, owner=owner.username, members={reader.username: "reader"})
    accounts.remove_member(org, reader.username)
    assert accounts.role_in(principal_of(reader), org) is None
    assert accounts.members(org) == [(owner.username, "owner")]
    with pytest.raises(NotFound):
        accounts.remove_member(org, reader.username)
    assert [e.data for e in events(db_session, "org:member_remove") if e.namespace == org] == [
        {"user": reader.username}
    ]


def test_last_owner_cannot_leave_or_be_demoted(accounts, db_session) -> None:
    owner = make_user(db_session)
    org = make_org(db_session, owner=owner.username)
    with pytest.raises(Conflict):
        accounts.remove_member(org, owner.username)
    with pytest.raises(Conflict):
        accounts.set_member(org, owner.username, "maintainer")
    assert accounts.members(org) == [(owner.username, "owner")]


def test_an_owner_may_leave_when_another_owner_remains(accounts, db_session) -> None:
    first, second = make_user(db_session), make_user(db_session)
    org = make_org(db_session, owner=first.username, members={second.username: "owner"})
    accounts.set_member(org, first.username, "reader")  # demote: the other owner remains
    with pytest.raises(Conflict):
        accounts.remove_member(org, second.username)  # now the last owner
    accounts.remove_member(org, first.username)
    assert accounts.members(org) == [(second.username, "owner")]


def test_role_in_and_namespace_permissions(accounts, db_session) -> None:
    owner, maintainer, stranger = make_user(db_session), make_user(db_session), make_user(db_session)
    admin = make_user(db_session, admin=True)
    reviewer = make_user(db_session)
    accounts.grant_staff(reviewer.username, "store-reviewer")
    org = make_org(db_session, owner=owner.username, members={maintainer.username: "maintainer"})
    assert accounts.role_in(principal_of(stranger), org) is None
    assert accounts.role_in(Principal(), org) is None  # anonymous
    manage = Permission.NAMESPACE_MANAGE
    accounts.require(principal_of(owner, db_session), manage, namespace=org)
    accounts.require(principal_of(admin, db_session), manage, namespace=org)
    for user in (maintainer, stranger, reviewer):
        with pytest.raises(Forbidden):
            accounts.require(principal_of(user, db_session), manage, namespace=org)
    with pytest.raises(Unauthenticated):
        accounts.require(Principal(), manage, namespace=org)
    assert accounts.allowed(principal_of(reviewer, db_session), Permission.SCAN_READ, namespace=org)
    assert not accounts.allowed(principal_of(stranger, db_session), Permission.SCAN_READ, namespace=org)


def test_staff_grant_and_revoke(accounts, db_session) -> None:
    user = make_user(db_session)
    accounts.grant_staff(user.username, "store-reviewer")
    accounts.grant_staff(user.username, "store-reviewer")  # idempotent
    assert (user.username, "store-reviewer") in accounts.staff()
    assert accounts.authenticate(user.username, PASSWORD).staff == {StaffRole.STORE_REVIEWER}
    with pytest.raises(Invalid):
        accounts.grant_staff(user.username, "overlord")
    accounts.revoke_staff(user.username, "store-reviewer")
    assert accounts.authenticate(user.username, PASSWORD).staff == frozenset()
    with pytest.raises(NotFound):
        accounts.revoke_staff(user.username, "store-reviewer")
    assert [e.data for e in events(db_session, "staff:grant") if e.namespace == user.username] == [
        {"user": user.username, "role": "store-reviewer"}
    ]


def test_the_last_store_admin_stays(accounts, db_session) -> None:
    first, second = make_user(db_session, admin=True), make_user(db_session, admin=True)
    accounts.revoke_staff(second.username, "store-admin")
    for username, role in accounts.staff():  # any other store-admin (from a server's first start) goes too
        if role == "store-admin" and username != first.username:
            accounts.revoke_staff(username, role)
    with pytest.raises(Conflict):
        accounts.revoke_staff(first.username, "store-admin")


# -- access tokens --------------------------------------------------------------------------------
def test_create_and_use_a_token(accounts, db_session) -> None:
    user = make_user(db_session)
    token, secret = accounts.create_token(user.username, "ci")
    assert secret.startswith(f"dyt_{token.lookup}_")
    assert secret.split("_", 2)[2] not in token.secret_hash  # only a hash is stored
    assert token.last_used_at is None
    principal = accounts.authenticate(user.username, secret)
    assert (principal.kind, principal.user_id, principal.via) == ("user", user.id, "token")
    assert token.last_used_at is not None
    assert [t.name for t in accounts.list_tokens(user.username)] == ["ci"]
    assert [e.data for e in events(db_session, "user:token_create") if e.namespace == user.username] == [
        {"name": "ci", "scopes": ["pull", "push"]}
    ]


def test_revoked_token_no_longer_works(accounts, db_session) -> None:
    user = make_user(db_session)
    token, secret = accounts.create_token(user.username, "ci")
    accounts.revoke_token(user.username, token.id)
    with pytest.raises(Unauthenticated):
        accounts.authenticate(user.username, secret)
    assert accounts.list_tokens(user.username)[0].revoked
    assert [e.namespace for e in events(db_session, "user:token_revoke")][-1] == user.username


def test_only_the_owner_can_revoke_a_token(accounts, db_session) -> None:
    user, other = make_user(db_session), make_user(db_session)
    token, secret = accounts.create_token(user.username, "ci")
    with pytest.raises(NotFound):
        accounts.revoke_token(other.username, token.id)
    with pytest.raises(NotFound):
        accounts.revoke_token(user.username, 999_999_999)
    assert accounts.authenticate(user.username, secret).user_id == user.id


def test_expired_token_no_longer_works(accounts, db_session) -> None:
    user = make_user(db_session)
    token, secret = accounts.create_token(user.username, "ci", expires_in_days=30)
    assert token.expires_at is not None
    assert dt.timedelta(days=29) < token.expires_at - utcnow() <= dt.timedelta(days=30)
    assert accounts.authenticate(user.username, secret).via == "token"
    token.expires_at = utcnow() - dt.timedelta(seconds=1)
    db_session.flush()
    with pytest.raises(Unauthenticated):
        accounts.authenticate(user.username, secret)


def test_token_works_only_for_its_user_and_exact_secret(accounts, db_session) -> None:
    user, other = make_user(db_session), make_user(db_session)
    _token, secret = accounts.create_token(user.username, "ci")
    with pytest.raises(Unauthenticated):
        accounts.authenticate(other.username, secret)
    with pytest.raises(Unauthenticated):
        accounts.authenticate(user.username, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    with pytest.raises(Unauthenticated):
        accounts.authenticate(user.username, "dyt_nothing_here")


def test_token_name_is_bounded(accounts, db_session) -> None:
    user = make_user(db_session)
    token, _ = accounts.create_token(user.username, "x" * 300)
    assert len(token.name) == 100
    token, _ = accounts.create_token(user.username, "")
    assert token.name == "token"


# -- robots ---------------------------------------------------------------------------------------
def test_create_and_use_a_robot(accounts, db_session) -> None:
    org = make_org(db_session)
    robot, secret = accounts.create_robot(org, "deployer", "maintainer")
    assert robot.role == "maintainer"
    assert secret not in robot.secret_hash
    principal = accounts.authenticate(f"{org}+deployer", secret)
    assert (principal.kind, principal.name, principal.robot_id, principal.via) == (
        "robot",
        f"{org}+deployer",
        robot.id,
        "robot",
    )
    assert accounts.role_in(principal, org) == "maintainer"
    assert accounts.role_in(principal, make_org(db_session)) is None  # only its own organisation
    assert [r.name for r in accounts.list_robots(org)] == ["deployer"]
    assert [e.data for e in events(db_session, "robot:create") if e.namespace == org] == [
        {"robot": "deployer", "role": "maintainer"}
    ]


def test_robot_errors(accounts, db_session) -> None:
    user = make_user(db_session)
    org = make_org(db_session, owner=user.username)
    accounts.create_robot(org, "bot")
    with pytest.raises(Conflict):
        accounts.create_robot(org, "bot")
    with pytest.raises(Invalid):
        accounts.create_robot(org, "owner-bot", "owner")  # robots never manage an organisation
    with pytest.raises(Invalid):
        accounts.create_robot(user.username, "bot")  # personal namespaces have no robots
    with pytest.raises(Invalid):
        accounts.create_robot(org, "Bad Bot")


def test_robot_secret_is_checked_and_deleting_revokes_it(accounts, db_session) -> None:
    org = make_org(db_session)
    login, secret = make_robot(db_session, org, "ci")
    with pytest.raises(Unauthenticated):
        accounts.authenticate(login, secret + "x")
    with pytest.raises(Unauthenticated):
        accounts.authenticate(f"{make_org(db_session)}+ci", secret)  # same name, other organisation
    accounts.delete_robot(org, "ci")
    with pytest.raises(Unauthenticated):
        accounts.authenticate(login, secret)
    with pytest.raises(NotFound):
        accounts.delete_robot(org, "ci")


# -- authentication and its audit trail ------------------------------------------------------------
def test_successful_login_is_recorded(accounts, db_session) -> None:
    user = make_user(db_session)
    actor = Actor(ip="192.0.2.7", user_agent="docker/27.0")
    principal = accounts.authenticate(user.username, PASSWORD, actor=actor)
    assert (principal.user_id, principal.via) == (user.id, "password")
    [event] = [e for e in events(db_session, "user:login") if e.actor_name == user.username]
    assert (event.actor_id, event.actor_kind, event.ip, event.user_agent) == (
        user.id,
        "user",
        "192.0.2.7",
        "docker/27.0",
    )
    assert event.data == {"via": "password"}


def test_failed_login_is_recorded(accounts, db_session) -> None:
    user = make_user(db_session)
    with pytest.raises(Unauthenticated):
        accounts.authenticate(user.username, "wrong password", actor=Actor(ip="198.51.100.1"))
    with pytest.raises(Unauthenticated):
        accounts.authenticate("ghost-user", "whatever")
    failed = {e.actor_name: e for e in events(db_session, "user:login_failed")}
    assert failed[user.username].ip == "198.51.100.1"
    assert failed[user.username].actor_id is None
    assert failed[user.username].actor_kind == "anonymous"
    assert "ghost-user" in failed
    assert not [e for e in events(db_session, "user:login") if e.actor_name == user.username]


def test_failed_login_with_a_huge_username_is_recorded_truncated(accounts, db_session) -> None:
    with pytest.raises(Unauthenticated):
        accounts.authenticate("u" * 10_000, "x")
    assert "u" * 64 in {e.actor_name for e in events(db_session, "user:login_failed")}


def test_robot_login_is_recorded(accounts, db_session) -> None:
    org = make_org(db_session)
    login, secret = make_robot(db_session, org)
    accounts.authenticate(login, secret)
    [event] = [e for e in events(db_session, "user:login") if e.actor_name == login]
    assert (event.actor_kind, event.data) == ("robot", {"via": "robot"})


def test_inactive_user_cannot_log_in(accounts, db_session) -> None:
    user = make_user(db_session)
    _token, secret = accounts.create_token(user.username, "ci")
    user.is_active = False
    db_session.flush()
    for attempt in (PASSWORD, secret):
        with pytest.raises(Unauthenticated):
            accounts.authenticate(user.username, attempt)


def test_principal_for_refresh(accounts, db_session) -> None:
    user = make_user(db_session, admin=True)
    by_password = {"kind": "user", "cred": "password", "gen": 0}
    p = accounts.principal_for_refresh(user.username, by_password)
    assert (p.user_id, p.is_admin, p.via) == (user.id, True, "refresh")  # staff roles re-read
    # A refresh token that does not say which credential minted it is refused (made before they said).
    with pytest.raises(Unauthenticated):
        accounts.principal_for_refresh(user.username, {"kind": "user"})
    org = make_org(db_session)
    login, _ = make_robot(db_session, org, "r1")
    robot = db_session.scalar(select(Robot).where(Robot.name == "r1"))
    robot_claims = {"kind": "robot", "rid": robot.id, "cred": f"robot:{robot.id}"}
    assert accounts.principal_for_refresh(login, robot_claims).robot_id == robot.id
    accounts.delete_robot(org, "r1")
    db_session.flush()
    with pytest.raises(Unauthenticated):
        accounts.principal_for_refresh(login, robot_claims)
    user.is_active = False
    db_session.flush()
    with pytest.raises(Unauthenticated):
        accounts.principal_for_refresh(user.username, by_password)
    with pytest.raises(Unauthenticated):
        accounts.principal_for_refresh("nobody-at-all", by_password)


def test_refresh_is_bound_to_the_credential_and_its_generation(accounts, db_session) -> None:
    user = make_user(db_session)
    token, secret = accounts.create_token(user.username, "ci", scopes=frozenset({Scope.PULL}))
    principal = accounts.authenticate(user.username, secret)
    claims = {"kind": "user", **accounts.refresh_claims(principal)}
    assert claims["cred"] == f"token:{token.id}"
    again = accounts.principal_for_refresh(user.username, claims)
    assert (again.token_id, again.scopes) == (token.id, frozenset({Scope.PULL}))  # the token's scopes, still
    accounts.revoke_token(user.username, token.id)
    db_session.flush()
    with pytest.raises(Unauthenticated, match="revoked"):
        accounts.principal_for_refresh(user.username, claims)
    # A password change and "sign out everywhere" each end every refresh token minted before them.
    password_claims = {
        "kind": "user",
        **accounts.refresh_claims(accounts.authenticate(user.username, PASSWORD)),
    }
    accounts.principal_for_refresh(user.username, password_claims)
    accounts.set_password(user.username, "another-password-1")
    with pytest.raises(Unauthenticated):
        accounts.principal_for_refresh(user.username, password_claims)
    fresh = {
        "kind": "user",
        **accounts.refresh_claims(accounts.authenticate(user.username, "another-password-1")),
    }
    accounts.principal_for_refresh(user.username, fresh)
    accounts.sign_out_everywhere(user.username)
    with pytest.raises(Unauthenticated):
        accounts.principal_for_refresh(user.username, fresh)


def test_browser_sessions_end_on_logout_password_change_and_sign_out_everywhere(accounts, db_session) -> None:
    user = make_user(db_session)
    principal = accounts.authenticate(user.username, PASSWORD)
    first, second = accounts.start_session(principal), accounts.start_session(principal)
    assert accounts.session_principal(first).user_id == user.id
    accounts.end_session(first)
    with pytest.raises(Unauthenticated):
        accounts.session_principal(first)
    assert accounts.session_principal(second).via == "session"
    accounts.set_password(user.username, "another-password-1")
    with pytest.raises(Unauthenticated):
        accounts.session_principal(second)
    third = accounts.start_session(accounts.authenticate(user.username, "another-password-1"))
    accounts.sign_out_everywhere(user.username)
    with pytest.raises(Unauthenticated):
        accounts.session_principal(third)
    with pytest.raises(Unauthenticated):
        accounts.session_principal("")


def test_token_rows_survive_only_as_hashes(db_session) -> None:
    accounts = AccountService(db_session, EventBus())
    user = make_user(db_session)
    _token, secret = accounts.create_token(user.username, "ci")
    raw = secret.split("_", 2)[2]
    rows = db_session.scalars(select(AccessToken).where(AccessToken.user_id == user.id)).all()
    assert all(raw not in (r.secret_hash + r.lookup) for r in rows)
