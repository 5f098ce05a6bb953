"""The store's rules as pure functions of stored times: what a pull of a held or revoked product gets, and
the words of the warning label."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dockyard.store.models import ListingStatus

WARN_CODE = 299  # RFC 7234's "miscellaneous persistent warning": registry clients print its text


@dataclass(frozen=True)
class PullVerdict:
    warning: str | None = None  # the text of a ``Warning: 299`` header
    denied: str | None = None  # the message of a DENIED error


def pull_verdict(
    product: str,
    status: str | None,
    since: dt.datetime | None,
    now: dt.datetime,
    revoked_pull_days: int,
) -> PullVerdict:
    """What a pull of ``product`` (``publisher/product``) gets in its listing's state: held products keep
    pulling with a warning (deployments must not break); revoked ones too for the grace period, then
    DENIED naming the revocation."""
    if status == ListingStatus.ON_HOLD.value:
        when = f" since {_day(since)}" if since else ""
        return PullVerdict(
            warning=f"{product} is on hold{when}: a security fix is overdue; see its store page"
        )
    if status == ListingStatus.REVOKED.value:
        since = since or now
        until = since + dt.timedelta(days=revoked_pull_days)
        if now >= until:
            return PullVerdict(
                denied=f"{product} was revoked from the store on {_day(since)} (security fixes overdue); "
                f"its images stopped pulling on {_day(until)}"
            )
        return PullVerdict(
            warning=f"{product} was revoked from the store on {_day(since)} (security fixes overdue); "
            f"pulls stop on {_day(until)}"
        )
    return PullVerdict()


def warning_header(text: str) -> str:
    """``299 - "text"`` with the quoted-string rules of RFC 7234 (and only printable ASCII: a header)."""
    clean = "".join(c if 32 <= ord(c) < 127 else "?" for c in text).replace("\\", "\\\\").replace('"', '\\"')
    return f'{WARN_CODE} - "{clean[:500]}"'


def _day(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d")
