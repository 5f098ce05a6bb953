"""SelfService: sign-up, confirmation and reset links (hashed, single use, 48 h / 1 h, per-address
limits), address changes, password changes; and the mail its events queue in the same transaction."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from tests.support.factories import PASSWORD, make_user, unique

from dockyard.accounts import notifications
from dockyard.accounts.models import EmailToken, TokenPurpose, User
from dockyard.accounts.passwords import hash_secret
from dockyard.accounts.selfservice import (
    LINKS_PER_HOUR,
    LinkInvalid,
    SelfService,
    purge_links,
    signup_problems,
)
from dockyard.accounts.services import AccountService
from dockyard.audit.models import AuditEvent
from dockyard.config import Settings
from dockyard.db import utcnow
from dockyard.email.models import OutboundEmail
from dockyard.errors import Conflict, EmailUnverified, Forbidden, Invalid, TooManyRequests
from dockyard.events import Actor, Event, EventBus, EventTag

ACTOR = Actor(ip="192.0.2.7", kind="anonymous")


@pytest.fixture
def bus(tmp_path: Path) -> EventBus:
    """A bus with the account mail subscribed, as the composition root wires it."""
    bus = EventBus()
    notifications.subscribe(bus, Settings(data_dir=tmp_path, public_url="https://store.example"))
    return bus


@pytest.fixture
def links(bus: EventBus) -> list[str]:
    """The secrets of the links mailed, as the subscriber saw them."""
    seen: list[str] = []

    def keep(session: Session, event: Event) -> None:
        seen.append(event.private["secret"])

    bus.subscribe(EventTag.USER_EMAIL_VERIFY_REQUEST, keep)
    bus.subscribe(EventTag.USER_PASSWORD_RESET_REQUEST, keep)
    return seen


@pytest.fixture
def service(db_session: Session, bus: EventBus) -> SelfService:
    return SelfService(db_session, bus, AccountService(db_session, bus))


def mails(session: Session) -> list[OutboundEmail]:
    session.flush()
    return list(session.scalars(select(OutboundEmail).order_by(OutboundEmail.id)))


def confirmed_user(session: Session) -> User:
    user = make_user(session)
    user.email = f"{user.username}@example.org"
    session.flush()
    return user


def test_sign_up_makes_an_unconfirmed_account_and_mails_its_link(service, db_session, links):
    name = unique("ada")
    user = service.sign_up(name, f"{name.upper()}@Example.ORG", PASSWORD, actor=ACTOR)
    assert user.email == f"{name}@example.org" and user.email_verified_at is None
    (mail,) = mails(db_session)
    assert mail.to_address == user.email and mail.template == "verify_email"
    assert f"https://store.example/ui/verify-email?token={links[0]}" in mail.body_text
    token = db_session.scalar(select(EmailToken).where(EmailToken.user_id == user.id))
    assert token is not None and token.token_hash == hash_secret(links[0]) and token.purpose == "verify"
    assert token.expires_at - token.created_at == dt.timedelta(hours=48)
    audit = db_session.scalars(
        select(AuditEvent).where(AuditEvent.namespace == name).order_by(AuditEvent.id)
    ).all()
    assert all(links[0] not in str(row.data) for row in audit)


def test_an_unconfirmed_account_cannot_log_in_until_confirmed(service, db_session, links):
    name = unique("bea")
    service.sign_up(name, f"{name}@example.org", PASSWORD, actor=ACTOR)
    with pytest.raises(EmailUnverified):
        service.accounts.authenticate(name, PASSWORD)
    service.verify_email(links[0], actor=ACTOR)
    assert service.accounts.authenticate(name, PASSWORD).name == name


def test_sign_up_checks_every_field_and_the_names_in_use(service, db_session):
    assert set(signup_problems("No", "x@", "short")) == {"username", "email", "password"}
    assert signup_problems("fine-name", "a.b+c@mail.example.org", "long enough") == {}
    assert "reserved" in signup_problems("admin", "a@example.org", PASSWORD)["username"]
    taken = confirmed_user(db_session)
    with pytest.raises(Conflict) as exc:
        service.sign_up(taken.username, "free@example.org", PASSWORD, actor=ACTOR)
    assert exc.value.detail == {"field": "username"}
    with pytest.raises(Conflict) as exc:
        service.sign_up(unique("new"), taken.email.upper(), PASSWORD, actor=ACTOR)  # type: ignore[union-attr]
    assert exc.value.detail == {"field": "email"}
    with pytest.raises(Invalid) as exc:
        service.sign_up("Bad Name", "bad", "x", actor=ACTOR)
    assert set(exc.value.detail["fields"]) == {"username", "email", "password"}


def test_sign_up_can_be_closed(db_session, bus):
    closed = SelfService(db_session, bus, AccountService(db_session, bus), signup_open=False)
    with pytest.raises(Forbidden):
        closed.sign_up(unique("x"), "x@example.org", PASSWORD, actor=ACTOR)


def test_links_are_single_use_and_expire(service, db_session, links):
    user = confirmed_user(db_session)
    assert service.send_link("reset", user.username, actor=ACTOR) == 1
    check = service.check_link("reset", links[0])
    assert (check.username, check.email) == (user.username, user.email)
    token = db_session.scalar(select(EmailToken).where(EmailToken.user_id == user.id))
    assert token is not None and token.expires_at - token.created_at == dt.timedelta(hours=1)
    service.reset_password(links[0], "a new password", actor=ACTOR)
    with pytest.raises(LinkInvalid, match="used already"):
        service.check_link("reset", links[0])
    service.send_link("reset", user.username, actor=ACTOR)
    db_session.execute(update(EmailToken).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    with pytest.raises(LinkInvalid, match="expired"):
        service.reset_password(links[1], "another password", actor=ACTOR)
    with pytest.raises(LinkInvalid, match="not valid"):
        service.check_link("reset", "x" * 500)
    with pytest.raises(LinkInvalid):  # a reset link is no confirmation link
        service.check_link("verify", links[1])


def test_a_reset_ends_sessions_spends_other_links_and_mails_a_notice(service, db_session, links):
    user = confirmed_user(db_session)
    generation = user.credential_generation
    service.send_link("reset", user.email, actor=ACTOR)  # type: ignore[arg-type]
    service.send_link("reset", user.username, actor=ACTOR)
    service.reset_password(links[1], "a new password", actor=ACTOR)
    assert user.credential_generation == generation + 1
    with pytest.raises(LinkInvalid, match="used already"):
        service.check_link("reset", links[0])
    notice = mails(db_session)[-1]
    assert notice.subject == "Your password was changed" and "192.0.2.7" in notice.body_text
    (event,) = db_session.scalars(select(AuditEvent).where(AuditEvent.tag == "user:password_change"))
    assert event.actor_name == user.username and event.data == {"via": "reset"}


def test_links_per_address_are_limited(service, db_session):
    user = confirmed_user(db_session)
    sent = [service.send_link("reset", user.username, actor=ACTOR) for _ in range(LINKS_PER_HOUR + 2)]
    assert sent == [1] * LINKS_PER_HOUR + [0, 0]
    # Unknown names, and confirmation links for confirmed accounts, send nothing.
    assert service.send_link("reset", "nobody@example.org", actor=ACTOR) == 0
    assert service.send_link("verify", user.username, actor=ACTOR) == 0


def test_request_link_only_queues_a_job(service, db_session):
    from dockyard.jobs import Job

    service.request_link("reset", "  somebody@example.org ", actor=ACTOR)
    (job,) = db_session.scalars(select(Job))
    assert job.kind == "accounts.mail_link"
    assert job.payload == {"purpose": "reset", "identifier": "somebody@example.org", "ip": "192.0.2.7"}
    assert mails(db_session) == []
    with pytest.raises(ValueError):
        service.request_link("other", "x", actor=ACTOR)


def test_a_new_address_is_confirmed_by_its_link_and_the_old_one_told(service, db_session, links):
    user = confirmed_user(db_session)
    old = user.email
    actor = Actor(user.id, user.username, "192.0.2.8", None, "user")
    service.request_email_change(user.username, "first@example.org", actor=actor)
    service.request_email_change(user.username, "Second@Example.org", actor=actor)
    sent = [(m.to_address, m.template) for m in mails(db_session)]
    assert sent == [
        (old, "notice"),
        ("first@example.org", "verify_email"),
        (old, "notice"),
        ("second@example.org", "verify_email"),
    ]
    with pytest.raises(LinkInvalid):  # only the latest address asked for can be confirmed
        service.verify_email(links[0], actor=actor)
    assert user.email == old
    service.verify_email(links[1], actor=actor)
    assert user.email == "second@example.org" and user.email_verified_at is not None
    with pytest.raises(Invalid):
        service.request_email_change(user.username, "second@example.org", actor=actor)


def test_address_changes_are_limited_and_refuse_taken_addresses(service, db_session):
    user, other = confirmed_user(db_session), confirmed_user(db_session)
    with pytest.raises(Conflict):
        service.request_email_change(user.username, other.email, actor=ACTOR)  # type: ignore[arg-type]
    for _ in range(LINKS_PER_HOUR):
        service.request_email_change(user.username, "wanted@example.org", actor=ACTOR)
    with pytest.raises(TooManyRequests):
        service.request_email_change(user.username, "wanted@example.org", actor=ACTOR)


def test_a_password_change_spends_reset_links(service, db_session, links):
    user = confirmed_user(db_session)
    service.send_link("reset", user.username, actor=ACTOR)
    service.change_password(user.username, "changed password", actor=ACTOR)
    with pytest.raises(LinkInvalid, match="used already"):
        service.check_link("reset", links[0])
    with pytest.raises(Invalid) as exc:
        service.change_password(user.username, "short", actor=ACTOR)
    assert exc.value.detail == {"field": "new_password"}


def test_users_made_by_an_administrator_count_as_confirmed(db_session):
    user = AccountService(db_session, EventBus()).create_user(unique("adm"), PASSWORD, email="a@example.org")
    assert user.email_verified_at is not None


def test_spent_links_are_forgotten_after_a_week(service, db_session):
    user = confirmed_user(db_session)
    service.send_link("reset", user.username, actor=ACTOR)
    assert purge_links(db_session) == 0
    db_session.execute(update(EmailToken).values(expires_at=utcnow() - dt.timedelta(days=8)))
    assert purge_links(db_session) == 1
    assert db_session.scalar(select(EmailToken.id).where(EmailToken.purpose == TokenPurpose.RESET)) is None
