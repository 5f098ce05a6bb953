"""Mail senders behind one interface, and the one place that picks one from the settings.

``SmtpSender`` speaks SMTP through the stdlib ``smtplib`` (a send is one short blocking exchange, run by a
job worker thread, so an asyncio client would buy nothing); ``FileSender`` writes ``.eml`` files for a
store with no mail server, such as a fresh ``make run``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
import smtplib
import ssl
import uuid
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, unquote, urlsplit

from dockyard.config import Settings
from dockyard.storage.permissions import FILE_MODE, private_mkdir

log = logging.getLogger("dockyard.email")


class DeliveryError(Exception):
    """The message was not delivered. ``permanent``: sending it again cannot help (a 5xx refusal of the
    recipient or the message); otherwise the job tries again later."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@runtime_checkable
class MailSender(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` to the addresses in its To header, or raise ``DeliveryError``."""
        ...


def build_sender(settings: Settings) -> MailSender:
    """SMTP when ``DOCKYARD_SMTP_URL`` is set, else ``.eml`` files in ``DATA_DIR/mail``; ValueError on a
    malformed URL (at start, not at the first mail)."""
    if settings.smtp_url:
        return SmtpSender(SmtpConfig.from_url(settings.smtp_url))
    return FileSender(Path(settings.data_dir) / "mail")


# -- SMTP ---------------------------------------------------------------------------------------------
PLAIN, STARTTLS, TLS = "plain", "starttls", "tls"
SCHEMES = {"smtp": (PLAIN, 25), "smtp+starttls": (STARTTLS, 587), "smtps": (TLS, 465)}
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to reach the SMTP server, from ``DOCKYARD_SMTP_URL``:

    - ``smtp://host[:25]``: STARTTLS when the server offers it, without checking its certificate (it only
      keeps passive listeners out; the mail would otherwise go in clear text anyway);
    - ``smtp+starttls://host[:587]``: STARTTLS required, certificate checked;
    - ``smtps://host[:465]``: TLS from the first byte, certificate checked;
    - ``user:password@`` (URL-encoded) logs in; ``?timeout=SECONDS`` (30) bounds every network wait;
      ``?cafile=PATH`` trusts a private CA as well as the system's.
    """

    host: str
    port: int
    security: str = PLAIN
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    cafile: str | None = None

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        parts = urlsplit(url.strip())
        if parts.scheme not in SCHEMES:
            raise ValueError(f"DOCKYARD_SMTP_URL: the scheme must be one of {', '.join(SCHEMES)}")
        if not parts.hostname or parts.path not in ("", "/") or parts.fragment:
            raise ValueError("DOCKYARD_SMTP_URL: expected smtp://[user:password@]host[:port][?timeout=S]")
        security, default_port = SCHEMES[parts.scheme]
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = set(query) - {"timeout", "cafile"}
        if unknown:
            raise ValueError(f"DOCKYARD_SMTP_URL: unknown parameter {sorted(unknown)[0]!r}")
        timeout = float(query.get("timeout", DEFAULT_TIMEOUT))
        if not timeout > 0:
            raise ValueError("DOCKYARD_SMTP_URL: the timeout must be positive")
        config = cls(
            host=parts.hostname,
            port=parts.port or default_port,  # ValueError for a port out of range
            security=security,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            timeout=timeout,
            cafile=query.get("cafile") or None,
        )
        # Over smtp:// the password could go in clear text, or through a TLS session nobody checked: only
        # to this machine's own relay. Anywhere else the URL must ask for a checked TLS connection.
        if config.username and security == PLAIN and not _is_loopback(config.host):
            raise ValueError(
                "DOCKYARD_SMTP_URL: a password is sent only over checked TLS: use smtp+starttls:// or smtps://"
            )
        return config

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context: the system's CAs (and ``cafile``), hostname checked."""
        return ssl.create_default_context(cafile=self.cafile) if self.cafile else ssl.create_default_context()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SmtpSender:
    """One SMTP connection per message: mail is rare here, and a fresh connection has no stale state."""

    def __init__(
        self,
        config: SmtpConfig,
        *,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.config = config
        self.context = ssl_context or config.ssl_context()
        # The EHLO name; smtplib's default looks up this host's FQDN at every connection.
        self.local_hostname = local_hostname

    def send(self, message: EmailMessage) -> None:
        try:
            with self._connect() as smtp:
                if self.config.username:
                    smtp.login(self.config.username, self.config.password or "")
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in exc.recipients.items())
            raise DeliveryError(f"recipient refused: {detail}", permanent=_all_permanent(codes)) from exc
        except smtplib.SMTPResponseException as exc:
            # A refused message is refused for good; a refused sender or login is this server's setup,
            # which an operator may fix before the retries run out.
            permanent = isinstance(exc, smtplib.SMTPDataError) and _all_permanent([exc.smtp_code])
            raise DeliveryError(
                f"{type(exc).__name__}: {exc.smtp_code} {_text(exc.smtp_error)}", permanent=permanent
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused connections, timeouts, TLS failures
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        if cfg.security == TLS:
            return smtplib.SMTP_SSL(
                cfg.host,
                cfg.port,
                timeout=cfg.timeout,
                context=self.context,
                local_hostname=self.local_hostname,
            )
        smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout, local_hostname=self.local_hostname)
        try:
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                # smtp://: encrypt when offered, without a check (see SmtpConfig).
                context = self.context if cfg.security == STARTTLS else _unchecked_context()
                smtp.starttls(context=context)
                smtp.ehlo()
            elif cfg.security == STARTTLS:
                raise DeliveryError(f"{cfg.host}:{cfg.port} does not offer STARTTLS")
        except BaseException:
            smtp.close()
            raise
        return smtp


def _unchecked_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _all_permanent(codes: list[int]) -> bool:
    return bool(codes) and all(500 <= code < 600 for code in codes)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


# -- files --------------------------------------------------------------------------------------------
class FileSender:
    """Writes each message to ``<directory>/<UTC time>-<id>.eml`` (0600: links in it sign users in) and
    logs where, so whoever runs the store can open the mail without a mail server."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def send(self, message: EmailMessage) -> None:
        try:
            private_mkdir(self.directory)
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
            path = self.directory / f"{stamp}-{_file_id(message)}.eml"
            partial = path.with_suffix(".eml.partial")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            with os.fdopen(fd, "wb") as out:
                out.write(message.as_bytes(policy=policy.default))
            # Renamed when complete: whoever watches the directory never opens half a message.
            os.replace(partial, path)
        except OSError as exc:
            raise DeliveryError(f"could not write the message: {exc}") from exc
        log.info("mail to %s written to %s (no DOCKYARD_SMTP_URL)", message["To"], path)

    def messages(self) -> list[EmailMessage]:
        """The messages written so far, oldest first."""
        parser = BytesParser(policy=policy.default)
        return [
            parser.parsebytes(path.read_bytes())  # type: ignore[misc]
            for path in sorted(self.directory.glob("*.eml"))
        ]


def _file_id(message: EmailMessage) -> str:
    """The Message-ID's local part, reduced to safe file-name characters (else a random one)."""
    local = str(message.get("Message-ID", "")).strip("<> ").split("@", 1)[0]
    safe = re.sub(r"[^A-Za-z0-9._-]", "", local)[:64].strip(".")
    return safe or uuid.uuid4().hex
