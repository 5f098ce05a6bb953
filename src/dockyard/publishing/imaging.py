"""Uploaded catalogue images (logos, screenshots): checked, decoded under a pixel limit and re-encoded.

Pure: bytes in, renditions out, no database and no storage. Every refusal is an ``ImageInvalid`` (400) or,
for a file over the size limit, ``TooLarge`` (413), with a message a publisher can act on.

Decoding is the dangerous part: a 50 KB PNG may declare 20000x20000 pixels and inflate to gigabytes. So the
format is sniffed from the first bytes (only PNG, JPEG and WebP reach Pillow, no other decoder ever runs),
Pillow reads just the header (``Image.open`` is lazy), and the declared size is checked against this call's
limits before a single pixel is decoded. Pillow's own global bomb check (``Image.MAX_IMAGE_PIXELS``) is left
as it is: our limits are far lower and are set per call, so nothing global changes for other code.

Re-encoding draws the pixels into a new image, which carries no metadata (EXIF with its GPS position, XMP,
ICC profiles, text chunks) into the file we store. Logos become PNG at 512, 128 and 64 pixels square;
screenshots become WebP: ``full`` at their own size and ``thumb`` 480 pixels wide.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from enum import StrEnum

from PIL import Image, ImageOps, UnidentifiedImageError

from dockyard.errors import Invalid, TooLarge

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
LOGO_MIN = 512
LOGO_MAX = 4096  # a larger logo is pointless and costs memory to decode (4096^2 RGBA = 64 MiB)
LOGO_SIZES = (512, 128, 64)
# Screenshots: at least 640x360 (smaller is unreadable in the store), at most 3840x2160 (4K UHD), either way
# round (a portrait phone screenshot of 1080x1920 is fine: both sides are within 640..3840).
SCREENSHOT_MIN = (640, 360)
SCREENSHOT_MAX = (3840, 2160)
THUMB_WIDTH = 480
WEBP_QUALITY = 90

ACCEPTED = "PNG, JPEG or WebP"
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class ImageKind(StrEnum):
    LOGO = "logo"
    SCREENSHOT = "screenshot"


class ImageInvalid(Invalid):
    """An upload that is not an acceptable image; ``detail`` names the field (the kind of image)."""

    code = "IMAGE_INVALID"


@dataclass(frozen=True)
class Rendition:
    name: str  # "512", "128", "64" (logos); "full", "thumb" (screenshots)
    data: bytes
    media_type: str
    width: int
    height: int


@dataclass(frozen=True)
class CheckedImage:
    kind: ImageKind
    source_format: str  # PNG, JPEG or WEBP: what was uploaded
    width: int  # as uploaded (after its EXIF orientation)
    height: int
    media_type: str  # of every rendition
    renditions: tuple[Rendition, ...]


def sniff(data: bytes) -> str | None:
    """The format of an image from its signature: PNG, JPEG, WEBP, or another name we refuse (GIF, ...)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1"):
        return "AVIF/HEIC"
    if data.lstrip()[:5].lower() in (b"<?xml", b"<svg "):
        return "SVG"
    return None


def process(kind: ImageKind | str, data: bytes, *, field: str | None = None) -> CheckedImage:
    """Check an uploaded ``kind`` of image and re-encode it into its renditions."""
    kind = ImageKind(kind)
    field = field or kind.value
    if len(data) > MAX_UPLOAD_BYTES:
        raise TooLarge(
            f"the {kind.value} is {_mb(len(data))}: at most {_mb(MAX_UPLOAD_BYTES)} is accepted",
            detail={"field": field},
        )
    if not data:
        raise ImageInvalid(f"the {kind.value} file is empty", detail={"field": field})
    found = sniff(data)
    if found not in MEDIA_TYPES:
        what = f"{found} images are" if found else "this file is"
        raise ImageInvalid(
            f"{what} not accepted: upload the {kind.value} as {ACCEPTED}", detail={"field": field}
        )
    if kind is ImageKind.LOGO:
        limits = ((LOGO_MIN, LOGO_MIN), (LOGO_MAX, LOGO_MAX))
    else:
        limits = (SCREENSHOT_MIN, SCREENSHOT_MAX)
    image = _decode(data, found, kind, field, limits)
    if kind is ImageKind.LOGO:
        return _logo(image, found)
    return _screenshot(image, found)


