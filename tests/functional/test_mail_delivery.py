"""Mail through the composition root: the server's job workers and ``dockyard worker --once`` both send what
is queued, by SMTP to a real aiosmtpd server on loopback when DOCKYARD_SMTP_URL is set, and to .eml files
under DATA_DIR/mail (with a log line saying where) when it is not."""

from __future__ import annotations

import dataclasses
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.support.cli import Cli
from tests.support.smtpd import SmtpServer, smtp_server

from dockyard.config import Settings
from dockyard.db import make_engine, make_session_factory, migrate
from dockyard.email.models import MailStatus, OutboundEmail
from dockyard.email.senders import FileSender
from dockyard.email.services import SEND_JOB, Mailer
from dockyard.web.context import AppState

LINK = "http://127.0.0.1:5999/verify?token=abc"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def settings(settings: Settings, smtp: SmtpServer) -> Settings:
    """The test settings, with the SMTP server and a job worker thread (what the app and its state read)."""
    return dataclasses.replace(settings, smtp_url=smtp.url(query="timeout=5"), job_workers=1)


def test_the_servers_job_workers_send_queued_mail(
    settings: Settings, app_state: AppState, smtp: SmtpServer
) -> None:
    from dockyard.web.app import create_app

    app = create_app(settings, state=app_state)
    assert SEND_JOB in app.state.jobs.handlers
    with TestClient(app, base_url="http://127.0.0.1:5999"):
        with app_state.sessions.begin() as session:
            mail_id = Mailer(session, settings).queue("ada@example.org", "verify_email", {"url": LINK}).id
        (received,) = smtp.collector.wait(1)
    assert LINK in received.message.get_body(("plain",)).get_content()
    with app_state.sessions() as session:
        row = session.get(OutboundEmail, mail_id)
        assert row is not None and row.status == MailStatus.SENT


def queue_in(cli: Cli, mail_from: str = "dockyard <dockyard@localhost>") -> int:
    """Queue a password reset mail in the command's database, as the server would."""
    settings = Settings(data_dir=cli.data_dir, database_url=cli.database_url, mail_from=mail_from)
    engine = make_engine(cli.database_url)
    try:
        migrate(engine)
        with make_session_factory(engine).begin() as session:
            context = {"url": LINK, "expires": "an hour"}
            return Mailer(session, settings).queue("ada@example.org", "password_reset", context).id
    finally:
        engine.dispose()


def status(database_url: str) -> list[tuple[str, int]]:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            return [(m.status, m.attempts) for m in session.scalars(select(OutboundEmail))]
    finally:
        engine.dispose()


def test_dockyard_worker_sends_by_smtp(tmp_path: Path, fresh_database_url: str, smtp: SmtpServer) -> None:
    env = {"DOCKYARD_SMTP_URL": smtp.url(query="timeout=5"), "DOCKYARD_VULNDB_INTERVAL": "0"}
    cli = Cli(tmp_path / "data", fresh_database_url, env)
    queue_in(cli, mail_from="Store <noreply@store.example>")
    result = cli("worker", "--once")
    assert result.exit_code == 0, result.stderr
    (received,) = smtp.collector.received
    assert received.message["From"] == "Store <noreply@store.example>"
    assert received.message["Subject"] == "Reset your dockyard password"
    assert status(fresh_database_url) == [(MailStatus.SENT, 1)]


def test_without_smtp_dockyard_worker_writes_the_mail_where_the_log_says(
    tmp_path: Path, fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cli = Cli(tmp_path / "data", fresh_database_url, {"DOCKYARD_VULNDB_INTERVAL": "0"})
    queue_in(cli)
    with caplog.at_level(logging.INFO, logger="dockyard.email"):
        result = cli("worker", "--once")
    assert result.exit_code == 0, result.stderr
    mail_dir = tmp_path / "data" / "mail"
    (path,) = mail_dir.glob("*.eml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = [
        r.getMessage() for r in caplog.records if r.name == "dockyard.email" and str(path) in r.getMessage()
    ]
    assert len(lines) == 1 and "ada@example.org" in lines[0]
    (message,) = FileSender(mail_dir).messages()
    assert LINK in message.get_body(("plain",)).get_content()
    assert status(fresh_database_url) == [(MailStatus.SENT, 1)]
