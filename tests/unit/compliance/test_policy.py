"""The compliance rules as pure functions: fix windows by class, the warning label's words, and what a pull
of a held or revoked product gets as time passes."""

from __future__ import annotations

import datetime as dt

from dockyard.compliance.clocks import due_after
from dockyard.compliance.models import FindingClock
from dockyard.compliance.policy import pull_verdict, warning_header
from dockyard.compliance.services import hold_reason

T = dt.datetime(2031, 5, 1, 12, 0)


def clock(vuln: str, severity: str, component: str, platform: str) -> FindingClock:
    return FindingClock(
        vuln_id=vuln, severity=severity, component=component, platform=platform, due_at=T, image="server"
    )


def test_fix_windows_by_class() -> None:
    assert due_after("Critical", T) == T + dt.timedelta(hours=72)
    assert due_after("Major", T) == T + dt.timedelta(days=7)
    assert due_after("Minor", T) is None and due_after("Unscored", T) is None


def test_the_label_counts_vulnerabilities_not_their_copies() -> None:
    late = [
        clock(cve, "Critical", pkg, arch)
        for cve in ("CVE-2024-5535", "CVE-2024-4741")
        for pkg in ("pkg:apk/alpine/libssl3@3.1.4-r0", "pkg:apk/alpine/libcrypto3@3.1.4-r0")
        for arch in ("linux/amd64", "linux/arm64")
    ] + [clock("CVE-2024-2398", "Major", "pkg:apk/alpine/curl@8.5.0-r0", "linux/amd64")]
    text = hold_reason(late)
    assert "2 Critical, 1 Major vulnerabilities past the fix time" in text
    assert "(CVE-2024-2398, CVE-2024-4741, CVE-2024-5535)" in text and "2031-05-01 12:00 UTC" in text
    assert hold_reason([late[0]]).count("1 Critical vulnerability ") == 1
    assert hold_reason([]) == ""


def test_a_pull_warns_while_held_and_while_revoked_then_is_denied() -> None:
    assert pull_verdict("acme/db", "listed", None, T, 30).warning is None
    held = pull_verdict("acme/db", "on_hold", T, T + dt.timedelta(days=3), 30)
    assert held.denied is None and "acme/db is on hold since 2031-05-01" in (held.warning or "")
    grace = pull_verdict("acme/db", "revoked", T, T + dt.timedelta(days=29), 30)
    assert grace.denied is None and "pulls stop on 2031-05-31" in (grace.warning or "")
    over = pull_verdict("acme/db", "revoked", T, T + dt.timedelta(days=30), 30)
    assert over.warning is None and "revoked from the store on 2031-05-01" in (over.denied or "")


def test_the_warning_header_is_a_quoted_string_of_printable_ascii() -> None:
    assert warning_header('say "hi" \\ ünïcode\n') == '299 - "say \\"hi\\" \\\\ ?n?code?"'
    assert len(warning_header("x" * 2000)) < 520
