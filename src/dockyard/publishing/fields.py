"""The rules of a publisher profile's fields: a phone number (stored E.164, shown international) and a
company website (an http or https URL), and the characters no field may hold."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import phonenumbers

LEGAL_NAME_MAX = 200
URL_MAX = 2048
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def format_phone(e164: str | None) -> str:
    """An E.164 number as people write it internationally (``+44 20 7946 0958``)."""
    if not e164:
        return ""
    try:
        return phonenumbers.format_number(
            phonenumbers.parse(e164, None), phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
    except phonenumbers.NumberParseException:
        return e164


def parse_phone(value: str) -> str:
    """E.164 of a phone number written with its country code; ValueError says what is wrong."""
    if len(value) > 40:
        raise ValueError("Enter a phone number of at most 40 characters.")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise ValueError(
                "Start the number with + and its country code, e.g. +44 20 7946 0958 or +1 415 555 0100."
            ) from None
        raise ValueError("This is not a phone number: use digits, with + and the country code.") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("This phone number does not exist in its country's numbering plan: check it.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def website_problem(value: str) -> str | None:
    if len(value) > URL_MAX:
        return f"Use an address of at most {URL_MAX} characters."
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return "Enter a web address such as https://example.com."
    if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in value):
        return "Enter a web address starting with https:// or http://, such as https://example.com."
    if parts.username is not None or parts.password is not None:
        return "Leave any user name and password out of the address."
    if "." not in host and host != "localhost":
        return "Enter the full host name, such as example.com."
    return None
