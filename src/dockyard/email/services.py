"""The mailer: queue a mail in the caller's transaction; the ``email.send`` job sends it after commit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import TemplateError
from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.config import Settings
from dockyard.db import utcnow
from dockyard.email.messages import MailTemplates, default_templates, new_message_id, parse_address
from dockyard.email.models import MailStatus, OutboundEmail
from dockyard.errors import Invalid
from dockyard.jobs import enqueue

SEND_JOB = "email.send"
# The job queue retries after 2, 4, 8 ... seconds, at most 300 between tries: ten attempts span about
# fifteen minutes, long enough for a mail server's restart, short enough that a link still means something.
DEFAULT_MAX_ATTEMPTS = 10
SITE_NAME = "dockyard"


class Mailer:
    """Queues mail: the outbox row and its job are written in ``session``'s transaction, so nothing is sent
    unless the action that caused the mail commits. Never sends, never commits."""

    def __init__(self, session: Session, settings: Settings, templates: MailTemplates | None = None) -> None:
        self.session = session
        self.settings = settings
        self.templates = templates or default_templates()

    def queue(
        self,
        to: str,
        template: str,
        context: Mapping[str, Any],
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        delay: float = 0,
    ) -> OutboundEmail:
        """Render ``template`` for ``to`` and add it to the outbox with its send job; ``Invalid`` for a bad
        address, an unknown template or a variable the template needs and ``context`` lacks."""
        if max_attempts < 1:
            raise Invalid("max_attempts must be at least 1")
        to_address = str(parse_address(to))
        from_address = self.settings.mail_from
        globals_ = {"site_name": SITE_NAME, "site_url": self.settings.public_url}
        try:
            rendered = self.templates.render(template, {**globals_, **context})
        except TemplateError as exc:  # a variable the template needs is missing: the caller's mistake
            raise Invalid(f"email template {template!r}: {exc}") from exc
        mail = OutboundEmail(
            message_id=new_message_id(from_address),
            template=template,
            from_address=from_address,
            to_address=to_address,
            subject=rendered.subject,
            body_text=rendered.text,
            body_html=rendered.html,
            status=MailStatus.QUEUED.value,
            attempts=0,
            max_attempts=max_attempts,
            created_at=utcnow(),
        )
        self.session.add(mail)
        self.session.flush()
        enqueue(
            self.session,
            SEND_JOB,
            {"id": mail.id},
            dedupe_key=f"{SEND_JOB}:{mail.id}",
            delay=delay,
            max_attempts=max_attempts,
            check_queued=False,  # a new id: no job can have its key yet
        )
        return mail

    def get(self, mail_id: int) -> OutboundEmail | None:
        """The outbox row ``mail_id``, if any."""
        return self.session.get(OutboundEmail, mail_id)

    def failed(self, limit: int = 100) -> list[OutboundEmail]:
        """Mails given up on, newest first (for inspection)."""
        query = (
            select(OutboundEmail)
            .where(OutboundEmail.status == MailStatus.FAILED.value)
            .order_by(OutboundEmail.created_at.desc(), OutboundEmail.id.desc())
            .limit(limit)
        )
        return list(self.session.scalars(query))
