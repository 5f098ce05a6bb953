"""The outbox: a mail is queued in the caller's transaction (rolled back: nothing is ever sent), sent by the
``email.send`` job after commit through a real SMTP server on loopback, retried with the job queue's backoff
when the server refuses for now, and given up (kept, marked failed) after its attempts or a refusal for good.
Runs on SQLite, and on PostgreSQL with DOCKYARD_TEST_DATABASE_URL (jobs commit: tables are emptied after)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, update
from tests.support.smtpd import SmtpServer, smtp_server

from dockyard.db import utcnow
from dockyard.email import jobs as email_jobs
from dockyard.email.models import MailStatus, OutboundEmail
from dockyard.email.senders import FileSender, SmtpConfig, SmtpSender
from dockyard.email.services import DEFAULT_MAX_ATTEMPTS, SEND_JOB, Mailer
from dockyard.errors import Invalid
from dockyard.jobs import DONE, FAILED, QUEUED, Job, JobRegistry, Worker
from dockyard.web.context import AppState

VERIFY = {"url": "https://store.example/verify?token=t0k3n", "username": "ada"}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def worker(app_state: AppState, smtp: SmtpServer) -> Worker:
    registry = JobRegistry()
    email_jobs.register(
        registry, app_state.settings, SmtpSender(SmtpConfig.from_url(smtp.url(query="timeout=5")))
    )
    return Worker(app_state.sessions, registry)


def queue(state: AppState, to: str = "ada@example.org", **kw: Any) -> int:
    """Queue a verification mail in a transaction of its own, committed; the outbox row's id."""
    with state.sessions.begin() as session:
        return Mailer(session, state.settings).queue(to, "verify_email", VERIFY, **kw).id


def mail(state: AppState, mail_id: int) -> OutboundEmail:
    with state.sessions() as session:
        found = session.get(OutboundEmail, mail_id)
        assert found is not None
        session.expunge(found)
        return found


def send_jobs(state: AppState) -> list[Job]:
    with state.sessions() as session:
        found = list(session.scalars(select(Job).where(Job.kind == SEND_JOB).order_by(Job.id)))
        session.expunge_all()
        return found


def make_due(state: AppState) -> None:
    """Skip the backoff: the retry is due now."""
    with state.sessions.begin() as session:
        session.execute(update(Job).where(Job.status == QUEUED).values(run_after=utcnow()))


def count(state: AppState) -> int:
    with state.sessions() as session:
        return session.scalar(select(func.count()).select_from(OutboundEmail)) or 0


def test_a_mail_queued_in_a_rolled_back_transaction_is_never_sent(
    app_state: AppState, worker: Worker, smtp: SmtpServer
) -> None:
    with app_state.sessions() as session:
        queued = Mailer(session, app_state.settings).queue("ada@example.org", "verify_email", VERIFY)
        session.flush()
        assert queued.id is not None and queued.status == MailStatus.QUEUED
        session.rollback()  # the sign-up failed after asking for the mail
    assert worker.run_until_idle() == 0
    assert count(app_state) == 0 and send_jobs(app_state) == []
    assert smtp.collector.data_commands == 0


def test_a_committed_mail_is_sent_by_the_job_after_commit(
    app_state: AppState, worker: Worker, smtp: SmtpServer
) -> None:
    mail_id = queue(app_state)
    assert smtp.collector.received == []  # queueing sends nothing
    assert worker.run_until_idle() == 1
    (received,) = smtp.collector.received
    row = mail(app_state, mail_id)
    assert (row.status, row.attempts, row.last_error) == (MailStatus.SENT, 1, None)
    assert row.sent_at is not None and row.last_attempt_at == row.sent_at
    assert [j.status for j in send_jobs(app_state)] == [DONE]
    assert received.recipients == ["ada@example.org"]
    assert received.mail_from == "dockyard@localhost"
    message = received.message
    assert message["Message-ID"] == row.message_id and row.message_id.endswith("@localhost>")
    assert message["From"] == "dockyard <dockyard@localhost>"
    assert message["Subject"] == "Confirm your email address for dockyard"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"].datetime == row.created_at.replace(tzinfo=dt.UTC).replace(microsecond=0)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert VERIFY["url"] in text and VERIFY["url"] in html
    assert app_state.settings.public_url in text  # the footer names the store
    # Run again: nothing left to do, nothing sent twice.
    assert worker.run_until_idle() == 0
    assert len(smtp.collector.received) == 1


