"""NVD's CVE records as a severity source: ``NVD-CVE-...`` advisories that affect no package and only lend
their CVSS vectors to the findings of the same CVE whose own records carry none (``vulndb.propagate_scores``).

Records are NVD CVE API 2.0 JSON (``cvssMetricV40``, ``V31``, ``V30``, ``V2`` under ``metrics``), read from
files (one ``cve`` object per file, as fkie-cad/nvd-json-data-feeds keeps them, or whole API responses) or
fetched from the API by ``fetch``: incrementally by ``lastModStartDate``/``lastModEndDate`` (at most 120 days
a request, as the API allows), 2,000 records a page, waiting between requests as NVD asks (6 s without an API
key, 0.6 s with one: 5 or 50 requests per rolling 30 s), retrying on 403/429/5xx, and resumable: each page is
handed to the caller, which commits it and records how far it got.

Each metric is ``Primary`` (scored by NVD itself, ``nvd@nist.gov``) or ``Secondary`` (the CNA's or CISA ADP's
score). A record's score is the preferred Primary vector (``severity.Score.rank``), else the preferred
Secondary one; which it was is kept with the vector so that findings can say where their score came from.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockyard.scanning.severity import Score, score_vector
from dockyard.scanning.vulnfeeds import FeedError, Record, _summary, parse_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from dockyard.scanning.vulndb import IngestReport

__all__ = [
    "API_URL",
    "NVD",
    "NVD_PREFIX",
    "fetch",
    "is_nvd",
    "nvd_score",
    "parse_nvd",
    "sync",
]

NVD = "nvd"  # Advisory.source and the feed name
NVD_PREFIX = "NVD-"  # NVD-CVE-2024-1234: the advisory id, next to the distros' own CVE-2024-1234 records
API_URL = "https://services.nvd.nist.gov/rest/json/cves/2.0"
CURSOR = "nvd:api"  # the FeedState row of the API's reader: see ``sync``
PAGE = 2000  # the API's largest resultsPerPage
WINDOW = dt.timedelta(days=120)  # the API's widest lastMod range
_METRICS = (("cvssMetricV40", "CVSS_V4"), ("cvssMetricV31", "CVSS_V3"), ("cvssMetricV30", "CVSS_V3"))
_V2 = ("cvssMetricV2", "CVSS_V2")


def is_nvd(doc: Mapping[str, Any]) -> bool:
    """A bare NVD ``cve`` object (OSV records have ``affected`` too, but never ``metrics``)."""
    return "metrics" in doc and "descriptions" in doc and isinstance(doc.get("id"), str)


def parse_nvd(doc: Mapping[str, Any]) -> Record:
    """One NVD ``cve`` object -> a severity-only advisory ``NVD-<cve id>``."""
    cve = doc.get("id")
    if not isinstance(cve, str) or not cve.startswith("CVE-"):
        raise FeedError(f"NVD record id {cve!r} is not a CVE id")
    metrics = doc.get("metrics") or {}
    if not isinstance(metrics, Mapping):
        raise FeedError("metrics must be an object")
    severity = []
    for key, kind in (*_METRICS, _V2):
        for metric in metrics.get(key) or ():
            data = metric.get("cvssData") if isinstance(metric, Mapping) else None
            vector = data.get("vectorString") if isinstance(data, Mapping) else None
            if not isinstance(vector, str) or not vector.strip():
                continue
            severity.append(
                {
                    "type": kind,
                    "vector": vector.strip()[:256],
                    "kind": str(metric.get("type") or "Secondary")[:16],
                    "source": str(metric.get("source") or "")[:64],
                }
            )
    descriptions = doc.get("descriptions") or []
    text = next(
        (d.get("value", "") for d in descriptions if isinstance(d, Mapping) and d.get("lang") == "en"), ""
    )
    status = doc.get("vulnStatus")
    return Record(
        id=f"{NVD_PREFIX}{cve}",
        source=NVD,
        modified=parse_time(doc.get("lastModified"), "lastModified"),
        published=parse_time(doc.get("published"), "published"),
        withdrawn=parse_time(doc.get("lastModified"), "lastModified") if status == "Rejected" else None,
        summary=_summary("", text if isinstance(text, str) else ""),
        aliases=[cve],
        severity=severity,
    )


@dataclass(frozen=True)
class NvdScore:
    score: Score
    primary: bool
    source: str  # who scored it: nvd@nist.gov, a CNA's address, CISA ADP's id


def nvd_score(severity: list[dict[str, str]]) -> NvdScore | None:
    """The preferred Primary score of an NVD record's vectors, else its preferred Secondary one."""
    scored = []
    for entry in severity:
        s = score_vector(entry.get("type"), entry.get("vector", ""))
        if s is not None:
            scored.append((entry.get("kind") != "Primary", s.rank(), s, entry))
    if not scored:
        return None
    secondary, _, best, entry = min(scored, key=lambda t: (t[0], t[1]))
    return NvdScore(best, not secondary, entry.get("source", ""))


