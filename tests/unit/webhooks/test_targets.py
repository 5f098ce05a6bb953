"""The webhook SSRF guard's judgement of addresses: IPv6 forms that carry an IPv4 address are judged by the
address they reach (Python's ipaddress counts 6to4's 2002::/16 as global whatever it embeds)."""

from __future__ import annotations

import ipaddress

import pytest

from dockyard.webhooks.targets import forbidden_address


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254 (cloud metadata)
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "2001:0:a00:1::",  # Teredo through the private server 10.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo whose client is 10.0.0.1 (obfuscated)
        "fd00::1",
    ],
)
def test_addresses_that_reach_something_private_are_refused(address: str) -> None:
    assert forbidden_address(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["1.1.1.1", "2606:4700:4700::1111", "2002:101:101::"])
def test_public_addresses_pass(address: str) -> None:
    assert forbidden_address(ipaddress.ip_address(address)) is None
