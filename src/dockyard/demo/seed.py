"""`dockyard demo`: a living store for a newcomer to look at. Six publishers with logos and complete
profiles, their products' images pushed into private staging repositories, products in every state of
review (most published, a few certified), customers with entitlements and a history of downloads; with
local feeds, every image scanned and one product on hold and one revoked (``demo.compliance``).

Everything goes through the services a user's request would use (so every rule and audit event applies),
one unit of work per step. Two shortcuts, both what the store team could do by hand: the publishers'
company addresses are marked verified (no mailbox to click a link in), and the downloads of the past weeks
are written as download events with past times.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import select

from dockyard.accounts.authentication import staff_roles_of
from dockyard.accounts.models import Namespace, User
from dockyard.authz import Principal
from dockyard.db import utcnow
from dockyard.demo import artwork
from dockyard.demo.catalog import CUSTOMERS, PRODUCTS, PUBLISHERS, DemoProduct, DemoPublisher
from dockyard.demo.images import DemoImages
from dockyard.events import Actor
from dockyard.publishing.agreement import AGREEMENT_VERSION
from dockyard.publishing.models import Publisher
from dockyard.publishing.reads import publisher_for
from dockyard.runtime import Runtime
from dockyard.services import Services

T = TypeVar("T")
PASSWORD = "dockyard-demo"  # every demo account's; printed by the command
REVIEWER, ADMIN = "reviewer", "storeadmin"
VERSIONS = ("2.4.1", "2.4")


@dataclass
class Seeded:
    accounts: list[tuple[str, str]] = field(default_factory=list)  # (username, what it is)
    products: dict[str, str] = field(default_factory=dict)  # "org/slug" -> state
    skipped: bool = False
    held: list[str] = field(default_factory=list)  # "org/slug" of the products on hold, and revoked
    revoked: list[str] = field(default_factory=list)


def who(services: Services, username: str) -> tuple[Principal, Actor]:
    user = services.session.scalar(select(User).where(User.username == username))
    assert user is not None, username
    roles = frozenset(staff_roles_of(services.session, user.id))
    return (
        Principal(kind="user", name=username, user_id=user.id, staff=roles),
        Actor(user_id=user.id, name=username, kind="user"),
    )


class DemoSeeder:
    def __init__(self, runtime: Runtime, *, log: Callable[[str], None] = lambda _: None) -> None:
        self.runtime = runtime
        self.log = log
        self.rng = random.Random(2026)

    def step(self, action: Callable[[Services], T]) -> T:
        with self.runtime.unit_of_work() as services:
            return action(services)

    # -- the whole store -------------------------------------------------------------------------------------
    def seed(self) -> Seeded:
        done = Seeded()
        if self.step(
            lambda sv: sv.session.scalar(select(Namespace.id).where(Namespace.name == PUBLISHERS[0].org))
        ):
            done.skipped = True
            return done
        self.step(lambda sv: self._staff(sv, done))
        for publisher in PUBLISHERS:
            self.step(lambda sv, p=publisher: self._publisher(sv, p, done))
            for product in (p for p in PRODUCTS if p.org == publisher.org):
                self.step(lambda sv, p=product: self._product(sv, p))
                self._review(product)
                done.products[f"{product.org}/{product.slug}"] = product.state
                self.log(f"  {product.org}/{product.slug}: {product.state}")
        self.step(lambda sv: self._customers(sv, done))
        for index, customer in enumerate(CUSTOMERS):
            self._entitle(customer, index)
        self.step(self._download_history)
        from dockyard.demo.compliance import ComplianceStory

        story = ComplianceStory(self.runtime, self.log).tell()
        done.held, done.revoked = story.held, story.revoked
        return done

    def _staff(self, sv: Services, done: Seeded) -> None:
        sv.accounts.create_user(REVIEWER, PASSWORD, email="reviewer@store.example", staff=("store-reviewer",))
        sv.accounts.create_user(ADMIN, PASSWORD, email="admin@store.example", staff=("store-admin",))
        done.accounts += [(REVIEWER, "store-reviewer"), (ADMIN, "store-admin")]

    def _publisher(self, sv: Services, p: DemoPublisher, done: Seeded) -> None:
        owner = f"{p.org}-owner"
        sv.accounts.create_user(owner, PASSWORD, email=f"owner@{p.org}.example")
        sv.accounts.create_org(p.org, owner)
        done.accounts.append((owner, f"owner of {p.org}"))
        principal, actor = who(sv, owner)
        logo = sv.publishers.upload_image(
            p.org, "logo", artwork.logo(p.legal_name, p.colour), principal, actor
        )
        changes = {
            "legal_name": p.legal_name, "website": p.website, "phone": p.phone,
            "story": p.story, "logo_id": logo.id,
        }  # fmt: skip
        sv.publishers.update(p.org, changes, principal, actor)
        sv.publishers.accept_agreement(p.org, AGREEMENT_VERSION, principal, actor)
        publisher = publisher_for(sv.session, p.org)
        assert isinstance(publisher, Publisher)
        # The demo's shortcut: the company address is set as confirmed, with no link mailed to a made-up
        # mailbox (a real server with SMTP configured would send it).
        publisher.email, publisher.email_verified_at = f"hello@{p.org}.example", utcnow()

    def _product(self, sv: Services, product: DemoProduct) -> None:
        owner = f"{product.org}-owner"
        principal, actor = who(sv, owner)
        publisher = next(p for p in PUBLISHERS if p.org == product.org)
        images = DemoImages(sv.registry, self.runtime.blobs, actor)
        for image in product.images:
            repository = f"{product.org}/{product.slug}-{image}"
            for tag in VERSIONS:
                images.multi_arch(
                    repository, tag, product=product.name, image=image, packages=product.packages,
                    arches=product.arches,
                )  # fmt: skip
        logo = sv.publishers.upload_image(
            product.org, "logo", artwork.logo(product.name, publisher.colour), principal, actor
        )
        shots = [
            sv.publishers.upload_image(
                product.org,
                "screenshot",
                artwork.screenshot(product.name, publisher.colour, seed),
                principal,
                actor,
            ).id
            for seed in (1, 2)
        ]
        sv.products.create(product.org, manifest(product, logo.id, shots), principal, actor)

    def _review(self, product: DemoProduct) -> None:
        """Take the product's first revision as far as its demo state says."""
        org, slug, owner = product.org, product.slug, f"{product.org}-owner"
        if product.state == "draft":
            return
        rid = self._as(owner, lambda sv, p, a: sv.reviews.submit(org, slug, p, a, "Ready for review.").id)
        if product.state == "submitted":
            return
        if product.state == "withdrawn":
            note = "Withdrawn: we will submit it again with the 2.5 images."
            self._as(owner, lambda sv, p, a: sv.reviews.withdraw(org, slug, p, a, note))
            return
        self._as(REVIEWER, lambda sv, p, a: sv.reviews.claim(rid, p, a))
        if product.state == "in_review":
            return
        if product.state in ("changes_requested", "resubmitted"):
            message = (
                "Please add the SLA's response times for the paid tier and a screenshot of the admin UI."
            )
            self._as(REVIEWER, lambda sv, p, a: sv.reviews.request_changes(rid, p, a, message))
            if product.state == "resubmitted":
                self._edit(product, owner, f"{product.short} Now with a documented SLA.")
                self._as(owner, lambda sv, p, a: sv.reviews.submit(org, slug, p, a, "SLA added."))
            return
        if product.state == "rejected":
            message = "A host operating system cannot run as a container product of this store."
            self._as(REVIEWER, lambda sv, p, a: sv.reviews.reject(rid, p, a, message))
            return
        reason = "Demo images: the packages are examples, nothing runs."
        self._as(
            REVIEWER, lambda sv, p, a: sv.reviews.approve(rid, p, a, "Looks good.", override_reason=reason)
        )
        if product.state == "approved":
            return
        self._as(ADMIN, lambda sv, p, a: sv.reviews.publish(rid, p, a, "Welcome to the store."))
        if product.state == "updated":  # a second revision through review, the first superseded
            self._edit(product, owner, f"{product.short} Version 2.5 adds TLS everywhere.")
            rid2 = self._as(owner, lambda sv, p, a: sv.reviews.submit(org, slug, p, a, "The 2.5 release.").id)
            self._as(REVIEWER, lambda sv, p, a: sv.reviews.claim(rid2, p, a))
            self._as(
                REVIEWER, lambda sv, p, a: sv.reviews.approve(rid2, p, a, "Fine.", override_reason=reason)
            )
            self._as(ADMIN, lambda sv, p, a: sv.reviews.publish(rid2, p, a))
        if product.state == "certified":
            kind = "certified_infrastructure" if product.category == "Networking" else "certified_container"
            why = "Passed the best-practice review; no open Critical findings at certification."
            self._as(ADMIN, lambda sv, p, a: sv.badges.grant(org, slug, kind, why, p, a))
            if product.org == "northwind":
                official = "Published by the maker of the software it contains."
                self._as(ADMIN, lambda sv, p, a: sv.badges.grant(org, slug, "official", official, p, a))

    def _edit(self, product: DemoProduct, owner: str, short: str) -> None:
        """The publisher changes the short description of the working revision (or of a new one, from the
        live revision)."""

        def edit(sv: Services, p: Principal, a: Actor) -> None:
            current = sv.products.get(product.org, product.slug, p)
            revision = current.working_revision or current.live_revision
            assert revision is not None
            changed = {**revision.manifest, "short_description": short}
            sv.products.update_draft(product.org, product.slug, changed, p, a)

        self._as(owner, edit)

    def _as(self, username: str, action: Callable[[Services, Principal, Actor], T]) -> T:
        def run(sv: Services) -> T:
            principal, actor = who(sv, username)
            return action(sv, principal, actor)

        return self.step(run)

    def _customers(self, sv: Services, done: Seeded) -> None:
        for name in CUSTOMERS:
            sv.accounts.create_user(name, PASSWORD, email=f"{name}@customers.example")
            done.accounts.append((name, "customer"))

    def _entitle(self, customer: str, index: int) -> None:
        """Each customer gets the free tier of a few products (a different few each)."""
        free = [
            p
            for p in PRODUCTS
            if p.state in ("published", "certified", "updated") and (p.free_tier or p.price is None)
        ]
        for product in free[index::3][:5]:
            self._as(
                customer,
                lambda sv, p, a, product=product: sv.entitlements.get_tier(
                    product.org, product.slug, "Community", p, a, accept_license=True
                ),
            )

    def _download_history(self, sv: Services) -> None:
        """Four weeks of pulls by the entitled customers (download events with past times), so that the
        store's "most downloaded" and the publishers' reports have something to show."""
        from dockyard.entitlements.downloads import download_row, write_downloads
        from dockyard.entitlements.models import Entitlement

        now = utcnow()
        agents = ("docker/27.3.1 go/go1.22.7 git-commit/41ca978 os/linux arch/amd64", "skopeo/1.13.3",
                  "containers/5.29.1 (github.com/containers/image)", "containerd/1.7.22")  # fmt: skip
        rows = []
        for entitlement in sv.session.scalars(select(Entitlement)).all():
            info = sv.entitlements.info(entitlement)
            org, slug = info.publisher, info.product
            live = sv.entitlements.catalog.live(org, slug)
            if live is None:
                continue
            product = next(p for p in PRODUCTS if p.org == org and p.slug == slug)
            image = product.images[0]
            for _ in range(self.rng.randint(3, 60)):
                tag = self.rng.choice(VERSIONS)
                digest = live.pins[image].tags[tag]
                row = download_row(live, image, tag, digest, entitlement.user_id, self.rng.choice(agents))
                row["at"] = now - dt.timedelta(minutes=self.rng.randint(5, 28 * 24 * 60))
                rows.append(row)
        if rows:
            write_downloads(sv.session, rows)


