"""The templates (text and autoescaped HTML for each message), addresses, and the message built from them."""

from __future__ import annotations

import datetime as dt
from email.utils import parsedate_to_datetime

import pytest
from jinja2 import UndefinedError

from dockyard.email.messages import (
    TEMPLATE_DIR,
    TEMPLATES,
    build_message,
    default_templates,
    new_message_id,
    parse_address,
)
from dockyard.errors import Invalid

SITE = {"site_name": "dockyard", "site_url": "https://store.example"}
CONTEXTS = {
    "verify_email": {"url": "https://store.example/verify?t=abc&x=1", "username": "ada"},
    "password_reset": {"url": "https://store.example/reset?t=abc&x=1", "username": "ada"},
    "notice": {"subject": "Your image was scanned", "paragraphs": ["First.", "Second."]},
}


def test_every_template_has_a_subject_text_and_html() -> None:
    assert set(CONTEXTS) == set(TEMPLATES)
    for name in TEMPLATES:
        for suffix in (".subject.txt", ".txt", ".html"):
            assert (TEMPLATE_DIR / f"{name}{suffix}").is_file(), name + suffix


@pytest.mark.parametrize("name", TEMPLATES)
def test_each_template_renders_its_link_or_paragraphs(name: str) -> None:
    rendered = default_templates().render(name, {**SITE, **CONTEXTS[name]})
    assert rendered.subject and "\n" not in rendered.subject
    assert "https://store.example" in rendered.text  # the footer says which store sent it
    assert rendered.html.startswith("<!DOCTYPE html>")
    if "url" in CONTEXTS[name]:
        # As is in the text, escaped in the HTML (where & must be &amp;), and the same link.
        assert CONTEXTS[name]["url"] in rendered.text
        assert "https://store.example/" in rendered.html and "t=abc&amp;x=1" in rendered.html
        assert "Hello ada," in rendered.text and "Hello ada," in rendered.html
    else:
        assert "First.\n\nSecond." in rendered.text
        assert "<p>First.</p>" in rendered.html and "<p>Second.</p>" in rendered.html


def test_subjects() -> None:
    render = default_templates().render
    assert render("verify_email", {**SITE, "url": "u"}).subject == "Confirm your email address for dockyard"
    assert render("password_reset", {**SITE, "url": "u"}).subject == "Reset your dockyard password"
    notice = render("notice", {**SITE, "subject": "Line one\r\nBcc: evil@x.example", "paragraphs": []})
    assert notice.subject == "Line one Bcc: evil@x.example"  # one line: no header can be smuggled in


def test_html_is_escaped_and_text_is_not() -> None:
    hostile = "<script>alert(1)</script>"
    rendered = default_templates().render(
        "notice", {**SITE, "subject": "S & T", "paragraphs": [hostile], "username": "a&b"}
    )
    assert hostile not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "Hello a&amp;b," in rendered.html and "<title>S &amp; T</title>" in rendered.html
    assert hostile in rendered.text and "Hello a&b," in rendered.text
    assert rendered.subject == "S & T"


def test_optional_parts_appear_only_when_given() -> None:
    render = default_templates().render
    plain = render("verify_email", {**SITE, "url": "https://s.example/v"})
    assert "Hello," in plain.text and "works for" not in plain.text
    timed = render("password_reset", {**SITE, "url": "https://s.example/r", "expires": "an hour"})
    assert "The link works for an hour, once." in timed.text and "an hour" in timed.html
    action = render("notice", {**SITE, "subject": "S", "paragraphs": ["P"], "url": "https://s.example/x"})
    assert "https://s.example/x" in action.text and "Open dockyard" in action.html
    labelled = render(
        "notice",
        {**SITE, "subject": "S", "paragraphs": ["P"], "url": "https://s.example/x", "url_label": "Go"},
    )
    assert ">Go</a>" in labelled.html


def test_a_missing_variable_is_an_error_and_an_unknown_template_invalid() -> None:
    with pytest.raises(UndefinedError, match="url"):  # the Mailer reports it as Invalid
        default_templates().render("verify_email", SITE)
    for name in ("no_such_mail", "_layout", "../notice", "_footer"):
        with pytest.raises(Invalid, match="no email template"):
            default_templates().render(name, SITE)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("ada@example.org", "ada@example.org"),
        ("Ada Lovelace <ada@example.org>", "Ada Lovelace <ada@example.org>"),
        ('"Lovelace, Ada" <ada@example.org>', '"Lovelace, Ada" <ada@example.org>'),
        ("dockyard <dockyard@localhost>", "dockyard <dockyard@localhost>"),
    ],
)
def test_addresses(text: str, address: str) -> None:
    assert str(parse_address(text)) == address


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "ada",
        "ada@",
        "@example.org",
        "a@example.org, b@example.org",
        "ada@example.org\r\nBcc: evil@example.org",
        "ada@example.org\nX: y",
    ],
)
def test_not_addresses(text: str) -> None:
    with pytest.raises(Invalid):
        parse_address(text)


def test_message_ids_are_unique_and_in_the_senders_domain() -> None:
    ids = {new_message_id("dockyard <noreply@store.example>") for _ in range(100)}
    assert len(ids) == 100
    assert all(i.startswith("<") and i.endswith("@store.example>") for i in ids)


def test_the_message_is_multipart_alternative_with_the_headers_a_robot_mail_needs() -> None:
    message = build_message(
        from_address="dockyard <dockyard@localhost>",
        to_address="ada@example.org",
        subject="Hi",
        text="text body\n",
        html="<p>html body</p>\n",
        message_id="<1@localhost>",
        date=dt.datetime(2026, 12, 6, 5, 30),
    )
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == "<1@localhost>"
    assert parsedate_to_datetime(str(message["Date"])) == dt.datetime(2026, 12, 6, 5, 30, tzinfo=dt.UTC)
    assert message["From"] == "dockyard <dockyard@localhost>" and message["To"] == "ada@example.org"
    assert b"\nMIME-Version: 1.0\n" in b"\n" + message.as_bytes()
