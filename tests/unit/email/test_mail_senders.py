"""One test suite for the MailSender contract, run against every sender: SMTP to a real aiosmtpd server on
loopback (plain, STARTTLS with a self-signed certificate made here, implicit TLS, AUTH) and the .eml files
written when no SMTP server is configured. Then what is particular to each: URL parsing, TLS policy,
refusals, file modes."""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import stat
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from tests.support.smtpd import Certificate, Collector, self_signed_certificate, smtp_server

from dockyard.config import Settings
from dockyard.email.messages import build_message
from dockyard.email.senders import (
    DeliveryError,
    FileSender,
    MailSender,
    SmtpConfig,
    SmtpSender,
    build_sender,
)

USER, PASSWORD = "mailer", "p@ss:w/rd"  # characters a URL must encode


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@dataclass
class Rig:
    """A sender, the messages that reached the other side, and a way to make it fail."""

    sender: MailSender
    inbox: Callable[[], list[EmailMessage]]
    break_it: Callable[[], None]


def _smtp_rig(stack: ExitStack, scheme: str, certificate: Certificate, **server: object) -> Rig:
    smtp = stack.enter_context(smtp_server(**server))  # type: ignore[arg-type]
    userinfo = "mailer:p%40ss%3Aw%2Frd" if "auth" in server else ""
    query = f"cafile={certificate.cert}&timeout=5" if scheme != "smtp" else "timeout=5"
    sender = SmtpSender(SmtpConfig.from_url(smtp.url(scheme, userinfo, query)))
    # Breaking it stops the server: the connection is refused.
    return Rig(sender, lambda: [r.message for r in smtp.collector.received], stack.close)


def _file_rig(stack: ExitStack, tmp: Path) -> Rig:
    sender = FileSender(tmp / "data" / "mail")

    def break_it() -> None:
        sender.directory.parent.mkdir(parents=True)
        sender.directory.write_text("a file where the directory should be")

    return Rig(sender, sender.messages, break_it)


RIGS: dict[str, Callable[[ExitStack, Path, Certificate], Rig]] = {
    "smtp": lambda stack, tmp, cert: _smtp_rig(stack, "smtp", cert),
    "smtp-opportunistic-starttls": lambda stack, tmp, cert: _smtp_rig(stack, "smtp", cert, starttls=cert),
    "smtp+starttls": lambda stack, tmp, cert: _smtp_rig(stack, "smtp+starttls", cert, starttls=cert),
    "smtp+starttls-auth": lambda stack, tmp, cert: _smtp_rig(
        stack, "smtp+starttls", cert, starttls=cert, auth=(USER, PASSWORD)
    ),
    "smtps": lambda stack, tmp, cert: _smtp_rig(stack, "smtps", cert, implicit_tls=cert),
    "smtps-auth": lambda stack, tmp, cert: _smtp_rig(
        stack, "smtps", cert, implicit_tls=cert, auth=(USER, PASSWORD)
    ),
    "file": lambda stack, tmp, cert: _file_rig(stack, tmp),
}


@pytest.fixture(params=sorted(RIGS))
def rig(request: pytest.FixtureRequest, tmp_path: Path, certificate: Certificate) -> Iterator[Rig]:
    with ExitStack() as stack:
        yield RIGS[request.param](stack, tmp_path, certificate)


def message(n: int = 1, to: str = "Ada Lovelace <ada@example.org>") -> EmailMessage:
    return build_message(
        from_address="dockyard <dockyard@localhost>",
        to_address=to,
        subject=f"Message {n}: café ✓",
        text=f"Hello Ada,\n\nopen https://dockyard.example/verify?token=abc{n}\n" + "long line " * 30,
        html=f'<p>Hello Ada,</p><p><a href="https://dockyard.example/verify?token=abc{n}">verify</a></p>',
        message_id=f"<msg-{n}.abc@localhost>",
        date=dt.datetime(2026, 12, 6, 5, 30, n),
    )


# -- the interface --------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [SmtpSender, FileSender])
def test_sender_satisfies_the_protocol_with_its_signature(cls: type) -> None:
    assert issubclass(cls, MailSender)
    wanted = inspect.signature(MailSender.send)
    got = inspect.signature(cls.send)
    assert list(got.parameters) == list(wanted.parameters)


def test_a_class_without_send_is_not_a_sender() -> None:
    class Nothing:
        pass

    assert not isinstance(Nothing(), MailSender)


def test_the_message_arrives_whole(rig: Rig) -> None:
    rig.sender.send(message())
    (got,) = rig.inbox()
    assert got["To"] == "Ada Lovelace <ada@example.org>"
    assert got["From"] == "dockyard <dockyard@localhost>"
    assert got["Subject"] == "Message 1: café ✓"
    assert got["Message-ID"] == "<msg-1.abc@localhost>"
    assert got["Auto-Submitted"] == "auto-generated"
    assert got["Date"].datetime == dt.datetime(2026, 12, 6, 5, 30, 1, tzinfo=dt.UTC)
    assert got.get_content_type() == "multipart/alternative"
    text, html = got.iter_parts()
    assert text.get_content_type() == "text/plain"
    body = text.get_content().replace("\r\n", "\n")  # SMTP carries CRLF line ends
    assert "https://dockyard.example/verify?token=abc1" in body
    assert body.endswith("long line " * 29 + "long line \n")  # not wrapped or mangled
    assert html.get_content_type() == "text/html"
    assert 'href="https://dockyard.example/verify?token=abc1"' in html.get_content()


