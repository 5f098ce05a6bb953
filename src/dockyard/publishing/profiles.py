"""Publisher profiles, one per organisation: who stands behind its products.

Owners (``PUBLISHER_MANAGE``) edit the profile and accept the agreement; every member (``PRODUCT_READ``)
and the store team read it; anyone else is told the organisation does not exist. Maintainers
(``PRODUCT_EDIT``) may upload catalogue images, which products use too.

The company email is confirmed through a mailed link, as accounts' addresses are (``selfservice.py``): a
secret of 256 bits of which only the SHA-256 is stored (``PublisherEmailToken``) with the address it went
to, working once, for 48 hours. Changing the address clears its confirmation and mails a new link; the
mail itself is queued by ``publishing/notifications.py`` from the event, whose ``private`` part alone
carries the secret (never the audit row).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard.accounts.passwords import hash_secret, new_secret
from dockyard.accounts.reads import AccountReads
from dockyard.accounts.selfservice import LINKS_PER_HOUR, LinkInvalid, email_problem, normalise_email
from dockyard.accounts.services import AccountService
from dockyard.authz import Permission, Principal, allowed
from dockyard.db import MAX_ID, utcnow
from dockyard.errors import Conflict, Forbidden, Invalid, NotFound, TooManyRequests, Unauthenticated
from dockyard.events import Actor, Event, EventBus, EventTag
from dockyard.publishing import imaging
from dockyard.publishing.agreement import AGREEMENT_VERSION
from dockyard.publishing.assets import AssetStore
from dockyard.publishing.fields import CONTROL, LEGAL_NAME_MAX, format_phone, parse_phone, website_problem
from dockyard.publishing.manifest import MARKDOWN_MAX, ManifestInvalid, Problem
from dockyard.publishing.models import (
    CatalogImage,
    Product,
    ProductRevision,
    Publisher,
    PublisherEmailToken,
)
from dockyard.publishing.reads import publisher_for

EMAIL_LINK_TTL = dt.timedelta(hours=48)
FIELDS = ("legal_name", "website", "phone", "email", "logo_id", "story")


class ProfileInvalid(ManifestInvalid):
    """One or more fields of a profile are wrong; ``detail`` lists them as ``[{field, message}]``."""


@dataclass
class PublisherProfile:
    """A profile as its viewer may see it (empty until its owners first save it)."""

    org: str
    publisher: Publisher
    can_edit: bool
    missing: list[Problem]
    agreement_accepted_by: str | None  # the username, while the account exists
    pending_email: bool  # a link went to the company address and is still valid
    logo: CatalogImage | None = None

    @property
    def phone_display(self) -> str:
        return format_phone(self.publisher.phone)

    @property
    def complete(self) -> bool:
        return not self.missing


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProfileInvalid([Problem(name, "must be text")])
    return value.strip()


# -- the service ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrgRef:
    """An organisation as the accounts domain describes it (publishing does not read its models)."""

    id: int
    name: str
    kind: str


class PublisherService:
    def __init__(self, session: Session, bus: EventBus, accounts: AccountService, assets: AssetStore) -> None:
        self.session = session
        self.bus = bus
        self.accounts = accounts
        self.assets = assets

    # -- access ------------------------------------------------------------------------------------------
    def _namespace(self, org: str, principal: Principal, permission: Permission) -> OrgRef:
        """The organisation, when ``principal`` may see it, and may do ``permission`` there: NotFound for
        those who may not see it (as for one that does not exist), Forbidden for members who may not."""
        found = AccountReads(self.session).namespace(org)
        ns = None if found is None else OrgRef(id=found[0], name=org, kind=found[1])
        role = self.accounts.role_in(principal, org) if ns is not None else None
        readable = allowed(principal, Permission.PRODUCT_READ, namespace_role=role) or allowed(
            principal, Permission.CATALOG_READ
        )
        if principal.is_anonymous:
            raise Unauthenticated("authentication required")
        if ns is None or not readable:
            raise NotFound(f"organisation {org!r} not found")
        if ns.kind != "org":
            raise Invalid(
                f"{org!r} is a personal namespace: publisher profiles belong to organisations",
                detail={"field": "org"},
            )
        if permission is not Permission.PRODUCT_READ and not allowed(
            principal, permission, namespace_role=role
        ):
            what = {
                Permission.PUBLISHER_MANAGE: "Only the organisation's owners edit its publisher profile.",
                Permission.PRODUCT_EDIT: "Only the organisation's owners and maintainers upload images.",
            }
            raise Forbidden(what.get(permission, f"not allowed: {permission.value}"))
        return ns

    def _find(self, ns: OrgRef) -> Publisher | None:
        return self.session.scalar(select(Publisher).where(Publisher.namespace_id == ns.id))

    def _ensure(self, ns: OrgRef) -> Publisher:
        # publisher_for: two first uses at once (a profile save and a product create) share one row.
        publisher = publisher_for(self.session, ns.name, create=True)
        assert publisher is not None
        return publisher

    def get_or_create(self, org: str, principal: Principal) -> Publisher:
        """The publisher of organisation ``org`` (made, empty, on first use), for anyone who may read it."""
        return self._ensure(self._namespace(org, principal, Permission.PRODUCT_READ))

    def profile(self, org: str, principal: Principal) -> PublisherProfile:
        """The profile as ``principal`` may see it, with what it lacks; writes nothing."""
        ns = self._namespace(org, principal, Permission.PRODUCT_READ)
        role = self.accounts.role_in(principal, org)
        publisher = self._find(ns) or Publisher(namespace_id=ns.id, story="")
        accepted_by = None
        if publisher.agreement_accepted_by is not None:
            accepted_by = AccountReads(self.session).username(publisher.agreement_accepted_by)
        pending = False
        if publisher.id is not None and publisher.email and publisher.email_verified_at is None:
            pending = (
                self.session.scalar(
                    select(PublisherEmailToken.id)
                    .where(
                        PublisherEmailToken.publisher_id == publisher.id,
                        PublisherEmailToken.email == publisher.email,
                        PublisherEmailToken.used_at.is_(None),
                        PublisherEmailToken.expires_at > utcnow(),
                    )
                    .limit(1)
                )
                is not None
            )
        logo = self.session.get(CatalogImage, publisher.logo_id) if publisher.logo_id else None
        return PublisherProfile(
            org=ns.name,
            publisher=publisher,
            can_edit=allowed(principal, Permission.PUBLISHER_MANAGE, namespace_role=role),
            missing=self.completeness_problems(publisher),
            agreement_accepted_by=accepted_by,
            pending_email=pending,
            logo=logo,
        )

    # -- editing -----------------------------------------------------------------------------------------
    def update(self, org: str, changes: Mapping[str, Any], principal: Principal, actor: Actor) -> Publisher:
        """Change the fields given in ``changes`` (``legal_name``, ``website``, ``phone``, ``email``,
        ``logo_id``, ``story``; None or "" clears one); every wrong field is reported at once."""
        ns = self._namespace(org, principal, Permission.PUBLISHER_MANAGE)
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise ProfileInvalid(
                [Problem(name, "is not a field of the publisher profile") for name in unknown]
            )
        publisher = self._ensure(ns)
        values, problems = self._check(publisher, changes)
        if problems:
            raise ProfileInvalid(problems)
        changed = [name for name, value in values.items() if getattr(publisher, name) != value]
        email_changed = "email" in changed
        if email_changed and values["email"]:
            # Each change mails a link: changing back and forth must not mail an address without limit.
            self._limit_links(values["email"])
        for name in changed:
            setattr(publisher, name, values[name])
        if email_changed:
            # Links sent to the previous address stop working (_live_token): only the current one counts.
            publisher.email_verified_at = None
        self.session.flush()
        if changed:
            self.bus.publish(
                self.session,
                Event(EventTag.PUBLISHER_UPDATE, actor, namespace=ns.name, data={"fields": changed}),
            )
        if email_changed and publisher.email:
            self._mail_link(ns.name, publisher, actor)
        return publisher

    def _check(
        self, publisher: Publisher, changes: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[Problem]]:
        values: dict[str, Any] = {}
        problems: list[Problem] = []
        for name in FIELDS:
            if name not in changes:
                continue
            raw = changes[name]
            if name == "logo_id":
                problem = self._logo_problem(publisher, raw)
                if problem:
                    problems.append(Problem(name, problem))
                else:
                    values[name] = raw or None
                continue
            text = _text(raw, name)
            if name == "story":
                if len(text) > MARKDOWN_MAX:
                    problems.append(Problem(name, f"Use at most {MARKDOWN_MAX} characters."))
                values[name] = text
                continue
            if not text:
                values[name] = None
                continue
            if CONTROL.search(text):
                problems.append(Problem(name, "Remove the control characters (tabs, line breaks)."))
                continue
            if name == "legal_name":
                if len(text) < 2 or len(text) > LEGAL_NAME_MAX:
                    problems.append(Problem(name, f"Use 2 to {LEGAL_NAME_MAX} characters."))
                values[name] = text
            elif name == "website":
                problem = website_problem(text)
                if problem:
                    problems.append(Problem(name, problem))
                values[name] = text
            elif name == "phone":
                try:
                    values[name] = parse_phone(text)
                except ValueError as exc:
                    problems.append(Problem(name, str(exc)))
            elif name == "email":
                problem = email_problem(text)
                if problem:
                    problems.append(Problem(name, problem))
                values[name] = normalise_email(text)
        return values, problems

    def _logo_problem(self, publisher: Publisher, logo_id: Any) -> str | None:
        if logo_id is None or logo_id == "":
            return None
        if not isinstance(logo_id, int) or isinstance(logo_id, bool) or not 1 <= logo_id <= MAX_ID:
            return "Choose an uploaded logo."
        image = self.session.get(CatalogImage, logo_id)
        if image is None or image.publisher_id != publisher.id:
            return "This image was not uploaded by this publisher."
        if image.kind != imaging.ImageKind.LOGO.value:
            return "This image is a screenshot, not a logo."
        return None

    def accept_agreement(self, org: str, version: str, principal: Principal, actor: Actor) -> Publisher:
        """Record that ``principal`` accepted the current publisher agreement on the organisation's behalf."""
        ns = self._namespace(org, principal, Permission.PUBLISHER_MANAGE)
        if principal.kind != "user" or principal.user_id is None:
            raise Forbidden("A person accepts the publisher agreement, not a robot account.")
        if version != AGREEMENT_VERSION:
            raise Conflict(
                f"Version {version!r} is not the current publisher agreement: read version "
                f"{AGREEMENT_VERSION} and accept it.",
                detail={"field": "agreement", "current": AGREEMENT_VERSION},
            )
        publisher = self._ensure(ns)
        publisher.agreement_version = AGREEMENT_VERSION
        publisher.agreement_accepted_by = principal.user_id
        publisher.agreement_accepted_at = utcnow()
        self.session.flush()
        self.bus.publish(
            self.session,
            Event(
                EventTag.PUBLISHER_AGREEMENT_ACCEPT,
                actor,
                namespace=ns.name,
                data={"version": AGREEMENT_VERSION},
            ),
        )
        return publisher

    # -- the company email ------------------------------------------------------------------------------
    def resend_verification(self, org: str, principal: Principal, actor: Actor) -> Publisher:
        """Mail a new confirmation link to the company address (the older ones stop working)."""
        ns = self._namespace(org, principal, Permission.PUBLISHER_MANAGE)
        publisher = self._ensure(ns)
        if not publisher.email:
            raise Invalid("Add a company email address first.", detail={"field": "email"})
        if publisher.email_verified_at is not None:
            raise Conflict("The company email address is confirmed already.", detail={"field": "email"})
        self._limit_links(publisher.email)
        # The older links stay in the table (they count towards the limit) but stop working: see _live_token.
        self._mail_link(ns.name, publisher, actor)
        return publisher

    def _limit_links(self, email: str) -> None:
        """TooManyRequests once ``email`` was sent LINKS_PER_HOUR links in the last hour."""
        since = utcnow() - dt.timedelta(hours=1)
        recent = self.session.scalar(
            select(func.count()).where(
                PublisherEmailToken.email == email, PublisherEmailToken.created_at > since
            )
        )
        if int(recent or 0) >= LINKS_PER_HOUR:
            raise TooManyRequests(
                "Several links went to this address in the last hour: try again later.", retry_after=3600
            )

    def check_email_link(self, secret: str) -> tuple[str, str]:
        """(organisation, address) a valid link confirms (LinkInvalid once unknown, used or expired)."""
        token, publisher = self._live_token(secret)
        return self._org_name(publisher), token.email

    def verify_email(self, secret: str, actor: Actor) -> tuple[str, Publisher]:
        """Confirm the company address a link was mailed to; the link is spent. Returns (org, publisher)."""
        token, publisher = self._live_token(secret)
        now = utcnow()
        token.used_at = now
        publisher.email_verified_at = now
        self.session.flush()
        org = self._org_name(publisher)
        self.bus.publish(
            self.session,
            Event(EventTag.PUBLISHER_EMAIL_VERIFY, actor, namespace=org, data={"email": token.email}),
        )
        return org, publisher

    def _live_token(self, secret: str) -> tuple[PublisherEmailToken, Publisher]:
        token = None
        if secret and len(secret) <= 128:
            token = self.session.scalar(
                select(PublisherEmailToken).where(PublisherEmailToken.token_hash == hash_secret(secret))
            )
        if token is None:
            raise LinkInvalid("This link is not valid: it may be incomplete, or a newer link replaced it.")
        if token.used_at is not None:
            raise LinkInvalid("This link was used already: each link works once.")
        if token.expires_at <= utcnow():
            raise LinkInvalid("This link has expired: ask for a new one on the publisher profile.")
        publisher = self.session.get(Publisher, token.publisher_id)
        assert publisher is not None  # the foreign key cascades
        if (publisher.email or "") != token.email:
            raise LinkInvalid("This link was sent to an address the profile no longer uses.")
        newer = self.session.scalar(
            select(PublisherEmailToken.id)
            .where(PublisherEmailToken.publisher_id == publisher.id, PublisherEmailToken.id > token.id)
            .limit(1)
        )
        if newer is not None:
            raise LinkInvalid("This link is not valid any more: a newer link replaced it.")
        return token, publisher

    def _org_name(self, publisher: Publisher) -> str:
        return str(AccountReads(self.session).namespace_name(publisher.namespace_id))

    def _mail_link(self, org: str, publisher: Publisher, actor: Actor) -> None:
        assert publisher.email
        secret = new_secret(32)
        now = utcnow()
        self.session.add(
            PublisherEmailToken(
                publisher_id=publisher.id,
                email=publisher.email,
                token_hash=hash_secret(secret),
                created_at=now,
                expires_at=now + EMAIL_LINK_TTL,
            )
        )
        self.session.flush()
        hours = int(EMAIL_LINK_TTL.total_seconds() // 3600)
        self.bus.publish(
            self.session,
            Event(
                EventTag.PUBLISHER_EMAIL_VERIFY_REQUEST,
                actor,
                namespace=org,
                data={"email": publisher.email},
                private={"secret": secret, "email": publisher.email, "hours": hours},
            ),
        )

    # -- images ------------------------------------------------------------------------------------------
    def upload_image(
        self, org: str, kind: str, data: bytes, principal: Principal, actor: Actor
    ) -> CatalogImage:
        """Check, re-encode and store a logo or screenshot of the organisation's (its renditions in the
        blob store under ``assets/``); the image is not used anywhere until a profile or product says so."""
        try:
            image_kind = imaging.ImageKind(kind)
        except ValueError:
            raise Invalid("kind must be logo or screenshot", detail={"field": "kind"}) from None
        ns = self._namespace(org, principal, Permission.PRODUCT_EDIT)
        checked = imaging.process(image_kind, data)
        renditions = {r.name: self.assets.put(r.data) for r in checked.renditions}
        publisher = self._ensure(ns)
        image = CatalogImage(
            publisher_id=publisher.id,
            kind=image_kind.value,
            media_type=checked.media_type,
            width=checked.width,
            height=checked.height,
            renditions=renditions,
            created_by=principal.user_id,
        )
        self.session.add(image)
        self.session.flush()
        self.bus.publish(
            self.session,
            Event(
                EventTag.CATALOG_IMAGE_UPLOAD,
                actor,
                namespace=ns.name,
                data={
                    "id": image.id,
                    "kind": image.kind,
                    "width": image.width,
                    "height": image.height,
                    "format": checked.source_format,
                    "bytes": len(data),
                },
            ),
        )
        return image

    def image_bytes(self, image_id: int, rendition: str, principal: Principal) -> tuple[bytes, str, bool]:
        """The bytes and media type of one rendition of a catalogue image, and whether anyone may see it.

        A company logo and the images of a published revision are public. Any other (a draft's screenshots,
        a logo not yet used) only for the organisation's members and the store team: NotFound for others,
        as for an image that does not exist, so ids cannot be walked to preview unreleased products."""
        image = self.session.get(CatalogImage, image_id) if 1 <= image_id <= MAX_ID else None
        digest = image.renditions.get(rendition) if image is not None else None
        if image is None or not digest:
            raise NotFound("no such image")
        public = self._is_public(image)
        if not public:
            org = self._org_name(self.session.get(Publisher, image.publisher_id))  # type: ignore[arg-type]
            role = None if principal.is_anonymous else self.accounts.role_in(principal, org)
            if not (
                allowed(principal, Permission.PRODUCT_READ, namespace_role=role)
                or allowed(principal, Permission.CATALOG_READ)
            ):
                raise NotFound("no such image")
        return self.assets.get(digest), image.media_type, public

    def _is_public(self, image: CatalogImage) -> bool:
        publisher = self.session.get(Publisher, image.publisher_id)
        if publisher is not None and publisher.logo_id == image.id:
            return True
        live = self.session.scalars(
            select(ProductRevision.manifest)
            .join(Product, Product.live_revision_id == ProductRevision.id)
            .where(Product.publisher_id == image.publisher_id)
        )
        return any(m.get("logo") == image.id or image.id in (m.get("screenshots") or []) for m in live)

    # -- completeness ------------------------------------------------------------------------------------
    def completeness_problems(self, publisher: Publisher) -> list[Problem]:
        """What the profile still lacks before its products can be submitted (empty when nothing)."""
        problems = []
        if not publisher.legal_name:
            problems.append(Problem("legal_name", "Add the legal entity name of the company."))
        if not publisher.website:
            problems.append(Problem("website", "Add the company website."))
        if not publisher.phone:
            problems.append(Problem("phone", "Add a company phone number."))
        if not publisher.email:
            problems.append(Problem("email", "Add a company email address."))
        elif publisher.email_verified_at is None:
            problems.append(
                Problem(
                    "email", f"Confirm the company email address: open the link mailed to {publisher.email}."
                )
            )
        if not publisher.logo_id:
            problems.append(Problem("logo", "Upload the company logo."))
        if not (publisher.story or "").strip():
            problems.append(Problem("story", "Tell the company's story."))
        if publisher.agreement_version is None:
            problems.append(
                Problem("agreement", f"Accept the publisher agreement (version {AGREEMENT_VERSION}).")
            )
        elif publisher.agreement_version != AGREEMENT_VERSION:
            problems.append(
                Problem(
                    "agreement",
                    f"Accept the new publisher agreement (version {AGREEMENT_VERSION}); "
                    f"version {publisher.agreement_version} was accepted before.",
                )
            )
        return problems
