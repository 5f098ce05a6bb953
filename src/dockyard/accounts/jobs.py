"""Accounts housekeeping: forget failed logins older than the throttle's window and ended browser sessions."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete

from dockyard.accounts.models import BrowserSession
from dockyard.accounts.throttle import LoginThrottle
from dockyard.db import utcnow
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
        log.info("forgot %s failed logins and %s ended sessions", failures, sessions)

    registry.every(PURGE_JOB, 3600)
