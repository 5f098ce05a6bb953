"""Plain data shared by the scanner's parts: what the indexer finds and what the matcher reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# An advisory's summary and details as stored (longer ones are clipped where a feed is read).
SUMMARY_MAX = 500
DETAILS_MAX = 8000


class Ecosystem(StrEnum):
    """OSV ecosystem names (the distro ones get the release appended: ``Debian:12``, ``Alpine:v3.19``)."""

    DEBIAN = "Debian"
    ALPINE = "Alpine"
    RPM = "RPM"  # the OSV ecosystem depends on the distro (Red Hat, Rocky Linux, AlmaLinux, ...)
    PYPI = "PyPI"
    NPM = "npm"
    GO = "Go"
    MAVEN = "Maven"
    # The Node.js runtime itself (an upstream ``node`` binary; Debian's and Alpine's ``nodejs`` packages are
    # also matched under it by their upstream version), against the Node.js security WG's core advisories.
    # Not an OSV ecosystem: OSV has none for the runtime.
    NODEJS = "Node.js"


@dataclass(frozen=True)
class OSInfo:
    """What /etc/os-release (and debian_version, alpine-release) say."""

    id: str  # debian | alpine | ubuntu | rhel | rocky | almalinux | fedora | centos | ...
    version_id: str  # 12 | 3.19.1 | 9.3
    pretty_name: str = ""
    codename: str = ""

    @property
    def alpine_edge(self) -> bool:
        """Alpine edge (the rolling branch): its images say ``VERSION_ID=3.21_alpha20240807`` (the next
        release, ``_alpha`` and the snapshot date; alpine-release says the same) and ``PRETTY_NAME="Alpine
        Linux edge"``. Release candidates (``3.21.0_rc1``) belong to their branch, not to edge."""
        version = self.version_id.lower()
        return self.id == "alpine" and (
            "_alpha" in version or version == "edge" or self.pretty_name.lower().endswith(" edge")
        )

    @property
    def osv_ecosystem(self) -> str | None:
        """``Debian:12``, ``Alpine:v3.19``, ``Alpine:edge``, ...; None when no feed we read has it."""
        if self.id == "debian" and self.version_id:
            return f"Debian:{self.version_id.split('.')[0]}"
        if self.id == "alpine" and self.alpine_edge:
            return "Alpine:edge"
        if self.id == "alpine" and self.version_id:
            major_minor = ".".join(self.version_id.split(".")[:2])
            return f"Alpine:v{major_minor}"
        return None


@dataclass(frozen=True)
class Component:
    """One installed package found in an image."""

    name: str
    version: str
    ecosystem: str  # an Ecosystem value
    purl: str
    layer_digest: str  # the layer that introduced it: the earliest from which its record lists it unbroken
    path: str  # the file it was read from, e.g. var/lib/dpkg/status or .../METADATA
    source_name: str | None = None  # Debian Source:, Alpine origin, RPM source rpm name
    source_version: str | None = None
    arch: str | None = None
    # Files the package owns (OS packages): language packages found under these are attributed to the
    # OS package and not listed again.
    owned_files: frozenset[str] = field(default_factory=frozenset, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.ecosystem, self.name, self.version)


class UnsafeInput(Exception):
    """A layer or image that cannot be indexed safely (bomb, traversal, truncation, absurd sizes)."""


@dataclass
class ImageIndex:
    """The result of indexing one image (one platform)."""

    os: OSInfo | None
    components: list[Component]
    layers: list[str]  # layer digests in order
    platform: str | None = None  # e.g. linux/amd64
    warnings: list[str] = field(default_factory=list)
