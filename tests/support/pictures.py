"""Real image files for the catalogue-image tests, made with Pillow (and one PNG bomb made by hand)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

# A GPS position in EXIF (IFD 0x8825): latitude 48°51'N, longitude 2°21'E.
GPS_IFD = 0x8825


def picture(
    width: int, height: int, fmt: str = "PNG", *, mode: str = "RGB", exif: bytes | None = None
) -> bytes:
    """A ``width``x``height`` image with some structure (a gradient and a block), as ``fmt`` bytes."""
    image = Image.new(mode, (width, height), (30, 90, 160) if mode == "RGB" else (30, 90, 160, 255))
    for x in range(0, width, max(1, width // 16)):
        image.paste((200, 120, 40) if mode == "RGB" else (200, 120, 40, 128), (x, 0, x + 4, height))
    out = io.BytesIO()
    params = {"exif": exif} if exif is not None else {}
    image.save(out, fmt, **params)
    return out.getvalue()


def gps_exif() -> bytes:
    """EXIF with a camera make and a GPS position (what a phone puts in a photo)."""
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0110] = "Phone 12"  # Model
    exif[GPS_IFD] = {
        1: "N",
        2: (48.0, 51.0, 29.0),
        3: "E",
        4: (2.0, 21.0, 8.0),
    }
    return exif.tobytes()


def png_bomb(side: int = 20000) -> bytes:
    """A valid ``side``x``side`` PNG of ~side²/8 zero bytes deflated to a few tens of KB: 1-bit greyscale,
    so making it costs ~50 MB of zlib input for 20000², while decoding it would take 400 MB in Pillow."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (side + 7) // 8)
    deflate = zlib.compressobj(9)
    data = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
