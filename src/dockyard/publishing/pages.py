"""Publisher pages: an organisation's publisher profile (the form, what is missing, the agreement), the page
a company-email link opens, and the public catalogue images.

The profile is one form (multipart: the logo is a file in it) that owners save whole: fields, a new logo and
the agreement's checkbox; every wrong field is shown beside it and nothing of a refused form is kept. Members
and store staff see the same page read-only; anyone else the 404 page. Works without JavaScript; with it, a
chosen logo is previewed before it is sent (dockyard.js).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.accounts.pages.forms import path, sentence
from dockyard.db import MAX_ID
from dockyard.errors import DockyardError, Forbidden, Invalid, NotFound, TooLarge
from dockyard.publishing import imaging
from dockyard.publishing.agreement import AGREEMENT_TEXT, AGREEMENT_TITLE, AGREEMENT_VERSION
from dockyard.publishing.manifest import MARKDOWN_MAX, Problem
from dockyard.publishing.markdown import render_markdown
from dockyard.publishing.notifications import VERIFY_PATH
from dockyard.publishing.product_pages import STATE_LABELS
from dockyard.publishing.profiles import ProfileInvalid, PublisherProfile
from dockyard.services import Services
from dockyard.web.context import RequestContext
from dockyard.web.identity import optional_session_principal, session_principal
from dockyard.web.pages import flash, form, page, redirect, render, safe_next, text_field

# A form with a logo: the file, the story and the rest, with room for multipart's own framing.
MAX_FORM_BYTES = imaging.MAX_UPLOAD_BYTES + 2 * MARKDOWN_MAX + 64 * 1024
TEXT_FIELDS = ("legal_name", "website", "phone", "email", "story")
# Catalogue images never change (a new upload is a new id): browsers and proxies keep them a year.
IMAGE_CACHE = "public, max-age=31536000, immutable"


def _field_of(problem_path: str) -> str:
    return "logo" if problem_path in ("logo_id", "logo") else problem_path


async def _profile_form(request: Request) -> FormData:
    """The posted profile form (multipart, at most one file), its size capped before it is parsed, then
    checked for its CSRF token and Origin as every page form is (``web.pages.form`` reads the parsed form)."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise Invalid("Send the form from the page: its size is missing.")
    if int(declared) > MAX_FORM_BYTES:
        raise TooLarge(f"The logo is larger than {imaging.MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
    await request.form(max_files=1, max_fields=20, max_part_size=2 * MARKDOWN_MAX)
    return await form(request)


def _context(
    shown: PublisherProfile, values: dict[str, str] | None, errors: dict[str, str]
) -> dict[str, Any]:
    p = shown.publisher
    saved = {
        "legal_name": p.legal_name or "",
        "website": p.website or "",
        "phone": shown.phone_display,
        "email": p.email or "",
        "story": p.story or "",
    }
    return {
        "profile": shown,
        "publisher": p,
        "values": values or saved,
        "errors": errors,
        "missing": {pr.path: pr.message for pr in shown.missing},
        "story_html": render_markdown(p.story or ""),
        "agreement_html": render_markdown(AGREEMENT_TEXT),
        "agreement_title": AGREEMENT_TITLE,
        "agreement_version": AGREEMENT_VERSION,
        "agreement_current": p.agreement_version == AGREEMENT_VERSION,
        "accept_checked": False,
        "max_logo_mb": imaging.MAX_UPLOAD_BYTES // (1024 * 1024),
        "logo_min": imaging.LOGO_MIN,
    }


@page
async def profile_page(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    org = request.path_params["org"]
    if request.method in ("GET", "HEAD"):
        shown = await ctx.call(lambda sv: sv.publishers.profile(org, principal))
        return render(request, "publishing/profile.html", _context(shown, None, {}))

    data = await _profile_form(request)
    values = {name: text_field(data, name, limit=MARKDOWN_MAX + 1) for name in TEXT_FIELDS}
    upload = data.get("logo")
    logo = await upload.read() if isinstance(upload, UploadFile) and upload.filename else b""
    accept = data.get("accept_agreement") == AGREEMENT_VERSION

    def save(sv: Services) -> tuple[bool, str | None]:
        errors: dict[str, str] = {}
        changes: dict[str, Any] = dict(values)
        if logo:
            try:
                changes["logo_id"] = sv.publishers.upload_image(org, "logo", logo, principal, ctx.actor).id
            except (Invalid, TooLarge) as exc:  # the image's own refusal, shown beside the logo
                errors["logo"] = sentence(exc.message)
        before = sv.publishers.get_or_create(org, principal).email
        try:
            publisher = sv.publishers.update(org, changes, principal, ctx.actor)
        except ProfileInvalid as exc:
            errors.update({_field_of(pr.path): pr.message for pr in exc.problems})
            publisher = None
        if accept and not errors:
            sv.publishers.accept_agreement(org, AGREEMENT_VERSION, principal, ctx.actor)
        if errors:
            raise ProfileInvalid([Problem(name, message) for name, message in errors.items()])
        assert publisher is not None
        return publisher.email != before, publisher.email

    try:
        email_changed, email = await ctx.call(save)
    except ProfileInvalid as exc:
        await ctx.finish(commit=False)
        errors = {pr.path: pr.message for pr in exc.problems}
        shown = await ctx.call(lambda sv: sv.publishers.profile(org, principal))
        context = _context(shown, values, errors) | {"accept_checked": accept}
        return render(request, "publishing/profile.html", context, 400)
    message = "The publisher profile is saved."
    if email_changed and email:
        message += f" A confirmation link is on its way to {email}: open it to confirm the address."
    flash(request, message)
    return redirect(path(request, "publisher_profile", org=org))


@page
async def resend_link(request: Request, ctx: RequestContext) -> Response:
    principal = await session_principal(ctx)
    await form(request)
    org = request.path_params["org"]
    try:
        publisher = await ctx.call(lambda sv: sv.publishers.resend_verification(org, principal, ctx.actor))
    except DockyardError as exc:
        if isinstance(exc, NotFound | Forbidden):
            raise  # the 404 page (not the caller's to see) or the 403 page (not theirs to do), as elsewhere
        await ctx.finish(commit=False)
        flash(request, sentence(exc.message), "warning")
    else:
        flash(request, f"A new confirmation link is on its way to {publisher.email}.")
    return redirect(path(request, "publisher_profile", org=org) + "#email")


@page
async def verify_email(request: Request, ctx: RequestContext) -> Response:
    """GET: what the link confirms, and a button (mail scanners open links too); POST: confirm it."""
    await optional_session_principal(ctx)
    if request.method in ("GET", "HEAD"):
        secret = request.query_params.get("token", "")[:128]
        try:
            org, email = await ctx.call(lambda sv: sv.publishers.check_email_link(secret))
        except DockyardError as exc:
            return _link_invalid(request, exc)
        context = {"org": org, "email": email, "token": secret, "done": False}
        return render(request, "publishing/verify_email.html", context)
    data = await form(request)
    secret = text_field(data, "token", limit=128)
    try:
        org, publisher = await ctx.call(lambda sv: sv.publishers.verify_email(secret, ctx.actor))
    except DockyardError as exc:
        await ctx.finish(commit=False)
        return _link_invalid(request, exc)
    context = {"org": org, "email": publisher.email, "token": "", "done": True}
    return render(request, "publishing/verify_email.html", context)


@dataclass(frozen=True)
class OrgPublishing:
    """One of the viewer's organisations on the publishing page: its profile's state and its products."""

    name: str
    role: str
    profile: PublisherProfile
    products: list[Any]  # moderation's DashboardRow: live and working revisions, open threads


@page
async def publishing_page(request: Request, ctx: RequestContext) -> Response:
    """Where the top bar's Publishing leads: each of the viewer's organisations with its publisher
    profile's state (complete, or what it lacks) and its products with their revisions' states."""
    principal = await session_principal(ctx)

    def read(sv: Services) -> list[OrgPublishing]:
        shown = []
        for org in sv.account_reads.organisations_of(principal.name):
            profile = sv.publishers.profile(org.name, principal)
            # No publisher row yet: nothing was saved, so no products either (the dashboard needs one).
            rows = sv.reviews.dashboard(org.name, principal) if profile.publisher.id is not None else []
            shown.append(OrgPublishing(org.name, org.role, profile, rows))
        return shown

    orgs = await ctx.call(read)
    context = {"orgs": orgs, "states": STATE_LABELS, "section": "publishing"}
    return render(request, "publishing/overview.html", context)


def _link_invalid(request: Request, exc: DockyardError) -> Response:
    return render(request, "publishing/link_invalid.html", {"message": exc.message}, 400)


@page
async def upload_catalog_image(request: Request, ctx: RequestContext) -> Response:
    """A logo or screenshot for the organisation's products, from the product editor's upload form; back to
    the editor (``next``) with the new image's number, or with the image's refusal as a warning."""
    principal = await session_principal(ctx)
    org = request.path_params["org"]
    data = await _profile_form(request)
    kind = text_field(data, "kind", limit=20)
    back = safe_next(text_field(data, "next", limit=500), path(request, "products", org=org))
    upload = data.get("file")
    content = await upload.read() if isinstance(upload, UploadFile) and upload.filename else b""
    if not content:
        flash(request, "Choose an image file to upload.", "warning")
        return redirect(back)
    try:
        image = await ctx.call(
            lambda sv: sv.publishers.upload_image(org, kind, content, principal, ctx.actor)
        )
    except (Invalid, TooLarge) as exc:  # the image's own refusal: shown above the editor
        await ctx.finish(commit=False)
        flash(request, f"The {kind or 'image'} was not uploaded: {sentence(exc.message)}", "warning")
        return redirect(back)
    label = "Logo" if image.kind == "logo" else "Screenshot"
    flash(request, f"{label} #{image.id} uploaded ({image.width}x{image.height}): choose it below.")
    return redirect(back)


@page
async def catalog_image(request: Request, ctx: RequestContext) -> Response:
    """A rendition of a logo or screenshot: public (kept a year) once it is a company logo or in a published
    revision, else only for the organisation's members and the store team."""
    image_id = request.path_params["id"]
    rendition = request.path_params["rendition"]
    if not 1 <= image_id <= MAX_ID or len(rendition) > 16:
        raise NotFound("no such image")
    principal = await optional_session_principal(ctx)
    data, media_type, public = await ctx.call(
        lambda sv: sv.publishers.image_bytes(image_id, rendition, principal)
    )
    # A draft's image is for the signed-in team only: no shared cache may keep it.
    cache = IMAGE_CACHE if public else "private, max-age=300"
    headers = {"cache-control": cache, "etag": f'"{image_id}-{rendition}"'}
    if request.headers.get("if-none-match") == headers["etag"]:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


routes = [
    Route("/ui/publishing", publishing_page, methods=["GET"], name="publishing"),
    Route("/ui/orgs/{org}/publisher", profile_page, methods=["GET", "POST"], name="publisher_profile"),
    Route(
        "/ui/orgs/{org}/publisher/email/resend", resend_link, methods=["POST"], name="publisher_email_resend"
    ),
    Route(VERIFY_PATH, verify_email, methods=["GET", "POST"], name="publisher_email_verify"),
    Route(
        "/ui/orgs/{org}/catalog-images", upload_catalog_image, methods=["POST"], name="catalog_image_upload"
    ),
    Route("/catalog-images/{id:int}/{rendition}", catalog_image, methods=["GET"], name="catalog_image"),
]
