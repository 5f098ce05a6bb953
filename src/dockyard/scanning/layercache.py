"""A local cache of per-layer facts for ``dockyard scan``: ``<cache dir>/layers/v<FORMAT>/<algo>-<hex>.json``.

Keyed by the layer's digest (content-addressed: a digest read once and verified is the same bytes forever)
and by the indexer's FORMAT and detector set, so a newer indexer never reads an older one's facts. Entries are
written to a temporary file and renamed into place, so concurrent scans never see half an entry; an entry that
cannot be read (truncated, edited, another format, another layer) is ignored and rewritten.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from dockyard.scanning.indexer import FORMAT, LayerFacts

_DIGEST = re.compile(r"^([a-z0-9]+):([a-f0-9]{32,128})$")


class LayerCache:
    """Facts by layer digest, on disk."""

    def __init__(self, root: Path, detectors: Sequence[str]) -> None:
        self.dir = root / "layers" / f"v{FORMAT}"
        self.detectors = sorted(detectors)
        self.hits = self.misses = 0

    def _path(self, digest: str) -> Path | None:
        m = _DIGEST.match(digest)
        return self.dir / f"{m.group(1)}-{m.group(2)}.json" if m else None

    def get(self, digest: str) -> LayerFacts | None:
        """The cached facts of ``digest``, or None (absent, unreadable or made by other detectors)."""
        path = self._path(digest)
        try:
            if path is None:
                return None
            facts = LayerFacts.from_json(path.read_bytes())
            if facts.digest != digest or sorted(facts.detectors) != self.detectors:
                raise ValueError("facts of another layer or detector set")
        except FileNotFoundError:
            self.misses += 1
            return None
        except Exception:  # corrupt or foreign: index the layer again and overwrite the entry
            self.misses += 1
            return None
        self.hits += 1
        return facts

    def put(self, facts: LayerFacts) -> None:
        """Store facts atomically; a cache that cannot be written is no reason to fail a scan."""
        path = self._path(facts.digest)
        if path is None:
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.dir)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(facts.to_json())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            pass
