"""Match an image's components against the advisory tables.

``is_affected`` evaluates one affected-package entry with OSV's range semantics; ``match`` turns an image's
components into findings, one per vulnerability per component: records that alias one another (a DSA and
its CVE, a PYSEC and a CVE, an ALPINE-CVE and the CVE) become one finding named by the CVE.

OS packages are matched on their SOURCE package and version (Debian's ``Source:``, Alpine's origin) under the
image's release ecosystem (``Debian:12``), as the distro trackers record them; language packages under their
own ecosystem with the ecosystem's name normalisation. A ``Matcher`` can be kept for many images: it fetches
the candidate advisories of all new (ecosystem, name) pairs in one query per ecosystem and caches verdicts per
(ecosystem, name, version), which is what makes rescanning every image after a feed update cheap.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_version

from dockyard.scanning.advisory_reads import AdvisoryReads, SessionReads
from dockyard.scanning.severity import (
    Score,
    Severity,
    classify,
    label_tier,
    lender_record,
    source_label,
)
from dockyard.scanning.types import Component, Ecosystem
from dockyard.scanning.versions import Key, base_ecosystem, npm_range, parse
from dockyard.scanning.vulnfeeds import normalize_name

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["Finding", "Matcher", "Vulnerability", "is_affected", "lookup_key", "match", "runtime_key"]

OS_ECOSYSTEMS = frozenset({Ecosystem.DEBIAN, Ecosystem.ALPINE, Ecosystem.RPM, "Ubuntu"})
# Distro source packages of the Node.js runtime: matched under their distro as any package, and also against
# the Node.js core advisories by their upstream version (``runtime_key``).
NODE_SOURCE_PACKAGES = {
    Ecosystem.DEBIAN.value: frozenset({"nodejs"}),
    "Ubuntu": frozenset({"nodejs"}),
    Ecosystem.ALPINE.value: frozenset({"nodejs", "nodejs-current"}),
}
_UPSTREAM = re.compile(r"^(?:\d+:)?(\d+\.\d+\.\d+)")  # 1:18.19.0+dfsg-6~deb12u2, 20.15.1-r0 -> 18.19.0
_CVE = re.compile(r"^CVE-(\d{4})-(\d+)$")
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Vulnerability:
    """What one package version is vulnerable to, merged over every record that says so."""

    id: str  # the CVE when one is known, else the advisory's own id
    aliases: tuple[str, ...]  # every other id of the same vulnerability (advisories merged into this one)
    advisories: tuple[str, ...]  # the advisory records that matched
    fixed_version: str | None  # None: no fix released yet
    score: float | None
    vector: str | None
    cvss_version: str | None
    severity: Severity
    summary: str
    # Where the score came from (see ``severity`` for the order): its feed, NVD's Primary or Secondary metric
    # and the CVSS version (``debian v3.1``, ``nvd (primary) v3.1``, ``ghsa v3.1``), and the record whose
    # vector it is: one of ``advisories`` when it has a vector of its own, else the lender's (NVD-CVE-..., a
    # GHSA, ...).
    score_source: str | None = None
    score_record: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One vulnerability in one component (the attributes ``scanning.report`` renders).

    The component-independent part is shared by every image with the same package version, so rescanning
    thousands of images builds one small object per finding."""

    vulnerability: Vulnerability
    component: Component
    installed_version: str  # the version matched (the source version for OS packages)
    ecosystem: str  # what it was matched under: Debian:12, PyPI, ...
    package: str  # the package name matched (the source package for OS packages)

    id = property(lambda self: self.vulnerability.id)
    aliases = property(lambda self: self.vulnerability.aliases)
    advisories = property(lambda self: self.vulnerability.advisories)
    fixed_version = property(lambda self: self.vulnerability.fixed_version)
    score = property(lambda self: self.vulnerability.score)
    vector = property(lambda self: self.vulnerability.vector)
    cvss_version = property(lambda self: self.vulnerability.cvss_version)
    severity = property(lambda self: self.vulnerability.severity)
    summary = property(lambda self: self.vulnerability.summary)
    score_source = property(lambda self: self.vulnerability.score_source)
    score_record = property(lambda self: self.vulnerability.score_record)


# ---- OSV range evaluation ---------------------------------------------------------------------------

