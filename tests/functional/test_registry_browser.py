"""The registry browser's pages over HTTP, on images pushed with RegistryClient and scanned by the job worker:
the dashboard, a namespace, a repository's tags (filter, paging, the htmx fragment), a manifest in full
(config, layers, platforms, referrers), deleting a tag or a manifest and switching visibility behind a
confirmation, and who is refused what (a private repository looks missing to those who may not pull it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import event, select
from starlette.testclient import TestClient
from tests.support.browse_world import EVIL_LABEL, SBOM_TYPE, Pushed, push_many_tags, push_world
from tests.support.factories import PASSWORD, make_org, make_user
from tests.support.pages import sign_in, with_csrf
from tests.support.scanimages import ACTOR, Images, osv_record, write_feed

from dockyard.audit.models import AuditEvent
from dockyard.jobs import Worker
from dockyard.scanning.services import ScanService
from dockyard.web.context import AppState

CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
MINOR = "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"
ORIGIN = {"Origin": "http://127.0.0.1:5999"}
DASH = "\N{EN DASH}"


@dataclass
class World:
    org: str
    owner: str
    member: str  # a maintainer
    reader: str
    outsider: str
    admin: str
    pushed: Pushed

    @property
    def repo(self) -> str:
        return self.pushed.repo


@pytest.fixture
def world(app, app_state: AppState, client: TestClient, tmp_path: Path) -> World:
    with app_state.sessions.begin() as s:
        owner, member, reader, outsider = (make_user(s).username for _ in range(4))
        admin = make_user(s, admin=True).username
        org = make_org(s, owner=owner, members={member: "maintainer", reader: "reader"})
        feed = write_feed(
            tmp_path / "feed",
            osv_record("CVE-2031-0001", "zlib", vector=CRITICAL),
            osv_record("CVE-2031-0002", "foo", vector=MINOR, fixed="1.0-2"),
        )
        ScanService(s, app_state.blobs, app_state.bus, app_state.settings).update_vulndb([feed], ACTOR)
    pushed = push_world(client, owner, PASSWORD, org)
    Worker(
        app_state.sessions, app.state.jobs, bus=app_state.bus, services=app_state.services
    ).run_until_idle()
    client.cookies.clear()
    return World(org, owner, member, reader, outsider, admin, pushed)


def login(client: TestClient, username: str) -> None:
    client.cookies.clear()
    r = sign_in(client, username, PASSWORD, headers=ORIGIN)
    assert r.status_code == 303, r.text


def repo_url(w: World, suffix: str = "", name: str | None = None) -> str:
    return f"/ui/repositories/{name or w.repo}{suffix}"


def rows(html: str, table: str) -> list[str]:
    """The body rows of table ``#table``, as text without tags."""
    body = re.search(rf'<table id="{table}">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert body, f"no table #{table}"
    return [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", r)).strip()
        for r in re.findall(r"<tr.*?</tr>", body.group(1), re.S)
    ]


@contextmanager
def statements(app_state: AppState) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(app_state.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(app_state.engine, "before_cursor_execute", record)


# -- the dashboard and a namespace ------------------------------------------------------------------------
def test_the_dashboard_shows_my_namespaces_with_my_role_and_the_latest_pushes(
    client: TestClient, world: World
):
    login(client, world.member)
    r = client.get("/ui/")
    assert r.status_code == 200
    html = r.text
    assert f'href="/ui/namespaces/{world.org}"' in html and f'href="/ui/namespaces/{world.member}"' in html
    assert ">maintainer<" in html and ">owner<" in html  # role in the org; owner of one's own namespace
    assert "Organisation" in html and "Personal" in html
    recent = rows(html.replace("<table>", '<table id="recent">', 1), "recent")
    assert [r.split()[0] for r in recent] == [world.pushed.public_repo, world.repo]  # newest push first
    assert "Private" in recent[1] and "Public" in recent[0]


def test_an_empty_dashboard_says_how_to_push(client: TestClient, world: World) -> None:
    login(client, world.outsider)
    html = client.get("/ui/").text
    assert "Nothing pushed yet" in html and f"podman push 127.0.0.1:5999/{world.outsider}/myimage:1.0" in html


def test_a_namespace_lists_its_repositories_with_sizes_and_the_newest_tags_scan(
    client: TestClient, world: World
) -> None:
    login(client, world.member)
    r = client.get(f"/ui/namespaces/{world.org}")
    assert r.status_code == 200
    listed = rows(r.text, "repositories")
    assert [x.split()[0] for x in listed] == ["app", "public-tools"]  # by name
    app_row = listed[0]
    assert "Private" in app_row and " 3 " in app_row  # v1, v2, multi
    assert "KB" in app_row or "MB" in app_row
    # The newest tag is "multi" (an index): its scan, linking to the scan report.
    assert "multi" in app_row
    assert f'href="/ui/repositories/{world.repo}/-/scans/multi"' in r.text
    by_push = rows(client.get(f"/ui/namespaces/{world.org}?sort=pushed").text, "repositories")
    assert [x.split()[0] for x in by_push] == ["public-tools", "app"]


def test_a_namespace_page_is_paged(client: TestClient, app_state: AppState, world: World) -> None:
    with app_state.sessions.begin() as s:
        images = Images(s, app_state.blobs, app_state.bus)
        for i in range(26):
            images.image(f"{world.org}/r{i:02d}", "1", [f"layer {i}".encode()])
    login(client, world.owner)
    first = client.get(f"/ui/namespaces/{world.org}")
    assert len(rows(first.text, "repositories")) == 25 and f"1{DASH}25 of 28" in first.text
    assert 'rel="next" href="/ui/namespaces/' in first.text
    last = client.get(f"/ui/namespaces/{world.org}?sort=name&page=2")
    assert [x.split()[0] for x in rows(last.text, "repositories")] == ["r23", "r24", "r25"]
    assert client.get(f"/ui/namespaces/{world.org}?page=99").text.count("<tr") == 4  # the last page


def test_others_see_only_a_namespaces_public_repositories(client: TestClient, world: World) -> None:
    for who in (None, world.outsider):
        client.cookies.clear()
        if who:
            login(client, who)
        r = client.get(f"/ui/namespaces/{world.org}")
        assert r.status_code == 200
        listed = rows(r.text, "repositories")
        assert [x.split()[0] for x in listed] == ["public-tools"]
        assert "Vulnerabilities" not in r.text and "scan" not in r.text.lower().split("</header>")[1]


def test_a_namespace_with_nothing_visible_is_a_404_like_a_missing_one(
    client: TestClient, app_state: AppState, world: World
) -> None:
    with app_state.sessions.begin() as s:
        hidden = make_org(s, owner=world.owner)
        Images(s, app_state.blobs, app_state.bus).image(f"{hidden}/secret", "1", [b"secret layer"])
    for who in (None, world.outsider):
        client.cookies.clear()
        if who:
            login(client, who)
        real, missing = client.get(f"/ui/namespaces/{hidden}"), client.get("/ui/namespaces/nosuchns")
        assert real.status_code == missing.status_code == 404
        assert real.text.replace(hidden, "X") == missing.text.replace("nosuchns", "X")
    login(client, world.owner)
    assert client.get(f"/ui/namespaces/{hidden}").status_code == 200


# -- a repository -------------------------------------------------------------------------------------------
def test_the_repository_page_shows_pull_command_tags_platforms_sizes_and_scans(
    client: TestClient, world: World
) -> None:
    login(client, world.member)
    r = client.get(repo_url(world))
    assert r.status_code == 200
    html = r.text
    assert f"podman pull 127.0.0.1:5999/{world.repo}:multi" in html
    tags = {row.split()[0]: row for row in rows(html, "tags")}
    assert list(tags) == ["multi", "v2", "v1"]  # newest push first
    assert (
        "linux/amd64" in tags["multi"]
        and "linux/arm64/v8" in tags["multi"]
        and "total of 2 platforms" in tags["multi"]
    )
    assert "linux/amd64" in tags["v1"] and world.pushed.v1.split(":")[1][:12] in tags["v1"]
    # v1 holds zlib (Critical) and foo (Minor); v2 only zlib.
    assert "1 Critical 1 Minor" in tags["v1"] and "1 Critical" in tags["v2"] and "Minor" not in tags["v2"]
    assert f'href="/ui/repositories/{world.repo}/-/scans/v1"' in html
    assert f'href="/ui/repositories/{world.repo}/-/manifests/{world.pushed.v1}"' in html
    assert f'title="{world.pushed.v1}"' in html  # the full digest on hover, and for copying
    assert "Delete" in html and "Make public" not in html  # a maintainer deletes; only owners switch


def test_the_tag_filter_works_with_and_without_htmx(client: TestClient, world: World) -> None:
    login(client, world.member)
    page = client.get(repo_url(world, "?q=V"))
    assert [r.split()[0] for r in rows(page.text, "tags")] == ["v2", "v1"]
    assert "2 tags matching “V”" in page.text and "<html" in page.text
    fragment = client.get(repo_url(world, "?q=mul"), headers={"HX-Request": "true", "HX-Target": "tag-list"})
    assert fragment.status_code == 200 and "<html" not in fragment.text and "<header" not in fragment.text
    assert [r.split()[0] for r in rows(fragment.text, "tags")] == ["multi"]
    assert 'id="tag-status"' in fragment.text and 'hx-swap-oob="true"' in fragment.text
    none = client.get(repo_url(world, "?q=%25"))  # LIKE's wildcard is a plain character here
    assert "No tag matches" in none.text
    by_name = client.get(repo_url(world, "?sort=name"))
    assert [r.split()[0] for r in rows(by_name.text, "tags")] == ["multi", "v1", "v2"]


def test_more_than_a_hundred_tags_are_paged(client: TestClient, world: World) -> None:
    name = f"{world.org}/many"
    push_many_tags(client, world.owner, PASSWORD, name, 130)
    login(client, world.reader)
    first = client.get(repo_url(world, name=name))
    listed = rows(first.text, "tags")
    assert len(listed) == 50 and "130 tags, page 1 of 3" in first.text and f"1{DASH}50 of 130" in first.text
    third = client.get(repo_url(world, "?sort=name&page=3", name=name))
    assert [r.split()[0] for r in rows(third.text, "tags")] == [f"t{i:03d}" for i in range(100, 130)]
    assert 'rel="prev"' in third.text and 'rel="next"' not in third.text
    # Paging through htmx swaps just the list, keeping the filter.
    fragment = client.get(
        repo_url(world, "?q=t0&sort=name&page=2", name=name),
        headers={"HX-Request": "true", "HX-Target": "tag-list"},
    )
    assert "<html" not in fragment.text and "100 tags matching “t0”, page 2 of 2" in fragment.text
    assert [r.split()[0] for r in rows(fragment.text, "tags")] == [f"t{i:03d}" for i in range(50, 100)]
    assert 'hx-get="/ui/repositories/' in fragment.text and "q=t0" in fragment.text


def test_the_tags_page_costs_the_same_statements_whatever_the_number_of_rows(
    client: TestClient, app_state: AppState, world: World
) -> None:
    name = f"{world.org}/many"
    push_many_tags(client, world.owner, PASSWORD, name, 60)
    login(client, world.member)
    counts = []
    for query in ("?q=t00", "?q=t0"):  # 10 rows, then 50
        with statements(app_state) as seen:
            assert client.get(repo_url(world, query, name=name)).status_code == 200
        counts.append(len(seen))
    assert counts[0] == counts[1], counts
    with statements(app_state) as few:
        client.get(f"/ui/namespaces/{world.org}")
    with app_state.sessions.begin() as s:
        images = Images(s, app_state.blobs, app_state.bus)
        for i in range(10):
            images.image(f"{world.org}/n{i}", "1", [f"n{i}".encode()])
    with statements(app_state) as more:
        client.get(f"/ui/namespaces/{world.org}")
    assert len(few) == len(more)


def test_a_public_repository_is_open_to_anyone_without_scan_results(client: TestClient, world: World) -> None:
    r = client.get(repo_url(world, name=world.pushed.public_repo))
    assert r.status_code == 200 and "Public" in r.text
    assert (
        "podman pull 127.0.0.1:5999/" in r.text and "Vulnerabilities" not in r.text and "Delete" not in r.text
    )
    assert f'href="/ui/namespaces/{world.org}"' in r.text and 'href="/ui/"' not in r.text.split("<main")[1]


def test_private_repositories_and_manifests_look_missing_to_those_who_may_not_pull(
    client: TestClient, world: World
) -> None:
    missing = f"{world.org}/nope"
    paths = [
        ("", ""),
        (f"/-/manifests/{world.pushed.v1}", f"/-/manifests/{world.pushed.v1}"),
    ]
    for who in (None, world.outsider):
        client.cookies.clear()
        if who:
            login(client, who)
        for real_suffix, missing_suffix in paths:
            real = client.get(repo_url(world, real_suffix))
            other = client.get(repo_url(world, missing_suffix, name=missing))
            assert real.status_code == other.status_code == 404
            assert real.text.replace(world.repo, "X") == other.text.replace(missing, "X")
    login(client, world.member)
    assert client.get(repo_url(world, f"/-/manifests/sha256:{'0' * 64}")).status_code == 404
    assert client.get(repo_url(world, "/-/manifests/not-a-digest")).status_code == 404


# -- a manifest ---------------------------------------------------------------------------------------------
def test_the_manifest_page_of_an_image(client: TestClient, world: World) -> None:
    login(client, world.member)
    r = client.get(repo_url(world, f"/-/manifests/{world.pushed.v1}"))
    assert r.status_code == 200
    html = r.text
    assert world.pushed.v1 in html and "application/vnd.oci.image.manifest.v1+json" in html
    assert "linux/amd64" in html and "2026-03-01 12:34 UTC" in html
    assert "[&#34;/usr/bin/app&#34;]" in html or '["/usr/bin/app"]' in html
    assert "2 variables" in html and "8080/tcp" in html and "2 steps" in html
    layers = rows(html, "layers")
    assert len(layers) == 3 and layers[0].startswith("config")
    assert layers[1].split()[-1] == "2"  # the Debian layer brought zlib1g and libfoo1
    assert layers[2].split()[-1] == "0"
    assert EVIL_LABEL not in html and "&lt;script&gt;alert(&#39;label&#39;)&lt;/script&gt;" in html
    referrers = rows(html, "referrers")
    assert len(referrers) == 1 and SBOM_TYPE in referrers[0] and "com.example.tool : syft" in referrers[0]
    assert f'href="/ui/repositories/{world.repo}/-/manifests/{world.pushed.sbom}"' in html
    assert "1 Critical" in html and f'href="/ui/repositories/{world.repo}/-/scans/{world.pushed.v1}"' in html
    assert f"podman pull 127.0.0.1:5999/{world.repo}@{world.pushed.v1}" in html
    assert "Delete manifest" in html


def test_the_manifest_page_of_an_index_and_of_its_platforms(client: TestClient, world: World) -> None:
    login(client, world.member)
    index = client.get(repo_url(world, f"/-/manifests/{world.pushed.index}")).text
    platforms = rows(index, "platforms")
    assert [p.split()[0] for p in platforms] == ["linux/amd64", "linux/arm64/v8"]
    assert f'href="/ui/repositories/{world.repo}/-/manifests/{world.pushed.arm64}"' in index
    assert "sum over its platforms" in index and 'id="layers"' not in index
    child = client.get(repo_url(world, f"/-/manifests/{world.pushed.arm64}")).text
    assert (
        "Listed by" in child
        and f'href="/ui/repositories/{world.repo}/-/manifests/{world.pushed.index}"' in child
    )
    assert "linux/arm64/v8" in child and "Untagged" in child
    sbom = client.get(repo_url(world, f"/-/manifests/{world.pushed.sbom}")).text
    assert "artifact" in sbom and SBOM_TYPE in sbom and "Subject" in sbom
    assert f'href="/ui/repositories/{world.repo}/-/manifests/{world.pushed.v1}"' in sbom
    assert "com.example.tool" in sbom  # its annotations


def test_the_scan_page_moved_under_the_repository_separator(client: TestClient, world: World) -> None:
    login(client, world.member)
    r = client.get(repo_url(world, "/-/scans/v1"))
    assert r.status_code == 200 and "CVE-2031-0001" in r.text and "CVE-2031-0002" in r.text
    # The old address is a repository name now (".../scans/v1" could be one): nothing there.
    assert client.get(repo_url(world, "/scans/v1")).status_code == 404


# -- changes -----------------------------------------------------------------------------------------------
def audit(app_state: AppState, tag: str) -> list[AuditEvent]:
    with app_state.sessions() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.id)))


