"""Migration 0019: the Node.js security WG's records renamed NPM-<n> -> NSWG-ECO-<n> and NODE-<n> ->
NSWG-COR-<n> wherever a vulnerability is named, keeping what hangs on them (a finding's first sighting and
staff's class, a clock's notice and deadline, VEX statements, alerts told); a database holding both names
keeps one row of each; a read of the real feed after it changes nothing.

Databases are built at revision 0018 with the rows that schema holds, written through its reflected tables
(not today's models); the real feed's test writes with today's code at head and takes the database back to
0018 (a downgrade that keeps the rows). Runs on SQLite, and on PostgreSQL with DOCKYARD_TEST_DATABASE_URL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, select, text, update
from sqlalchemy.engine import Connection, Engine
from tests.support.vulndata import find_vulndata

from dockyard.db import alembic_config, downgrade, make_engine, migrate
from dockyard.scanning.vulnfeeds import Record, parse_node_core, parse_npm_legacy

T0 = dt.datetime(2026, 10, 5, 9, 30)  # the image's first scan
RENAMED = T0 + dt.timedelta(days=30)  # the reader of the version before 0019 read the feed, then re-matched
MINUTE, HOUR, DAY = dt.timedelta(minutes=1), dt.timedelta(hours=1), dt.timedelta(days=1)
IMAGE = "sha256:" + "a1" * 32
LODASH, LODASH_OLD = "pkg:npm/lodash@4.17.15", "pkg:npm/lodash@4.17.4"
NODEJS = "pkg:deb/debian/nodejs@4.8.2~dfsg-1?arch=amd64&distro=debian-9"
OLD_NAME = re.compile(r"\b(NPM|NODE)-\d+\b")
WG_NAME = re.compile(r"^(NPM|NODE|NSWG-ECO|NSWG-COR)-\d+$")  # a WG record named by its own id (no CVE)
TABLES = [
    "user_account",
    "namespace",
    "publisher",
    "product",
    "product_revision",
    "repository",
    "review_comment",
    "alert_watch",
    "alert_item",
    "vuln_advisory",
    "vuln_affected",
    "scan_image",
    "scan_package",
    "scan_component",
    "scan_package_vuln",
    "scan_finding",
    "compliance_clock",
    "compliance_vex",
]

# The WG's records as the reader before NSWG names stored them (the fields of npm/516.json, npm/493.json and
# core/2.json in /work/shared/vulndata, parsed by today's reader and given their old names).
LODASH_516 = {
    "id": 516,
    "title": "Allocation of Resources Without Limits or Throttling",
    "overview": "Prototype pollution attack (lodash)",
    "created_at": "2019-10-11",
    "updated_at": "2020-07-13",
    "publish_date": "1970-01-01",
    "module_name": "lodash",
    "cves": [],
    "vulnerable_versions": ">=4.17.15 <4.17.19",
    "patched_versions": ">=4.17.19",
    "recommendation": "Update to version 4.17.19 or greater",
    "cvss_vector": "CVSS:3.0/AV:N/AC:L/PR:L/UI:N/S:U/C:L/I:L/A:L",
}
LODASH_493 = {
    **LODASH_516,
    "id": 493,
    "title": "Denial of Service",
    "overview": "Prototype pollution attack (lodash / constructor.prototype)",
    "updated_at": "2019-01-03",
    "publish_date": "2018-10-30",
    "cves": ["CVE-2018-16487"],
    "vulnerable_versions": "<4.17.11",
    "patched_versions": ">=4.17.11",
    "cvss_vector": "CVSS:3.0/AV:L/AC:L/PR:N/UI:N/S:C/C:L/I:L/A:N",
}
NODE_2 = {
    "cve": [],
    "vulnerable": "4.x || 5.x || 6.x || 7.x || 8.x",
    "patched": "^4.8.4 || ^6.11.1 || ^7.10.1 || ^8.1.4",
    "description": "DoS possible in V8 object lookup",
    "affectedEnvironments": ["all"],
    "severity": "high",
}


def old_record(record: Record) -> Record:
    return dataclasses.replace(
        record, id=record.id.replace("NSWG-ECO-", "NPM-").replace("NSWG-COR-", "NODE-")
    )


@pytest.fixture
def engine(empty_database_url: str) -> Iterator[Engine]:
    engine = make_engine(empty_database_url)
    yield engine
    engine.dispose()


class Rows:
    """Rows written and read through the tables as the database holds them now (reflected)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.meta = MetaData()
        self.meta.reflect(conn, only=TABLES)

    def add(self, table: str, **values: Any) -> Any:
        return self.conn.execute(self.meta.tables[table].insert().values(**values)).inserted_primary_key[0]

    def all(self, table: str, **where: Any) -> list[dict[str, Any]]:
        t = self.meta.tables[table]
        query = select(t).where(*(t.c[k] == v for k, v in where.items())).order_by(*t.primary_key.columns)
        return [dict(row._mapping) for row in self.conn.execute(query)]

    def one(self, table: str, **where: Any) -> dict[str, Any]:
        (row,) = self.all(table, **where)
        return row

    def advisory(self, record: Record, **scored: Any) -> None:
        """An advisory as the reader writes it (``vulndb._row``), with its affected packages."""
        fields = ("source", "modified", "published", "withdrawn", "summary", "details")
        values = {f: getattr(record, f) for f in fields}
        lists = {"aliases": record.aliases, "related": record.related, "severity": record.severity}
        self.add(
            "vuln_advisory", id=record.id, **values, **lists, **scored, digest=record.digest, ingested_at=T0
        )
        for package in record.affected:
            self.add("vuln_affected", advisory_id=record.id, **package)


