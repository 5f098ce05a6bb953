"""Where webhooks may go: the URL rules and the SSRF guard.

A webhook URL is chosen by a customer or a publisher, and dockyard's server makes the request: without a
guard, anyone could make it call the cloud's metadata service or an internal admin port. So an endpoint's
host must resolve only to public (globally routable) addresses, checked when the endpoint is saved and
again before every delivery (DNS may have changed since: a rebinding attack), and the request then goes to
the very address that was checked (``pinned``), not to a second lookup. Redirects are never followed.
``DOCKYARD_WEBHOOK_ALLOW_PRIVATE`` lifts the address rule (a store on a private network; the tests'
loopback receiver); ``DOCKYARD_WEBHOOK_ALLOW_HTTP`` allows plain http.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from dockyard.errors import Invalid

URL_MAX = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Invalid):
    """A URL dockyard will not send to; ``detail`` names the ``url`` field."""

    def __init__(self, message: str) -> None:
        super().__init__(f"url: {message}", detail=[{"field": "url", "message": message}])
        self.reason = message


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``address``) and what to tell the server (Host, TLS name)."""

    url: str
    scheme: str
    host: str
    port: int
    address: str

    @property
    def pinned(self) -> str:
        """The URL with its host replaced by the checked address (the Host header carries the name)."""
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        netloc = f"{literal}:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"


def check_url(url: str, *, allow_http: bool) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL dockyard may send to, whatever it resolves to; else TargetRefused."""
    url = url.strip()
    if not url:
        raise TargetRefused("enter the URL that should receive the events")
    if len(url) > URL_MAX:
        raise TargetRefused(f"use at most {URL_MAX} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise TargetRefused("a URL has no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("this is not a valid URL") from None
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_http else ("https",)
    if scheme not in allowed:
        raise TargetRefused("use an https:// URL" if not allow_http else "use an https:// or http:// URL")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("put no user name or password in the URL: check the signature instead")
    if parts.fragment:
        raise TargetRefused("a URL with a #fragment: the fragment is never sent, leave it out")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise TargetRefused("the URL names no host")
    return scheme, host, port or (443 if scheme == "https" else 80)


def forbidden_address(address: IPAddress) -> str | None:
    """Why a request to ``address`` would reach something private (None: it is public)."""
    if isinstance(address, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo's server and client) are judged by the
        # IPv4 address they reach: Python counts 2002::/16 as global whatever it embeds.
        teredo = address.teredo
        embedded = address.ipv4_mapped or address.sixtofour or (teredo[1] if teredo else None)
        if embedded is not None:
            inner = forbidden_address(embedded)
            if inner is not None:
                return inner
            if teredo and forbidden_address(teredo[0]) is not None:
                return "a Teredo address through a private server"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (such as a cloud metadata service)"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_unspecified or address.is_reserved or not address.is_global:
        return "an address that is not public"
    return None


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a literal address: itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise TargetRefused(not_public(host)) from None
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(not_public(host))
    return addresses


def not_public(host: str) -> str:
    """The one refusal for a host name that does not resolve or resolves to something private: it must not
    tell a user which internal names exist or where they point (a literal address is told why)."""
    return f"{host} does not resolve to a public address: webhooks go to public addresses only"


def target(url: str, *, allow_http: bool, allow_private: bool) -> Target:
    """The URL checked, resolved and every address it resolves to checked: where to send, or TargetRefused.

    Every address must be public, not only the first: an attacker's DNS may answer with a public and a
    private one and let the client pick."""
    scheme, host, port = check_url(url, allow_http=allow_http)
    addresses = resolve(host, port)
    if not allow_private:
        for text in addresses:
            why = forbidden_address(ipaddress.ip_address(text))
            if why is not None:
                if host != text:
                    raise TargetRefused(not_public(host))
                raise TargetRefused(f"{host} is {why}: webhooks go to public addresses only")
    return Target(url=url.strip(), scheme=scheme, host=host, port=port, address=addresses[0])