# ---- the API ------------------------------------------------------------------------------------------


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+00:00")


def fetch(
    client: Any,
    since: dt.datetime | None,
    *,
    api_key: str | None = None,
    now: dt.datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    url: str = API_URL,
    retries: int = 5,
    start_index: int = 0,
) -> Iterator[tuple[list[dict[str, Any]], dt.datetime | None]]:
    """Pages of ``cve`` objects modified since ``since`` (everything when None), each with the end of the
    window it belongs to once the window is complete (the point to resume from), else None.

    ``client`` is an ``httpx.Client``; without ``since`` the whole database is read (no date filter), in
    pages. NVD's guidance: no more than 5 requests in 30 s without a key, 50 with one. ``start_index``: where
    to resume in the first window (the records of it already read)."""
    pause = 0.6 if api_key else 6.0
    headers = {"apiKey": api_key} if api_key else {}
    end = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    windows: list[tuple[dt.datetime, dt.datetime] | None] = []
    if since is None:
        windows.append(None)
    else:
        start = since
        while start < end:
            windows.append((start, min(start + WINDOW, end)))
            start += WINDOW
    first = True
    for window in windows:
        index, start_index = start_index, 0
        while True:
            params: dict[str, Any] = {"startIndex": index, "resultsPerPage": PAGE}
            if window is not None:
                params["lastModStartDate"], params["lastModEndDate"] = map(_stamp, window)
            if not first:
                sleep(pause)
            first = False
            body = _get(client, url, params, headers, sleep, pause, retries)
            items = [v["cve"] for v in body.get("vulnerabilities") or () if isinstance(v, Mapping)]
            index += len(items)
            total = int(body.get("totalResults") or 0)
            done = not items or index >= total
            yield items, ((window[1] if window else end) if done else None)
            if done:
                break


def _get(
    client: Any,
    url: str,
    params: dict[str, Any],
    headers: dict[str, str],
    sleep: Callable[[float], None],
    pause: float,
    retries: int,
) -> dict[str, Any]:
    for attempt in range(retries + 1):
        response = client.get(url, params=params, headers=headers)
        if response.status_code in (403, 429, 500, 502, 503, 504) and attempt < retries:
            sleep(pause * 5 * (attempt + 1))  # NVD answers 403 when the rate is exceeded
            continue
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict):
            raise FeedError("the NVD API answered something that is not a JSON object")
        return body
    raise AssertionError("unreachable")


# ---- reading the API into the database ------------------------------------------------------------------


def sync(
    transact: Callable[[Callable[[Session], Any]], Any],
    client: Any,
    *,
    api_key: str | None = None,
    budget: float | None = None,
    on_page: Callable[[Session, IngestReport], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[IngestReport, bool]:
    """Read NVD's records modified since the last complete window into the advisory tables, one page per
    transaction (``transact(fn)`` runs ``fn(session)`` in a committed write transaction: the CLI's session
    factory, a job's ``ctx.write``). Returns the totals and whether the read is complete; with a ``budget``
    (seconds) it stops after the page that exhausts it, and the next call resumes.

    Where it got to is the ``CURSOR`` FeedState row: ``last_modified`` is the end of the last complete
    lastModified window (None before the first full read ends) and, during that first full read (about 150
    pages, 15 minutes without a key), ``records`` is how many of its records were read, so an interrupted
    first read resumes at that ``startIndex`` rather than from the beginning."""
    from dockyard.db import utcnow
    from dockyard.scanning.models import FeedState
    from dockyard.scanning.vulndb import IngestReport, ingest_documents

    def where(session: Session) -> tuple[dt.datetime | None, int]:
        state = session.get(FeedState, CURSOR)
        return (state.last_modified, state.records or 0) if state else (None, 0)

    since, index = transact(where)
    index = index if since is None else 0
    total = IngestReport(source=NVD)
    started = clock()
    for items, complete_to in fetch(client, since, api_key=api_key, sleep=sleep, start_index=index):
        index += len(items)

        def page(
            session: Session, items: list[dict[str, Any]] = items, end: Any = complete_to, at: int = index
        ) -> IngestReport:
            report = ingest_documents(session, items, NVD)
            state = session.get(FeedState, CURSOR) or FeedState(source=CURSOR, records=0)
            if end is not None:
                state.last_modified, state.records = end, 0
            elif since is None:
                state.records = at
            state.updated_at = utcnow()
            session.add(state)
            if on_page is not None:
                on_page(session, report)
            return report

        done = transact(page)
        for key in ("files", "records", "added", "updated", "unchanged", "withdrawn"):
            setattr(total, key, getattr(total, key) + getattr(done, key))
        total.errors += done.errors
        if complete_to is not None:
            index = 0
        if budget is not None and clock() - started >= budget and complete_to is None:
            return total, False
    return total, True
