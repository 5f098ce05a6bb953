"""Template filters: how sizes, times and digests read on a page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from dockyard.scanning.report import short_digest


def filesize(value: int | None) -> str:
    """1536 -> "1.5 KB" (decimal units, as registries and `podman images` print them)."""
    if value is None:
        return "\N{EN DASH}"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _utc(value: dt.datetime) -> dt.datetime:
    # Stored times are naive UTC (see models.utcnow).
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def timestamp(value: dt.datetime | None) -> str:
    """An exact time, in UTC, for a title attribute or a table cell."""
    return _utc(value).strftime("%Y-%m-%d %H:%M UTC") if value else "\N{EN DASH}"


def ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """ "3 hours ago", "just now", or a date beyond a month."""
    if value is None:
        return "never"
    now = now or dt.datetime.now(dt.UTC)
    seconds = int((now - _utc(value)).total_seconds())
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return "just now"
    for size, unit in ((86400 * 30, None), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            if unit is None:
                return _utc(value).strftime("%d %b %Y")
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    raise AssertionError("unreachable")


def age(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """How long something has waited, short and in whole units: "< 1 min", "12 min", "3 h", "2 d"
    (days on and on: a queue's oldest item should not turn into a date)."""
    if value is None:
        return "\N{EN DASH}"
    now = now or dt.datetime.now(dt.UTC)
    seconds = max(0, int((now - _utc(value)).total_seconds()))
    if seconds < 60:
        return "< 1 min"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    raise AssertionError("unreachable")


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """plural(1, "tag") -> "1 tag"; plural(3, "tag") -> "3 tags"."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


FILTERS: dict[str, Callable[..., Any]] = {
    "short_digest": lambda d: short_digest(d) if d else "",
    "filesize": filesize,
    "timestamp": timestamp,
    "ago": ago,
    "age": age,
    "plural": plural,
}
