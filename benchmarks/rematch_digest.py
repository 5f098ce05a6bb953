"""A digest of everything a fleet's re-matches write, to show that a change to them leaves results identical.

Not a benchmark: ``--images`` synthetic images (the fleet of ``scan_bench.py``) are matched the first time,
staff reclassify 50 findings, then three feed updates add, withdraw, rescore and bring back advisories. It
prints each re-match's report and sha256 digests of every finding row (image digest, vulnerability,
component, package, classes, override, the step that set first-seen / resolved / reopened, detail) and of
every image's counts. Run it on two trees and compare the output::

    PYTHONPATH= .venv/bin/python benchmarks/rematch_digest.py --tree /tmp/before > before.json
    PYTHONPATH= .venv/bin/python benchmarks/rematch_digest.py --tree . > after.json
    diff before.json after.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

VULNDATA = Path(
    os.environ.get("DOCKYARD_VULNDATA", Path(__file__).resolve().parents[2] / "shared" / "vulndata")
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--tree", type=Path, default=Path(__file__).resolve().parents[1], help="the tree to run"
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--database-url", help="an empty database (default: a fresh SQLite file)")
    args = parser.parse_args()
    sys.path[:0] = [str(args.tree / "src"), str(args.tree)]

    from sqlalchemy import select, update
    from sqlalchemy.orm import Session
    from tests.support.scanimages import osv_record, write_feed
    from tests.unit.scanning.test_scan_services import _fleet

    from dockyard.config import Settings
    from dockyard.db import make_engine, migrate
    from dockyard.events import EventBus
    from dockyard.scanning import counts
    from dockyard.scanning.models import ImageScan, ScanFinding, ScanPackage
    from dockyard.scanning.services import ScanService
    from dockyard.scanning.vulndb import ingest
    from dockyard.storage.blobstore import BlobStore
    from dockyard.storage.local import LocalDriver

    work = Path(tempfile.mkdtemp(prefix="dockyard-rematch-digest-"))
    engine = make_engine(args.database_url or f"sqlite:///{work / 'digest.db'}")
    migrate(engine)
    later, much = dt.datetime(2031, 1, 1), dt.datetime(2031, 6, 1)
    low, high = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    updates = [
        [
            osv_record("CVE-2032-0001", "glibc"),
            osv_record("CVE-2032-0002", "zlib"),
            osv_record("CVE-2032-0003", "apt", vector=low),
        ],
        [
            osv_record("CVE-2032-0002", "zlib", modified=later, withdrawn=later),
            osv_record("CVE-2032-0003", "apt", modified=later, vector=high),
            osv_record("CVE-2032-0004", "bash", modified=later),
        ],
        [
            osv_record("CVE-2032-0002", "zlib", modified=much),  # comes back: its findings reopen
            osv_record(
                "CVE-2032-0003", "apt", modified=much, vector="CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"
            ),
            osv_record("CVE-2032-0004", "bash", modified=much, withdrawn=much),
        ],
    ]
    reports: list[dict[str, object]] = []
    steps: dict[object, str] = {}
    with Session(engine) as s:
        ingest(s, VULNDATA / "debian-osv")
        _fleet(s, args.images)
        s.commit()
        scans = ScanService(
            s, BlobStore(LocalDriver(work / "storage"), work / "uploads"), EventBus(), Settings()
        )

        def rematch(step: int) -> None:
            report = scans.rematch_all(prune=False)
            s.commit()
            steps[s.scalar(select(ImageScan.matched_at).limit(1))] = f"step {step}"
            reports.append({k: v for k, v in vars(report).items() if k not in ("touched", "seconds")})

        rematch(0)
        apt = select(ScanFinding.id).where(ScanFinding.component_key.like("%libapt@%"))
        ids = s.scalars(apt.order_by(ScanFinding.image_id, ScanFinding.vuln_id).limit(50)).all()
        s.execute(update(ScanFinding).where(ScanFinding.id.in_(ids)).values(override_severity="Minor"))
        counts.refresh_counts(s, s.scalars(select(ImageScan.id)).all())
        s.commit()
        for step, records in enumerate(updates, 1):
            write_feed(work / "feed", *records)
            ingest(s, work / "feed")
            s.commit()
            rematch(step)
        package_columns = (ScanPackage.id, ScanPackage.ecosystem, ScanPackage.name, ScanPackage.version)
        packages = {i: (e, n, v) for i, e, n, v in s.execute(select(*package_columns))}
        rows = sorted(
            (
                d,
                v,
                k,
                packages.get(p),
                c,
                o,
                steps.get(f, f),
                steps.get(r, r),
                steps.get(ro, ro),
                json.dumps(x),
            )
            for d, v, k, p, c, o, f, r, ro, x in s.execute(
                select(
                    ImageScan.digest,
                    ScanFinding.vuln_id,
                    ScanFinding.component_key,
                    ScanFinding.package_id,
                    ScanFinding.severity,
                    ScanFinding.override_severity,
                    ScanFinding.first_seen_at,
                    ScanFinding.resolved_at,
                    ScanFinding.reopened_at,
                    ScanFinding.detail,
                ).join(ImageScan, ImageScan.id == ScanFinding.image_id)
            )
        )
        image_counts = s.execute(
            select(
                ImageScan.digest, ImageScan.critical, ImageScan.major, ImageScan.minor, ImageScan.unscored
            ).order_by(ImageScan.digest)
        ).all()
    engine.dispose()
    digest = {
        "reports": reports,
        "findings": len(rows),
        "findings_sha256": hashlib.sha256(repr(rows).encode()).hexdigest(),
        "counts_sha256": hashlib.sha256(repr([tuple(r) for r in image_counts]).encode()).hexdigest(),
    }
    print(json.dumps(digest, indent=1, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