def manifest(product: DemoProduct, logo: int, screenshots: list[int]) -> dict[str, Any]:
    """The product's manifest as its publisher would write it."""
    publisher = next(p for p in PUBLISHERS if p.org == product.org)
    site = publisher.website
    community = f"{product.name} for evaluation and small teams; community support."
    tiers: list[dict[str, Any]] = []
    if product.free_tier or product.price is None:
        tiers.append(
            {"name": "Community", "description": community, "price": "free", "images": [product.images[0]]}
        )
    if product.price is not None:
        tiers.append({
            "name": "Business",
            "description": "Every image, production use, support within the SLA.",
            "price": {"amount": product.price, "currency": "USD", "period": "month"},
            "images": list(product.images),
        })  # fmt: skip
    first = product.images[0]
    return {
        "name": product.name,
        "slug": product.slug,
        "logo": logo,
        "short_description": product.short,
        "category": product.category,
        "tags": list(product.tags),
        "long_description": (
            f"# {product.name}\n\n{product.short}\n\n## Features\n\n"
            + "".join(f"- **{tag}** support out of the box\n" for tag in product.tags)
            + f"\n## Documentation\n\nRead the [guide]({site}/docs/{product.slug}) to get started."
        ),
        "screenshots": screenshots,
        "support": {
            "url": f"{site}/support",
            "email": f"support@{product.org}.example",
            "resources": [f"{site}/docs/{product.slug}", f"{site}/community"],
            "sla": {"hours": "Mon-Fri 8-18 UTC", "response": "1 business day (4 hours on Business)"},
        },
        "compatibility": "enterprise" if product.price is not None else "community",
        "images": [
            {"name": image, "repository": f"{product.org}/{product.slug}-{image}", "tags": list(VERSIONS)}
            for image in product.images
        ],
        "tiers": tiers,
        "install": (
            f"Pull the image with the command your subscription page shows, then run it:\n\n"
            f"```\ndocker run -d --name {product.slug} <store path of {first}>:{VERSIONS[0]}\n```"
        ),
        "license_url": f"{site}/legal/eula",
    }
