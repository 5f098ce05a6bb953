"""Catalogue images: what is refused and why (with the actual size), decompression bombs refused from their
header, and what is stored: re-encoded renditions without any of the upload's metadata."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image
from tests.support.pictures import GPS_IFD, gps_exif, picture, png_bomb

from dockyard.errors import TooLarge
from dockyard.publishing import imaging
from dockyard.publishing.imaging import ImageInvalid, process


def refusal(kind: str, data: bytes) -> str:
    with pytest.raises(ImageInvalid) as caught:
        process(kind, data)
    assert caught.value.detail == {"field": kind}
    return caught.value.message


def test_a_square_logo_of_exactly_512_is_taken_in_three_png_sizes() -> None:
    checked = process("logo", picture(512, 512))
    assert (checked.width, checked.height, checked.media_type) == (512, 512, "image/png")
    sizes = {r.name: Image.open(io.BytesIO(r.data)) for r in checked.renditions}
    assert {name: (im.format, im.size) for name, im in sizes.items()} == {
        "512": ("PNG", (512, 512)),
        "128": ("PNG", (128, 128)),
        "64": ("PNG", (64, 64)),
    }


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_logos_are_taken_and_stored_as_png(fmt: str) -> None:
    checked = process("logo", picture(600, 600, fmt))
    assert checked.source_format == fmt and checked.width == 600
    assert all(Image.open(io.BytesIO(r.data)).format == "PNG" for r in checked.renditions)


def test_a_logo_keeps_its_transparency() -> None:
    checked = process("logo", picture(512, 512, mode="RGBA"))
    assert Image.open(io.BytesIO(checked.renditions[0].data)).mode == "RGBA"


def test_a_logo_too_small_says_its_size() -> None:
    assert refusal("logo", picture(511, 511)) == "the logo must be at least 512x512: it is 511x511"


def test_a_logo_not_square_says_its_size() -> None:
    assert refusal("logo", picture(512, 513)) == "the logo must be square: it is 512x513"


def test_a_gif_is_refused_naming_the_accepted_formats() -> None:
    message = refusal("logo", picture(512, 512, "GIF"))
    assert message == "GIF images are not accepted: upload the logo as PNG, JPEG or WebP"


def test_a_file_that_is_no_image_is_refused() -> None:
    assert refusal("logo", b"%PDF-1.7 not a picture at all" * 10) == (
        "this file is not accepted: upload the logo as PNG, JPEG or WebP"
    )
    assert refusal("screenshot", b"") == "the screenshot file is empty"


def test_a_truncated_file_is_refused_as_damaged() -> None:
    data = picture(512, 512, "JPEG")
    message = refusal("logo", data[: len(data) // 2])
    assert message == "the logo could not be read: the file is damaged or incomplete"
    png = picture(512, 512)
    assert "damaged or incomplete" in refusal("logo", png[:200])


def test_a_file_over_5_mb_is_too_large_before_anything_is_decoded() -> None:
    data = picture(512, 512) + os.urandom(6 * 1024 * 1024)
    with pytest.raises(TooLarge) as caught:
        process("logo", data)
    assert caught.value.message == "the logo is 6 MB: at most 5 MB is accepted"
    assert caught.value.detail == {"field": "logo"}


def test_a_20000_pixel_square_png_bomb_is_refused_quickly() -> None:
    bomb = png_bomb()
    assert len(bomb) < 200_000
    started = time.monotonic()
    message = refusal("logo", bomb)
    assert time.monotonic() - started < 0.5
    assert "too many pixels" in message or "at most 4096x4096" in message


def test_a_png_bomb_is_refused_without_decoding_it(tmp_path: Path) -> None:
    """In a process of its own, so that its peak memory is measured: decoding the bomb would need 400 MB;
    refusing it must add little to what importing Pillow and dockyard costs."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb())
    script = textwrap.dedent(
        f"""
        import resource, sys
        from PIL import Image
        Image.MAX_IMAGE_PIXELS = None  # even with Pillow's own check off, ours refuses from the header
        from dockyard.publishing.imaging import ImageInvalid, process
        data = open({str(bomb)!r}, "rb").read()
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
        try:
            process("logo", data)
        except ImageInvalid as exc:
            print(exc.message)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before_mb, message, peak_mb = out.stdout.strip().splitlines()
    assert message == "the logo must be at most 4096x4096: it is 20000x20000"
    # Decoding it would take 400 MB more; what the imports took is measured before, in the same process.
    grew = int(peak_mb) - int(before_mb)
    assert grew < 50, f"peak {peak_mb} MB after {before_mb} MB of imports: the bomb was decoded"


def test_exif_gps_and_every_other_metadata_are_stripped() -> None:
    upload = picture(640, 640, "JPEG", exif=gps_exif())
    assert Image.open(io.BytesIO(upload)).getexif().get_ifd(GPS_IFD)  # the upload does carry a position
    for rendition in process("logo", upload).renditions:
        stored = Image.open(io.BytesIO(rendition.data))
        assert not stored.getexif(), rendition.name
        assert not stored.getexif().get_ifd(GPS_IFD)
        assert b"Exif" not in rendition.data and b"PhoneMaker" not in rendition.data
        assert not {"exif", "icc_profile", "xmp", "XML:com.adobe.xmp"} & set(stored.info)


def test_a_screenshot_is_stored_as_webp_full_and_a_480_wide_thumb() -> None:
    checked = process("screenshot", picture(1280, 720, exif=gps_exif()))
    full, thumb = checked.renditions
    assert (full.name, full.width, full.height) == ("full", 1280, 720)
    assert (thumb.name, thumb.width, thumb.height) == ("thumb", 480, 270)
    for r in checked.renditions:
        stored = Image.open(io.BytesIO(r.data))
        assert stored.format == "WEBP" and stored.size == (r.width, r.height)
        assert not stored.getexif() and b"PhoneMaker" not in r.data


def test_screenshot_size_limits_say_the_actual_size() -> None:
    assert refusal("screenshot", picture(639, 360)) == (
        "the screenshot must be at least 640x360: it is 639x360"
    )
    assert refusal("screenshot", picture(3841, 2160)) == (
        "the screenshot must be at most 3840x2160: it is 3841x2160"
    )
    assert process("screenshot", picture(360, 640)).renditions[1].height == 853  # portrait is fine


def test_no_global_pillow_limit_is_changed() -> None:
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageInvalid):
        process("logo", png_bomb())
    process("logo", picture(512, 512))
    assert before == Image.MAX_IMAGE_PIXELS
    assert imaging.MAX_UPLOAD_BYTES == 5 * 1024 * 1024