_MIN = object()  # introduced "0": before every version
# Events at the same version: an interval opens before it closes (introduced X + fixed X is empty).
_ORDER = {"introduced": 0, "fixed": 1, "last_affected": 1, "limit": 2}


@dataclass(frozen=True)
class _Range:
    kind: str  # ECOSYSTEM | SEMVER | NPM_RANGE
    events: tuple[tuple[str, Any, str], ...] = ()  # (event, key or _MIN, raw), sorted
    limits: tuple[Key, ...] = ()
    expression: str = ""
    patched: str = ""
    exclude_patched: bool = False  # Node.js core: affected = in ``expression`` and not in ``patched``


def _order_for(kind: str, ecosystem: str) -> str:
    """The ordering a range's versions use: SEMVER ranges compare as SemVer, but through the ecosystem's own
    parser where it is a SemVer dialect (Go's ``v1.2.3`` and ``go1.21.1``, npm's loose forms)."""
    if kind != "SEMVER" or base_ecosystem(ecosystem) in (Ecosystem.GO, Ecosystem.NPM):
        return ecosystem
    return "SEMVER"


def _prepare(ecosystem: str, ranges: Iterable[Mapping[str, Any]]) -> tuple[_Range, ...]:
    prepared = []
    for rng in ranges:
        kind = rng.get("type")
        if kind == "NPM_RANGE":
            prepared.append(
                _Range(
                    kind,
                    expression=rng.get("expression", ""),
                    patched=rng.get("patched", ""),
                    exclude_patched=bool(rng.get("exclude_patched")),
                )
            )
            continue
        if kind not in ("ECOSYSTEM", "SEMVER"):
            continue  # GIT: commit ranges say nothing about a packaged version
        order = _order_for(kind, ecosystem)
        events, limits = [], []
        for event in rng.get("events", ()):
            for name, raw in event.items():
                if name == "limit":
                    if raw != "*":
                        limits.append(parse(order, raw))
                elif name in _ORDER:
                    events.append(
                        (name, _MIN if name == "introduced" and raw == "0" else parse(order, raw), raw)
                    )
        prepared.append(_Range(kind, tuple(_sort_events(events)), tuple(limits)))
    return tuple(prepared)


def _sort_events(events: list[tuple[str, Any, str]]) -> list[tuple[str, Any, str]]:
    head = [e for e in events if e[1] is _MIN]
    rest = sorted((e for e in events if e[1] is not _MIN), key=_EventKey)
    return head + rest


class _EventKey:
    """Sort key for events: by version, then opening before closing at the same version."""

    __slots__ = ("event",)

    def __init__(self, event: tuple[str, Any, str]) -> None:
        self.event = event

    def __lt__(self, other: _EventKey) -> bool:
        a, b = self.event, other.event
        if a[1] == b[1]:
            return _ORDER[a[0]] < _ORDER[b[0]]
        return bool(a[1] < b[1])


def _in_range(rng: _Range, ecosystem: str, version: str) -> tuple[bool, str | None]:
    if rng.kind == "NPM_RANGE":
        try:
            if not npm_range(rng.expression).contains(version):
                return False, None
            if rng.exclude_patched and rng.patched and npm_range(rng.patched).contains(version):
                return False, None
            return True, (npm_range(rng.patched).lowest_above(version) if rng.patched else None)
        except ValueError:
            return False, None
    v = parse(_order_for(rng.kind, ecosystem), version)
    if rng.limits and not any(v < limit for limit in rng.limits):
        return False, None
    affected = False
    for name, key, _raw in rng.events:
        if name == "introduced":
            if key is _MIN or v >= key:
                affected = True
        elif name == "fixed":
            if v >= key:
                affected = False
        elif name == "last_affected" and v > key:
            affected = False
    if not affected:
        return False, None
    for name, key, raw in rng.events:  # the interval's end: the first fix (or last affected) above us
        if name == "fixed" and key > v:
            return True, raw
        if name == "last_affected" and key >= v:
            return True, None
    return True, None


def _same_version(ecosystem: str, version: str) -> str:
    base = base_ecosystem(ecosystem)
    if base == Ecosystem.PYPI:
        try:
            return canonicalize_version(version)
        except Exception:
            return version
    if base in (Ecosystem.GO, Ecosystem.NPM, Ecosystem.NODEJS):
        return version.removeprefix("v")
    return version


