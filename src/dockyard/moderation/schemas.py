"""Request and response bodies of the review API (pydantic v2)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, StringConstraints

from dockyard.publishing.models import CommentAnchor

NO_NUL = r"^[^\x00]*$"
Text = Annotated[StrictStr, StringConstraints(max_length=20_000, pattern=NO_NUL)]


ImageName = Annotated[str, StringConstraints(max_length=32, pattern=r"^[a-z0-9-]+$")]
TagName = Annotated[str, StringConstraints(max_length=128, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")]
Digest = Annotated[str, StringConstraints(max_length=150, pattern=r"^(sha256:[0-9a-f]{64}|)$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MoveIn(Strict):
    comment: Text = Field(
        default="", description="shown to the publisher; required to request changes or reject"
    )


class ApproveIn(MoveIn):
    override_reason: Annotated[StrictStr, StringConstraints(max_length=2000, pattern=NO_NUL)] | None = Field(
        default=None, description="required when an offered image has open Critical findings"
    )
    seen: dict[ImageName, dict[TagName, Digest]] | None = Field(
        default=None,
        max_length=20,
        description="approve: each image's tags -> digests as the reviewer saw them; refused (409) if a tag "
        "has moved since, so that only reviewed images are pinned",
    )


class CommentIn(Strict):
    body: Annotated[StrictStr, StringConstraints(min_length=1, max_length=20_000, pattern=NO_NUL)]
    anchor_kind: CommentAnchor = Field(default=CommentAnchor.NONE, description="what the comment points at")
    anchor: Annotated[StrictStr, StringConstraints(max_length=512, pattern=NO_NUL)] = Field(
        default="",
        description="a manifest field path (tiers[1].price), an image name, or <image>@<digest>/<vuln id>",
    )
    internal: StrictBool = Field(default=False, description="a store-team note the publisher never sees")
    parent_id: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)] | None = None


class RevisionOut(BaseModel):
    id: int
    product: str
    number: int
    state: str
    submitted_at: dt.datetime | None
    claimed_by: str | None
    override_reason: str | None
    pins: dict[str, Any] | None
    published_at: dt.datetime | None


class CommentOut(BaseModel):
    id: int
    revision: int
    parent_id: int | None
    author: str
    from_store: bool
    internal: bool
    anchor_kind: str
    anchor: str
    body: str
    created_at: dt.datetime
    resolved_at: dt.datetime | None


class TransitionOut(BaseModel):
    revision: int
    from_state: str
    to_state: str
    actor: str
    comment: str
    at: dt.datetime


class ThreadOut(BaseModel):
    product: str
    revision: RevisionOut
    comments: list[CommentOut]
    history: list[TransitionOut]


class QueueItemOut(BaseModel):
    revision: int
    org: str
    product: str
    name: str
    number: int
    state: str
    submitted_at: dt.datetime | None
    age_seconds: int
    claimant: str | None


class QueueOut(BaseModel):
    items: list[QueueItemOut]