def test_messages_arrive_in_order(rig: Rig) -> None:
    for n in range(1, 4):
        rig.sender.send(message(n))
    assert [m["Message-ID"] for m in rig.inbox()] == [f"<msg-{n}.abc@localhost>" for n in range(1, 4)]


def test_a_failure_is_a_delivery_error_and_worth_retrying(rig: Rig) -> None:
    rig.break_it()
    with pytest.raises(DeliveryError) as raised:
        rig.sender.send(message())
    assert raised.value.permanent is False


# -- the choice -----------------------------------------------------------------------------------
def test_no_smtp_url_writes_files_into_the_data_dir(tmp_path: Path) -> None:
    sender = build_sender(Settings(data_dir=tmp_path / "data"))
    assert isinstance(sender, FileSender)
    assert sender.directory == tmp_path / "data" / "mail"


def test_an_smtp_url_sends_by_smtp(tmp_path: Path) -> None:
    sender = build_sender(Settings(data_dir=tmp_path, smtp_url="smtp+starttls://u:p@mail.example:2525"))
    assert isinstance(sender, SmtpSender)
    assert (sender.config.host, sender.config.port, sender.config.username) == ("mail.example", 2525, "u")


def test_the_environment_sets_both() -> None:
    settings = Settings.from_env(
        {"DOCKYARD_SMTP_URL": "smtps://m.example", "DOCKYARD_MAIL_FROM": "S <s@x.example>"}
    )
    assert (settings.smtp_url, settings.mail_from) == ("smtps://m.example", "S <s@x.example>")
    assert Settings.from_env({}).mail_from == "dockyard <dockyard@localhost>"
    assert Settings.from_env({}).smtp_url == ""


# -- SMTP URLs ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://localhost", ("localhost", 25, "plain", None, None, 30.0, None)),
        ("smtp://127.0.0.1:2525?timeout=2.5", ("127.0.0.1", 2525, "plain", None, None, 2.5, None)),
        ("smtp+starttls://mail.example", ("mail.example", 587, "starttls", None, None, 30.0, None)),
        ("smtps://mail.example", ("mail.example", 465, "tls", None, None, 30.0, None)),
        (
            "smtps://me%40example.org:p%40ss%3Aw%2Frd@mail.example:4650?cafile=/etc/ca.pem",
            ("mail.example", 4650, "tls", "me@example.org", "p@ss:w/rd", 30.0, "/etc/ca.pem"),
        ),
        ("smtp://u:p@localhost:25", ("localhost", 25, "plain", "u", "p", 30.0, None)),
        ("smtp://u:p@[::1]:25", ("::1", 25, "plain", "u", "p", 30.0, None)),
    ],
)
def test_smtp_urls(url: str, expected: tuple) -> None:
    c = SmtpConfig.from_url(url)
    assert (c.host, c.port, c.security, c.username, c.password, c.timeout, c.cafile) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.example",
        "smtp://",
        "smtp://mail.example/path",
        "smtp://mail.example:99999",
        "smtp://mail.example?tls=no",
        "smtp://mail.example?timeout=0",
        "smtp://mail.example?timeout=soon",
        # a password over a connection nobody checks, to another machine
        "smtp://user:pass@mail.example:587",
    ],
)
def test_bad_smtp_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"DOCKYARD_SMTP_URL|Port|could not convert"):
        SmtpConfig.from_url(url)


def test_the_password_stays_out_of_the_repr() -> None:
    config = SmtpConfig.from_url("smtps://me:hunter2@mail.example")
    assert "hunter2" not in repr(config)
    assert "hunter2" not in repr(SmtpSender(config).config)


# -- SMTP: TLS policy, logins and refusals --------------------------------------------------------
def test_smtp_uses_starttls_when_offered_and_plain_when_not(certificate: Certificate) -> None:
    with smtp_server(starttls=certificate) as tls, smtp_server() as plain:
        for server, encrypted in ((tls, True), (plain, False)):
            SmtpSender(SmtpConfig.from_url(server.url("smtp"))).send(message())
            assert [r.tls for r in server.collector.received] == [encrypted]


def test_starttls_or_smtps_report_the_tls_session(certificate: Certificate) -> None:
    with smtp_server(starttls=certificate) as starttls, smtp_server(implicit_tls=certificate) as implicit:
        for server, scheme in ((starttls, "smtp+starttls"), (implicit, "smtps")):
            SmtpSender(SmtpConfig.from_url(server.url(scheme, query=f"cafile={certificate.cert}"))).send(
                message()
            )
            assert server.collector.received[0].tls