def build_store(rows: Rows, **counts: int) -> SimpleNamespace:
    """A published product whose image (an app on Debian 9 with Node.js 4.8) is watched by a user; ``counts``
    are the image's cached counts of open findings."""
    user = rows.add("user_account", username="ann", password_hash="x", is_active=True, created_at=T0)
    namespace = rows.add("namespace", name="acme", kind="org", created_at=T0)
    publisher = rows.add("publisher", namespace_id=namespace, created_at=T0, updated_at=T0)
    product = rows.add("product", publisher_id=publisher, slug="api", created_at=T0)
    pins = {"server": {"repository": "acme/api", "tags": {"1.0": IMAGE}}}
    revision = rows.add(
        "product_revision",
        product_id=product,
        number=1,
        state="published",
        manifest={},
        pins=pins,
        created_at=T0,
        updated_at=T0,
    )
    products = rows.meta.tables["product"]
    rows.conn.execute(update(products).where(products.c.id == product).values(live_revision_id=revision))
    repository = rows.add("repository", namespace_id=namespace, name="api", is_public=False, created_at=T0)
    watch = rows.add("alert_watch", user_id=user, repository_id=repository, created_at=T0, noticed_until=T0)
    image = rows.add(
        "scan_image",
        digest=IMAGE,
        kind="image",
        status="done",
        format=4,
        os_ecosystem="Debian:9",
        layers=[],
        warnings=[],
        created_at=T0,
        **(dict.fromkeys(("critical", "major", "minor", "unscored"), 0) | counts),
    )
    packages = {}
    for key, (ecosystem, name, version, component_ecosystem) in {
        LODASH: ("npm", "lodash", "4.17.15", "npm"),
        LODASH_OLD: ("npm", "lodash", "4.17.4", "npm"),
        NODEJS: ("Debian:9", "nodejs", "4.8.2~dfsg-1", "Debian"),
    }.items():
        packages[key] = rows.add(
            "scan_package",
            ecosystem=ecosystem,
            name=name,
            version=version,
            component_ecosystem=component_ecosystem,
            matched_at=T0,
        )
        rows.add(
            "scan_component",
            image_id=image,
            component_key=key,
            name=name,
            version=version,
            ecosystem=component_ecosystem,
            purl=key,
            package_id=packages[key],
        )
    return SimpleNamespace(
        product=product, revision=revision, watch=watch, image=image, packages=packages, user=user
    )


def verdict(rows: Rows, package: int, vuln_id: str, **values: Any) -> int:
    defaults = {"aliases": [], "severity": "Major", "summary": "", "generation": 1}
    return rows.add("scan_package_vuln", package_id=package, vuln_id=vuln_id, **(defaults | values))


def finding(rows: Rows, store: SimpleNamespace, component: str, vuln_id: str, **values: Any) -> int:
    values = {"severity": "Major", "first_seen_at": T0} | values
    return rows.add(
        "scan_finding",
        image_id=store.image,
        vuln_id=vuln_id,
        component_key=component,
        package_id=store.packages[component],
        **values,
    )


