"""``email.send``: deliver one outbox row through the configured sender.

The send runs outside the job's write transaction (on SQLite a slow mail server must not hold the single
write lock), so a crash between the server's acceptance and the commit sends the mail again: delivery is
at least once, and the Message-ID, fixed at queue time, lets receivers tell a resend from a new mail.
Failures are recorded on the row in a transaction of their own (the job's is rolled back) and retried by the
job queue with its backoff; a permanent refusal or the last attempt marks the row failed.
"""

from __future__ import annotations

import datetime as dt
import logging
from email.message import EmailMessage
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from dockyard.config import Settings
from dockyard.db import utcnow
from dockyard.email.messages import build_message, parse_address
from dockyard.email.models import MailStatus, OutboundEmail
from dockyard.email.senders import DeliveryError, MailSender, build_sender
from dockyard.email.services import SEND_JOB
from dockyard.errors import DockyardError
from dockyard.jobs import JobContext, JobRegistry

log = logging.getLogger("dockyard.email")

PURGE_JOB = "email.purge"
# Sent mails carry links with secrets (verification, password reset): short-lived, but there is no reason
# to keep the bodies beyond what an operator needs to answer "did my mail go out?". Failed ones stay longer,
# for inspection.
KEEP_SENT = dt.timedelta(days=14)
KEEP_FAILED = dt.timedelta(days=60)


class Undeliverable(DockyardError):
    """The mail server refused the mail for good: the job queue does not retry a DockyardError."""

    code = "UNDELIVERABLE"


def register(registry: JobRegistry, settings: Settings, sender: MailSender | None = None) -> MailSender:
    """Add ``email.send``, sending through ``sender`` (by default the one the settings choose); returns the
    sender. A malformed DOCKYARD_SMTP_URL or DOCKYARD_MAIL_FROM fails here, at start."""
    sender = sender or build_sender(settings)
    parse_address(settings.mail_from)

    @registry.job(SEND_JOB)
    def send(ctx: JobContext, payload: dict[str, Any]) -> None:
        deliver(ctx, sender, int(payload["id"]))

    @registry.job(PURGE_JOB)
    def purge(ctx: JobContext, payload: dict[str, Any]) -> None:
        log.info("purged %s old mails from the outbox", purge_outbox(ctx.session))

    registry.every(PURGE_JOB, 86400)
    return sender


def purge_outbox(session: Session, *, now: dt.datetime | None = None) -> int:
    """Delete sent mails older than KEEP_SENT and failed ones older than KEEP_FAILED; queued mails stay,
    whatever their age. Returns how many went."""
    now = now or utcnow()
    sent = (OutboundEmail.status == MailStatus.SENT.value) & (OutboundEmail.created_at < now - KEEP_SENT)
    failed = (OutboundEmail.status == MailStatus.FAILED.value) & (
        OutboundEmail.created_at < now - KEEP_FAILED
    )
    result = session.execute(delete(OutboundEmail).where(sent | failed))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def deliver(ctx: JobContext, sender: MailSender, mail_id: int) -> None:
    """Send outbox row ``mail_id`` unless it is gone or no longer queued; record the outcome on it."""
    message = ctx.read(lambda session: _queued_message(session, mail_id))
    if message is None:
        return  # deleted, or already sent by a run that died before its job was marked done
    try:
        sender.send(message)
    except Exception as exc:
        permanent = isinstance(exc, DeliveryError) and exc.permanent
        give_up = permanent or ctx.final_attempt
        error = str(exc) or type(exc).__name__
        ctx.write(lambda session: _record(session, mail_id, failed=give_up, error=error))
        log.warning(
            "mail #%s to %s not sent (attempt %s of %s%s): %s",
            mail_id,
            message["To"],
            ctx.attempt,
            ctx.max_attempts,
            ", giving up" if give_up else "",
            error,
        )
        if permanent:
            raise Undeliverable(error) from exc
        raise
    _record(ctx.session, mail_id, failed=False, error=None)
    log.info("mail #%s to %s sent", mail_id, message["To"])


def _queued_message(session: Session, mail_id: int) -> EmailMessage | None:
    mail = session.get(OutboundEmail, mail_id)
    if mail is None or mail.status != MailStatus.QUEUED.value:
        return None
    return build_message(
        from_address=mail.from_address,
        to_address=mail.to_address,
        subject=mail.subject,
        text=mail.body_text,
        html=mail.body_html,
        message_id=mail.message_id,
        date=mail.created_at,
    )


def _record(session: Session, mail_id: int, *, failed: bool, error: str | None) -> None:
    now = utcnow()
    values: dict[str, Any] = {"attempts": OutboundEmail.attempts + 1, "last_attempt_at": now}
    if error is None:
        values |= {"status": MailStatus.SENT.value, "sent_at": now}
    else:
        values |= {
            "last_error": error[:4000],
            "status": (MailStatus.FAILED if failed else MailStatus.QUEUED).value,
        }
    # Only a queued row: a row an operator (or a concurrent run) has since settled stays as it is.
    session.execute(
        update(OutboundEmail)
        .where(OutboundEmail.id == mail_id, OutboundEmail.status == MailStatus.QUEUED.value)
        .values(**values)
    )
