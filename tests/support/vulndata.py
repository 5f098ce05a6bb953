"""Where the real vulnerability data lives (``../shared/vulndata`` beside the checkout); never copied in."""

from __future__ import annotations

import os
from pathlib import Path

_CANDIDATES = [
    Path(__file__).resolve().parents[3] / "shared" / "vulndata",  # <checkout>/../shared/vulndata
    Path("/work/shared/vulndata"),  # this workplace's fixed location, for clones made elsewhere
]


def find_vulndata() -> Path:
    """DOCKYARD_VULNDATA when set, else the first candidate that exists (else the first, for messages)."""
    if os.environ.get("DOCKYARD_VULNDATA"):
        return Path(os.environ["DOCKYARD_VULNDATA"])
    return next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])


VULNDATA = find_vulndata()
