"""Products for tests: a complete manifest, catalogue image rows, and an organisation with pushed images."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy.orm import Session

from dockyard.accounts.services import AccountService
from dockyard.events import Actor, EventBus
from dockyard.publishing.models import CatalogImage
from dockyard.publishing.reads import publisher_for
from dockyard.publishing.services import ProductService

ACTOR = Actor(name="tester", kind="user")


def product_service(session: Session, bus: EventBus | None = None) -> ProductService:
    bus = bus or EventBus()
    return ProductService(session, bus, AccountService(session, bus))


def catalog_image(session: Session, org: str, kind: str = "logo") -> int:
    """A catalogue image row of ``org``'s publisher (as the profile's upload stores one), its id."""
    publisher = publisher_for(session, org)
    assert publisher is not None
    size = (512, 512) if kind == "logo" else (1280, 800)
    image = CatalogImage(
        publisher_id=publisher.id, kind=kind, media_type="image/png", width=size[0], height=size[1]
    )
    image.renditions = {"full": "sha256:" + "0" * 64}
    session.add(image)
    session.flush()
    return image.id


def manifest(org: str, *, logo: Any = None, screenshots: list[Any] | None = None, **changes: Any) -> dict:
    """A complete manifest (the issue's example) for ``org``, with ``changes`` applied at the top level."""
    data: dict[str, Any] = {
        "publisher": org,
        "name": "Acme Database",
        "slug": "acme-db",
        "logo": logo,
        "short_description": "A fast SQL database for containers.",
        "category": "Database",
        "tags": ["sql", "database"],
        "long_description": "# Acme DB\n\nFast.",
        "screenshots": screenshots or [],
        "support": {
            "url": "https://acme.example/support",
            "email": "support@acme.example",
            "resources": ["https://acme.example/docs"],
            "sla": {"hours": "24x7", "response": "4 hours"},
        },
        "compatibility": "enterprise",
        "images": [
            {"name": "server", "repository": f"{org}/db-server", "tags": ["16.2", "16"]},
            {"name": "agent", "repository": f"{org}/db-agent", "tags": ["1.4"]},
        ],
        "tiers": [
            {"name": "Community", "description": "Single node", "price": "free", "images": ["server"]},
            {
                "name": "Enterprise",
                "description": "Cluster and agent",
                "price": {"amount": 4900, "currency": "USD", "period": "month"},
                "images": ["server", "agent"],
            },
        ],
        "install": "docker run acme/db",
        "license_url": "https://acme.example/eula",
    }
    data = copy.deepcopy(data)
    data.update(changes)
    return data