def test_the_from_address_comes_from_the_settings(app_state: AppState, smtp: SmtpServer) -> None:
    settings = dataclasses.replace(app_state.settings, mail_from="Store <noreply@store.example>")
    with app_state.sessions.begin() as session:
        mail_id = Mailer(session, settings).queue("ada@example.org", "verify_email", VERIFY).id
    row = mail(app_state, mail_id)
    assert row.from_address == "Store <noreply@store.example>"
    assert row.message_id.endswith("@store.example>")


def test_a_refusal_for_now_is_retried_with_backoff_until_it_goes_through(
    app_state: AppState, worker: Worker, smtp: SmtpServer
) -> None:
    smtp.collector.data_replies = ["451 4.3.0 try again later", "421 4.7.0 busy"]
    mail_id = queue(app_state)

    assert worker.run_until_idle() == 1
    row = mail(app_state, mail_id)
    assert (row.status, row.attempts) == (MailStatus.QUEUED, 1)
    assert "451 4.3.0 try again later" in (row.last_error or "")
    (job,) = send_jobs(app_state)
    assert job.status == QUEUED and job.run_after > utcnow() + dt.timedelta(seconds=1)  # backing off
    assert worker.run_until_idle() == 0  # not due yet

    make_due(app_state)
    assert worker.run_until_idle() == 1
    assert mail(app_state, mail_id).attempts == 2

    make_due(app_state)
    assert worker.run_until_idle() == 1
    row = mail(app_state, mail_id)
    assert (row.status, row.attempts) == (MailStatus.SENT, 3)
    assert "421" in (row.last_error or "")  # the last failure stays readable
    assert [j.status for j in send_jobs(app_state)] == [DONE]
    assert len(smtp.collector.received) == 1 and smtp.collector.data_commands == 3


def test_after_its_last_attempt_a_mail_is_failed_and_kept(
    app_state: AppState, worker: Worker, smtp: SmtpServer
) -> None:
    smtp.collector.data_replies = ["451 4.3.0 try again later"] * 10
    mail_id = queue(app_state, max_attempts=3)
    for _ in range(5):
        worker.run_until_idle()
        make_due(app_state)
    row = mail(app_state, mail_id)
    assert (row.status, row.attempts, row.max_attempts) == (MailStatus.FAILED, 3, 3)
    assert "451" in (row.last_error or "")
    assert row.sent_at is None
    assert [j.status for j in send_jobs(app_state)] == [FAILED]
    assert smtp.collector.data_commands == 3 and smtp.collector.received == []
    with app_state.sessions() as session:
        assert [m.id for m in Mailer(session, app_state.settings).failed()] == [mail_id]


def test_a_refusal_for_good_is_not_retried(app_state: AppState, worker: Worker, smtp: SmtpServer) -> None:
    smtp.collector.refused["gone@example.org"] = "550 5.1.1 no such mailbox"
    mail_id = queue(app_state, to="gone@example.org")
    assert worker.run_until_idle() == 1
    make_due(app_state)
    assert worker.run_until_idle() == 0
    row = mail(app_state, mail_id)
    assert (row.status, row.attempts) == (MailStatus.FAILED, 1)
    assert "550 5.1.1 no such mailbox" in (row.last_error or "")
    (job,) = send_jobs(app_state)
    assert job.status == FAILED and job.attempts == 1


def test_an_unreachable_server_is_retried(app_state: AppState) -> None:
    with smtp_server() as gone:
        url = gone.url(query="timeout=2")
    registry = JobRegistry()
    email_jobs.register(registry, app_state.settings, SmtpSender(SmtpConfig.from_url(url)))
    mail_id = queue(app_state)
    assert Worker(app_state.sessions, registry).run_until_idle() == 1
    row = mail(app_state, mail_id)
    assert (row.status, row.attempts) == (MailStatus.QUEUED, 1)
    assert "Connection refused" in (row.last_error or "") or "ConnectionRefused" in (row.last_error or "")
    assert [j.status for j in send_jobs(app_state)] == [QUEUED]


def test_a_mail_settled_meanwhile_is_not_sent(app_state: AppState, worker: Worker, smtp: SmtpServer) -> None:
    mail_id = queue(app_state)
    with app_state.sessions.begin() as session:  # e.g. sent by a run that died before marking its job
        session.execute(update(OutboundEmail).values(status=MailStatus.SENT.value))
    assert worker.run_until_idle() == 1
    assert smtp.collector.data_commands == 0
    assert mail(app_state, mail_id).attempts == 0


