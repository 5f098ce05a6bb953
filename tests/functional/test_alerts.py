"""Repository watches and notification preferences on a real database, registry, scanner, job queue and (for
the first test) SMTP server on loopback: a watcher of a repository is mailed a new Critical finding of its
tagged images at once, and the other new findings in a daily digest (one a day); a reader who loses access
is told nothing; a finding that is resolved and reopened is told again; and the compliance mail to a
publisher's people honours their preferences."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from tests.support.accounts import outbox, run_jobs
from tests.support.factories import PASSWORD, make_org, make_user, unique
from tests.support.review_world import build_world
from tests.support.scanimages import ACTOR, Images, debian_layer, file_layer, osv_record, write_feed
from tests.support.smtpd import SmtpServer, smtp_server
from tests.support.store_world import as_user, publish

from dockyard.accounts.services import AccountService
from dockyard.alerts.models import AlertItem
from dockyard.audit.models import AuditEvent
from dockyard.config import Settings
from dockyard.db import utcnow
from dockyard.events import EventBus
from dockyard.scanning.models import ImageScan, ScanFinding
from dockyard.scanning.services import ScanService
from dockyard.web.context import AppState

CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
MAJOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:L/A:N"  # 6.5
CRIT_CVE, MAJOR_CVE, MAJOR2_CVE = "CVE-2031-1001", "CVE-2031-1002", "CVE-2031-1003"
ZLIB = [("zlib1g", "1:1.2.13.dfsg-1", "zlib")]
OPENSSL = [("libssl3", "3.0.11-1", "openssl")]
CURL = [("libcurl4", "7.88.1-10", "curl")]


def records(**changes: dict) -> list[dict]:
    base = {
        CRIT_CVE: osv_record(CRIT_CVE, "zlib", fixed="1:1.2.13.dfsg-2", vector=CRITICAL),
        MAJOR_CVE: osv_record(MAJOR_CVE, "openssl", vector=MAJOR),
        MAJOR2_CVE: osv_record(MAJOR2_CVE, "curl", vector=MAJOR),
    }
    base.update(changes)
    return list(base.values())


@dataclass
class Watched:
    org: str
    repo: str
    users: dict[str, str]
    emails: dict[str, str]
    feed: Path


@pytest.fixture
def w(app, app_state: AppState, tmp_path: Path) -> Watched:
    with app_state.sessions.begin() as s:
        users, emails = {}, {}
        for role in ("owner", "reader", "outsider"):
            user = make_user(s, unique(role))
            user.email = f"{user.username}@example.org"
            users[role], emails[role] = user.username, user.email
        org = make_org(s, owner=users["owner"], members={users["reader"]: "reader"})
        feed = write_feed(tmp_path / "feed", *records())
        ScanService(s, app_state.blobs, app_state.bus, app_state.settings).update_vulndb([feed], ACTOR)
    repo = f"{org}/app"
    with app_state.sessions.begin() as s:  # the repository exists before anyone watches it
        Images(s, app_state.blobs, app_state.bus).image(repo, "base", [file_layer("hello.txt", "hello")])
    run_jobs(app, app_state)
    return Watched(org, repo, users, emails, tmp_path / "feed")


def push(app, state: AppState, w: Watched, tag: str, packages: list) -> str:
    """Push an image with these Debian packages to the watched repository, then run the queue as a worker
    does: its scan, the watch run the scan queues, the mail."""
    with state.sessions.begin() as s:
        digest = Images(s, state.blobs, state.bus).image(w.repo, tag, [debian_layer(packages)]).digest
    run_jobs(app, state)
    return digest


def api(client: TestClient, w: Watched, role: str, method: str, path: str, json: dict | None = None):
    return client.request(method, f"/api/v1{path}", json=json, auth=(w.users[role], PASSWORD))


def watch(client: TestClient, w: Watched, role: str = "reader") -> None:
    r = api(client, w, role, "PUT", f"/repositories/{w.repo}/watch")
    assert r.status_code == 200, r.text
    assert r.json()["repository"] == w.repo


def alert_mails(state: AppState, w: Watched, role: str, words: str = "") -> list:
    return [
        m
        for m in outbox(state, w.emails[role])
        if ("vulnerabilit" in m.subject.lower()) and words in m.subject + m.body_text
    ]


def run_at(state: AppState, when: dt.datetime) -> None:
    with state.sessions.begin() as s:
        state.services(s).alerts.run(when)


class TestWithSmtp:
    @pytest.fixture
    def smtp(self) -> Iterator[SmtpServer]:
        with smtp_server() as server:
            yield server

    @pytest.fixture
    def settings(self, settings: Settings, smtp: SmtpServer) -> Settings:
        return dataclasses.replace(settings, smtp_url=smtp.url(query="timeout=5"))

    def test_a_critical_finding_in_a_watched_repository_is_mailed_at_once_and_once(
        self, app, app_state: AppState, client: TestClient, w: Watched, smtp: SmtpServer
    ) -> None:
        watch(client, w)
        watch(client, w)  # idempotent
        digest = push(app, app_state, w, "1.0", ZLIB)
        [mail] = alert_mails(app_state, w, "reader")
        assert mail.subject == f"Critical vulnerability found in {w.repo}"
        text = mail.body_text
        assert f"Critical: {CRIT_CVE} in zlib1g 1:1.2.13.dfsg-1 (fixed in 1:1.2.13.dfsg-2)" in text
        assert f"{w.repo}:1.0 @ {digest}" in text
        assert f"http://127.0.0.1:5999/ui/repositories/{w.repo}/-/scans/{digest}" in text
        [received] = smtp.collector.wait(1)
        assert received.recipients == [w.emails["reader"]]
        assert received.message["Subject"] == mail.subject
        # Nobody else watches: nobody else is mailed; and running again tells nothing twice.
        assert alert_mails(app_state, w, "owner") == [] and alert_mails(app_state, w, "outsider") == []
        run_at(app_state, utcnow())
        run_at(app_state, utcnow() + dt.timedelta(days=2))
        run_jobs(app, app_state)
        assert len(alert_mails(app_state, w, "reader")) == 1
        assert len(smtp.collector.received) == 1
        # The watch is audited, and listed with what was mailed.
        r = api(client, w, "reader", "GET", "/me/watches")
        assert [(x["repository"], x["readable"], x["told"]) for x in r.json()["watches"]] == [
            (w.repo, True, 1)
        ]
        with app_state.sessions() as s:
            tags = list(
                s.scalars(
                    select(AuditEvent.tag)
                    .where(AuditEvent.tag.like("repository:%watch"))
                    .order_by(AuditEvent.id)
                )
            )
        assert tags == ["repository:watch"]


def test_other_findings_go_to_a_daily_digest_at_most_once_a_day(
    app, app_state: AppState, client: TestClient, w: Watched
) -> None:
    watch(client, w)
    push(app, app_state, w, "1.0", OPENSSL)
    [first] = alert_mails(app_state, w, "reader")
    assert first.subject == f"New vulnerabilities in {w.repo}: your daily digest"
    assert f"Major: {MAJOR_CVE} in libssl3 3.0.11-1 (no fixed version yet)" in first.body_text
    push(app, app_state, w, "2.0", CURL)
    assert len(alert_mails(app_state, w, "reader")) == 1  # the day is not over: it waits
    run_at(app_state, utcnow() + dt.timedelta(hours=25))
    run_jobs(app, app_state)
    [_, second] = alert_mails(app_state, w, "reader")
    assert MAJOR2_CVE in second.body_text and MAJOR_CVE not in second.body_text
    assert f"{w.repo}:2.0 @" in second.body_text


def test_a_critical_finding_waits_for_the_digest_when_immediate_mail_is_off(
    app, app_state: AppState, client: TestClient, w: Watched
) -> None:
    r = api(client, w, "reader", "PUT", "/me/notifications", {"critical_now": False})
    assert r.status_code == 200 and r.json()["critical_now"] is False and r.json()["daily_digest"] is True
    watch(client, w)
    push(app, app_state, w, "1.0", ZLIB)
    [mail] = alert_mails(app_state, w, "reader")
    assert "daily digest" in mail.subject and f"Critical: {CRIT_CVE}" in mail.body_text
    # Both off: nothing is mailed at all.
    r = api(client, w, "reader", "PUT", "/me/notifications", {"daily_digest": False})
    push(app, app_state, w, "2.0", CURL)
    run_at(app_state, utcnow() + dt.timedelta(hours=25))
    run_jobs(app, app_state)
    assert len(alert_mails(app_state, w, "reader")) == 1
    with app_state.sessions() as s:
        assert [
            t for t in s.scalars(select(AuditEvent.tag).where(AuditEvent.tag == "alert:preferences"))
        ] == [
            "alert:preferences",
            "alert:preferences",
        ]


def test_a_reader_who_loses_access_is_told_nothing(
    app, app_state: AppState, client: TestClient, w: Watched
) -> None:
    watch(client, w)
    push(app, app_state, w, "1.0", OPENSSL)  # a digest goes out today
    assert len(alert_mails(app_state, w, "reader")) == 1
    push(app, app_state, w, "2.0", CURL)  # waits for tomorrow's digest
    with app_state.sessions.begin() as s:
        AccountService(s, EventBus()).remove_member(w.org, w.users["reader"])
    push(app, app_state, w, "3.0", ZLIB)  # a Critical, found after the reader left
    run_at(app_state, utcnow() + dt.timedelta(hours=25))
    run_jobs(app, app_state)
    assert len(alert_mails(app_state, w, "reader")) == 1  # neither the Critical nor the waiting digest
    r = api(client, w, "reader", "GET", "/me/watches")
    assert [(x["repository"], x["readable"]) for x in r.json()["watches"]] == [(w.repo, False)]
    # Watching again is refused as for a repository that does not exist; unwatching still works.
    missing = api(client, w, "reader", "PUT", f"/repositories/{w.org}/nothing/watch")
    again = api(client, w, "reader", "PUT", f"/repositories/{w.repo}/watch")
    assert again.status_code == missing.status_code == 404
    assert api(client, w, "reader", "DELETE", f"/repositories/{w.repo}/watch").status_code == 204
    assert api(client, w, "reader", "GET", "/me/watches").json()["watches"] == []


def test_an_outsider_cannot_watch_a_private_repository(client: TestClient, w: Watched) -> None:
    r = api(client, w, "outsider", "PUT", f"/repositories/{w.repo}/watch")
    missing = api(client, w, "outsider", "PUT", f"/repositories/{w.org}/nothing/watch")
    assert r.status_code == missing.status_code == 404
    assert r.json()["error"]["message"].replace(w.repo, "X") == missing.json()["error"]["message"].replace(
        f"{w.org}/nothing", "X"
    )


def test_a_reopened_finding_is_mailed_again(
    app, app_state: AppState, client: TestClient, w: Watched, tmp_path: Path
) -> None:
    watch(client, w)
    push(app, app_state, w, "1.0", ZLIB)
    assert len(alert_mails(app_state, w, "reader", CRIT_CVE)) == 1

    def feed(record: dict) -> None:
        directory = write_feed(tmp_path / unique("feed"), *records(**{CRIT_CVE: record}))
        with app_state.sessions.begin() as s:
            ScanService(s, app_state.blobs, app_state.bus, app_state.settings).update_vulndb(
                [directory], ACTOR
            )
        run_jobs(app, app_state)  # the re-match, the watch run it queues, the mail

    # The feed says the installed version is the fix: resolved. Then it takes that back: reopened.
    feed(osv_record(CRIT_CVE, "zlib", fixed="1:1.2.13.dfsg-1", modified=utcnow(), vector=CRITICAL))
    with app_state.sessions() as s:
        assert s.scalar(select(ScanFinding.resolved_at).where(ScanFinding.vuln_id == CRIT_CVE)) is not None
    feed(osv_record(CRIT_CVE, "zlib", modified=utcnow() + dt.timedelta(seconds=1), vector=CRITICAL))
    with app_state.sessions() as s:
        finding = s.scalar(select(ScanFinding).where(ScanFinding.vuln_id == CRIT_CVE))
        assert finding.resolved_at is None and finding.reopened_at is not None
        assert len(list(s.scalars(select(AlertItem).where(AlertItem.finding_id == finding.id)))) == 2
    mails = alert_mails(app_state, w, "reader", CRIT_CVE)
    assert len(mails) == 2 and "(reopened)" in mails[1].body_text


# -- the compliance mail honours the preferences ------------------------------------------------------------
def test_compliance_mail_to_a_publishers_people_follows_their_preferences(
    app, app_state: AppState, tmp_path: Path
) -> None:
    app_state.jobs  # noqa: B018 - the subscribers wired, as the server does
    world = build_world(app_state, tmp_path / "feed")
    u = world.users
    # The maintainer wants no Critical mail at once; the owner no digest.
    as_user(app_state, u["maintainer"], lambda sv, p, a: sv.alerts.set_preferences(p, a, critical_now=False))
    as_user(app_state, u["owner"], lambda sv, p, a: sv.alerts.set_preferences(p, a, daily_digest=False))
    publish(app_state, world)  # the Critical finding goes live: told at once

    def told(email: str, words: str) -> int:
        return sum(1 for m in outbox(app_state, email) if words in m.subject)

    company = "hello@acme.example"
    assert told(world.emails["owner"], "Critical security finding") == 1
    assert told(world.emails["maintainer"], "Critical security finding") == 0
    assert told(company, "Critical security finding") == 1  # the company address always: the clock starts
    # The store team calls it Major: re-notified in the digest.
    with app_state.sessions() as s:
        finding = s.scalar(
            select(ScanFinding.id)
            .join(ImageScan, ImageScan.id == ScanFinding.image_id)
            .where(ImageScan.digest == world.server)
        )
    as_user(
        app_state,
        u["reviewer"],
        lambda sv, p, a: sv.scans.reclassify(finding, "Major", "only reachable locally", p, a),
    )
    with app_state.sessions.begin() as s:
        app_state.services(s).compliance.check(utcnow())
    assert told(world.emails["maintainer"], "Security findings digest") == 1
    assert told(world.emails["owner"], "Security findings digest") == 0
    assert told(company, "Security findings digest") == 1


# -- the pages -----------------------------------------------------------------------------------------------
def test_the_pages_watch_unwatch_and_save_preferences_without_javascript(app, w: Watched) -> None:
    from tests.support.accounts import browser, post

    repo_page = f"/ui/repositories/{w.repo}"
    with browser(app, w.users["reader"], PASSWORD) as c:
        assert 'href="/ui/account/notifications"' in c.get("/ui/account").text
        page = c.get(repo_page).text
        assert f'action="/ui/repositories/{w.repo}/-/watch"' in page and ">Watch</button>" in page
        r = post(c, f"{repo_page}/-/watch", {"action": "watch"})
        assert r.status_code == 303 and r.headers["location"] == repo_page
        assert ">Unwatch</button>" in c.get(repo_page).text
        page = c.get("/ui/account/notifications").text
        assert w.repo in page and 'name="critical_now" id="critical_now" checked' in page
        r = post(c, "/ui/account/notifications", {"daily_digest": "on"})  # the Critical box unticked
        assert r.status_code == 303
        page = c.get("/ui/account/notifications").text
        assert 'name="critical_now" id="critical_now">' in page and 'id="daily_digest" checked' in page
        r = post(
            c, f"{repo_page}/-/watch", {"action": "unwatch", "next": "/ui/account/notifications#watches"}
        )
        assert r.headers["location"] == "/ui/account/notifications#watches"
        assert "You watch no repositories yet." in c.get("/ui/account/notifications").text
        # Off-site "next" is ignored; a form without its CSRF token is refused.
        r = post(c, f"{repo_page}/-/watch", {"action": "watch", "next": "//evil.example/"})
        assert r.headers["location"] == repo_page
        r = c.post(f"{repo_page}/-/watch", data={"action": "unwatch"}, follow_redirects=False)
        assert r.status_code == 403
    with browser(app, w.users["outsider"], PASSWORD) as c:  # no Watch button where one may not read
        assert post(c, f"{repo_page}/-/watch", {"action": "watch"}).status_code == 404
