"""The Node.js runtime installed outside a package manager (the official ``node`` images' ``/usr/local``,
a tarball from nodejs.org), found without executing anything.

Two pieces of evidence, both of which the official images carry:

- the ``node`` executable (``.../bin/node``): the inspector's ``/json/version`` answer is compiled in as
  ``node.js/v<version>`` (the string Syft's classifier reads too), and ``process.release`` as
  ``.../release/v<version>/node-v<version>``; the file is read once in overlapping chunks, never whole;
- the headers the same install puts beside it (``.../include/node/node_version.h``): ``NODE_MAJOR_VERSION``,
  ``NODE_MINOR_VERSION``, ``NODE_PATCH_VERSION``.

A header only stands for the runtime when no binary of the same prefix said anything (the indexer drops it
otherwise: ``runtime_duplicates``), so an official image lists one ``node`` component, at
``usr/local/bin/node``.
A ``node`` owned by an OS package (Debian's and Alpine's ``nodejs``) is the OS package's and is not listed
again; the matcher checks that package against the core advisories itself.

The component: ecosystem ``Node.js``, name ``node`` and purl ``pkg:generic/node@<version>``, as Syft names
the runtime it finds in a binary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import BinaryIO

from packageurl import PackageURL

from dockyard.scanning.detectors.base import DetectorResult
from dockyard.scanning.types import Component, Ecosystem

CHUNK = 1 << 20
OVERLAP = 256  # longer than any marker with its version: a string cut by a chunk boundary is seen whole
HEADER = "include/node/node_version.h"
_VERSION = rb"(\d{1,4}\.\d{1,4}\.\d{1,4})"
_INSPECTOR = re.compile(rb"node\.js/v" + _VERSION + rb"(?![\w.])")
_RELEASE = re.compile(rb"/release/v" + _VERSION + rb"/node-v" + _VERSION)
_DEFINE = re.compile(r"^\s*#\s*define\s+NODE_(MAJOR|MINOR|PATCH)_VERSION\s+(\d+)\s*$", re.MULTILINE)


def node_purl(version: str) -> str:
    return PackageURL("generic", None, "node", version).to_string()


def binary_version(data: BinaryIO, limit: int) -> str | None:
    """The version a ``node`` executable embeds (the inspector string first, else the release URL), reading
    at most ``limit`` bytes; None when neither is there (not Node.js, or a build without them)."""
    tail, read, release = b"", 0, None
    while read < limit:
        chunk = data.read(min(CHUNK, limit - read))
        if not chunk:
            break
        read += len(chunk)
        window = tail + chunk
        found = _INSPECTOR.search(window)
        if found:
            return found.group(1).decode()
        if release is None:
            m = _RELEASE.search(window)
            if m and m.group(1) == m.group(2):
                release = m.group(1).decode()
        tail = window[-OVERLAP:]
    return release


def header_version(text: str) -> str | None:
    """``18.12.1`` from node_version.h's three defines, or None."""
    parts = dict(_DEFINE.findall(text))
    if not all(k in parts for k in ("MAJOR", "MINOR", "PATCH")):
        return None
    return f"{int(parts['MAJOR'])}.{int(parts['MINOR'])}.{int(parts['PATCH'])}"


def _prefix(path: str) -> str:
    """The install prefix a runtime file belongs to: ``usr/local/bin/node`` -> ``usr/local``."""
    rooted = "/" + path
    for suffix in ("/bin/node", "/bin/nodejs", "/" + HEADER):
        if rooted.endswith(suffix):
            return rooted[: -len(suffix)].lstrip("/")
    return path


def runtime_duplicates(components: Sequence[Component]) -> set[int]:
    """Indexes of header-found runtimes whose prefix also has a binary-found one (the binary is the
    runtime; its headers are only a fallback)."""
    binaries = {
        _prefix(c.path)
        for c in components
        if c.ecosystem == Ecosystem.NODEJS.value and not c.path.endswith(HEADER)
    }
    return {
        i
        for i, c in enumerate(components)
        if c.ecosystem == Ecosystem.NODEJS.value and c.path.endswith(HEADER) and _prefix(c.path) in binaries
    }


class NodeRuntimeDetector:
    """``bin/node`` executables and ``include/node/node_version.h`` headers."""

    name = "node"
    max_size = 512 << 20  # node 22's binary is about 120 MiB
    min_size = 1024

    def wants(self, path: str, mode: int, size: int) -> bool:
        if path == HEADER or path.endswith("/" + HEADER):
            return size <= 64 << 10
        base = path.rsplit("/", 1)[-1]
        parent = path[: -len(base)].rstrip("/")
        return (
            base in ("node", "nodejs")
            and (parent == "bin" or parent.endswith("/bin"))
            and bool(mode & 0o111)
            and size >= self.min_size
        )

    def parse(self, path: str, data: BinaryIO, size: int, layer_digest: str) -> DetectorResult:
        result = DetectorResult()
        if path.endswith(HEADER):
            version = header_version(data.read(64 << 10).decode("utf-8", "replace"))
        else:
            version = binary_version(data, min(size, self.max_size))
        if version:
            result.components.append(
                Component(
                    name="node",
                    version=version,
                    ecosystem=Ecosystem.NODEJS.value,
                    purl=node_purl(version),
                    layer_digest=layer_digest,
                    path=path,
                )
            )
        return result
