"""A publisher, its staff counterparts and a product ready for review, built on the real services
(accounts, registry, scanner; submission checks by the real product and profile services). The publisher's
profile and a product's first draft are written as rows: their own services are tested on their own, and
rows keep the review tests about review.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from dockyard.db import utcnow
from dockyard.publishing.agreement import AGREEMENT_VERSION
from dockyard.publishing.manifest import dump_manifest, parse_manifest
from dockyard.publishing.models import CatalogImage, Product, ProductRevision, Publisher
from dockyard.scanning.services import ScanService
from dockyard.web.context import AppState
from tests.support.factories import make_org, make_user, unique
from tests.support.products import manifest
from tests.support.scanimages import ACTOR, Images, debian_layer, file_layer, osv_record, write_feed

CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
CVE = "CVE-2031-0001"
ZLIB = [("zlib1g", "1:1.2.13.dfsg-1", "zlib")]


# -- the world -------------------------------------------------------------------------------------------
@dataclass
class World:
    org: str
    users: dict[
        str, str
    ]  # role -> username (owner, maintainer, reader, outsider, reviewer, reviewer2, admin)
    emails: dict[str, str]
    server: str  # the server image's digest (with a Critical finding)
    agent: str
    slug: str = ""
    revision: int = 0
    other_org: str = ""
    other_revision: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def manifest_data(org: str, slug: str, logo: int, shot: int, **changes: Any) -> dict[str, Any]:
    """tests.support.products' complete manifest as stored, with one offered tag per image, Markdown that a
    review page must sanitise, and ``changes`` applied at the top level."""
    data = manifest(
        org,
        logo=logo,
        screenshots=[shot],
        slug=slug,
        long_description="# Acme DB\n\nIt is **fast**. <script>alert(1)</script> [docs](https://acme.example/docs)",
        install="```\ndocker pull acme/db\n```",
    )
    del data["publisher"]
    data["images"][0]["tags"] = ["16"]
    data.update(changes)
    return dump_manifest(parse_manifest(data))


def make_publisher(session: Session, org: str, *, complete: bool = True) -> Publisher:
    from sqlalchemy import select

    from dockyard.accounts.models import Namespace

    ns = session.scalar(select(Namespace).where(Namespace.name == org))
    publisher = Publisher(namespace_id=ns.id)
    if complete:
        publisher.legal_name, publisher.website = "Acme Ltd", "https://acme.example"
        publisher.phone, publisher.email = "+442071838750", "hello@acme.example"
        publisher.email_verified_at = utcnow()
        publisher.agreement_version, publisher.agreement_accepted_at = AGREEMENT_VERSION, utcnow()
        publisher.story = "We make databases."
    session.add(publisher)
    session.flush()
    if complete:
        publisher.logo_id = catalog_image(session, publisher, "logo")
        session.flush()
    return publisher


def catalog_image(session: Session, publisher: Publisher, kind: str) -> int:
    image = CatalogImage(
        publisher_id=publisher.id, kind=kind, media_type="image/png", width=512, height=512, renditions={}
    )
    session.add(image)
    session.flush()
    return image.id


def make_product(
    session: Session, publisher: Publisher, org: str, slug: str, **changes: Any
) -> ProductRevision:
    """A product with a draft working revision (STAND-IN for ProductService.create)."""
    logo, shot = catalog_image(session, publisher, "logo"), catalog_image(session, publisher, "screenshot")
    product = Product(publisher_id=publisher.id, slug=slug)
    session.add(product)
    session.flush()
    revision = ProductRevision(
        product_id=product.id,
        number=1,
        state="draft",
        manifest=manifest_data(org, slug, logo, shot, **changes),
    )
    session.add(revision)
    session.flush()
    product.working_revision_id = revision.id
    session.flush()
    return revision


def build_world(state: AppState, feed_dir: Path, *, scan: bool = True) -> World:
    """An org (owner, maintainer, reader), an outsider, two reviewers and an admin, all with verified
    addresses; images pushed (server with zlib, agent clean) and scanned against a feed giving zlib a
    Critical; a product with a draft revision; and another publisher's product, submitted."""
    with state.sessions.begin() as s:
        users, emails = {}, {}
        for role in ("owner", "maintainer", "reader", "outsider", "reviewer", "reviewer2", "admin", "other"):
            staff = ("store-reviewer",) if role.startswith("reviewer") else ()
            user = make_user(s, unique(role), staff=staff, admin=role == "admin")
            user.email = f"{user.username}@example.org"
            users[role], emails[role] = user.username, user.email
        org = make_org(
            s, owner=users["owner"], members={users["maintainer"]: "maintainer", users["reader"]: "reader"}
        )
        other_org = make_org(s, owner=users["other"])
        if scan:
            feed = write_feed(feed_dir, osv_record(CVE, "zlib", vector=CRITICAL))
            ScanService(s, state.blobs, state.bus, state.settings).update_vulndb([feed], ACTOR)
    with state.sessions.begin() as s:
        images = Images(s, state.blobs, state.bus)
        server = images.image(f"{org}/db-server", "16", [debian_layer(ZLIB)]).digest
        agent = images.image(f"{org}/db-agent", "1.4", [file_layer("agent.txt", "agent")]).digest
        other = images.image(f"{other_org}/db-server", "16", [debian_layer(ZLIB)]).digest
        images.image(f"{other_org}/db-agent", "1.4", [file_layer("agent.txt", "other")])
        if scan:
            scans = ScanService(s, state.blobs, state.bus, state.settings)
            scans.scan_manifest(server, repository=f"{org}/db-server")
            scans.scan_manifest(agent, repository=f"{org}/db-agent")
            scans.scan_manifest(other, repository=f"{other_org}/db-server")
    with state.sessions.begin() as s:
        publisher = make_publisher(s, org)
        revision = make_product(s, publisher, org, "acme-db")
        other_pub = make_publisher(s, other_org)
        other_rev = make_product(s, other_pub, other_org, "rival-db")
        other_rev.state, other_rev.submitted_at = "submitted", utcnow()
        ids = revision.id, other_rev.id
    return World(org, users, emails, server, agent, "acme-db", ids[0], other_org, ids[1])