def _evaluate(
    ecosystem: str, version: str, ranges: Sequence[_Range], versions: frozenset[str]
) -> tuple[bool, str | None]:
    hit, fixes, unfixed = False, [], False
    for rng in ranges:
        affected, fix = _in_range(rng, ecosystem, version)
        if affected:
            hit = True
            if fix is None:
                unfixed = True
            else:
                fixes.append(fix)
    if not hit and versions and _same_version(ecosystem, version) in versions:
        return True, None
    if not hit:
        return False, None
    if unfixed or not fixes:
        return True, None
    # Affected through several ranges: only a version past every one of their fixes is safe.
    return True, max(fixes, key=lambda f: parse(ecosystem, f))


def is_affected(ecosystem: str, version: str, affected_package: Any) -> tuple[bool, str | None]:
    """Whether ``version`` is affected by one affected-package entry (an ``AffectedPackage`` or a mapping with
    ``ranges`` and ``versions``), and the version that fixes it (None when no fix is known)."""
    if isinstance(affected_package, Mapping):
        ranges, versions = affected_package.get("ranges") or [], affected_package.get("versions") or []
    else:
        ranges, versions = affected_package.ranges or [], affected_package.versions or []
    prepared = _prepare(ecosystem, ranges)
    return _evaluate(ecosystem, version, prepared, frozenset(_same_version(ecosystem, v) for v in versions))


# ---- matching components ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    advisory_id: str
    ranges: tuple[_Range, ...]
    versions: frozenset[str]


@dataclass(frozen=True)
class _Info:
    id: str
    aliases: tuple[str, ...]
    related: tuple[str, ...]
    summary: str
    score: Score | None
    lender: str | None  # Advisory.score_from: None when the score is the record's own
    record: str | None = None  # the record whose vector the score is (itself, or the lender's)
    label: str | None = None  # severity.source_label: feed, NVD metric kind and CVSS version


def lookup_key(component: Component, os_ecosystem: str | None) -> tuple[str, str, str] | None:
    """(ecosystem, name, version) a component is matched under, or None when it cannot be matched."""
    return _lookup(component, os_ecosystem, base_ecosystem(os_ecosystem) if os_ecosystem else None)


def _lookup(
    component: Component, os_ecosystem: str | None, os_base: str | None
) -> tuple[str, str, str] | None:
    eco = component.ecosystem
    if eco not in OS_ECOSYSTEMS:
        return eco, normalize_name(eco, component.name), component.version
    if os_ecosystem is None or (eco != os_base and eco != Ecosystem.RPM):
        return None  # an OS package without a known release (or of another distro): no feed to match
    return (
        os_ecosystem,
        component.source_name or component.name,
        component.source_version or component.version,
    )


def runtime_key(ecosystem: str, name: str, version: str) -> tuple[str, str, str] | None:
    """For a distro's Node.js package (``Debian:12``/``nodejs``/``18.19.0+dfsg-6~deb12u2``), the key of the
    runtime its upstream version is (``Node.js``/``node``/``18.19.0``); None for any other package."""
    if name not in NODE_SOURCE_PACKAGES.get(base_ecosystem(ecosystem), ()):
        return None
    m = _UPSTREAM.match(version)
    return (Ecosystem.NODEJS.value, "node", m.group(1)) if m else None


def match(session: Session, components: Iterable[Component], os_ecosystem: str | None) -> list[Finding]:
    """Findings for one image's components (``os_ecosystem`` from ``OSInfo.osv_ecosystem``)."""
    return Matcher(session).match(components, os_ecosystem)