def test_required_starttls_refuses_a_server_without_it(certificate: Certificate) -> None:
    with smtp_server() as server:
        sender = SmtpSender(
            SmtpConfig.from_url(server.url("smtp+starttls", query=f"cafile={certificate.cert}"))
        )
        with pytest.raises(DeliveryError, match="does not offer STARTTLS") as raised:
            sender.send(message())
        assert not raised.value.permanent
        assert server.collector.received == []


@pytest.mark.parametrize("scheme", ["smtp+starttls", "smtps"])
def test_an_untrusted_certificate_is_refused(scheme: str, certificate: Certificate) -> None:
    tls = {"starttls": certificate} if scheme == "smtp+starttls" else {"implicit_tls": certificate}
    with smtp_server(**tls) as server:  # type: ignore[arg-type]
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            SmtpSender(SmtpConfig.from_url(server.url(scheme, query="timeout=5"))).send(message())
        assert server.collector.received == []


@pytest.mark.parametrize("scheme", ["smtp+starttls", "smtps"])
def test_the_login_is_the_one_in_the_url(scheme: str, certificate: Certificate) -> None:
    tls = {"starttls": certificate} if scheme == "smtp+starttls" else {"implicit_tls": certificate}
    with smtp_server(auth=(USER, PASSWORD), **tls) as server:  # type: ignore[arg-type]
        query = f"cafile={certificate.cert}"
        right = SmtpSender(SmtpConfig.from_url(server.url(scheme, "mailer:p%40ss%3Aw%2Frd", query)))
        right.send(message())
        assert [r.login for r in server.collector.received] == [USER]
        wrong = SmtpSender(SmtpConfig.from_url(server.url(scheme, "mailer:nope", query)))
        with pytest.raises(DeliveryError, match="535") as raised:
            wrong.send(message(2))
        # The store's setup, not the mail: an operator may fix it before the retries run out.
        assert not raised.value.permanent
        assert len(server.collector.received) == 1


def test_a_server_that_requires_a_login_refuses_mail_without_one(certificate: Certificate) -> None:
    with smtp_server(starttls=certificate, auth=(USER, PASSWORD)) as server:
        anonymous = SmtpSender(
            SmtpConfig.from_url(server.url("smtp+starttls", query=f"cafile={certificate.cert}"))
        )
        with pytest.raises(DeliveryError, match="530") as raised:
            anonymous.send(message())
        assert not raised.value.permanent
        assert server.collector.received == []


def test_a_refused_recipient_is_permanent_and_a_busy_server_is_not() -> None:
    collector = Collector(
        refused={"gone@example.org": "550 5.1.1 no such user"}, data_replies=["451 4.3.0 later"]
    )
    with smtp_server(collector=collector) as server:
        sender = SmtpSender(SmtpConfig.from_url(server.url()))
        with pytest.raises(DeliveryError, match=r"550 5\.1\.1 no such user") as refused:
            sender.send(message(to="gone@example.org"))
        assert refused.value.permanent
        with pytest.raises(DeliveryError, match=r"451 4\.3\.0 later") as busy:
            sender.send(message())
        assert not busy.value.permanent
        sender.send(message())
        assert len(collector.received) == 1


def test_a_rejected_message_is_permanent() -> None:
    with smtp_server(collector=Collector(data_replies=["554 5.6.0 message refused"])) as server:
        with pytest.raises(DeliveryError, match="554") as raised:
            SmtpSender(SmtpConfig.from_url(server.url())).send(message())
        assert raised.value.permanent


def test_a_silent_server_times_out(tmp_path: Path) -> None:
    import socket

    with socket.socket() as listener:  # accepts connections, never says a word
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        sender = SmtpSender(SmtpConfig.from_url(f"smtp://127.0.0.1:{port}?timeout=0.3"))
        with pytest.raises(DeliveryError, match="timed out") as raised:
            sender.send(message())
        assert not raised.value.permanent


# -- files ----------------------------------------------------------------------------------------
def test_files_are_private_named_by_time_and_id_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sender = FileSender(tmp_path / "data" / "mail")
    with caplog.at_level(logging.INFO, logger="dockyard.email"):
        sender.send(message())
    (path,) = sender.directory.iterdir()
    assert path.name.endswith("-msg-1.abc.eml")
    stamp = path.name.split("-", 1)[0]
    assert dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(sender.directory.stat().st_mode) == 0o700
    (record,) = [r for r in caplog.records if r.name == "dockyard.email"]
    assert record.levelno == logging.INFO
    assert str(path) in record.getMessage() and "ada@example.org" in record.getMessage()


def test_a_hostile_message_id_makes_a_safe_file_name(tmp_path: Path) -> None:
    sender = FileSender(tmp_path / "mail")
    evil = message()
    evil.replace_header("Message-ID", "<../../etc/passwd@x>")
    sender.send(evil)
    (path,) = sender.directory.iterdir()
    assert path.parent == sender.directory and "/" not in path.name and ".." not in path.name
