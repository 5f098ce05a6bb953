"""Python distributions installed in an image: ``*.dist-info/METADATA`` and ``*.egg-info`` records.

Both are RFC 822 headers (core metadata). Only the header block is read, because the body is the project's
long description and may be megabytes of README text; the headers that name the package come first.
"""

from __future__ import annotations

import re
from email.parser import HeaderParser
from typing import BinaryIO

from packageurl import PackageURL

from dockyard.scanning.detectors.base import DetectorResult
from dockyard.scanning.types import Component, Ecosystem

# The header block of real metadata is a few KiB (long Description: headers in Metadata 1.x may reach a
# few hundred KiB); past this we parse what we have rather than buffer a hostile file.
MAX_HEADER_BYTES = 1 << 20
_PEP503_SEPARATORS = re.compile(r"[-_.]+")


def normalize_name(name: str) -> str:
    """The PEP 503 normal form: lower case, runs of ``-``, ``_`` and ``.`` become one ``-``."""
    return _PEP503_SEPARATORS.sub("-", name).lower()


def is_metadata_path(path: str) -> bool:
    """``x.dist-info/METADATA``, ``x.egg-info/PKG-INFO`` or a single-file ``x.egg-info`` record."""
    if path.endswith(".dist-info/METADATA") or path.endswith(".egg-info/PKG-INFO"):
        return True
    # distutils and old setuptools install the PKG-INFO as a plain file named after the distribution.
    return path.endswith(".egg-info") and "/" in path


def _read_headers(data: BinaryIO) -> str:
    """Bytes up to the first blank line (the end of the headers), at most MAX_HEADER_BYTES."""
    lines: list[bytes] = []
    total = 0
    while total < MAX_HEADER_BYTES:
        line = data.readline(MAX_HEADER_BYTES - total)
        if not line or line in (b"\n", b"\r\n"):
            break
        lines.append(line)
        total += len(line)
    # Core metadata is UTF-8; a stray byte must not cost the whole record.
    return b"".join(lines).decode("utf-8", errors="replace")


class PythonDetector:
    """Reads the name and version of every installed distribution (site-packages, dist-packages, ...)."""

    name = "python"
    max_size = 64 << 20  # only the headers are read; the size bounds nothing but absurd entries

    def wants(self, path: str, mode: int, size: int) -> bool:
        return is_metadata_path(path)

    def parse(self, path: str, data: BinaryIO, size: int, layer_digest: str) -> DetectorResult:
        headers = HeaderParser().parsestr(_read_headers(data), headersonly=True)
        name = (headers.get("Name") or "").strip()
        version = (headers.get("Version") or "").strip()
        if not name or not version:
            return DetectorResult()
        purl = PackageURL(type="pypi", name=normalize_name(name), version=version).to_string()
        component = Component(
            name=name,
            version=version,
            ecosystem=Ecosystem.PYPI.value,
            purl=purl,
            layer_digest=layer_digest,
            path=path,
        )
        return DetectorResult(components=[component])
