"""Version ordering per ecosystem, the way each package manager orders its own versions.

``parse(ecosystem, version)`` returns a key that compares (``<``, ``==``) with other keys of the same
ecosystem; ``compare(ecosystem, a, b)`` returns -1, 0 or 1. Ecosystems with a release suffix (``Debian:12``,
``Alpine:v3.19``) use the base ecosystem's ordering.

Libraries do the work where a maintained one exists: python-debian (dpkg), packaging (PEP 440) and univers
(RPM's rpmvercmp, Maven's ComparableVersion). apk-tools' algorithm and SemVer 2.0 (npm, Go, OSV ``SEMVER``
ranges) are small enough to implement here. A version a library rejects falls back to ``lenient`` ordering so
one odd version string never stops a scan.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from debian.debian_support import Version as DebianVersion
from packaging.version import InvalidVersion
from packaging.version import Version as PypiVersion

__all__ = [
    "NpmRange",
    "apk_compare",
    "base_ecosystem",
    "compare",
    "lenient_key",
    "npm_range",
    "parse",
    "semver_key",
]

RPM_ECOSYSTEMS = frozenset(
    {"RPM", "Red Hat", "Rocky Linux", "AlmaLinux", "openSUSE", "SUSE", "Mageia", "Fedora", "openEuler"}
)


def base_ecosystem(ecosystem: str) -> str:
    """``Debian:12`` -> ``Debian``; ``Alpine:v3.19`` -> ``Alpine``; ``PyPI`` -> ``PyPI``."""
    return ecosystem.split(":", 1)[0]


@functools.total_ordering
class Key:
    """A parsed version: compares with ``cmp`` when both sides parsed the same way, else leniently."""

    __slots__ = ("cmp", "kind", "raw", "value")

    def __init__(self, raw: str, kind: str, value: Any, cmp: Callable[[Any, Any], int] | None = None) -> None:
        self.raw, self.kind, self.value, self.cmp = raw, kind, value, cmp

    def _order(self, other: Key) -> int:
        if self.kind == other.kind:
            if self.cmp is not None:
                return self.cmp(self.value, other.value)
            return (self.value > other.value) - (self.value < other.value)
        a, b = lenient_key(self.raw), lenient_key(other.raw)
        return (a > b) - (a < b)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and self._order(other) == 0

    def __lt__(self, other: Key) -> bool:
        return self._order(other) < 0

    __hash__ = None  # type: ignore[assignment]  # equal keys may have different strings ("1.0" == "1.0.0")

    def __repr__(self) -> str:
        return f"Key({self.kind}:{self.raw!r})"


# ---- lenient: the fallback for anything a library rejects ------------------------------------------------


def lenient_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Numbers compare as numbers, words as words; a trailing word is a pre-release (1.0rc1 < 1.0)."""
    parts: list[tuple[int, int, str]] = []
    for number, word in re.findall(r"(\d+)|([A-Za-z]+)", version.lstrip("vV")):
        parts.append((1, int(number), "") if number else (0, 0, word.lower()))
    return (*parts, (0, 0, "~"))  # '~' sorts after every word, so "1.0" > "1.0rc1" but "1.0.1" > "1.0"


def _lenient(version: str) -> Key:
    return Key(version, "lenient", lenient_key(version))


# ---- dpkg (python-debian parses; the comparison is a precomputed tuple) ----------------------------------

_DPKG_PART = re.compile(r"([^0-9]*)([0-9]*)")
_DPKG_END = ((0,),)  # sorts after a part that starts with "~" and before any other part


def _dpkg_part(text: str) -> tuple[Any, ...]:
    """dpkg's verrevcmp as a tuple: alternating non-digit runs (as per-character weights, "~" lowest, then
    the end of the run, letters, everything else) and digit runs (as numbers)."""
    pairs: list[tuple[Any, ...]] = []
    for m in _DPKG_PART.finditer(text):
        letters, digits = m.groups()
        if not letters and not digits:
            continue
        weights = tuple(-1 if c == "~" else ord(c) if c.isalpha() else ord(c) + 256 for c in letters)
        pairs.append(((*weights, 0), int(digits or 0)))
    if not pairs:
        pairs.append(((0,), 0))
    return (*pairs, _DPKG_END)


def _dpkg(version: str) -> Key:
    try:
        parsed = DebianVersion(version)  # python-debian validates and splits epoch:upstream-revision
    except ValueError:
        return _lenient(version)
    key = (
        int(parsed.epoch or 0),
        _dpkg_part(parsed.upstream_version or "0"),
        _dpkg_part(parsed.debian_revision or "0"),
    )
    return Key(version, "dpkg", key)


