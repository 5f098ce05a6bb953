"""The publisher-profile API: read and edit a profile, accept the agreement, confirm the company email,
upload logos and screenshots. Thin views: parse (the schemas), authorize (in the service, which decides
who sees what), one service call, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from dockyard.authz import Principal, Scope
from dockyard.errors import Invalid
from dockyard.events import Actor
from dockyard.publishing import imaging
from dockyard.publishing import schemas as s
from dockyard.publishing.models import CatalogImage
from dockyard.publishing.profiles import PublisherProfile
from dockyard.web.api import AUTHENTICATED, Ctx, UnitOfWorkRoute, caller, errors, read_limited

router = APIRouter(route_class=UnitOfWorkRoute, tags=["publishers"], responses=AUTHENTICATED)
OrgName = Annotated[str, Path(min_length=1, max_length=64)]
Account = Annotated[Principal, caller(Scope.API)]
IMAGE_PATH = "/catalog-images/{id}/{rendition}"
PROFILE_PAGE = "/ui/orgs/{org}/publisher"


def image_out(image: CatalogImage) -> dict[str, Any]:
    return {
        "id": image.id,
        "kind": image.kind,
        "media_type": image.media_type,
        "width": image.width,
        "height": image.height,
        "renditions": {name: IMAGE_PATH.format(id=image.id, rendition=name) for name in image.renditions},
    }


def profile_out(shown: PublisherProfile) -> dict[str, Any]:
    from dockyard.publishing.agreement import AGREEMENT_VERSION

    p = shown.publisher
    return {
        "org": shown.org,
        "legal_name": p.legal_name,
        "website": p.website,
        "phone": p.phone,
        "phone_display": shown.phone_display,
        "email": p.email,
        "email_verified": p.email_verified_at is not None,
        "email_link_pending": shown.pending_email,
        "logo": image_out(shown.logo) if shown.logo is not None else None,
        "story": p.story or "",
        "agreement": {
            "current_version": AGREEMENT_VERSION,
            "accepted_version": p.agreement_version,
            "accepted_by": shown.agreement_accepted_by,
            "accepted_at": p.agreement_accepted_at,
            "text_url": PROFILE_PAGE.format(org=shown.org) + "#agreement",
        },
        "can_edit": shown.can_edit,
        "complete": shown.complete,
        "missing": [pr.as_detail() for pr in shown.missing],
    }


@router.get("/publishers/{org}", response_model=s.PublisherOut, responses=errors(400, 403, 404))
async def get_profile(org: OrgName, ctx: Ctx, who: Account) -> dict[str, Any]:
    """An organisation's publisher profile and what it still lacks (members and store staff)."""
    return profile_out(await ctx.call(lambda sv: sv.publishers.profile(org, who)))


@router.put("/publishers/{org}", response_model=s.PublisherOut, responses=errors(400, 403, 404, 429))
async def put_profile(org: OrgName, body: s.PublisherIn, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Change the profile (owners): every wrong field is reported at once in ``detail``."""

    def work(sv: Any) -> PublisherProfile:
        sv.publishers.update(org, body.model_dump(exclude_unset=True), who, ctx.actor)
        return sv.publishers.profile(org, who)

    return profile_out(await ctx.call(work))


@router.post(
    "/publishers/{org}/agreement", response_model=s.PublisherOut, responses=errors(400, 403, 404, 409)
)
async def accept_agreement(org: OrgName, body: s.AgreementIn, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Accept the current publisher agreement on the organisation's behalf (owners; people, not robots)."""

    def work(sv: Any) -> PublisherProfile:
        sv.publishers.accept_agreement(org, body.version, who, ctx.actor)
        return sv.publishers.profile(org, who)

    return profile_out(await ctx.call(work))


@router.post(
    "/publishers/{org}/email/resend", status_code=202, response_model=s.PublisherOut,
    responses=errors(400, 403, 404, 409, 429),
)  # fmt: skip
async def resend_link(org: OrgName, ctx: Ctx, who: Account) -> dict[str, Any]:
    """Mail a new confirmation link to the company address (owners; a few an hour)."""

    def work(sv: Any) -> PublisherProfile:
        sv.publishers.resend_verification(org, who, ctx.actor)
        return sv.publishers.profile(org, who)

    return profile_out(await ctx.call(work))


@router.post("/publishers/email/verify", response_model=s.VerifiedOut, responses=errors(400))
async def verify_email(body: s.VerifyIn, ctx: Ctx) -> dict[str, Any]:
    """Confirm a company address with the token of the link mailed to it (no sign-in needed: the link
    proves access to the mailbox). Each link works once."""
    actor = Actor(
        name="anonymous", ip=ctx.request.client.host if ctx.request.client else None, kind="anonymous"
    )

    def work(sv: Any) -> dict[str, Any]:
        org, publisher = sv.publishers.verify_email(body.token, actor)
        return {"org": org, "email": publisher.email}

    return await ctx.call(work)


IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": f"the image file itself (PNG, JPEG or WebP; at most {imaging.MAX_UPLOAD_BYTES} bytes)",
        "content": {
            t: {"schema": {"type": "string", "format": "binary"}}
            for t in ("image/png", "image/jpeg", "image/webp")
        },
    }
}


@router.post(
    "/publishers/{org}/images",
    status_code=201,
    response_model=s.ImageOut,
    responses=errors(400, 403, 404, 413),
    openapi_extra=IMAGE_BODY,
)
async def upload_image(
    org: OrgName,
    ctx: Ctx,
    who: Account,
    kind: Annotated[imaging.ImageKind, Query(description="logo or screenshot")],
) -> dict[str, Any]:
    """Upload a logo or a screenshot as the raw request body (Content-Type image/png, image/jpeg or
    image/webp). It is checked, re-encoded without metadata and stored in its renditions; use its ``id``
    as the profile's ``logo_id`` or in a product manifest."""
    content_type = ctx.request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not content_type.startswith("image/"):
        raise Invalid("send the image itself as the body, with its Content-Type (image/png, ...)",
                      detail={"field": "content-type"})  # fmt: skip
    data = await read_limited(ctx.request, imaging.MAX_UPLOAD_BYTES, "the image")
    image = await ctx.call(lambda sv: sv.publishers.upload_image(org, kind.value, data, who, ctx.actor))
    return image_out(image)
