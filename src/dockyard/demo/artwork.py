"""Logos and screenshots for the demo store, drawn with Pillow (no image files in the repository): a
rounded tile in the publisher's colour with the product's initials, and a dashboard-like screenshot."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def _initials(name: str) -> str:
    words = [w for w in name.replace("-", " ").split() if w[:1].isalnum()]
    return "".join(w[0] for w in words[:2]).upper() or "?"


def _shade(colour: Colour, factor: float) -> Colour:
    r, g, b = colour
    return (min(255, int(r * factor)), min(255, int(g * factor)), min(255, int(b * factor)))


def logo(name: str, colour: Colour, size: int = 512) -> bytes:
    """A square logo: a rounded tile with a diagonal band and the initials of ``name``."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, size - 1, size - 1), radius=size // 6, fill=colour)
    draw.polygon([(0, size * 0.72), (size, size * 0.38), (size, size), (0, size)], fill=_shade(colour, 0.78))
    font = ImageFont.load_default(size=int(size * 0.42))
    text = _initials(name)
    box = draw.textbbox((0, 0), text, font=font)
    x = (size - (box[2] - box[0])) / 2 - box[0]
    y = (size - (box[3] - box[1])) / 2 - box[1]
    draw.text((x, y), text, font=font, fill=(255, 255, 255))
    return _png(image)


def screenshot(product: str, colour: Colour, seed: int, width: int = 1280, height: int = 800) -> bytes:
    """A made-up dashboard of ``product``: a title bar, a sidebar, a chart and a table."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), (246, 247, 249))
    draw = ImageDraw.Draw(image)
    title = ImageFont.load_default(size=30)
    small = ImageFont.load_default(size=18)
    draw.rectangle((0, 0, width, 64), fill=colour)
    draw.text((24, 16), product, font=title, fill=(255, 255, 255))
    draw.rectangle((0, 64, 220, height), fill=(255, 255, 255))
    for i, item in enumerate(("Overview", "Instances", "Metrics", "Logs", "Settings")):
        y = 96 + i * 44
        if i == 0:
            draw.rectangle((0, y - 10, 220, y + 30), fill=_shade(colour, 1.9))
        draw.text((28, y), item, font=small, fill=(40, 44, 52))
    # A line chart.
    left, top, right, bottom = 252, 96, width - 32, 460
    draw.rounded_rectangle((left, top, right, bottom), radius=12, fill=(255, 255, 255))
    draw.text((left + 20, top + 14), "Requests per second", font=small, fill=(40, 44, 52))
    points, value = [], 0.5
    for i in range(40):
        value = min(0.95, max(0.1, value + rng.uniform(-0.12, 0.12)))
        points.append((left + 30 + i * (right - left - 60) / 39, bottom - 30 - value * (bottom - top - 80)))
    draw.line(points, fill=colour, width=4)
    # A table.
    top = 492
    draw.rounded_rectangle((left, top, right, height - 32), radius=12, fill=(255, 255, 255))
    for row in range(5):
        y = top + 24 + row * 46
        draw.text(
            (left + 20, y), f"{product.lower().replace(' ', '-')}-{row + 1}", font=small, fill=(40, 44, 52)
        )
        draw.text(
            (left + 360, y),
            rng.choice(("healthy", "healthy", "healthy", "degraded")),
            font=small,
            fill=(21, 128, 61),
        )
        draw.rectangle(
            (left + 560, y + 4, left + 560 + rng.randint(80, 420), y + 18), fill=_shade(colour, 1.5)
        )
    return _png(image)