# ---- apk (apk-tools 2.x version.c) ----------------------------------------------------------------------

# Token types, in apk-tools' order: a version may only move forward through them (digits, a letter,
# suffixes, the -rN revision); the numeric order also decides who wins when one version stops early.
_DIGIT_OR_ZERO, _DIGIT, _LETTER, _SUFFIX, _SUFFIX_NO, _REVISION_NO, _END = range(7)
_INVALID = -1
_PRE_SUFFIXES = ("alpha", "beta", "pre", "rc")  # sort before the bare version
_POST_SUFFIXES = ("cvs", "svn", "git", "hg", "p")  # sort after it


class _ApkTokens:
    """Walks one apk version string, yielding (token type, value) the way apk-tools' get_token does."""

    def __init__(self, text: str) -> None:
        self.s, self.i, self.type = text, 0, _DIGIT

    def _next_type(self) -> None:
        s, i, cur = self.s, self.i, self.type
        if i >= len(s):
            new = _END
        elif cur in (_DIGIT, _DIGIT_OR_ZERO) and s[i].islower():
            new = _LETTER
        elif cur == _LETTER and s[i].isdigit():
            new = _DIGIT
        elif cur == _SUFFIX and s[i].isdigit():
            new = _SUFFIX_NO
        else:
            new = {".": _DIGIT_OR_ZERO, "_": _SUFFIX}.get(s[i], _INVALID)
            if s[i] == "-" and i + 1 < len(s) and s[i + 1] == "r":
                new, i = _REVISION_NO, i + 1
            i += 1
        allowed_back = {(_DIGIT_OR_ZERO, _DIGIT), (_SUFFIX, _SUFFIX_NO), (_DIGIT, _LETTER)}
        if new < cur and (new, cur) not in allowed_back:
            new = _INVALID
        self.i, self.type = i, new

    def token(self) -> int:
        s, i = self.s, self.i
        if i >= len(s):
            self.type = _END
            return 0
        kind, value, forced = self.type, 0, None
        if kind == _DIGIT_OR_ZERO and s[i] == "0":
            # Leading zeros after a dot: "1.01" < "1.1" (the more zeros, the smaller).
            start = i
            while i < len(s) and s[i] == "0":
                i += 1
            value, forced = -(i - start), _DIGIT
        elif kind in (_DIGIT_OR_ZERO, _DIGIT, _SUFFIX_NO, _REVISION_NO):
            start = i
            while i < len(s) and s[i].isdigit():
                i += 1
            value = int(s[start:i] or 0)
        elif kind == _LETTER:
            value, i = ord(s[i]), i + 1
        elif kind == _SUFFIX:
            pre = next((n for n, w in enumerate(_PRE_SUFFIXES) if s.startswith(w, i)), None)
            post = next((n for n, w in enumerate(_POST_SUFFIXES) if s.startswith(w, i)), None)
            if pre is not None:
                value, i = pre - len(_PRE_SUFFIXES), i + len(_PRE_SUFFIXES[pre])
            elif post is not None:
                value, i = post, i + len(_POST_SUFFIXES[post])
            else:
                self.type = _INVALID
                return -1
        else:
            self.type = _INVALID
            return -1
        self.i = i
        if i >= len(s):
            self.type = _END
        elif forced is not None:
            self.type = forced
        else:
            self._next_type()
        return value

    def peek(self) -> int:
        """The next token's value without consuming it."""
        saved = (self.i, self.type)
        value = self.token()
        self.i, self.type = saved
        return value


def apk_compare(a: str, b: str) -> int:
    """apk-tools' ``apk_version_compare``: -1, 0 or 1."""
    ta, tb = _ApkTokens(a), _ApkTokens(b)
    av = bv = 0
    while ta.type == tb.type and ta.type not in (_END, _INVALID) and av == bv:
        av, bv = ta.token(), tb.token()
    if av != bv:
        return -1 if av < bv else 1
    if ta.type == tb.type:
        return 0
    # Equal so far: the longer version is newer, unless what follows is a pre-release suffix.
    if ta.type == _SUFFIX and ta.peek() < 0:
        return -1
    if tb.type == _SUFFIX and tb.peek() < 0:
        return 1
    if ta.type > tb.type:
        return -1
    if tb.type > ta.type:
        return 1
    return 0


def _apk_valid(version: str) -> bool:
    tokens = _ApkTokens(version)
    while tokens.type not in (_END, _INVALID):
        tokens.token()
    return tokens.type == _END and bool(version)


def _apk(version: str) -> Key:
    if _apk_valid(version):
        return Key(version, "apk", version, apk_compare)
    return _lenient(version)


