"""A real SMTP server on loopback for tests: aiosmtpd's ``Controller`` with a handler that keeps what it
receives, optionally STARTTLS or implicit TLS with a self-signed certificate made here, and AUTH."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    """One accepted message, and how it came."""

    mail_from: str
    recipients: list[str]
    message: EmailMessage
    tls: bool  # over STARTTLS or implicit TLS
    login: str | None  # the AUTH user, if any


@dataclass
class Collector:
    """The handler: accepts mail, or first answers DATA with each of ``data_replies`` in turn (e.g. a 451),
    and refuses the recipients in ``refused`` with their reply."""

    received: list[Received] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    data_commands: int = 0  # every DATA, refused or accepted

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refused:
            return self.refused[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_commands += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        raw = envelope.original_content or envelope.content
        message = BytesParser(policy=policy.default).parsebytes(raw)
        login = session.auth_data.login.decode() if session.auth_data is not None else None
        # session.ssl is set by STARTTLS only; implicit TLS shows on the transport.
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message, tls, login))
        return "250 2.0.0 accepted"

    def wait(self, count: int = 1, timeout: float = 10) -> list[Received]:
        """The received messages once there are ``count`` of them (AssertionError after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} messages after {timeout}s"
            time.sleep(0.02)
        return self.received


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def self_signed_certificate(directory: Path, host: str = "localhost") -> Certificate:
    """A fresh self-signed certificate for ``host`` and 127.0.0.1, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "smtpd-cert.pem", directory / "smtpd-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Certificate(cert_path, key_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Authenticator:
    """Accepts exactly one user and password (AUTH PLAIN or LOGIN)."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (self.user, self.password)
        # handled=False on a failure: aiosmtpd then answers 535 itself.
        return AuthResult(success=ok, handled=ok, auth_data=data if ok else None)


@dataclass
class SmtpServer:
    collector: Collector
    port: int
    host: str = "127.0.0.1"

    def url(self, scheme: str = "smtp", userinfo: str = "", query: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"{scheme}://{at}{self.host}:{self.port}" + (f"?{query}" if query else "")


@contextmanager
def smtp_server(
    *,
    starttls: Certificate | None = None,
    implicit_tls: Certificate | None = None,
    auth: tuple[str, str] | None = None,
    collector: Collector | None = None,
) -> Iterator[SmtpServer]:
    """An SMTP server on a free loopback port for the ``with`` block: plain; offering STARTTLS (and then
    requiring it); TLS from the first byte; and with ``auth``, requiring that login (over TLS only)."""
    collector = collector or Collector()
    port = free_port()
    smtp_kwargs: dict[str, Any] = {}
    if starttls is not None:
        smtp_kwargs |= {"tls_context": starttls.server_context(), "require_starttls": True}
    if auth is not None:
        smtp_kwargs["authenticator"] = Authenticator(*auth)
        if implicit_tls is None:
            smtp_kwargs["auth_required"] = True
        else:
            # aiosmtpd takes only STARTTLS for TLS and would not offer AUTH on an implicit-TLS connection;
            # a login is then optional (requiring it without "TLS" makes aiosmtpd warn), still checked.
            smtp_kwargs["auth_require_tls"] = False
    controller = Controller(
        collector,
        hostname="127.0.0.1",
        port=port,
        ssl_context=implicit_tls.server_context() if implicit_tls is not None else None,
        server_hostname="localhost",
        **smtp_kwargs,
    )
    controller.start()
    try:
        yield SmtpServer(collector, port)
    finally:
        controller.stop()
