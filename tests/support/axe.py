"""Accessibility checks in the browser tests: axe-core (installed from npm by `make test` under
.test-tools/) injected into the page by Playwright, run with the WCAG 2.x A/AA rules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

AXE = Path(__file__).resolve().parents[2] / ".test-tools" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


def axe_path() -> Path:
    """The axe-core script; under `make test` (DOCKYARD_REQUIRE_SYSTEM_DEPS=1) a missing one fails."""
    if not AXE.is_file():
        if os.environ.get("DOCKYARD_REQUIRE_SYSTEM_DEPS") == "1":
            pytest.fail(f"axe-core is not installed at {AXE}: run `make system-deps`")
        pytest.skip("axe-core is not installed (make system-deps)")
    return AXE


def violations(page: Any, impacts: tuple[str, ...] = BLOCKING) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, of the given impacts."""
    page.add_script_tag(path=str(axe_path()))
    result = page.evaluate(
        """async () => await axe.run(document, {
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
            resultTypes: ['violations'],
        })"""
    )
    return [v for v in result["violations"] if v.get("impact") in impacts]


def describe(found: list[dict[str, Any]]) -> str:
    """One line per violation and node, for an assertion message."""
    lines = []
    for v in found:
        for node in v["nodes"][:5]:
            lines.append(f"{v['impact']}: {v['id']} ({v['help']}) at {node.get('target')}")
    return "\n".join(lines)


def assert_accessible(page: Any, what: str) -> None:
    """No serious or critical violation on the page."""
    found = violations(page)
    assert not found, f"{what}: accessibility violations\n{describe(found)}"
