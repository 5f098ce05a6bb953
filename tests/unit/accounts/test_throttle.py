"""The login throttle's check, on the database: each limit, what counts, and its one-query fast answer."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event

from dockyard.accounts.models import LoginFailure
from dockyard.accounts.throttle import PENDING_FOR, WINDOW, Limits, LoginThrottle
from dockyard.db import utcnow
from dockyard.errors import TooManyRequests

LIMITS = Limits(per_account_and_address=2, per_account=3, per_address=4)


def fail(session, username: str, ip: str, *, ago: dt.timedelta = dt.timedelta(0), pending: bool = False):
    session.add(LoginFailure(username=username, ip=ip, occurred_at=utcnow() - ago, pending=pending))
    session.flush()


def refused(session, username: str, ip: str) -> bool:
    try:
        LoginThrottle(session, LIMITS).check(username, ip)
    except TooManyRequests:
        return True
    return False


def test_no_recent_failure_is_answered_by_one_query(db_session):
    fail(db_session, "someone-else", "10.0.0.9")
    fail(db_session, "alice", "10.0.0.1", ago=WINDOW + dt.timedelta(seconds=1))  # aged out
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db_session.get_bind(), "before_cursor_execute", listener)
    try:
        assert not refused(db_session, "alice", "10.0.0.1")
    finally:
        event.remove(db_session.get_bind(), "before_cursor_execute", listener)
    assert len(statements) == 1


@pytest.mark.parametrize(
    "failures,username,ip",
    [
        ([("alice", "10.0.0.1")] * 2, "alice", "10.0.0.1"),  # one guesser at one account
        ([("alice", f"10.0.1.{i}") for i in range(3)], "alice", "10.0.0.1"),  # many addresses, one account
        ([(f"user{i}", "10.0.0.1") for i in range(4)], "alice", "10.0.0.1"),  # one address, many accounts
    ],
)
def test_each_limit_refuses(db_session, failures, username, ip):
    for name, address in failures[:-1]:
        fail(db_session, name, address)
    assert not refused(db_session, username, ip)
    fail(db_session, *failures[-1])
    assert refused(db_session, username, ip)


def test_attempts_being_checked_count_only_once_they_are_stale(db_session):
    fail(db_session, "alice", "10.0.0.1", pending=True)
    fail(db_session, "alice", "10.0.0.1", pending=True)
    assert not refused(db_session, "alice", "10.0.0.1")
    fail(db_session, "alice", "10.0.0.1", ago=PENDING_FOR + dt.timedelta(seconds=1), pending=True)
    fail(db_session, "alice", "10.0.0.1", ago=PENDING_FOR + dt.timedelta(seconds=2), pending=True)
    assert refused(db_session, "alice", "10.0.0.1")
