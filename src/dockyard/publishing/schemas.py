"""Request and response bodies of the publisher-profile API (pydantic v2)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, StringConstraints

from dockyard.accounts.schemas import NO_NUL, UtcDateTime
from dockyard.db import MAX_ID

Text = Annotated[StrictStr, StringConstraints(max_length=4096, pattern=NO_NUL)]
Story = Annotated[StrictStr, StringConstraints(max_length=200_000, pattern=NO_NUL)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    field: str = Field(description="the profile field, e.g. email, logo, agreement")
    message: str


class ImageOut(BaseModel):
    id: int
    kind: str = Field(description="logo or screenshot")
    media_type: str = Field(description="of every rendition: image/png (logos), image/webp (screenshots)")
    width: int = Field(description="as uploaded")
    height: int
    renditions: dict[str, str] = Field(
        description='rendition name ("512", "128", "64"; "full", "thumb") -> URL'
    )


class AgreementOut(BaseModel):
    current_version: str = Field(description="the version publishers must accept")
    accepted_version: str | None
    accepted_by: str | None = Field(description="the user who accepted it (null once that account is gone)")
    accepted_at: UtcDateTime | None
    text_url: str = Field(description="the page showing the agreement")


class PublisherOut(BaseModel):
    org: str
    legal_name: str | None
    website: str | None
    phone: str | None = Field(description="E.164, e.g. +442079460958")
    phone_display: str = Field(description="formatted for people, e.g. +44 20 7946 0958")
    email: str | None = Field(description="the company address")
    email_verified: bool
    email_link_pending: bool = Field(description="a confirmation link was mailed and still works")
    logo: ImageOut | None
    story: str = Field(description="Markdown")
    agreement: AgreementOut
    can_edit: bool = Field(description="whether the caller may change the profile (owners)")
    complete: bool
    missing: list[Problem] = Field(description="what must be done before products can be submitted")


class PublisherIn(Strict):
    """Fields left out stay as they are; null or "" clears one. A new email address is mailed a link."""

    legal_name: Text | None = None
    website: Text | None = None
    phone: Text | None = Field(default=None, description="with + and the country code")
    email: Text | None = None
    logo_id: Annotated[StrictInt, Field(ge=1, le=MAX_ID)] | None = Field(
        default=None, description="a logo uploaded with POST /publishers/{org}/images?kind=logo"
    )
    story: Story | None = Field(default=None, description="Markdown")


class AgreementIn(Strict):
    version: Annotated[StrictStr, StringConstraints(min_length=1, max_length=32)] = Field(
        description="the version read and accepted: the current one"
    )


class VerifyIn(Strict):
    token: Annotated[StrictStr, StringConstraints(min_length=1, max_length=128)] = Field(
        description="the token of the link mailed to the company address"
    )


class VerifiedOut(BaseModel):
    org: str
    email: str
