"""Feed formats -> validated, normalised advisory records (pure: no I/O, no database).

Four formats are read: OSV (osv.dev exports, the PyPA and Go databases, Debian's converted tracker),
Alpine's secdb (one JSON document per release and repository), the Node.js security WG's legacy npm
advisories and its advisories of the Node.js runtime itself (``vuln/core``). Every record is checked
completely before anything is written, so a malformed one is reported and skipped whole (``FeedError``) and
never half-stored.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dockyard.scanning.types import DETAILS_MAX, SUMMARY_MAX
from dockyard.scanning.versions import npm_range

OSV = "osv"
ALPINE_SECDB = "alpine-secdb"
NPM_LEGACY = "npm-legacy"
NODE_CORE = "node-core"  # the Node.js security WG's core advisories: the runtime, not npm packages
NVD_CVE = "nvd-cve"  # NVD CVE API 2.0 records: read by ``scanning.nvd``
EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")
RANGE_TYPES = ("ECOSYSTEM", "SEMVER", "GIT")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$")
_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")


class FeedError(ValueError):
    """A record that is not what its format says it is."""


@dataclass
class Record:
    """One advisory ready to be written: every field validated and normalised."""

    id: str
    source: str
    modified: dt.datetime | None = None
    published: dt.datetime | None = None
    withdrawn: dt.datetime | None = None
    summary: str = ""
    details: str = ""
    aliases: list[str] = field(default_factory=list)
    related: list[str] = field(default_factory=list)
    severity: list[dict[str, str]] = field(default_factory=list)
    affected: list[dict[str, Any]] = field(default_factory=list)  # {ecosystem, name, ranges, versions}
    remove: bool = False  # the record is gone from a feed that has no tombstones (Alpine secdb)
    origin: str = ""  # the file it came from, for error reports

    _NOT_CONTENT = frozenset({"remove", "origin"})

    @property
    def digest(self) -> str:
        body = {k: v for k, v in self.__dict__.items() if k not in self._NOT_CONTENT}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def detect(doc: Any) -> str | None:
    """Which format a parsed JSON/YAML document is in, or None."""
    if not isinstance(doc, Mapping):
        return None
    if ("metrics" in doc and "descriptions" in doc) or isinstance(doc.get("cve"), Mapping):
        return NVD_CVE  # checked first: NVD's cve objects carry an ``affected`` list too
    if "id" in doc and ("affected" in doc or "withdrawn" in doc):
        return OSV
    if "packages" in doc and "distroversion" in doc:
        return ALPINE_SECDB
    if "module_name" in doc and "vulnerable_versions" in doc:
        return NPM_LEGACY
    if "vulnerable" in doc and "patched" in doc and "cve" in doc:
        return NODE_CORE
    return None


@functools.lru_cache(maxsize=100_000)
def normalize_name(ecosystem: str, name: str) -> str:
    """Package names as the matcher looks them up: PEP 503 for PyPI, lower case for npm, as-is elsewhere
    (Go module paths and Maven coordinates are case-sensitive; distro names are already lower case)."""
    base = ecosystem.split(":", 1)[0]
    if base == "PyPI":
        return re.sub(r"[-_.]+", "-", name).lower()
    if base == "npm":
        return name.lower()
    return name


# ---- field checks -------------------------------------------------------------------------------------


def _str(value: Any, what: str, *, required: bool = False, limit: int = 512) -> str:
    if value is None or value == "":
        if required:
            raise FeedError(f"{what} is missing")
        return ""
    if not isinstance(value, str):
        raise FeedError(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise FeedError(f"{what} is longer than {limit} characters")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise FeedError(f"{what} must be a list")
    return value


def _ids(value: Any, what: str) -> list[str]:
    out = []
    for item in _list(value, what):
        text = _str(item, what, limit=128).strip()
        if text and _ID.match(text) and text not in out:
            out.append(text)
    return out


def parse_time(value: Any, what: str = "timestamp") -> dt.datetime | None:
    """RFC 3339 (or a bare date) -> naive UTC; None when absent."""
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip().replace("Z", "+00:00"))  # nanoseconds -> micro
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError as exc:
            raise FeedError(f"{what} {value!r} is not a timestamp") from exc
    else:
        raise FeedError(f"{what} must be a timestamp")
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _summary(summary: str, details: str) -> str:
    text = " ".join((summary or details.split("\n\n", 1)[0]).split())
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def _details(details: str) -> str:
    return details if len(details) <= DETAILS_MAX else details[: DETAILS_MAX - 1].rstrip() + "…"


def _severity(value: Any) -> list[dict[str, str]]:
    out = []
    for item in _list(value, "severity"):
        if not isinstance(item, Mapping):
            raise FeedError("severity entries must be objects")
        kind, score = _str(item.get("type"), "severity.type", limit=32), item.get("score")
        if isinstance(score, str) and score.strip():
            out.append({"type": kind, "vector": _str(score.strip(), "severity.score", limit=256)})
    return out


# ---- OSV ----------------------------------------------------------------------------------------------


def _osv_range(rng: Any) -> dict[str, Any] | None:
    if not isinstance(rng, Mapping):
        raise FeedError("ranges entries must be objects")
    kind = rng.get("type")
    if kind not in RANGE_TYPES:
        raise FeedError(f"unknown range type {kind!r}")
    events = []
    for event in _list(rng.get("events"), "events"):
        if not isinstance(event, Mapping) or len(event) != 1:
            raise FeedError("each range event must have exactly one key")
        ((key, value),) = event.items()
        if key not in EVENT_KINDS:
            raise FeedError(f"unknown range event {key!r}")
        events.append({key: _str(value, f"event {key}", required=True, limit=256).strip()})
    if not events:
        raise FeedError("a range has no events")
    return None if kind == "GIT" else {"type": kind, "events": events}


_ID_PREFIX_FEEDS = {
    "DSA": "Debian",
    "DLA": "Debian",
    "DTSA": "Debian",
    "DEBIAN": "Debian",
    "PYSEC": "PyPI",
    "GO": "Go",
    "ALPINE": "Alpine",
    "GHSA": "GitHub",
    "RUSTSEC": "crates.io",
    "UBUNTU": "Ubuntu",
}


def _osv_source(vid: str, ecosystems: list[str]) -> str:
    """``osv:<feed>``: the feed the id's prefix names, else the record's ecosystem(s) (osv.dev's converted CVE
    records span several: ``osv:Alpine+Debian``). Callers that know the feed pass ``ingest(feed=...)``."""
    feed = _ID_PREFIX_FEEDS.get(vid.split("-", 1)[0]) or "+".join(sorted(set(ecosystems)))
    return f"{OSV}:{feed}" if feed else OSV


def parse_osv(doc: Mapping[str, Any]) -> Record:
    """An OSV record (any schema version; Debian's ``upstream`` is read like ``aliases``)."""
    vid = _str(doc.get("id"), "id", required=True, limit=128).strip()
    if not _ID.match(vid):
        raise FeedError(f"id {vid!r} is not an advisory id")
    details = _str(doc.get("details"), "details", limit=1_000_000)
    severity = _severity(doc.get("severity"))
    affected, ecosystems = [], []
    for entry in _list(doc.get("affected"), "affected"):
        if not isinstance(entry, Mapping):
            raise FeedError("affected entries must be objects")
        package = entry.get("package") or {}
        if not isinstance(package, Mapping):
            raise FeedError("affected.package must be an object")
        ranges = [r for r in (_osv_range(r) for r in _list(entry.get("ranges"), "ranges")) if r is not None]
        versions = [_str(v, "versions", limit=256) for v in _list(entry.get("versions"), "versions")]
        ecosystem = _str(package.get("ecosystem"), "package.ecosystem", limit=64).strip()
        name = _str(package.get("name"), "package.name", limit=512).strip()
        if not severity:  # OSV allows per-package severity; records that use it have one for all packages
            severity = _severity(entry.get("severity"))
        if not ecosystem or not name or not (ranges or versions):
            continue  # a GIT-only entry (repository, no package): nothing an image can match
        ecosystems.append(ecosystem.split(":", 1)[0])
        affected.append(
            {
                "ecosystem": ecosystem,
                "name": normalize_name(ecosystem, name),
                "ranges": ranges,
                "versions": versions,
            }
        )
    aliases = [
        a for a in _ids(doc.get("aliases"), "aliases") + _ids(doc.get("upstream"), "upstream") if a != vid
    ]
    return Record(
        id=vid,
        source=_osv_source(vid, ecosystems),
        modified=parse_time(doc.get("modified"), "modified"),
        published=parse_time(doc.get("published"), "published"),
        withdrawn=parse_time(doc.get("withdrawn"), "withdrawn"),
        summary=_summary(_str(doc.get("summary"), "summary", limit=10_000), details),
        details=_details(details),
        aliases=list(dict.fromkeys(aliases)),
        related=[r for r in _ids(doc.get("related"), "related") if r != vid and r not in aliases],
        severity=severity,
        affected=affected,
    )


# ---- Node.js security WG legacy npm advisories ------------------------------------------------------------


# The Node.js security WG names its advisories NSWG-ECO-<n> (npm packages, vuln/npm/<n>.json) and
# NSWG-COR-<n> (the runtime, vuln/core/<n>.json), as its vuln/README.md asks and Trivy reports them. Databases
# filled before held them as NPM-<n> and NODE-<n>: ingesting a record removes its row under the old name.
_NSWG_LEGACY = (("NSWG-ECO-", "NPM-"), ("NSWG-COR-", "NODE-"))


def nswg_legacy_id(advisory_id: str) -> str | None:
    """``NSWG-ECO-516`` -> ``NPM-516``, ``NSWG-COR-12`` -> ``NODE-12`` (the names used before); else None."""
    for prefix, legacy in _NSWG_LEGACY:
        if advisory_id.startswith(prefix) and advisory_id[len(prefix) :].isdigit():
            return legacy + advisory_id[len(prefix) :]
    return None


def parse_npm_legacy(doc: Mapping[str, Any]) -> Record:
    """``{"id": 368, "module_name": "lodash", "vulnerable_versions": "<4.17.5", "cvss_vector": ...}``"""
    raw_id = doc.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, int | str) or not str(raw_id).isdigit():
        raise FeedError("id must be a number")
    name = _str(doc.get("module_name"), "module_name", required=True, limit=214).strip()
    vulnerable = _str(doc.get("vulnerable_versions"), "vulnerable_versions", required=True, limit=1024)
    patched = _str(doc.get("patched_versions"), "patched_versions", limit=1024)
    for expression in filter(None, (vulnerable, patched)):
        try:
            npm_range(expression)
        except ValueError as exc:
            raise FeedError(f"bad npm range {expression!r}: {exc}") from exc
    vector = _str(doc.get("cvss_vector"), "cvss_vector", limit=256).strip()
    overview = _str(doc.get("overview"), "overview", limit=1_000_000).strip()
    recommendation = _str(doc.get("recommendation"), "recommendation", limit=100_000).strip()
    details = "\n\n".join(filter(None, (overview, recommendation)))
    nrange: dict[str, Any] = {"type": "NPM_RANGE", "expression": vulnerable}
    if patched:
        nrange["patched"] = patched
    return Record(
        id=f"NSWG-ECO-{int(raw_id)}",
        source=NPM_LEGACY,
        modified=parse_time(doc.get("updated_at"), "updated_at"),
        published=parse_time(doc.get("publish_date") or doc.get("created_at"), "publish_date"),
        summary=_summary(_str(doc.get("title"), "title", limit=10_000), details),
        details=_details(details),
        aliases=[c for c in _ids(doc.get("cves"), "cves")],
        severity=[{"type": "CVSS_V3" if vector.startswith("CVSS:3") else "CVSS_V4", "vector": vector}]
        if vector.startswith("CVSS:")
        else [],
        affected=[
            {"ecosystem": "npm", "name": normalize_name("npm", name), "ranges": [nrange], "versions": []}
        ],
    )


