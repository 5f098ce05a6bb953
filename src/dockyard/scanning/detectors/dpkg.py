"""Debian packages: ``var/lib/dpkg/status``, distroless ``var/lib/dpkg/status.d/*``, and which files each
package owns (``var/lib/dpkg/info/*.list``, distroless ``status.d/*.md5sums``)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import BinaryIO

from packageurl import PackageURL

from dockyard.scanning.detectors.base import DetectorResult
from dockyard.scanning.types import Component, Ecosystem, UnsafeInput

STATUS = "var/lib/dpkg/status"
STATUS_D = "var/lib/dpkg/status.d/"
INFO = "var/lib/dpkg/info/"
_FIELDS = ["Package", "Version", "Architecture", "Source", "Status"]


def deb_purl(name: str, version: str, arch: str | None, namespace: str = "debian", distro: str = "") -> str:
    qualifiers = {k: v for k, v in (("arch", arch), ("distro", distro)) if v}
    return PackageURL("deb", namespace, name, version, qualifiers).to_string()


def _in_dir(path: str, prefix: str) -> bool:
    return path.startswith(prefix) and "/" not in path[len(prefix) :] and len(path) > len(prefix)


def _package_of(filename: str, suffix: str) -> str:
    """``libc6:amd64.list`` -> ``libc6`` (Multi-Arch: same packages carry their architecture)."""
    return filename[: -len(suffix)].partition(":")[0]


def _source(value: str, name: str, version: str) -> tuple[str, str]:
    """``Source: openssl (3.0.15-1~deb12u1)`` names a source version only when it differs (binNMUs)."""
    value = value.strip()
    if not value:
        return name, version
    src, _, rest = value.partition(" ")
    rest = rest.strip()
    if rest.startswith("(") and rest.endswith(")"):
        return src, rest[1:-1].strip()
    return src, version


def _lines(data: BinaryIO) -> Iterator[str]:
    for raw in data:
        line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
        if line:
            yield line


class DpkgDetector:
    """Installed Debian/Ubuntu packages and the files they own."""

    name = "dpkg"
    max_size = 64 << 20  # a full desktop's status is ~10 MiB

    def __init__(
        self, max_packages: int = 50_000, max_size: int | None = None, max_owned: int = 500_000
    ) -> None:
        # deb822 parses ~20k stanzas a second: the count bounds the time a hostile status can take, and
        # max_owned the memory a hostile .list can take (the biggest real ones list ~100k files).
        self.max_packages = max_packages
        self.max_owned = max_owned
        if max_size is not None:
            self.max_size = max_size

    def wants(self, path: str, mode: int, size: int) -> bool:
        if not path.startswith("var/lib/dpkg/"):
            return False
        if path == STATUS or _in_dir(path, STATUS_D):
            return True
        return _in_dir(path, INFO) and path.endswith(".list")

    def parse(self, path: str, data: BinaryIO, size: int, layer_digest: str) -> DetectorResult:
        if path.startswith(INFO):
            return DetectorResult(owned=self._owned(path, data, _package_of(path[len(INFO) :], ".list")))
        if path.endswith(".md5sums"):  # distroless: "<md5>  <path>" for each file of the package
            owner = _package_of(path[len(STATUS_D) :], ".md5sums")
            return DetectorResult(owned=self._owned(path, data, owner, md5sums=True))
        return DetectorResult(components=self._packages(path, data, layer_digest))

    def _owned(self, path: str, data: BinaryIO, owner: str, md5sums: bool = False) -> dict[str, str]:
        owned: dict[str, str] = {}
        for line in _lines(data):
            file = line.partition("  ")[2] if md5sums else line
            file = file.strip().strip("/")
            if file and file != ".":
                owned[file] = owner
                if len(owned) > self.max_owned:
                    raise UnsafeInput(f"{path}: more than {self.max_owned} files")
        return owned

    def _packages(self, path: str, data: BinaryIO, layer_digest: str) -> list[Component]:
        needs_status = path == STATUS  # status.d stanzas (distroless) have no Status field
        from debian.deb822 import Deb822  # a scan whose layers are all cached reads no dpkg database

        found: list[Component] = []
        count = 0
        with warnings.catch_warnings():  # python-debian warns about odd encodings; that is not our error
            warnings.simplefilter("ignore")
            for para in Deb822.iter_paragraphs(data, fields=_FIELDS, use_apt_pkg=False):
                count += 1
                if count > self.max_packages:
                    raise UnsafeInput(f"{path}: more than {self.max_packages} package stanzas")
                name, version = para.get("Package", "").strip(), para.get("Version", "").strip()
                if not name or not version:
                    continue
                if needs_status:
                    # The third word is the state: "installed" means the package's files are on disk,
                    # whatever the selection (install, hold, deinstall) says.
                    state = para.get("Status", "").split()
                    if len(state) != 3 or state[2] != "installed":
                        continue
                arch = para.get("Architecture", "").strip() or None
                src_name, src_version = _source(para.get("Source", ""), name, version)
                found.append(
                    Component(
                        name=name,
                        version=version,
                        ecosystem=Ecosystem.DEBIAN.value,
                        purl=deb_purl(name, version, arch),
                        layer_digest=layer_digest,
                        path=path,
                        source_name=src_name,
                        source_version=src_version,
                        arch=arch,
                    )
                )
        return found
