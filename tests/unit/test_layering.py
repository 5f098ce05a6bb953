"""Which packages may import which: the layering ARCHITECTURE.md describes, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dockyard

SRC = Path(dockyard.__file__).parent


def imports_of(package: str) -> dict[str, set[str]]:
    """Module path -> the names it imports (``from a.b import c`` counts as ``a.b`` and ``a.b.c``)."""
    found: dict[str, set[str]] = {}
    for path in sorted((SRC / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
        found[str(path.relative_to(SRC))] = names
    return found


def offending(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    return {
        module: sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))
        for module, names in imports_of(package).items()
        if any(n == f or n.startswith(f + ".") for n in names for f in forbidden)
    }


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        # Blobs and drivers only: no HTTP, and nothing of the layers that serve blobs.
        (
            "storage",
            ("http", "socketserver", "starlette", "dockyard.delivery", "dockyard.registry", "dockyard.web"),
        ),
        # The delivery server answers with the signature alone: no registry, no app.
        ("delivery", ("dockyard.registry", "dockyard.web", "starlette")),
    ],
)
def test_package_does_not_import(package: str, forbidden: tuple[str, ...]) -> None:
    assert offending(package, forbidden) == {}