class Matcher:
    """Matches images against the advisory tables, caching across images (keep one per feed version)."""

    def __init__(self, session: Session | None = None, *, reads: AdvisoryReads | None = None) -> None:
        """Reading through ``session`` or, without one, through ``reads`` (see advisory_reads)."""
        if reads is None:
            assert session is not None, "a session or reads"
            reads = SessionReads(session)
        self.reads = reads
        self._candidates: dict[tuple[str, str], list[_Candidate]] = {}
        self._infos: dict[str, _Info] = {}
        self._verdicts: dict[tuple[str, str, str], tuple[Vulnerability, ...]] = {}

    def warm_up(self) -> None:
        """Compile the matcher's statements (and configure the ORM's mappers) now, with a name no package
        has: ``dockyard scan`` does it while worker processes read the layers, not after them."""
        self.reads.affected("", [""])
        self.reads.advisories([""])

    def match(self, components: Iterable[Component], os_ecosystem: str | None) -> list[Finding]:
        """Findings for one image's components, in component order."""
        os_base = base_ecosystem(os_ecosystem) if os_ecosystem else None
        keyed = [(c, k) for c in components if (k := _lookup(c, os_ecosystem, os_base)) is not None]
        runtimes = {r[:2] for _, k in keyed if (r := runtime_key(*k)) is not None}
        self._load({(eco, name) for _, (eco, name, _v) in keyed} | runtimes)
        findings: list[Finding] = []
        for component, key in keyed:
            vulnerabilities = self._verdict(key)
            if vulnerabilities:
                eco, name, version = key
                findings.extend(Finding(v, component, version, eco, name) for v in vulnerabilities)
        return findings

    # -- loading ----------------------------------------------------------------------------------------

    def _load(self, keys: set[tuple[str, str]]) -> None:
        missing = sorted(k for k in keys if k not in self._candidates)
        if not missing:
            return
        by_ecosystem: dict[str, list[str]] = defaultdict(list)
        for eco, name in missing:
            by_ecosystem[eco].append(name)
            self._candidates[(eco, name)] = []
        ids: set[str] = set()
        for eco, names in by_ecosystem.items():
            for i in range(0, len(names), _CHUNK):
                rows = self.reads.affected(eco, names[i : i + _CHUNK])
                for advisory_id, name, ranges, versions in rows:
                    self._candidates[(eco, name)].append(
                        _Candidate(
                            advisory_id,
                            _prepare(eco, ranges or ()),
                            frozenset(_same_version(eco, v) for v in versions or ()),
                        )
                    )
                    ids.add(advisory_id)
        new = sorted(ids - self._infos.keys())
        for i in range(0, len(new), _CHUNK):
            rows = self.reads.advisories(new[i : i + _CHUNK])
            for row in rows:
                score = Score(row.score, row.cvss_vector, row.cvss_version) if row.score is not None else None
                record = (
                    None if score is None else lender_record(row.score_from) if row.score_from else row.id
                )
                self._infos[row.id] = _Info(
                    row.id,
                    tuple(row.aliases or ()),
                    tuple(row.related or ()),
                    row.summary or "",
                    score,
                    row.score_from,
                    record,
                    source_label(row.source, row.cvss_vector) if score and not row.score_from else None,
                )
        self._label_borrowed(new)

    def _label_borrowed(self, ids: list[str]) -> None:
        """Name the feed of each lender (one query for the records that lent the new advisories a score)."""
        borrowed = [self._infos[i] for i in ids if i in self._infos and self._infos[i].lender]
        lenders = sorted({info.record for info in borrowed if info.record})
        feeds: dict[str, str] = {}
        for i in range(0, len(lenders), _CHUNK):
            feeds.update(self.reads.sources(lenders[i : i + _CHUNK]))
        for info in borrowed:
            assert info.score is not None and info.record is not None
            label = source_label(feeds.get(info.record), info.score.vector, info.lender)
            self._infos[info.id] = dataclasses.replace(info, label=label)

    # -- verdicts -----------------------------------------------------------------------------------------

    def _verdict(self, key: tuple[str, str, str]) -> tuple[Vulnerability, ...]:
        cached = self._verdicts.get(key)
        if cached is None:
            eco, name, version = key
            hits = []
            for cand in self._candidates.get((eco, name), ()):
                info = self._infos.get(cand.advisory_id)
                if info is None:
                    continue  # withdrawn between the two queries
                affected, fixed = _evaluate(eco, version, cand.ranges, cand.versions)
                if affected:
                    hits.append((info, fixed))
            runtime = runtime_key(eco, name, version)
            if runtime is not None:
                hits += self._runtime_hits(eco, name, runtime)
            cached = self._verdicts[key] = _group(eco, hits)
        return cached

    def _runtime_hits(
        self, eco: str, name: str, runtime: tuple[str, str, str]
    ) -> list[tuple[_Info, str | None]]:
        """The Node.js core advisories a distro's nodejs package is affected by through its upstream version,
        leaving out every CVE the distro's own feed has a record of for this package, affected or not: the
        distro backports fixes without changing the upstream version, so its verdict on a CVE it tracks
        (fixed in this revision, or still open) beats the upstream one; only CVEs it has no record of are
        judged by the upstream version. Their fixed version is the upstream release that fixes them."""
        covered: set[str] = set()
        for cand in self._candidates.get((eco, name), ()):
            info = self._infos.get(cand.advisory_id)
            if info is not None:
                covered.update((info.id, *info.aliases, *info.related))
        hits = []
        r_eco, r_name, r_version = runtime
        for cand in self._candidates.get((r_eco, r_name), ()):
            info = self._infos.get(cand.advisory_id)
            if info is None or covered.intersection((info.id, *info.aliases)):
                continue
            affected, fixed = _evaluate(r_eco, r_version, cand.ranges, cand.versions)
            if affected:
                hits.append((info, fixed))
        return hits