def test_deleting_a_tag_is_confirmed_done_audited_and_flashed(
    client: TestClient, app_state: AppState, world: World
) -> None:
    login(client, world.member)
    confirm = client.get(repo_url(world, "/-/tags/v2/delete"))
    assert confirm.status_code == 200
    assert "Delete tag <code>v2</code>?" in confirm.text and world.pushed.v2 in confirm.text
    assert "stays, untagged" in confirm.text
    r = client.post(
        repo_url(world, "/-/tags/v2/delete"),
        data=with_csrf(client, path=repo_url(world)),
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == repo_url(world)
    page = client.get(repo_url(world))
    assert "Tag v2 was deleted from" in page.text
    assert [x.split()[0] for x in rows(page.text, "tags")] == ["multi", "v1"]
    events = audit(app_state, "tag:delete")
    assert [(e.actor_name, e.repository, e.reference) for e in events] == [(world.member, world.repo, "v2")]
    assert client.get(repo_url(world, "/-/tags/v2/delete")).status_code == 404
    # The manifest stays, by digest.
    assert client.get(repo_url(world, f"/-/manifests/{world.pushed.v2}")).status_code == 200


def test_deleting_a_manifest_lists_what_goes_and_what_stays(
    client: TestClient, app_state: AppState, world: World
) -> None:
    login(client, world.owner)
    confirm = client.get(repo_url(world, f"/-/manifests/{world.pushed.v1}/delete"))
    assert confirm.status_code == 200
    assert "1 tag</strong> will disappear" in confirm.text and "<code>v1</code>" in confirm.text
    assert "1 referrer</strong>" in confirm.text and world.pushed.sbom.split(":")[1][:12] in confirm.text
    child = client.get(repo_url(world, f"/-/manifests/{world.pushed.amd64}/delete")).text
    assert "1 index</strong> lists this manifest" in child and "No tag names it" in child
    index = client.get(repo_url(world, f"/-/manifests/{world.pushed.index}/delete")).text
    assert "2 entries</strong> stay" in index
    data = with_csrf(client, path=repo_url(world))
    r = client.post(
        repo_url(world, f"/-/manifests/{world.pushed.v1}/delete"),
        data=data,
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get(r.headers["location"])
    assert "was deleted from" in page.text and "with its tag v1" in page.text
    assert "v1" not in [x.split()[0] for x in rows(page.text, "tags")]
    assert client.get(repo_url(world, f"/-/manifests/{world.pushed.v1}")).status_code == 404
    assert [(e.actor_name, e.digest) for e in audit(app_state, "manifest:delete")] == [
        (world.owner, world.pushed.v1)
    ]


def test_a_reader_may_browse_but_not_delete(client: TestClient, app_state: AppState, world: World) -> None:
    login(client, world.reader)
    page = client.get(repo_url(world))
    assert page.status_code == 200 and "Delete" not in page.text and "Make public" not in page.text
    assert "Delete manifest" not in client.get(repo_url(world, f"/-/manifests/{world.pushed.v1}")).text
    data = with_csrf(client, path=repo_url(world))
    for path in ("/-/tags/v1/delete", f"/-/manifests/{world.pushed.v1}/delete"):
        assert client.get(repo_url(world, path)).status_code == 403
        r = client.post(repo_url(world, path), data=data, headers=ORIGIN, follow_redirects=False)
        assert r.status_code == 403 and "Not allowed" in r.text
    assert not audit(app_state, "tag:delete") and not audit(app_state, "manifest:delete")


def test_changes_need_the_forms_csrf_token(client: TestClient, world: World) -> None:
    login(client, world.owner)
    for path, data in (
        ("/-/tags/v1/delete", {}),
        (f"/-/manifests/{world.pushed.v2}/delete", {}),
        ("/-/visibility", {"public": "true"}),
    ):
        r = client.post(repo_url(world, path), data=data, headers=ORIGIN, follow_redirects=False)
        assert r.status_code == 403 and "expired" in r.text
        forged = {**data, "csrf_token": with_csrf(client)["csrf_token"]}
        r = client.post(
            repo_url(world, path),
            data=forged,
            headers={"Origin": "https://evil.example"},
            follow_redirects=False,
        )
        assert r.status_code == 403
    assert [x.split()[0] for x in rows(client.get(repo_url(world)).text, "tags")] == ["multi", "v2", "v1"]


def test_owners_switch_visibility_after_a_confirmation(
    client: TestClient, app_state: AppState, world: World
) -> None:
    login(client, world.member)
    assert client.get(repo_url(world, "/-/visibility?public=true")).status_code == 403
    login(client, world.owner)
    page = client.get(repo_url(world))
    assert f'href="/ui/repositories/{world.repo}/-/visibility?public=true"' in page.text, page.text
    confirm = client.get(repo_url(world, "/-/visibility?public=true"))
    assert confirm.status_code == 200 and "Anyone, signed in or not" in confirm.text
    data = with_csrf(client, {"public": "true"}, path=repo_url(world))
    r = client.post(repo_url(world, "/-/visibility"), data=data, headers=ORIGIN, follow_redirects=False)
    assert r.status_code == 303
    assert "is now public" in client.get(repo_url(world)).text
    client.cookies.clear()
    assert client.get(repo_url(world)).status_code == 200  # anonymous now
    events = audit(app_state, "repository:visibility")
    assert [(e.actor_name, e.data) for e in events][-1] == (world.owner, {"public": True})