def clock(
    rows: Rows, store: SimpleNamespace, finding_id: int, vuln_id: str, component: str, **values: Any
) -> int:
    return rows.add(
        "compliance_clock",
        product_id=store.product,
        revision_id=store.revision,
        finding_id=finding_id,
        image="server",
        digest=IMAGE,
        vuln_id=vuln_id,
        component=component,
        **values,
    )


def vex(rows: Rows, store: SimpleNamespace, vuln_id: str, **values: Any) -> int:
    return rows.add(
        "compliance_vex",
        product_id=store.product,
        vuln_id=vuln_id,
        status="not_affected",
        justification="vulnerable_code_not_in_execute_path",
        impact_statement="merge() is never given user input",
        submitted_by="ann",
        **values,
    )


def alert(rows: Rows, store: SimpleNamespace, finding_id: int, seen_at: dt.datetime, **values: Any) -> int:
    return rows.add(
        "alert_item",
        watch_id=store.watch,
        finding_id=finding_id,
        seen_at=seen_at,
        tags="1.0",
        digest=IMAGE,
        image_digest=IMAGE,
        queued_at=seen_at,
        **({"severity": "Major", "via": "email", "mailed_at": seen_at} | values),
    )


def old_names_left(conn: Connection) -> list[str]:
    """Every row of every table that still names a record NPM-<n> or NODE-<n>."""
    found = []
    for name in sorted(set(inspect(conn).get_table_names()) - {"alembic_version"}):
        for row in conn.execute(text(f'SELECT * FROM "{name}"')):
            if OLD_NAME.search(str(tuple(row))):
                found.append(f"{name}: {tuple(row)}")
    return found


