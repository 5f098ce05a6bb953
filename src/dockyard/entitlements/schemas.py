"""Request and response bodies of the entitlements API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from dockyard.accounts.schemas import UtcDateTime
from dockyard.entitlements.models import EntitlementKind, EntitlementStatus
from dockyard.entitlements.services import EntitlementInfo


class EntitlementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    publisher: str = Field(min_length=1, max_length=64, description="the publisher's organisation")
    product: str = Field(min_length=1, max_length=64, description="the product's slug")
    tier: str = Field(min_length=1, max_length=60, description="the tier's name, as the product lists it")
    accept_license: bool = Field(description="true: the product's licence (license_url) is accepted")
    notify_security: bool = Field(default=True, description="email me about this product's security")


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, description="why (audited)")


class StoreImage(BaseModel):
    image: str
    reference: str = Field(description="HOST-less store path: store/<publisher>/<product>/<image>")
    tags: list[str] = Field(description="the tags pinned by the live revision")


class EntitlementOut(BaseModel):
    id: int
    publisher: str
    product: str
    product_name: str
    tier: str
    kind: EntitlementKind
    status: EntitlementStatus
    license_url: str | None
    license_accepted_at: UtcDateTime | None
    notify_security: bool
    since: UtcDateTime
    ended_at: UtcDateTime | None
    live: bool = Field(description="whether the product is on the store now")
    images: list[StoreImage] = Field(description="what this entitlement lets one pull (empty unless active)")


class EntitlementList(BaseModel):
    entitlements: list[EntitlementOut]


def entitlement_out(info: EntitlementInfo) -> dict:
    active = info.status == EntitlementStatus.ACTIVE.value
    return {
        "id": info.id,
        "publisher": info.publisher,
        "product": info.product,
        "product_name": info.product_name,
        "tier": info.tier,
        "kind": info.kind,
        "status": info.status,
        "license_url": info.license_url,
        "license_accepted_at": info.license_accepted_at,
        "notify_security": info.notify_security,
        "since": info.since,
        "ended_at": info.ended_at,
        "live": info.live,
        "images": [
            {
                "image": i.image,
                "reference": f"store/{info.publisher}/{info.product}/{i.image}",
                "tags": i.tags,
            }
            for i in info.images
        ]
        if active
        else [],
    }