def _cve_order(vid: str) -> tuple[int, int, str]:
    m = _CVE.match(vid)
    return (int(m.group(1)), int(m.group(2)), vid) if m else (9999, 0, vid)


def _group(ecosystem: str, hits: list[tuple[_Info, str | None]]) -> tuple[Vulnerability, ...]:
    """Merge the records one package version matched into one verdict per vulnerability.

    Records are the same vulnerability when they share an id (their own or an alias). An umbrella advisory
    (a DSA: no CVE of its own, only ``related`` CVEs) joins the findings of the CVEs it fixes; if none of them
    matched it stands alone."""
    if not hits:
        return ()
    umbrellas = [h for h in hits if h[0].related and not any(_CVE.match(i) for i in (h[0].id, *h[0].aliases))]
    plain = [h for h in hits if h not in umbrellas]
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for info, _ in plain:
        for other in info.aliases:
            parent[find(other)] = find(info.id)
    groups: dict[str, list[tuple[_Info, str | None]]] = defaultdict(list)
    for hit in plain:
        groups[find(hit[0].id)].append(hit)
    extra: dict[str, list[_Info]] = defaultdict(list)
    for hit in umbrellas:
        targets = {find(r) for r in hit[0].related if r in parent} & groups.keys()
        for root in targets:
            extra[root].append(hit[0])
        if not targets:
            groups[hit[0].id].append(hit)
    verdicts = [_verdict_of(ecosystem, members, extra.get(root, [])) for root, members in groups.items()]
    return tuple(sorted(verdicts, key=lambda v: _cve_order(v.id)))


def _verdict_of(
    ecosystem: str, members: list[tuple[_Info, str | None]], umbrellas: list[_Info]
) -> Vulnerability:
    ids = {i for info, _ in members for i in (info.id, *info.aliases)} | {u.id for u in umbrellas}
    cves = sorted((i for i in ids if _CVE.match(i)), key=_cve_order)
    name = cves[0] if cves else min(info.id for info, _ in members)
    fixes = [f for _, f in members if f is not None]
    # A feed that knows a fix beats one that does not yet; several fixes: the highest is the safe one.
    fixed = max(fixes, key=lambda f: parse(ecosystem, f)) if fixes else None
    # Own vectors first, then NVD's Primary score, then a secondary lender's (see ``severity``).
    scored = [
        (label_tier(info.lender), *info.score.rank(), info.lender or info.id, info)
        for info, _ in members
        if info.score
    ]
    top = min(scored, key=lambda t: t[:4])[4] if scored else None
    best = top.score if top else None
    titled = next((info for info, _ in members if info.id == name and info.summary), None)
    summary = (titled or next((i for i, _ in members if i.summary), members[0][0])).summary
    return Vulnerability(
        id=name,
        aliases=tuple(sorted(ids - {name})),
        advisories=tuple(sorted({info.id for info, _ in members} | {u.id for u in umbrellas})),
        fixed_version=fixed,
        score=best.score if best else None,
        vector=best.vector if best else None,
        cvss_version=best.version if best else None,
        severity=classify(best.score if best else None),
        summary=summary,
        score_source=top.label if top else None,
        score_record=top.record if top else None,
    )