# ---- Node.js security WG core advisories (the runtime) ---------------------------------------------------

# affectedEnvironments -> where the affected row goes: Linux images match ``Node.js``; a flaw only on
# Windows (or macOS) is kept under ``Node.js:win32`` (...), which no Linux image's runtime is looked up under.
_LINUX_ENVIRONMENTS = frozenset({"all", "linux"})


def parse_node_core(doc: Mapping[str, Any], number: str) -> Record:
    """``core/<n>.json``: ``{"cve": [...], "vulnerable": "18.x || 20.x", "patched": "^18.20.2 || ^20.12.2",
    "affectedEnvironments": ["all"], "severity": "high", ...}``, named ``NSWG-COR-<n>`` after its file.

    ``vulnerable`` names whole release lines (``18.x``) that include their patched releases, so a version is
    affected when it is in ``vulnerable`` and NOT in ``patched`` (``exclude_patched`` on the range)."""
    if isinstance(number, bool) or not str(number).isdigit():
        raise FeedError("a core advisory is named by its number (core/<n>.json)")
    vulnerable = _str(doc.get("vulnerable"), "vulnerable", required=True, limit=1024).strip()
    patched = _str(doc.get("patched"), "patched", limit=1024).strip()
    for expression in filter(None, (vulnerable, patched)):
        try:
            npm_range(expression)
        except ValueError as exc:
            raise FeedError(f"bad semver range {expression!r}: {exc}") from exc
    environments = [
        _str(e, "affectedEnvironments", limit=32).strip().lower()
        for e in _list(doc.get("affectedEnvironments"), "affectedEnvironments")
    ] or ["all"]
    ecosystems = (
        ["Node.js"]
        if _LINUX_ENVIRONMENTS & set(environments)
        else sorted({f"Node.js:{e}" for e in environments if e})
    )
    # Two records carry "cvss": "3.0/AV:N/..." (the vector without its "CVSS:" prefix); the rest only a word
    # (high, medium...), which is no score: their CVEs take NVD's (vulndb.propagate_scores).
    raw_vector = _str(doc.get("cvss"), "cvss", limit=256).strip()
    vector = f"CVSS:{raw_vector}" if re.match(r"^3\.[01]/AV:", raw_vector) else raw_vector
    overview = _str(doc.get("overview"), "overview", limit=1_000_000).strip()
    description = _str(doc.get("description"), "description", limit=10_000).strip()
    ref = _str(doc.get("ref"), "ref", limit=1024).strip()
    details = "\n\n".join(filter(None, (overview, ref and f"See {ref}")))
    nrange: dict[str, Any] = {"type": "NPM_RANGE", "expression": vulnerable, "exclude_patched": True}
    if patched:
        nrange["patched"] = patched
    return Record(
        id=f"NSWG-COR-{int(number)}",
        source=NODE_CORE,
        published=parse_time(doc.get("publish_date"), "publish_date"),
        summary=_summary(description, details),
        details=_details(details),
        aliases=[c for c in _ids(doc.get("cve"), "cve") if _CVE.match(c)],
        severity=[{"type": "CVSS_V3", "vector": vector}] if vector.startswith("CVSS:3") else [],
        affected=[{"ecosystem": e, "name": "node", "ranges": [nrange], "versions": []} for e in ecosystems],
    )


