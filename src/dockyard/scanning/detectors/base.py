"""The interface every package detector implements.

The layer walker streams each tar entry once; for a regular file whose path a detector ``wants``, it hands
the detector a bounded file object. A detector returns the components it read and, for OS package
managers, which paths each package owns (so language packages shipped by the OS are not listed twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, runtime_checkable

from dockyard.scanning.types import Component


@dataclass
class DetectorResult:
    components: list[Component] = field(default_factory=list)
    owned: dict[str, str] = field(default_factory=dict)  # path (no leading slash) -> owning OS package
    # Things the detector could not read but the scan report should mention (e.g. an old Go binary format).
    warnings: list[str] = field(default_factory=list)


@runtime_checkable
class Detector(Protocol):
    name: str
    max_size: int  # files larger than this are skipped with a warning, never read

    def wants(self, path: str, mode: int, size: int) -> bool:
        """Whether this regular file (path without leading '/', tar mode bits, size) should be parsed."""

    def parse(self, path: str, data: BinaryIO, size: int, layer_digest: str) -> DetectorResult:
        """Read components (and owned paths) from one file; raise UnsafeInput for hostile content."""
