"""Request and response bodies of the webhooks API (pydantic v2)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, StringConstraints

from dockyard.accounts.schemas import NO_NUL, UtcDateTime
from dockyard.webhooks.models import WebhookKind

Url = Annotated[StrictStr, StringConstraints(min_length=1, max_length=2048, pattern=NO_NUL)]
Description = Annotated[StrictStr, StringConstraints(max_length=200, pattern=NO_NUL)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookIn(Strict):
    url: Url = Field(
        description="https:// (http:// only where the store allows it); must resolve to public addresses"
    )
    kinds: list[WebhookKind] = Field(
        min_length=1, max_length=len(WebhookKind), description="the events to send"
    )
    description: Description = ""
    active: StrictBool = True


class WebhookPatch(Strict):
    """Fields left out stay as they are. Turning an endpoint on again clears its failure count."""

    url: Url | None = None
    kinds: list[WebhookKind] | None = Field(default=None, min_length=1, max_length=len(WebhookKind))
    description: Description | None = None
    active: StrictBool | None = None


class WebhookOut(BaseModel):
    id: int
    owner: str = Field(description="publisher:<org> or user:<username>")
    url: str
    kinds: list[str]
    description: str
    active: bool
    disabled_reason: str | None = Field(description="why dockyard turned it off (too many failed deliveries)")
    consecutive_failures: int = Field(description="deliveries in a row that failed after all their retries")
    created_at: UtcDateTime
    updated_at: UtcDateTime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="the signing secret: shown in this answer only, keep it")


class AttemptOut(BaseModel):
    number: int
    manual: bool = Field(description="a redelivery asked for by a person")
    at: UtcDateTime
    duration_ms: int
    status_code: int | None = Field(description="the receiver's answer; null when there was none")
    response_excerpt: str = Field(description="the first 2 KiB of the answer's body")
    error: str | None = Field(description="why there was no answer (timeout, refused address, ...)")
    ok: bool


class DeliveryOut(BaseModel):
    id: int
    event_id: str = Field(
        description="the body's id and the Dockyard-Delivery header, the same on every attempt"
    )
    kind: str
    status: str = Field(description="pending, delivered or failed")
    attempts: list[AttemptOut]
    next_attempt_at: UtcDateTime | None
    created_at: UtcDateTime
    body: str = Field(description="the JSON sent")


class DeliveryQueued(BaseModel):
    id: int
    event_id: str
    status: str
