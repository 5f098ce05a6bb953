"""PublisherService: one profile per organisation, every validation rule with its field, who may read and
edit it, the company email's single-use link, the agreement, catalogue images, and what is missing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from tests.support.factories import make_org, make_robot, make_user
from tests.support.pictures import picture

from dockyard.accounts.models import Robot
from dockyard.accounts.passwords import hash_secret
from dockyard.accounts.selfservice import LinkInvalid
from dockyard.accounts.services import AccountService
from dockyard.audit.models import AuditEvent
from dockyard.authz import Principal, StaffRole
from dockyard.config import Settings
from dockyard.email.models import OutboundEmail
from dockyard.errors import Conflict, Forbidden, Invalid, NotFound, TooLarge, TooManyRequests, Unauthenticated
from dockyard.events import Actor, EventBus, EventTag
from dockyard.publishing import notifications
from dockyard.publishing.agreement import AGREEMENT_VERSION
from dockyard.publishing.assets import AssetStore, asset_key
from dockyard.publishing.imaging import ImageInvalid
from dockyard.publishing.models import CatalogImage, Publisher, PublisherEmailToken
from dockyard.publishing.profiles import ProfileInvalid, PublisherService
from dockyard.storage.blobstore import BlobStore
from dockyard.storage.memory import MemoryDriver

NEEDS_PLUS = "Start the number with + and its country code, e.g. +44 20 7946 0958 or +1 415 555 0100."
ACTOR = Actor(name="ada", kind="user", ip="192.0.2.1")
GOOD = {
    "legal_name": "Acme Software Ltd",
    "website": "https://acme.example",
    "phone": "+44 20 7946 0958",
    "email": "Store@Acme.example",
    "story": "# Acme\n\nWe make **databases**.",
}


@pytest.fixture
def bus(tmp_path: Path) -> EventBus:
    bus = EventBus()
    notifications.subscribe(bus, Settings(data_dir=tmp_path, public_url="https://store.example"))
    return bus


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(MemoryDriver(), tmp_path / "uploads")


@pytest.fixture
def service(db_session: Session, bus: EventBus, blobs: BlobStore) -> PublisherService:
    return PublisherService(db_session, bus, AccountService(db_session, bus), AssetStore(blobs))


def person(session: Session, role_in: dict[str, str] | None = None, **kw) -> Principal:
    user = make_user(session, **kw)
    accounts = AccountService(session, EventBus())
    for org, role in (role_in or {}).items():
        accounts.set_member(org, user.username, role)
    return Principal(kind="user", name=user.username, user_id=user.id, staff=accounts.staff_roles(user.id))


@pytest.fixture
def world(db_session: Session):
    owner = person(db_session)
    org = make_org(db_session, owner=owner.name)
    return org, owner


def events(session: Session, tag: EventTag) -> list[AuditEvent]:
    return list(
        session.scalars(select(AuditEvent).where(AuditEvent.tag == tag.value).order_by(AuditEvent.id))
    )


def problems_of(exc: ProfileInvalid) -> dict[str, str]:
    return {p.path: p.message for p in exc.problems}


# -- one per organisation, and who sees it -------------------------------------------------------------
def test_get_or_create_makes_one_empty_profile_per_organisation(service, world, db_session) -> None:
    org, owner = world
    first = service.get_or_create(org, owner)
    assert service.get_or_create(org, owner).id == first.id
    assert db_session.scalar(select(Publisher).where(Publisher.id == first.id)).legal_name is None
    assert [p.path for p in service.completeness_problems(first)] == [
        "legal_name", "website", "phone", "email", "logo", "story", "agreement",
    ]  # fmt: skip


def test_profile_reads_without_writing(service, world, db_session) -> None:
    org, owner = world
    shown = service.profile(org, owner)
    assert shown.can_edit and not shown.complete and shown.publisher.id is None
    assert db_session.scalar(select(Publisher)) is None


def test_personal_namespaces_have_no_publisher_profile(service, world) -> None:
    _, owner = world
    with pytest.raises(Invalid, match="personal namespace"):
        service.get_or_create(owner.name, owner)


def test_strangers_and_members_of_other_organisations_are_told_it_does_not_exist(service, world, db_session):
    org, _ = world
    other_org = make_org(db_session)
    outsider = person(db_session, {other_org: "owner"})
    for call in (
        lambda: service.profile(org, outsider),
        lambda: service.get_or_create(org, outsider),
        lambda: service.update(org, GOOD, outsider, ACTOR),
        lambda: service.upload_image(org, "logo", picture(512, 512), outsider, ACTOR),
        lambda: service.accept_agreement(org, AGREEMENT_VERSION, outsider, ACTOR),
        lambda: service.profile("no-such-org", outsider),
    ):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(Unauthenticated):
        service.profile(org, Principal())


def test_readers_read_maintainers_upload_owners_edit(service, world, db_session) -> None:
    org, _ = world
    reader = person(db_session, {org: "reader"})
    maintainer = person(db_session, {org: "maintainer"})
    assert not service.profile(org, reader).can_edit
    with pytest.raises(Forbidden, match="owners edit"):
        service.update(org, {"legal_name": "Evil Corp"}, reader, ACTOR)
    with pytest.raises(Forbidden, match="owners edit"):
        service.update(org, {"legal_name": "Evil Corp"}, maintainer, ACTOR)
    with pytest.raises(Forbidden, match="owners edit"):
        service.accept_agreement(org, AGREEMENT_VERSION, maintainer, ACTOR)
    with pytest.raises(Forbidden, match="upload images"):
        service.upload_image(org, "logo", picture(512, 512), reader, ACTOR)
    assert service.upload_image(org, "screenshot", picture(640, 360), maintainer, ACTOR).kind == "screenshot"


def test_store_staff_read_but_do_not_edit(service, world, db_session) -> None:
    org, _ = world
    for role in (StaffRole.STORE_REVIEWER, StaffRole.STORE_SUPPORT):
        staff = person(db_session, staff=(role.value,))
        shown = service.profile(org, staff)
        assert not shown.can_edit
        with pytest.raises(Forbidden):
            service.update(org, {"legal_name": "Staff Ltd"}, staff, ACTOR)
    finance = person(db_session, staff=(StaffRole.FINANCE.value,))
    with pytest.raises(NotFound):
        service.profile(org, finance)


def test_robots_may_not_accept_the_agreement(service, world, db_session) -> None:
    org, _ = world
    robot_name, _secret = make_robot(db_session, org, role="maintainer")
    robot = db_session.scalar(select(Robot).where(Robot.name == robot_name.split("+")[1]))
    bot = Principal(kind="robot", name=robot_name, robot_id=robot.id)
    assert not service.profile(org, bot).can_edit
    with pytest.raises(Forbidden):
        service.accept_agreement(org, AGREEMENT_VERSION, bot, ACTOR)


# -- validation ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("legal_name", "A", "Use 2 to 200 characters."),
        ("legal_name", "x" * 201, "Use 2 to 200 characters."),
        ("legal_name", "Acme\nLtd", "Remove the control characters (tabs, line breaks)."),
        ("website", "acme.example", "Enter a web address starting with https:// or http://, such as https://example.com."),
        ("website", "ftp://acme.example", "Enter a web address starting with https:// or http://, such as https://example.com."),
        ("website", "javascript:alert(1)", "Enter a web address starting with https:// or http://, such as https://example.com."),
        ("website", "https://user:pw@acme.example", "Leave any user name and password out of the address."),
        ("website", "https://acme", "Enter the full host name, such as example.com."),
        ("website", "https://" + "a" * 2050 + ".example", "Use an address of at most 2048 characters."),
        ("phone", "020 7946 0958", NEEDS_PLUS),
        ("phone", "+44 20 79", "This phone number does not exist in its country's numbering plan: check it."),
        ("phone", "call us", "This is not a phone number: use digits, with + and the country code."),
        ("email", "not-an-address", "Enter an email address such as name@example.com."),
        ("story", "x" * 100_001, "Use at most 100000 characters."),
        ("logo_id", 999_999, "This image was not uploaded by this publisher."),
        ("logo_id", "7", "Choose an uploaded logo."),
    ],
)  # fmt: skip
def test_each_wrong_field_is_reported_with_its_path(service, world, field, value, message) -> None:
    org, owner = world
    with pytest.raises(ProfileInvalid) as caught:
        service.update(org, {field: value}, owner, ACTOR)
    assert problems_of(caught.value) == {field: message}
    assert caught.value.detail == [{"field": field, "message": message}]


def test_every_wrong_field_is_reported_at_once_and_nothing_is_saved(service, world, db_session) -> None:
    org, owner = world
    bad = {"legal_name": "A", "website": "acme", "phone": "0123", "email": "x", "colour": "red"}
    with pytest.raises(ProfileInvalid) as caught:
        service.update(org, bad, owner, ACTOR)
    assert list(problems_of(caught.value)) == ["colour"]  # unknown fields first: a client's mistake
    del bad["colour"]
    with pytest.raises(ProfileInvalid) as caught:
        service.update(org, bad, owner, ACTOR)
    assert sorted(problems_of(caught.value)) == ["email", "legal_name", "phone", "website"]
    assert service.get_or_create(org, owner).legal_name is None


def test_a_good_profile_is_saved_normalised(service, world) -> None:
    org, owner = world
    saved = service.update(org, GOOD, owner, ACTOR)
    assert (saved.legal_name, saved.website, saved.phone, saved.email) == (
        "Acme Software Ltd",
        "https://acme.example",
        "+442079460958",
        "store@acme.example",
    )
    assert service.profile(org, owner).phone_display == "+44 20 7946 0958"
    us = service.update(org, {"phone": "+1 (415) 555-2671"}, owner, ACTOR)
    assert us.phone == "+14155552671"


def test_none_or_empty_clears_a_field_and_absent_fields_stay(service, world) -> None:
    org, owner = world
    service.update(org, GOOD, owner, ACTOR)
    saved = service.update(org, {"website": None, "legal_name": ""}, owner, ACTOR)
    assert saved.website is None and saved.legal_name is None and saved.phone == "+442079460958"


def test_a_logo_must_be_a_logo_of_this_publisher(service, world, db_session) -> None:
    org, owner = world
    shot = service.upload_image(org, "screenshot", picture(640, 360), owner, ACTOR)
    with pytest.raises(ProfileInvalid) as caught:
        service.update(org, {"logo_id": shot.id}, owner, ACTOR)
    assert problems_of(caught.value) == {"logo_id": "This image is a screenshot, not a logo."}
    other_owner = person(db_session)
    other = make_org(db_session, owner=other_owner.name)
    theirs = service.upload_image(other, "logo", picture(512, 512), other_owner, ACTOR)
    with pytest.raises(ProfileInvalid, match="not uploaded by this publisher"):
        service.update(org, {"logo_id": theirs.id}, owner, ACTOR)
    mine = service.upload_image(org, "logo", picture(512, 512), owner, ACTOR)
    assert service.update(org, {"logo_id": mine.id}, owner, ACTOR).logo_id == mine.id


def test_update_publishes_the_fields_changed(service, world, db_session) -> None:
    org, owner = world
    service.update(org, {"legal_name": "Acme Ltd", "story": "Hello"}, owner, ACTOR)
    service.update(org, {"legal_name": "Acme Ltd"}, owner, ACTOR)  # no change: no event
    (event,) = events(db_session, EventTag.PUBLISHER_UPDATE)
    assert (event.namespace, event.actor_name, event.data) == (
        org,
        "ada",
        {"fields": ["legal_name", "story"]},
    )


# -- the company email ---------------------------------------------------------------------------------
def secret_of(db_session: Session, mail: OutboundEmail) -> str:
    url = next(line for line in mail.body_text.splitlines() if "/ui/publisher-email/verify?token=" in line)
    return url.strip().split("token=")[1]


def mails(db_session: Session) -> list[OutboundEmail]:
    return list(db_session.scalars(select(OutboundEmail).order_by(OutboundEmail.id)))


def test_a_new_company_email_gets_a_single_use_link(service, world, db_session) -> None:
    org, owner = world
    service.update(org, GOOD, owner, ACTOR)
    (mail,) = mails(db_session)
    assert mail.to_address == "store@acme.example"
    assert mail.subject == f"Confirm the company email address of {org}"
    secret = secret_of(db_session, mail)
    (token,) = db_session.scalars(select(PublisherEmailToken))
    assert token.token_hash == hash_secret(secret) and secret not in token.token_hash
    assert token.expires_at - token.created_at == dt.timedelta(hours=48)
    (request,) = events(db_session, EventTag.PUBLISHER_EMAIL_VERIFY_REQUEST)
    assert request.data == {"email": "store@acme.example"}
    assert secret not in str([e.data for e in db_session.scalars(select(AuditEvent))])

    assert service.check_email_link(secret) == (org, "store@acme.example")
    verified_org, publisher = service.verify_email(secret, ACTOR)
    assert verified_org == org and publisher.email_verified_at is not None
    assert len(events(db_session, EventTag.PUBLISHER_EMAIL_VERIFY)) == 1
    with pytest.raises(LinkInvalid, match="used already"):
        service.verify_email(secret, ACTOR)
    assert [p.path for p in service.completeness_problems(publisher)] == ["logo", "agreement"]


def test_changing_the_email_clears_its_confirmation_and_old_links(service, world, db_session) -> None:
    org, owner = world
    service.update(org, GOOD, owner, ACTOR)
    first = secret_of(db_session, mails(db_session)[0])
    service.verify_email(first, ACTOR)
    service.update(org, {"email": "STORE@acme.example"}, owner, ACTOR)  # the same address: nothing happens
    assert len(mails(db_session)) == 1
    publisher = service.update(org, {"email": "sales@acme.example"}, owner, ACTOR)
    assert publisher.email_verified_at is None
    second = mails(db_session)[1]
    assert second.to_address == "sales@acme.example"
    service.update(org, {"email": "hello@acme.example"}, owner, ACTOR)
    with pytest.raises(LinkInvalid, match="address the profile no longer uses"):
        service.verify_email(secret_of(db_session, second), ACTOR)
    problems = {p.path: p.message for p in service.completeness_problems(publisher)}
    assert (
        problems["email"] == "Confirm the company email address: open the link mailed to hello@acme.example."
    )


def test_expired_and_unknown_links_are_refused(service, world, db_session) -> None:
    org, owner = world
    service.update(org, GOOD, owner, ACTOR)
    secret = secret_of(db_session, mails(db_session)[0])
    db_session.execute(update(PublisherEmailToken).values(expires_at=dt.datetime(2000, 1, 1)))
    with pytest.raises(LinkInvalid, match="expired"):
        service.verify_email(secret, ACTOR)
    for wrong in ("", "x" * 200, secret[:-1]):
        with pytest.raises(LinkInvalid, match="not valid"):
            service.verify_email(wrong, ACTOR)


def test_resend_mails_a_new_link_a_few_times_an_hour(service, world, db_session) -> None:
    org, owner = world
    with pytest.raises(Invalid, match="Add a company email"):
        service.resend_verification(org, owner, ACTOR)
    service.update(org, GOOD, owner, ACTOR)
    first = secret_of(db_session, mails(db_session)[0])
    service.resend_verification(org, owner, ACTOR)
    with pytest.raises(LinkInvalid, match="a newer link replaced it"):
        service.verify_email(first, ACTOR)
    service.resend_verification(org, owner, ACTOR)
    with pytest.raises(TooManyRequests):
        service.resend_verification(org, owner, ACTOR)
    service.verify_email(secret_of(db_session, mails(db_session)[-1]), ACTOR)
    with pytest.raises(Conflict, match="confirmed already"):
        service.resend_verification(org, owner, ACTOR)


# -- the agreement -------------------------------------------------------------------------------------
def test_accepting_the_agreement_records_version_who_and_when(service, world, db_session) -> None:
    org, owner = world
    with pytest.raises(Conflict, match="not the current publisher agreement"):
        service.accept_agreement(org, "1999-01", owner, ACTOR)
    publisher = service.accept_agreement(org, AGREEMENT_VERSION, owner, ACTOR)
    assert publisher.agreement_version == AGREEMENT_VERSION
    assert publisher.agreement_accepted_by == owner.user_id and publisher.agreement_accepted_at is not None
    assert service.profile(org, owner).agreement_accepted_by == owner.name
    (event,) = events(db_session, EventTag.PUBLISHER_AGREEMENT_ACCEPT)
    assert event.data == {"version": AGREEMENT_VERSION}
    publisher.agreement_version = "2020-01"
    (problem,) = [p for p in service.completeness_problems(publisher) if p.path == "agreement"]
    assert "new publisher agreement" in problem.message and "2020-01" in problem.message


def test_a_complete_profile_has_no_problems(service, world, db_session) -> None:
    org, owner = world
    logo = service.upload_image(org, "logo", picture(512, 512), owner, ACTOR)
    service.update(org, GOOD | {"logo_id": logo.id}, owner, ACTOR)
    service.verify_email(secret_of(db_session, mails(db_session)[0]), ACTOR)
    publisher = service.accept_agreement(org, AGREEMENT_VERSION, owner, ACTOR)
    assert service.completeness_problems(publisher) == []
    assert service.profile(org, owner).complete


# -- images --------------------------------------------------------------------------------------------
def test_an_uploaded_logo_is_stored_under_asset_keys(service, world, blobs, db_session) -> None:
    org, owner = world
    image = service.upload_image(org, "logo", picture(1024, 1024, "JPEG"), owner, ACTOR)
    assert (image.kind, image.width, image.height, image.media_type) == ("logo", 1024, 1024, "image/png")
    assert sorted(image.renditions) == ["128", "512", "64"]
    for name, digest in image.renditions.items():
        assert blobs.driver.size(asset_key(digest)) is not None
        data, media_type, public = service.image_bytes(image.id, name, owner)
        assert media_type == "image/png" and data.startswith(b"\x89PNG") and not public
    assert all(key.startswith("assets/sha256/") for key, _ in blobs.driver.list_keys(""))
    assert not list(blobs.list_blobs())  # nothing among the registry's blobs
    (event,) = events(db_session, EventTag.CATALOG_IMAGE_UPLOAD)
    assert event.data["id"] == image.id and event.data["format"] == "JPEG"
    with pytest.raises(NotFound):
        service.image_bytes(image.id, "full", owner)
    with pytest.raises(NotFound):
        service.image_bytes(image.id + 100, "512", owner)


def test_unreleased_images_are_seen_only_by_the_team(service, world, db_session) -> None:
    """A draft's screenshot is no preview for the world: only members and the store team see it, until it is
    the company logo or in a published revision; others get NotFound, as for an id that does not exist."""
    from dockyard.authz import ANONYMOUS
    from dockyard.publishing.models import Product, ProductRevision

    org, owner = world
    logo = service.upload_image(org, "logo", picture(512, 512), owner, ACTOR)
    shot = service.upload_image(org, "screenshot", picture(1280, 720), owner, ACTOR)
    reader, outsider = person(db_session, {org: "reader"}), person(db_session)
    reviewer = person(db_session)
    AccountService(db_session, EventBus()).grant_staff(reviewer.name, StaffRole.STORE_REVIEWER, actor=ACTOR)
    reviewer = Principal(kind="user", name=reviewer.name, user_id=reviewer.user_id,
                         staff=frozenset({StaffRole.STORE_REVIEWER}))  # fmt: skip
    for image, rendition in ((logo, "128"), (shot, "thumb")):
        for who in (owner, reader, reviewer):
            assert service.image_bytes(image.id, rendition, who)[2] is False
        for who in (outsider, ANONYMOUS):
            with pytest.raises(NotFound, match="no such image"):
                service.image_bytes(image.id, rendition, who)

    service.update(org, {"logo_id": logo.id}, owner, ACTOR)  # the company logo: public
    assert service.image_bytes(logo.id, "128", ANONYMOUS)[2] is True
    with pytest.raises(NotFound):
        service.image_bytes(shot.id, "thumb", ANONYMOUS)

    publisher = db_session.scalar(select(Publisher).where(Publisher.id == logo.publisher_id))
    product = Product(publisher_id=publisher.id, slug="p")
    db_session.add(product)
    db_session.flush()
    live = ProductRevision(product_id=product.id, number=1, state="published",
                           manifest={"slug": "p", "screenshots": [shot.id]})  # fmt: skip
    db_session.add(live)
    db_session.flush()
    product.live_revision_id = live.id
    db_session.flush()
    data, _, public = service.image_bytes(shot.id, "thumb", ANONYMOUS)  # published: public
    assert public and data


def test_refused_images_store_nothing(service, world, blobs, db_session) -> None:
    org, owner = world
    with pytest.raises(ImageInvalid, match="square: it is 512x513"):
        service.upload_image(org, "logo", picture(512, 513), owner, ACTOR)
    with pytest.raises(TooLarge):
        service.upload_image(org, "logo", b"\x89PNG\r\n\x1a\n" + b"\0" * (6 * 1024 * 1024), owner, ACTOR)
    with pytest.raises(Invalid, match="kind must be"):
        service.upload_image(org, "banner", picture(512, 512), owner, ACTOR)
    assert db_session.scalar(select(CatalogImage)) is None
    assert list(blobs.driver.list_keys("")) == []