def _decode(
    data: bytes, fmt: str, kind: ImageKind, field: str, limits: tuple[tuple[int, int], tuple[int, int]]
) -> Image.Image:
    """Decode after checking the header's size against ``limits``; the pixels only once they are sane."""
    (min_w, min_h), (max_w, max_h) = limits
    damaged = ImageInvalid(
        f"the {kind.value} could not be read: the file is damaged or incomplete", detail={"field": field}
    )
    try:
        with warnings.catch_warnings():
            # Pillow warns of (or refuses) huge images by its global limit; ours below is per call and lower.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = image.size
    except Image.DecompressionBombError:
        raise ImageInvalid(
            f"the {kind.value} declares far too many pixels: at most {max_w}x{max_h}", detail={"field": field}
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise damaged from None
    size = f"{width}x{height}"
    if kind is ImageKind.LOGO:
        if width != height:
            raise ImageInvalid(f"the logo must be square: it is {size}", detail={"field": field})
        if width < min_w:
            raise ImageInvalid(
                f"the logo must be at least {min_w}x{min_h}: it is {size}", detail={"field": field}
            )
        if width > max_w:
            raise ImageInvalid(
                f"the logo must be at most {max_w}x{max_h}: it is {size}", detail={"field": field}
            )
    else:
        # Either orientation: the short side against the short limits, the long side against the long ones.
        short, long = sorted((width, height))
        if short < min_h or long < min_w:
            raise ImageInvalid(
                f"the screenshot must be at least {min_w}x{min_h}: it is {size}", detail={"field": field}
            )
        if short > max_h or long > max_w:
            raise ImageInvalid(
                f"the screenshot must be at most {max_w}x{max_h}: it is {size}", detail={"field": field}
            )
    try:
        image.load()
        # A rotated photo is stored sideways with an EXIF note: apply it, since the note is about to go.
        image = ImageOps.exif_transpose(image) or image
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise damaged from None
    if kind is ImageKind.LOGO and image.size[0] != image.size[1]:  # a square that EXIF turns is a square
        raise ImageInvalid(
            f"the logo must be square: it is {image.size[0]}x{image.size[1]}", detail={"field": field}
        )
    return image


def _clean(image: Image.Image) -> Image.Image:
    """The pixels alone, in RGB or RGBA: a new image, so no metadata of the upload comes along."""
    alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    mode = "RGBA" if alpha else "RGB"
    converted = image.convert(mode)
    fresh = Image.new(mode, converted.size)
    fresh.paste(converted)
    return fresh


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "PNG":
        image.save(out, "PNG", optimize=True)
    else:
        image.save(out, "WEBP", quality=WEBP_QUALITY, method=4)
    return out.getvalue()


def _logo(image: Image.Image, source: str) -> CheckedImage:
    clean = _clean(image)
    renditions = []
    for side in LOGO_SIZES:
        sized = clean if clean.size == (side, side) else clean.resize((side, side), Image.Resampling.LANCZOS)
        renditions.append(Rendition(str(side), _encode(sized, "PNG"), "image/png", side, side))
    w, h = image.size
    return CheckedImage(ImageKind.LOGO, source, w, h, "image/png", tuple(renditions))


def _screenshot(image: Image.Image, source: str) -> CheckedImage:
    clean = _clean(image)
    w, h = clean.size
    thumb_h = max(1, round(h * THUMB_WIDTH / w))
    thumb = clean.resize((THUMB_WIDTH, thumb_h), Image.Resampling.LANCZOS)
    renditions = (
        Rendition("full", _encode(clean, "WEBP"), "image/webp", w, h),
        Rendition("thumb", _encode(thumb, "WEBP"), "image/webp", THUMB_WIDTH, thumb_h),
    )
    return CheckedImage(ImageKind.SCREENSHOT, source, w, h, "image/webp", renditions)


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")