@pytest.mark.parametrize(
    ("to", "template", "context", "match"),
    [
        ("not an address", "verify_email", VERIFY, "not an email address"),
        ("ada@example.org\r\nBcc: all@example.org", "verify_email", VERIFY, "not an email address"),
        ("ada@example.org", "welcome_pack", VERIFY, "no email template"),
        ("ada@example.org", "verify_email", {"username": "ada"}, "url"),
        ("ada@example.org", "notice", {"subject": "S"}, "paragraphs"),
    ],
)
def test_a_bad_mail_is_invalid_and_nothing_is_queued(
    app_state: AppState, to: str, template: str, context: dict[str, Any], match: str
) -> None:
    with app_state.sessions() as session:
        with pytest.raises(Invalid, match=match):
            Mailer(session, app_state.settings).queue(to, template, context)
        session.flush()
        assert session.scalar(select(func.count()).select_from(OutboundEmail)) == 0
        assert session.scalar(select(func.count()).select_from(Job)) == 0
        session.rollback()


def test_the_default_attempts_and_the_outbox_row(app_state: AppState) -> None:
    mail_id = queue(app_state, to="Ada Lovelace <ada@example.org>")
    row = mail(app_state, mail_id)
    assert row.max_attempts == DEFAULT_MAX_ATTEMPTS
    assert row.to_address == "Ada Lovelace <ada@example.org>" and row.template == "verify_email"
    (job,) = send_jobs(app_state)
    assert (job.payload, job.max_attempts, job.dedupe_key) == (
        {"id": mail_id},
        DEFAULT_MAX_ATTEMPTS,
        f"email.send:{mail_id}",
    )


def test_without_an_smtp_url_the_mail_is_a_file_in_the_data_dir(app_state: AppState) -> None:
    registry = JobRegistry()
    sender = email_jobs.register(registry, app_state.settings)  # the settings' own choice
    assert isinstance(sender, FileSender)
    assert sender.directory == app_state.settings.data_dir / "mail"
    queue(app_state)
    assert Worker(app_state.sessions, registry).run_until_idle() == 1
    (message,) = sender.messages()
    assert VERIFY["url"] in message.get_body(("plain",)).get_content()


def test_bad_mail_settings_fail_at_start(app_state: AppState) -> None:
    with pytest.raises(ValueError, match="DOCKYARD_SMTP_URL"):
        email_jobs.register(JobRegistry(), dataclasses.replace(app_state.settings, smtp_url="http://mail"))
    with pytest.raises(Invalid, match="not an email address"):
        email_jobs.register(JobRegistry(), dataclasses.replace(app_state.settings, mail_from="dockyard"))


def test_the_purge_keeps_queued_mails_and_recent_ones(app_state: AppState) -> None:
    ids = {
        name: queue(app_state) for name in ("old_sent", "new_sent", "old_failed", "mid_failed", "old_queued")
    }
    now = utcnow()
    aged = {
        "old_sent": (MailStatus.SENT, email_jobs.KEEP_SENT + dt.timedelta(hours=1)),
        "new_sent": (MailStatus.SENT, email_jobs.KEEP_SENT - dt.timedelta(hours=1)),
        "old_failed": (MailStatus.FAILED, email_jobs.KEEP_FAILED + dt.timedelta(hours=1)),
        "mid_failed": (MailStatus.FAILED, email_jobs.KEEP_SENT + dt.timedelta(days=1)),
        "old_queued": (MailStatus.QUEUED, email_jobs.KEEP_FAILED * 2),
    }
    ids = {name: queue(app_state) for name in aged}
    with app_state.sessions.begin() as session:
        for name, (status, age) in aged.items():
            session.execute(
                update(OutboundEmail)
                .where(OutboundEmail.id == ids[name])
                .values(status=status.value, created_at=now - age)
            )
    with app_state.sessions.begin() as session:
        assert email_jobs.purge_outbox(session, now=now) == 2
    with app_state.sessions() as session:
        left = set(session.scalars(select(OutboundEmail.id).where(OutboundEmail.id.in_(ids.values()))))
    assert left == {ids["new_sent"], ids["mid_failed"], ids["old_queued"]}


def test_the_purge_runs_daily(app_state: AppState) -> None:
    registry = JobRegistry()
    email_jobs.register(registry, app_state.settings, FileSender(app_state.settings.data_dir / "mail"))
    assert [(p.kind, p.interval) for p in registry.periodic] == [(email_jobs.PURGE_JOB, 86400)]
