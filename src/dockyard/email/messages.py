"""Rendering a template to a subject, a text and an HTML body, and building the multipart message."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, select_autoescape

from dockyard.errors import Invalid

TEMPLATE_DIR = Path(__file__).parent / "templates"
# The messages there are; each is <name>.subject.txt, <name>.txt and <name>.html.
TEMPLATES = ("verify_email", "password_reset", "notice")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class MailTemplates:
    """The Jinja2 templates of every message: HTML autoescaped, text not, and a missing variable is an
    error (a mail with an empty link is worse than none)."""

    def __init__(self, directory: Path = TEMPLATE_DIR) -> None:
        self.env = Environment(
            loader=FileSystemLoader(directory),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            keep_trailing_newline=True,
        )

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        """The subject (one line), text and HTML of template ``name``; ``Invalid`` for an unknown name."""
        if name.startswith("_") or "/" in name:
            raise Invalid(f"no email template {name!r}")
        try:
            subject = self.env.get_template(f"{name}.subject.txt").render(context)
            # One line whatever the context held: a header cannot carry a line break.
            subject = " ".join(subject.split())
            text = self.env.get_template(f"{name}.txt").render(context)
            html = self.env.get_template(f"{name}.html").render({**context, "subject": subject})
        except TemplateNotFound as exc:
            raise Invalid(f"no email template {name!r}") from exc
        return Rendered(subject, text, html)


@functools.cache
def default_templates() -> MailTemplates:
    """The package's templates, loaded once per process (Jinja2 caches what it compiles)."""
    return MailTemplates()


def parse_address(text: str) -> Address:
    """``a@b.example`` or ``Name <a@b.example>`` -> Address; ``Invalid`` for anything else (a line break
    included: it would let the text add headers)."""
    if "\r" in text or "\n" in text or not text.strip():
        raise Invalid(f"not an email address: {text!r}")
    try:
        header = HeaderRegistry()("to", text)
    except Exception as exc:  # the stdlib parser raises IndexError on some inputs ("a@"), not a defect
        raise Invalid(f"not an email address: {text!r}") from exc
    addresses = getattr(header, "addresses", ())
    if header.defects or len(addresses) != 1 or not addresses[0].username or not addresses[0].domain:
        raise Invalid(f"not an email address: {text!r}")
    return addresses[0]


def new_message_id(from_address: str) -> str:
    """A Message-ID in the sender's domain (``make_msgid`` would otherwise look up this host's name)."""
    return make_msgid(domain=parse_address(from_address).domain or "localhost")


def build_message(
    *,
    from_address: str,
    to_address: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    date: dt.datetime,
) -> EmailMessage:
    """A multipart/alternative message (text first: clients show the last part they can display)."""
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = to_address
    message["Subject"] = subject
    # Stored naive in UTC (see db.utcnow).
    message["Date"] = format_datetime(date.replace(tzinfo=dt.UTC) if date.tzinfo is None else date)
    message["Message-ID"] = message_id
    # RFC 3834: vacation responders and other robots must not answer this mail.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message
