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
    target = SRC / package
    for path in sorted(target.rglob("*.py")) if target.is_dir() else [target]:
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
        # The scanner reads the registry through its read facade (registry/reads.py), never its tables.
        ("scanning", ("dockyard.registry.models", "dockyard.registry.statements")),
        # Publishing reads the registry and accounts through their read facades (registry/reads.py,
        # accounts/reads.py), never their tables.
        (
            "publishing",
            ("dockyard.registry.models", "dockyard.registry.statements", "dockyard.accounts.models"),
        ),
        # Pure spec code: nothing of dockyard but itself (its own error, not dockyard.errors).
        ("oci", tuple(f"dockyard.{m.stem}" for m in SRC.iterdir() if m.stem not in ("oci", "__init__"))),
    ],
)
def test_package_does_not_import(package: str, forbidden: tuple[str, ...]) -> None:
    assert offending(package, forbidden) == {}


# The checks of dockyard.oci that raise OciSpecError: domain code calls them through dockyard.spec, which
# raises Invalid instead (an OciSpecError reaching the edge would be a 500, not the OCI envelope).
RAISING = {
    "dockyard.oci.digest": ("parse_digest", "new_hasher", "compute"),
    "dockyard.oci.manifest": ("parse_manifest",),
    "dockyard.oci.reference": ("validate_name", "validate_tag", "split_reference"),
}


def test_domain_code_calls_the_spec_checks_through_dockyard_spec() -> None:
    direct = {f"{module}.{name}" for module, names in RAISING.items() for name in names}
    everything_but_oci = sorted(
        p.name
        for p in SRC.iterdir()
        if (p.is_dir() or p.suffix == ".py") and p.name not in ("oci", "__pycache__")
    )
    found = {
        path: sorted(names & direct)
        for package in everything_but_oci
        for path, names in imports_of(package).items()
        if names & direct
    }
    assert found == {}