# ---- RPM (univers' rpmvercmp with epoch:version-release, ~ and ^) ---------------------------------------


def _rpm(version: str) -> Key:
    from univers.versions import RpmVersion  # univers (about 50 ms to import) only for RPM and Maven

    try:
        return Key(version, "rpm", RpmVersion(version))
    except Exception:  # univers raises assorted errors on odd strings
        return _lenient(version)


# ---- PyPI (PEP 440) ----------------------------------------------------------------------------------


def _pypi(version: str) -> Key:
    try:
        return Key(version, "pep440", PypiVersion(version))
    except InvalidVersion:
        return _lenient(version)


# ---- SemVer 2.0 (npm, OSV SEMVER ranges) and Go ---------------------------------------------------------

_SEMVER = re.compile(
    r"^\s*[vV=]?\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?"  # 1, 1.2 and 1.2.3 (npm tolerates the short forms)
    r"(?:-?((?:[0-9A-Za-z-]+)(?:\.[0-9A-Za-z-]+)*))?"  # pre-release; "1.2.3rc1" is read as 1.2.3-rc1
    r"(?:\+[0-9A-Za-z.-]*)?\s*$"  # build metadata never affects ordering
)


def semver_key(version: str) -> tuple[Any, ...] | None:
    """A tuple ordering as SemVer 2.0 (pre-releases before the release, numeric identifiers before words)."""
    m = _SEMVER.match(version)
    if not m:
        return None
    major, minor, patch, pre = m.groups()
    if pre is None:
        pre_key: tuple[Any, ...] = (1,)
    else:
        ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
        pre_key = (0, ids)
    return (int(major), int(minor or 0), int(patch or 0), pre_key)


def _semver(version: str) -> Key:
    key = semver_key(version)
    return Key(version, "semver", key) if key is not None else _lenient(version)


_GO_TOOLCHAIN = re.compile(r"^go(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:(alpha|beta|rc)(\d+))?$")


def _go(version: str) -> Key:
    """Go modules are SemVer with a ``v`` (pseudo-versions are pre-releases); ``go1.21rc2`` is a toolchain."""
    m = _GO_TOOLCHAIN.match(version)
    if m:
        major, minor, patch, pre, pre_no = m.groups()
        version = f"{major}.{minor or 0}.{patch or 0}" + (f"-{pre}.{pre_no}" if pre else "")
    return _semver(version.removesuffix("+incompatible"))


# ---- Maven (univers' ComparableVersion port) ------------------------------------------------------------


def _maven(version: str) -> Key:
    from univers.versions import MavenVersion

    try:
        return Key(version, "maven", MavenVersion(version))
    except Exception:
        return _lenient(version)


_PARSERS: dict[str, Callable[[str], Key]] = {
    "Debian": _dpkg,
    "Ubuntu": _dpkg,
    "Alpine": _apk,
    "PyPI": _pypi,
    "npm": _semver,
    "Node.js": _semver,
    "SEMVER": _semver,
    "Go": _go,
    "Maven": _maven,
    **{name: _rpm for name in RPM_ECOSYSTEMS},
}


@functools.lru_cache(maxsize=200_000)
def parse(ecosystem: str, version: str) -> Key:
    """The comparable key of ``version`` under ``ecosystem``'s ordering (cached: feeds repeat versions)."""
    parser = _PARSERS.get(base_ecosystem(ecosystem), _lenient)
    return parser(version.strip())


