"""Alpine (and Wolfi) packages from ``lib/apk/db/installed``.

The database is stanzas of ``X:value`` lines separated by blank lines: ``P:`` name, ``V:`` version, ``A:``
architecture, ``o:`` origin (the source package), and the files: each ``F:`` names a directory and the
``R:`` lines after it the files in it.
"""

from __future__ import annotations

from typing import BinaryIO

from packageurl import PackageURL

from dockyard.scanning.detectors.base import DetectorResult
from dockyard.scanning.types import Component, Ecosystem, UnsafeInput

INSTALLED = "lib/apk/db/installed"


def apk_purl(name: str, version: str, arch: str | None, namespace: str = "alpine", distro: str = "") -> str:
    qualifiers = {k: v for k, v in (("arch", arch), ("distro", distro)) if v}
    return PackageURL("apk", namespace, name, version, qualifiers).to_string()


class ApkDetector:
    """Installed apk packages and the files they own."""

    name = "apk"
    max_size = 64 << 20  # a big Alpine image's database is a few MiB

    def __init__(
        self, max_packages: int = 50_000, max_size: int | None = None, max_owned: int = 1_000_000
    ) -> None:
        self.max_packages = max_packages
        self.max_owned = max_owned  # bounds the memory a hostile database can take
        if max_size is not None:
            self.max_size = max_size

    def wants(self, path: str, mode: int, size: int) -> bool:
        return path == INSTALLED

    def parse(self, path: str, data: BinaryIO, size: int, layer_digest: str) -> DetectorResult:
        result = DetectorResult()
        stanza: dict[str, str] = {}
        files: list[str] = []
        directory = ""
        owned_count = 0

        def flush() -> None:
            name, version = stanza.get("P", ""), stanza.get("V", "")
            if name and version:
                if len(result.components) >= self.max_packages:
                    raise UnsafeInput(f"{path}: more than {self.max_packages} packages")
                arch = stanza.get("A") or None
                result.components.append(
                    Component(
                        name=name,
                        version=version,
                        ecosystem=Ecosystem.ALPINE.value,
                        purl=apk_purl(name, version, arch),
                        layer_digest=layer_digest,
                        path=path,
                        source_name=stanza.get("o") or name,
                        source_version=version,
                        arch=arch,
                    )
                )
                for file in files:
                    result.owned[file] = name
            stanza.clear()
            files.clear()

        for raw in data:
            line = raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
            if not line:
                flush()
                directory = ""
                continue
            key, sep, value = line.partition(":")
            if not sep or len(key) != 1:
                continue  # not a field line; apk itself skips what it does not know
            if key == "F":
                directory = value.strip("/")
            elif key == "R":
                files.append(f"{directory}/{value}" if directory else value)
                owned_count += 1
                if owned_count > self.max_owned:
                    raise UnsafeInput(f"{path}: more than {self.max_owned} files")
            elif key not in stanza:
                stanza[key] = value
        flush()
        return result