def snapshot(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    rows = Rows(conn)
    return {table: rows.all(table) for table in TABLES}


# ---- an installation that never read the feed under the new names ------------------------------------------


def test_every_old_name_is_renamed_and_what_hangs_on_it_stays(engine: Engine) -> None:
    migrate(engine, "0018")
    lodash_516 = old_record(parse_npm_legacy(LODASH_516))
    lodash_493 = old_record(parse_npm_legacy(LODASH_493))
    node_2 = old_record(parse_node_core(NODE_2, "2"))
    with engine.begin() as conn:
        rows = Rows(conn)
        store = build_store(rows, critical=1, major=1, unscored=1)
        rows.advisory(lodash_516, score=6.3, cvss_vector=LODASH_516["cvss_vector"], cvss_version="v3")
        rows.advisory(lodash_493, score=5.7, cvss_vector=LODASH_493["cvss_vector"], cvss_version="v3")
        rows.advisory(node_2)
        # Debian's record of the CVE has no vector: it borrowed the WG record's score.
        borrowed = Record(
            "CVE-2018-16487", "osv:Debian", aliases=[], summary="node-lodash: prototype pollution"
        )
        rows.advisory(borrowed, score=5.7, cvss_vector=LODASH_493["cvss_vector"], score_from="NPM-493")
        npm = {"score_source": "npm-legacy v3.0", "vector": LODASH_516["cvss_vector"]}
        verdict(rows, store.packages[LODASH], "NPM-516", score=6.3, score_record="NPM-516", **npm)
        verdict(
            rows,
            store.packages[LODASH_OLD],
            "CVE-2018-16487",
            aliases=["NPM-493"],
            score=5.7,
            score_record="NPM-493",
            **npm,
        )
        verdict(rows, store.packages[NODEJS], "NODE-2", severity="Unscored", fixed_version="4.8.4")
        reclassified = {
            "override_severity": "Critical",
            "override_reason": "reachable from the public API",
            "override_by": "staff",
            "override_at": T0 + 2 * HOUR,
        }
        f516 = finding(rows, store, LODASH, "NPM-516", **reclassified)
        f493 = finding(rows, store, LODASH_OLD, "CVE-2018-16487")
        fnode = finding(rows, store, NODEJS, "NODE-2", severity="Unscored")
        gone = {
            "aliases": ["NODE-12"],
            "fixed_version": "4.6.0",
            "score": 7.5,
            "vector": "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
            "summary": "openssl 1.0.2h vulnerabilities",
            "score_source": "nvd (primary) v3.0",
            "score_record": "NODE-12",
        }
        fgone = finding(rows, store, NODEJS, "CVE-2016-6304", resolved_at=T0 + 9 * DAY, detail=gone)
        told = T0 + HOUR
        deadline = {"notified_at": told, "notified_via": "email", "due_at": told + 72 * HOUR}
        extension = {
            "extended_from": told + 72 * HOUR,
            "extension_reason": "the fix waits for lodash 4.17.19 in our base image",
            "extended_by": "staff",
            "extended_at": told + DAY,
        }
        extended = deadline | extension | {"due_at": told + 10 * DAY}
        c516 = clock(rows, store, f516, "NPM-516", LODASH, severity="Critical", opened_at=T0, **extended)
        cnode = clock(
            rows,
            store,
            fnode,
            "NODE-2",
            NODEJS,
            severity="Unscored",
            opened_at=T0,
            resolved_at=T0 + 3 * DAY,
            resolution="vex",
        )
        waiting = vex(rows, store, "NPM-516", submitted_at=T0 + DAY, decision="pending")
        accepted = vex(
            rows,
            store,
            "NODE-2",
            component=NODEJS,
            submitted_at=T0 + DAY,
            decision="accepted",
            decided_by="staff",
            decided_at=T0 + 3 * DAY,
            decision_reason="the runtime only runs the build",
        )
        a516 = alert(rows, store, f516, T0)
        anode = alert(rows, store, fnode, T0, severity="Unscored", via="digest", mailed_at=T0 + DAY)
        rows.add(
            "review_comment",
            product_id=store.product,
            revision_id=store.revision,
            author_name="staff",
            from_store=True,
            anchor_kind="finding",
            anchor=f"server@{IMAGE}/NPM-516",
            body="Please bump lodash.",
            created_at=T0,
        )
        before = snapshot(conn)

    migrate(engine)

    with engine.connect() as conn:
        assert old_names_left(conn) == []
        rows, after = Rows(conn), snapshot(conn)
        # The advisories under the new names, with their packages; the digest is the reader's of the new name.
        new_516 = dataclasses.replace(lodash_516, id="NSWG-ECO-516")
        assert rows.one("vuln_advisory", id="NSWG-ECO-516")["digest"] == new_516.digest
        assert rows.one("vuln_advisory", id="NSWG-COR-2")["digest"] == parse_node_core(NODE_2, "2").digest
        assert [a["name"] for a in rows.all("vuln_affected", advisory_id="NSWG-ECO-516")] == ["lodash"]
        assert [a["name"] for a in rows.all("vuln_affected", advisory_id="NSWG-COR-2")] == ["node"]
        assert rows.one("vuln_advisory", id="NSWG-ECO-493")["aliases"] == ["CVE-2018-16487"]
        assert rows.one("vuln_advisory", id="CVE-2018-16487")["score_from"] == "NSWG-ECO-493"
        assert len(after["vuln_advisory"]) == 4 and len(after["vuln_affected"]) == 3
        verdicts = {(v["package_id"], v["vuln_id"]): v for v in after["scan_package_vuln"]}
        assert verdicts[(store.packages[LODASH], "NSWG-ECO-516")]["score_record"] == "NSWG-ECO-516"
        cve = verdicts[(store.packages[LODASH_OLD], "CVE-2018-16487")]
        assert (cve["aliases"], cve["score_record"]) == (["NSWG-ECO-493"], "NSWG-ECO-493")
        assert (store.packages[NODEJS], "NSWG-COR-2") in verdicts and len(verdicts) == 3

        # The same findings (ids, first seen, staff's class), clocks, statements and alert items, renamed.
        renamed = {f516: "NSWG-ECO-516", fnode: "NSWG-COR-2", f493: "CVE-2018-16487", fgone: "CVE-2016-6304"}
        for old, new in zip(before["scan_finding"], after["scan_finding"], strict=True):
            assert new == old | {"vuln_id": renamed[old["id"]], "detail": new["detail"]}
        assert rows.one("scan_finding", id=fgone)["detail"] == gone | {
            "aliases": ["NSWG-COR-12"],
            "score_record": "NSWG-COR-12",
        }
        clocks = {c516: "NSWG-ECO-516", cnode: "NSWG-COR-2"}
        for old, new in zip(before["compliance_clock"], after["compliance_clock"], strict=True):
            assert new == old | {"vuln_id": clocks[old["id"]]}
        statements = {waiting: "NSWG-ECO-516", accepted: "NSWG-COR-2"}
        for old, new in zip(before["compliance_vex"], after["compliance_vex"], strict=True):
            assert new == old | {"vuln_id": statements[old["id"]]}
        assert after["alert_item"] == before["alert_item"]
        assert [a["id"] for a in after["alert_item"]] == [a516, anode]
        assert rows.one("review_comment")["anchor"] == f"server@{IMAGE}/NSWG-ECO-516"
        assert after["scan_image"] == before["scan_image"]  # a rename moves no count


# ---- an installation that read the feed under the new names before the migration ---------------------------


def test_both_names_keep_one_row_with_the_old_ones_state(engine: Engine) -> None:
    """What the reader of the version before 0019 did: it withdrew NPM-516 and added NSWG-ECO-516; the
    re-match resolved the finding under the old name and opened one under the new; the compliance check
    closed the old clock (feed) and opened and told a new one with a new deadline; the alert run told the
    'new' finding; the publisher filed the waiting VEX statement again. One row of each is kept, with the old
    state."""
    migrate(engine, "0018")
    lodash_516 = parse_npm_legacy(LODASH_516)
    with engine.begin() as conn:
        rows = Rows(conn)
        store = build_store(rows, major=1)  # the finding under the new name, Major
        rows.advisory(old_record(lodash_516))  # left by a read that failed half-way, say
        rows.advisory(lodash_516)
        current = verdict(rows, store.packages[LODASH], "NSWG-ECO-516", score_record="NSWG-ECO-516")
        reclassified = {
            "override_severity": "Critical",
            "override_reason": "reachable from the public API",
            "override_by": "staff",
            "override_at": T0 + 2 * HOUR,
        }
        detail = {
            "aliases": [],
            "score_record": "NPM-516",
            "summary": "Allocation of Resources",
            "score": 6.3,
        }
        kept = finding(rows, store, LODASH, "NPM-516", resolved_at=RENAMED, detail=detail, **reclassified)
        dropped = finding(rows, store, LODASH, "NSWG-ECO-516", first_seen_at=RENAMED)
        told = T0 + HOUR
        old_clock = clock(
            rows,
            store,
            kept,
            "NPM-516",
            LODASH,
            severity="Critical",
            opened_at=T0,
            notified_at=told,
            notified_via="email",
            due_at=told + 72 * HOUR,
            resolved_at=RENAMED + 10 * MINUTE,
            resolution="feed",
        )
        clock(
            rows,
            store,
            dropped,
            "NSWG-ECO-516",
            LODASH,
            severity="Major",
            opened_at=RENAMED + 10 * MINUTE,
            notified_at=RENAMED + HOUR,
            notified_via="email",
            due_at=RENAMED + HOUR + 7 * DAY,
        )
        waiting = vex(rows, store, "NPM-516", submitted_at=T0 + DAY, decision="pending")
        vex(rows, store, "NSWG-ECO-516", submitted_at=RENAMED + DAY, decision="pending")
        first_told = alert(rows, store, kept, T0, severity="Critical")
        told_again = alert(rows, store, dropped, RENAMED)
        before = snapshot(conn)

    migrate(engine)

    with engine.connect() as conn:
        assert old_names_left(conn) == []
        rows, after = Rows(conn), snapshot(conn)
        assert [a["id"] for a in after["vuln_advisory"]] == ["NSWG-ECO-516"]
        assert after["vuln_advisory"] == before["vuln_advisory"][1:]  # the feed's current copy
        assert after["vuln_affected"] == before["vuln_affected"][1:]
        assert [v["id"] for v in after["scan_package_vuln"]] == [current]
        # The old finding under the new name, open as the new one was, first seen at the first scan.
        (merged,) = after["scan_finding"]
        old = before["scan_finding"][0]
        assert merged == old | {"vuln_id": "NSWG-ECO-516", "resolved_at": None, "detail": None}
        # Its clock keeps the first notice and deadline and runs again; the new one is gone.
        (running,) = after["compliance_clock"]
        assert running == before["compliance_clock"][0] | {
            "vuln_id": "NSWG-ECO-516",
            "resolved_at": None,
            "resolution": None,
        }
        assert running["id"] == old_clock and running["due_at"] == told + 72 * HOUR
        # Both items told stay (nothing is told again), on the kept finding.
        assert [(a["id"], a["finding_id"]) for a in after["alert_item"]] == [
            (first_told, kept),
            (told_again, kept),
        ]
        # The statement filed first waits, under the new name; the one filed again is gone.
        (statement,) = after["compliance_vex"]
        assert statement == before["compliance_vex"][0] | {"vuln_id": "NSWG-ECO-516"}
        assert statement["id"] == waiting
        # Counted at staff's class again (the new finding counted as Major).
        image = rows.one("scan_image")
        assert (image["critical"], image["major"]) == (1, 0)

    # Idempotent: running the revision again changes nothing.
    downgrade(engine, "0018")
    migrate(engine)
    with engine.connect() as conn:
        assert snapshot(conn) == after


def migration() -> Any:
    return ScriptDirectory.from_config(alembic_config(None)).get_revision("0019").module


def test_a_finding_that_had_gone_comes_back_under_the_new_name() -> None:
    """Resolved for a month (a fix), then back under the new name: the pair is one finding reopened when the
    new name appeared, and the new clock (its notice of the return) is the one kept."""
    m = migration()
    base = {"package_id": 1, "severity": "Major", "reopened_at": None, "detail": None}
    staff = dict.fromkeys(("override_severity", "override_reason", "override_by", "override_at"))
    old = SimpleNamespace(id=1, vuln_id="NPM-516", first_seen_at=T0, resolved_at=T0 + DAY, **base, **staff)
    new = SimpleNamespace(
        id=2, vuln_id="NSWG-ECO-516", first_seen_at=RENAMED, resolved_at=None, **base, **staff
    )
    merged = m.merged_finding(old, new)
    assert (merged["id"], merged["first_seen_at"], merged["reopened_at"]) == (1, T0, RENAMED)
    assert merged["resolved_at"] is None
    old_clock = SimpleNamespace(id=7, revision_id=1, resolved_at=T0 + DAY, resolution="fixed")
    new_clock = SimpleNamespace(id=8, revision_id=2, resolved_at=None, resolution=None)
    assert m.merged_clocks(old_clock, new_clock, continuous=False, still_open=True) == (
        new_clock,
        {},
        old_clock,
    )
    # A clock closed because its finding's old name went (the rename) runs again when the finding is open.
    renamed_away = SimpleNamespace(id=7, revision_id=1, resolved_at=RENAMED, resolution="feed")
    assert m.merged_clocks(renamed_away, None, continuous=True, still_open=True)[1] == {
        "resolved_at": None,
        "resolution": None,
    }


# ---- the real feed read again after the migration ----------------------------------------------------------

VULNDATA = find_vulndata()


@pytest.mark.skipif(
    not (VULNDATA / "nodejs-security-wg").is_dir(), reason=f"no vulnerability data at {VULNDATA}"
)
def test_reading_the_real_feed_after_the_migration_changes_nothing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole WG feed read by the reader of the version before NSWG names, an image with every npm module
    at the versions its records name and Debian 9's Node.js matched, a published product's clocks started and
    told, a VEX statement accepted and a finding reclassified; then the migration; then the feed read again
    and everything re-matched by today's reader: nothing is withdrawn, added or rewritten, no verdict or
    finding changes, and the clocks keep their ids, starts and deadlines."""
    from sqlalchemy.orm import Session

    from dockyard.compliance.clocks import ClockBook, due_after
    from dockyard.compliance.models import FindingClock, VexStatement
    from dockyard.publishing.models import Product
    from dockyard.scanning import vulndb, vulnfeeds
    from dockyard.scanning.counts import refresh_counts
    from dockyard.scanning.matcher import Matcher
    from dockyard.scanning.models import ScanFinding
    from dockyard.scanning.results import rematch
    from dockyard.scanning.vulndb import ingest

    feed = VULNDATA / "nodejs-security-wg"
    # The rows are written with today's models at head, then the database is taken back to 0018 (whose
    # downgrade keeps rows as they are) and migrated: the 0018 schema need not match today's models.
    migrate(engine)
    for parse in ("parse_npm_legacy", "parse_node_core"):  # the reader before: old names, nothing withdrawn
        today = getattr(vulnfeeds, parse)
        monkeypatch.setattr(vulndb, parse, lambda *a, parse=today: old_record(parse(*a)))
    monkeypatch.setattr(vulndb, "nswg_legacy_id", lambda _id: None)
    with Session(engine) as session:
        assert ingest(session, feed).added == 638
        rows = Rows(session.connection())
        store = build_store(rows)
        for name, version in sorted(npm_versions(feed) - {("lodash", "4.17.15"), ("lodash", "4.17.4")}):
            key = f"pkg:npm/{name}@{version}"
            package = rows.add(
                "scan_package", ecosystem="npm", name=name, version=version, component_ecosystem="npm"
            )
            rows.add(
                "scan_component",
                image_id=store.image,
                component_key=key,
                name=name,
                version=version,
                ecosystem="npm",
                purl=key,
                package_id=package,
            )
        first = rematch(session, Matcher(session), T0)
        assert first.verdicts_removed == 0 and first.new > 0
        lodash = session.scalar(
            select(ScanFinding).where(ScanFinding.vuln_id == "NPM-516", ScanFinding.component_key == LODASH)
        )
        lodash.override_severity, lodash.override_by, lodash.override_at = "Critical", "staff", T0
        lodash.override_reason = "reachable from the public API"
        session.flush()
        refresh_counts(session, [store.image])
        session.add(
            VexStatement(
                product_id=store.product,
                vuln_id="NODE-2",
                component=NODEJS,
                status="not_affected",
                justification="vulnerable_code_not_in_execute_path",
                impact_statement="the runtime only runs the build",
                submitted_by="ann",
                submitted_at=T0,
                decision="accepted",
                decided_by="staff",
                decided_at=T0,
            )
        )
        session.flush()
        product = session.get(Product, store.product)
        assert ClockBook(session).sync(product, T0 + HOUR).opened
        for row in session.scalars(select(FindingClock).where(FindingClock.resolved_at.is_(None))):
            row.notified_at, row.notified_via = T0 + HOUR, "email"
            row.due_at = due_after(row.severity, T0 + HOUR)
        session.commit()
    monkeypatch.undo()
    downgrade(engine, "0018")

    migrate(engine)

    with engine.connect() as conn:
        before = snapshot(conn)
    # Findings of the WG records without a CVE (named by their own ids): npm modules, and Node.js 4.8.2.
    named = [f["vuln_id"] for f in before["scan_finding"] if WG_NAME.match(f["vuln_id"])]
    assert len(set(named)) > 250 and any(n.startswith(("NODE-", "NSWG-COR-")) for n in named)
    assert any(c["resolution"] == "vex" for c in before["compliance_clock"])
    with Session(engine) as session:
        report = ingest(session, feed)
        assert (report.added, report.updated, report.withdrawn, report.errors) == (0, 0, 0, [])
        assert report.unchanged == 638
        again = rematch(session, Matcher(session), RENAMED)
        changed = (
            again.verdicts_added,
            again.verdicts_removed,
            again.verdicts_changed,
            again.new,
            again.resolved,
        )
        assert changed == (0, 0, 0, 0, 0)
        assert not ClockBook(session).sync(session.get(Product, store.product), RENAMED)
        session.commit()
    with engine.connect() as conn:
        after = snapshot(conn)
    for table in ("scan_finding", "compliance_clock", "compliance_vex", "scan_package_vuln", "scan_image"):
        assert after[table] == before[table], table
    assert old_names_left_in(after) == []


def old_names_left_in(tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    return [f"{t}: {row}" for t, rows in tables.items() for row in rows if OLD_NAME.search(str(row))]


def npm_versions(feed: Any) -> set[tuple[str, str]]:
    """Every npm module of the feed at each version its records name, and at 0.0.1."""
    import json

    versions = set()
    for path in sorted((feed / "vuln" / "npm").glob("*.json")):
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or "module_name" not in doc:
            continue
        name = doc["module_name"].strip().lower()
        numbers = re.findall(
            r"\d+\.\d+\.\d+", f"{doc.get('vulnerable_versions')} {doc.get('patched_versions')}"
        )
        versions |= {(name, v) for v in {"0.0.1", *numbers}}
    return versions
