"""Mail of repository watches, queued through the outbox in the transaction of the notice (the outbox sends
after commit): a watcher's new Critical findings at once, the others in a daily digest; each finding with its
repository, tags, digest, class, component, fixed version and a link to the scan page. Only verified
addresses of active users are mailed.

``muted`` is what the compliance mail asks: which of a publisher's people turned a kind of mail off.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.accounts.models import User
from dockyard.alerts.models import AlertPreference
from dockyard.config import Settings
from dockyard.email.services import Mailer
from dockyard.events import Event, EventBus, EventTag

PREFERENCES_PAGE = "/ui/account/notifications"
MAX_ITEMS = 30  # a mail lists this many findings; the scan pages have them all


def subscribe(bus: EventBus, settings: Settings) -> None:
    bus.subscribe(EventTag.ALERT_NOTICE, AlertMail(settings).notice)


def muted(session: Session, usernames: Iterable[str], via: str) -> set[str]:
    """Which of ``usernames`` turned off the mail ``via`` names: "email" (a Critical at once) or "digest"
    (the daily digest). Users who never saved preferences have everything on."""
    column = {"email": AlertPreference.critical_now, "digest": AlertPreference.daily_digest}.get(via)
    names = sorted(set(usernames))
    if column is None or not names:
        return set()
    return set(
        session.scalars(
            select(User.username)
            .join(AlertPreference, AlertPreference.user_id == User.id)
            .where(User.username.in_(names), column.is_(False))
        )
    )


def finding_line(item: dict[str, Any], public_url: str) -> str:
    """One finding of a notice: class, vulnerability, component, fix, where, and its scan page."""
    version = f" {item['version']}" if item.get("version") else ""
    fix = f"fixed in {item['fixed_version']}" if item.get("fixed_version") else "no fixed version yet"
    again = " (reopened)" if item.get("reopened") else ""
    tags = f":{item['tags']}" if item.get("tags") else ""
    return (
        f"{item['severity']}: {item['vulnerability']}{again} in {item['component']}{version} ({fix}); "
        f"{item['repository']}{tags} @ {item['digest']}"
        + (f" (platform image {item['image_digest']})" if item["image_digest"] != item["digest"] else "")
        + f"; scan: {public_url}{item['scan']}"
    )


class AlertMail:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def notice(self, session: Session, event: Event) -> None:
        """New findings of watched repositories, to the watcher."""
        user = session.get(User, event.data["user_id"])
        if user is None or not user.is_active or not user.email or user.email_verified_at is None:
            return
        items: list[dict[str, Any]] = event.data["items"]
        count = int(event.data.get("count", len(items)))
        repos = sorted({i["repository"] for i in items})
        where = repos[0] if len(repos) == 1 else f"{len(repos)} watched repositories"
        if event.data["via"] == "email":
            subject = f"Critical vulnerability found in {where}"
            lead = (
                f"The scanner found {count} new Critical finding(s) in {where}, which you watch. "
                "Critical findings (CVSS 7.0 to 10.0) should be fixed first: rebuild the images on a fixed "
                "version and push them again."
            )
        else:
            subject = f"New vulnerabilities in {where}: your daily digest"
            lead = f"The scanner found {count} new finding(s) in {where} (watched) since your last digest."
        more = [f"... and {count - MAX_ITEMS} more: see the scan pages."] if count > MAX_ITEMS else []
        manage = self.settings.public_url + PREFERENCES_PAGE
        Mailer(session, self.settings).queue(
            user.email,
            "notice",
            {
                "subject": subject,
                "username": user.username,
                "paragraphs": [lead],
                "items": [finding_line(i, self.settings.public_url) for i in items[:MAX_ITEMS]] + more,
                "after": [f"You get this mail because you watch these repositories. Change it at {manage}"],
                "url": self.settings.public_url + items[0]["scan"],
                "url_label": "See the scan",
            },
        )