def compare(ecosystem: str, a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` sorts before, equal to or after ``b`` in ``ecosystem``."""
    ka, kb = parse(ecosystem, a), parse(ecosystem, b)
    return ka._order(kb)


# ---- npm range expressions (node-semver's grammar) -------------------------------------------------------

_NPM_PARTIAL = re.compile(
    r"^[vV=]?(?P<major>\d+|[xX*])(?:\.(?P<minor>\d+|[xX*]))?(?:\.(?P<patch>\d+|[xX*]))?"
    r"(?:-?(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]*)?$"
)
_NPM_COMPARATOR = re.compile(r"^(?P<op><=|>=|<|>|=|~>|~|\^)?(?P<ver>.*)$")
SemverKey = tuple[Any, ...]
_MIN_PRE: tuple[Any, ...] = (
    0,
    ((0, 0, ""),),
)  # the "-0" pre-release: below every other version of that triple


def _npm_partial(text: str) -> tuple[list[int | None], str | None]:
    m = _NPM_PARTIAL.match(text)
    if not m:
        raise ValueError(f"not an npm version: {text!r}")
    parts: list[int | None] = []
    for name in ("major", "minor", "patch"):
        value = m.group(name)
        parts.append(None if value is None or value in "xX*" else int(value))
    for i in range(1, 3):  # "1.x.3" means "1.x"
        if parts[i - 1] is None:
            parts[i] = None
    return parts, (m.group("pre") if parts[2] is not None else None)


def _key(major: int, minor: int, patch: int, pre: str | None = None, floor: bool = False) -> SemverKey:
    if floor:
        return (major, minor, patch, _MIN_PRE)
    key = semver_key(f"{major}.{minor}.{patch}" + (f"-{pre}" if pre else ""))
    assert key is not None
    return key


def _desugar(op: str, text: str) -> list[tuple[str, SemverKey]]:
    """One npm comparator (x-ranges, ~, ^ included) as plain comparators on SemVer keys."""
    (major, minor, patch), pre = _npm_partial(text)
    if major is None:
        return [] if op in ("", "=", ">=", "<=", "~", "^") else [("<", (0, 0, 0, _MIN_PRE))]
    lo_minor, lo_patch = minor or 0, patch or 0
    low = _key(major, lo_minor, lo_patch, pre)
    if minor is None:
        next_up = _key(major + 1, 0, 0, floor=True)
    elif patch is None:
        next_up = _key(major, minor + 1, 0, floor=True)
    else:
        next_up = None
    if op in ("", "="):
        return [("=", low)] if next_up is None else [(">=", low), ("<", next_up)]
    if op in ("~", "~>"):
        upper = _key(major + 1, 0, 0, floor=True) if minor is None else _key(major, minor + 1, 0, floor=True)
        return [(">=", low), ("<", upper)]
    if op == "^":
        if major > 0 or minor is None:
            upper = _key(major + 1, 0, 0, floor=True)
        elif minor > 0 or patch is None:
            upper = _key(0, minor + 1, 0, floor=True)
        else:
            upper = _key(0, 0, lo_patch + 1, floor=True)
        return [(">=", low), ("<", upper)]
    if next_up is None:
        return [(op, low)]
    # A partial version on a primitive: ">1.2" means ">=1.3.0", "<=1.2" means "<1.3.0-0".
    return {">": [(">=", next_up)], ">=": [(">=", low)], "<": [("<", low)], "<=": [("<", next_up)]}[op]


class NpmRange:
    """A parsed npm range: OR of AND-ed comparator sets. Pre-releases are included (a scanner must not miss
    ``5.0.0-beta.3`` under ``<5.0.0``), unlike npm's install-time default."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.sets: list[list[tuple[str, SemverKey]]] = []
        for alternative in expression.split("||"):
            alt = re.sub(r"(<=|>=|<|>|=|~>|~|\^)\s+", r"\1", alternative.strip())  # "< 2.1.7" -> "<2.1.7"
            hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", alt)
            if hyphen:
                low, high = hyphen.groups()
                comparators = _desugar(">=", low) + _desugar("<=", high)
            else:
                comparators = []
                for token in alt.split():
                    m = _NPM_COMPARATOR.match(token)
                    assert m is not None  # the pattern matches any string
                    comparators += _desugar(m.group("op") or "", m.group("ver"))
            self.sets.append(comparators)

    def contains(self, version: str) -> bool:
        """Whether ``version`` (SemVer, a leading ``v`` tolerated) is inside the range."""
        key = semver_key(version)
        if key is None:
            raise ValueError(f"not a SemVer version: {version!r}")
        return any(all(_satisfies(key, op, bound) for op, bound in cs) for cs in self.sets)

    def lowest_above(self, version: str) -> str | None:
        """The lowest version this range names as a lower bound above ``version`` (the fix, for a patched
        range), or None."""
        key = semver_key(version)
        if key is None:
            return None
        bounds = [
            bound
            for comparators in self.sets
            for op, bound in comparators
            if op in (">=", "=")
            and bound > key
            and bound[3] != _MIN_PRE
            and all(_satisfies(bound, o, b) for o, b in comparators)
        ]
        return _format(min(bounds)) if bounds else None


def _satisfies(key: SemverKey, op: str, bound: SemverKey) -> bool:
    if op == "=":
        return key == bound
    if op == "<":
        return key < bound
    if op == "<=":
        return key <= bound
    if op == ">":
        return key > bound
    return key >= bound


def _format(key: SemverKey) -> str:
    text = f"{key[0]}.{key[1]}.{key[2]}"
    if key[3][0] == 0:
        text += "-" + ".".join(str(n) if kind == 0 else word for kind, n, word in key[3][1])
    return text


@functools.lru_cache(maxsize=20_000)
def npm_range(expression: str) -> NpmRange:
    """Parse (and cache) an npm range expression; ValueError when it is not one."""
    return NpmRange(expression)
