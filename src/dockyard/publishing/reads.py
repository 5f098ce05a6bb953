"""Small reads of publishing shared by its services: the publisher row of an organisation (made on first
use, so products and the profile can start in either order) and a publisher's catalogue images."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.accounts.reads import AccountReads
from dockyard.errors import NotFound
from dockyard.publishing.models import CatalogImage, Publisher


def publisher_for(session: Session, org: str, *, create: bool = True) -> Publisher | None:
    """The publisher of organisation ``org``, made (empty) when it has none yet and ``create`` is set.

    NotFound when ``org`` is no organisation; None when it has no publisher and ``create`` is not set.
    """
    namespace_id = AccountReads(session).org_id(org)
    if namespace_id is None:
        raise NotFound(f"organisation {org!r} not found")
    publisher = session.scalar(select(Publisher).where(Publisher.namespace_id == namespace_id))
    if publisher is not None or not create:
        return publisher
    publisher = Publisher(namespace_id=namespace_id)
    # A savepoint: two first uses at once (a profile save and a product create) both try to insert; the
    # loser reads the winner's row instead of failing its whole request.
    try:
        with session.begin_nested():
            session.add(publisher)
            session.flush()
    except IntegrityError:
        publisher = session.scalar(select(Publisher).where(Publisher.namespace_id == namespace_id))
        if publisher is None:  # pragma: no cover - the unique row that refused the insert is there
            raise
    return publisher


def catalog_images(session: Session, publisher_id: int, kind: str | None = None) -> list[CatalogImage]:
    """A publisher's catalogue images (of ``kind``: logo or screenshot), newest first."""
    query = select(CatalogImage).where(CatalogImage.publisher_id == publisher_id)
    if kind is not None:
        query = query.where(CatalogImage.kind == kind)
    return list(session.scalars(query.order_by(CatalogImage.id.desc())))
