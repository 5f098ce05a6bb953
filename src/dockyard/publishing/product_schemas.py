"""Response bodies of the products API. A manifest is sent and answered as the JSON of
``publishing.manifest.ProductManifest`` (its JSON Schema is at /api/v1/schemas/product.json)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from dockyard.accounts.schemas import UtcDateTime
from dockyard.publishing.models import RevisionState
from dockyard.publishing.services import ProductInfo, RevisionInfo


class FieldProblem(BaseModel):
    field: str = Field(description='the manifest field\'s path, e.g. "tiers[1].price.currency"; "" for all')
    message: str


class Revision(BaseModel):
    number: int
    state: RevisionState
    editable: bool = Field(description="whether a save edits it (a draft, or one the store team sent back)")
    updated_at: UtcDateTime


class RevisionWithManifest(Revision):
    manifest: dict[str, Any] = Field(description="the manifest (product.json), images by catalogue image id")


class ProductSummary(BaseModel):
    slug: str
    name: str
    working: Revision | None = Field(description="the revision being edited or reviewed, if any")
    live: Revision | None = Field(description="the published revision, if any")


class ProductList(BaseModel):
    products: list[ProductSummary]


class ProductOut(BaseModel):
    publisher: str
    slug: str
    name: str
    working: RevisionWithManifest | None
    live: Revision | None
    problems: list[FieldProblem] = Field(
        description="what submitting the working revision would be refused for (incomplete fields, "
        "repositories, tags and images it names); a draft may be saved with them"
    )


def revision(info: RevisionInfo | None, *, manifest: bool = False) -> dict[str, Any] | None:
    if info is None:
        return None
    out: dict[str, Any] = {
        "number": info.number,
        "state": info.state,
        "editable": info.editable,
        "updated_at": info.updated_at or dt.datetime.now(dt.UTC),
    }
    if manifest:
        out["manifest"] = info.manifest
    return out


def summary(info: ProductInfo) -> dict[str, Any]:
    return {
        "slug": info.slug,
        "name": info.name,
        "working": revision(info.working),
        "live": revision(info.live),
    }


def product_out(info: ProductInfo) -> dict[str, Any]:
    return {
        "publisher": info.org,
        "slug": info.slug,
        "name": info.name,
        "working": revision(info.working, manifest=True),
        "live": revision(info.live),
        "problems": [p.as_detail() for p in info.problems],
    }