# ---- Alpine secdb -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlpineFix:
    advisory_id: str  # ALPINE-CVE-2024-1234
    aliases: tuple[str, ...]
    related: tuple[str, ...]
    ecosystem: str  # Alpine:v3.19
    package: str  # the origin (source) package
    fixed: str  # the first apk version with the fix


def _secfix_ids(entry: str) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """``"CVE-2020-11740 CVE-2020-11741 XSA-313"`` -> one (id, aliases, related) per CVE. Entries are free
    text: parenthesised notes are dropped, and one that says the package is not affected yields nothing."""
    if _CVE.match(entry):  # the common case, by far
        return [(f"ALPINE-{entry}", (entry,), ())]
    note = " ".join(re.findall(r"\(([^)]*)\)", entry)).lower()
    if "not affected" in note or "not actually applicable" in note:
        return []
    text = re.sub(r"\([^)]*\)", " ", entry).replace("CVE_", "CVE-")
    tokens = list(dict.fromkeys(t for t in re.findall(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+", text)))
    cves = [t for t in tokens if _CVE.match(t)]
    others = [t for t in tokens if t not in cves and "?" not in t]
    if not cves:
        return [(t if t.startswith("ALPINE-") else f"ALPINE-{t}", (t,), ()) for t in others[:1]]
    # Several CVEs on one line are distinct flaws fixed together: one advisory each, and the shared tracker
    # id (XSA-313) is only "related", or it would fuse them into one finding.
    shared_as = "aliases" if len(cves) == 1 else "related"
    return [
        (
            f"ALPINE-{cve}",
            (cve, *others) if shared_as == "aliases" else (cve,),
            tuple(others) if shared_as == "related" else (),
        )
        for cve in cves
    ]


def alpine_fixes(doc: Mapping[str, Any]) -> tuple[str, list[str], list[AlpineFix]]:
    """(ecosystem, packages listed, fixes) of one secdb document. A fixed version "0" means the package was
    never affected (a NAK), so it yields no fix."""
    release = _str(doc.get("distroversion"), "distroversion", required=True, limit=32).strip()
    ecosystem = f"Alpine:{release}"
    listed, fixes = [], []
    for item in _list(doc.get("packages"), "packages"):
        pkg = item.get("pkg") if isinstance(item, Mapping) else None
        if not isinstance(pkg, Mapping):
            raise FeedError("packages[].pkg must be an object")
        name = _str(pkg.get("name"), "pkg.name", required=True, limit=255).strip()
        listed.append(name)
        secfixes = pkg.get("secfixes") or {}
        if not isinstance(secfixes, Mapping):
            raise FeedError(f"{name}: secfixes must be an object")
        for version, entries in secfixes.items():
            version = _str(version, f"{name}: secfixes version", required=True, limit=128).strip()
            if version == "0":
                continue
            for entry in _list(entries, f"{name}: secfixes[{version}]"):
                for vid, aliases, related in _secfix_ids(_str(entry, "secfixes entry", limit=1024)):
                    fixes.append(AlpineFix(vid, aliases, related, ecosystem, name, version))
    return ecosystem, listed, fixes


def iter_documents(doc: Any) -> Iterator[Any]:
    """A file holds one record, or a list of them (API dumps), or an NVD API response, or the Node.js
    security WG's ``core/index.json`` (``{"1": {record}, ...}``: each record gets its key as ``id``)."""
    if isinstance(doc, list):
        yield from doc
    elif isinstance(doc, Mapping) and isinstance(doc.get("vulnerabilities"), list):
        yield from doc["vulnerabilities"]
    elif _is_core_index(doc):
        for key, record in doc.items():
            yield {**record, "id": key}
    else:
        yield doc


def _is_core_index(doc: Any) -> bool:
    return (
        isinstance(doc, Mapping)
        and bool(doc)
        and all(isinstance(k, str) and k.isdigit() for k in doc)
        and all(detect(v) == NODE_CORE for v in doc.values())
    )
