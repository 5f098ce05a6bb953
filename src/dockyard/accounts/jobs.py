"""Accounts jobs: mailing a link someone asked for (see selfservice.py), and housekeeping: forget failed
logins older than the throttle's window, ended browser sessions and long-spent links."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete

from dockyard.accounts.models import BrowserSession
from dockyard.accounts.selfservice import LINK_JOB, purge_links
from dockyard.accounts.throttle import LoginThrottle
from dockyard.db import utcnow
from dockyard.events import Actor
from dockyard.jobs import JobContext, JobRegistry

log = logging.getLogger("dockyard.accounts")
PURGE_JOB = "accounts.purge"


def purge(session: Any) -> tuple[int, int]:
    """(failed logins, browser sessions) deleted."""
    failures = LoginThrottle(session).purge()
    result = session.execute(delete(BrowserSession).where(BrowserSession.expires_at <= utcnow()))
    return failures, int(result.rowcount or 0)


def register(registry: JobRegistry) -> None:
    @registry.job(PURGE_JOB)
    def purge_job(ctx: JobContext, payload: dict[str, Any]) -> None:
        failures, sessions = purge(ctx.session)
        links = purge_links(ctx.session)
        log.info("forgot %s failed logins, %s ended sessions and %s spent links", failures, sessions, links)

    @registry.job(LINK_JOB)
    def mail_link(ctx: JobContext, payload: dict[str, Any]) -> None:
        # Who asked is unknown (that is the point); where from is kept for the audit trail.
        actor = Actor(ip=payload.get("ip"), kind="anonymous")
        ctx.services.selfservice.send_link(payload["purpose"], payload["identifier"], actor=actor)

    registry.every(PURGE_JOB, 3600)
