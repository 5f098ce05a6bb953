"""yarn (v1 and berry) and pnpm lockfiles -> (name, version) pairs of the npm packages they pin.

Only packages from the registry are listed: workspace, link, file, git, patch and portal entries name the
project's own code or a copy of a registry package that is listed under its own entry.

- yarn v1: a custom format of ``"spec, spec":`` headers followed by indented ``version "x"`` lines; the name
  is the header's (an ``alias@npm:real@range`` spec names the real package).
- yarn berry (``__metadata:``): YAML whose entries carry ``resolution: "name@npm:version"``.
- pnpm (lockfileVersion 5 to 9): YAML whose ``packages`` keys are ``/name/version`` (v5), ``/name@version``
  (v6) or ``name@version`` (v9), with a peer-dependency suffix (``_peer@1`` or ``(peer@1)``) to strip;
  entries marked ``dev: true`` (v5/v6) are not installed in production and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

__all__ = ["pnpm_lock", "split_spec", "yarn_lock"]

_REGISTRY_VERSION = re.compile(r"^\d")
_LOCAL_PROTOCOLS = frozenset({"file", "link", "git", "git+https", "git+ssh", "github", "workspace", "portal"})


def split_spec(spec: str) -> tuple[str, str]:
    """``@scope/name@range`` -> (``@scope/name``, ``range``); the ``@`` of a scope is not a separator."""
    at = spec.find("@", 1)
    return (spec, "") if at < 0 else (spec[:at], spec[at + 1 :])


def _load_yaml(raw: bytes) -> Any:
    import yaml  # only yarn berry and pnpm lockfiles are YAML: not imported by every scan

    # BaseLoader keeps versions strings ("1.10" must not become 1.1) and builds no arbitrary objects.
    try:
        return yaml.load(raw, Loader=getattr(yaml, "CBaseLoader", yaml.BaseLoader))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        return None


def yarn_lock(raw: bytes) -> list[tuple[str, str]]:
    """The registry packages a ``yarn.lock`` (v1 or berry) pins."""
    text = raw.decode("utf-8", "replace")
    if "__metadata:" in text:
        return list(_berry(_load_yaml(raw)))
    return list(_yarn_v1(text))


def _yarn_v1(text: str) -> Iterator[tuple[str, str]]:
    name: str | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if not line[0].isspace():
            first = line.rstrip(":").split(",")[0].strip().strip('"')
            spec_name, rng = split_spec(first)
            if rng.startswith("npm:"):  # an alias install: the real package is named in the range
                spec_name, rng = split_spec(rng[4:])
            protocol = rng.split(":", 1)[0] if ":" in rng else ""
            name = None if protocol in _LOCAL_PROTOCOLS else spec_name
            continue
        stripped = line.strip()
        if name and stripped.startswith("version "):
            version = stripped[len("version ") :].strip().strip('"')
            if _REGISTRY_VERSION.match(version):
                yield name, version
            name = None


def _berry(doc: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(doc, dict):
        return
    seen = set()
    for key, entry in doc.items():
        if key == "__metadata" or not isinstance(entry, dict):
            continue
        resolution = entry.get("resolution")
        if not isinstance(resolution, str):
            continue
        name, locator = split_spec(resolution)
        if not locator.startswith("npm:"):
            continue  # workspace:, patch:, link:, portal:, file:, git ...
        version = locator[4:]
        if _REGISTRY_VERSION.match(version) and (name, version) not in seen:
            seen.add((name, version))
            yield name, version


def pnpm_lock(raw: bytes) -> list[tuple[str, str]]:
    """The registry packages a ``pnpm-lock.yaml`` pins (production and development: v9 no longer marks
    which is which in ``packages``)."""
    doc = _load_yaml(raw)
    packages = doc.get("packages") if isinstance(doc, dict) else None
    if not isinstance(packages, dict):
        return []
    found: dict[tuple[str, str], None] = {}
    for key, entry in packages.items():
        if isinstance(entry, dict) and entry.get("dev") == "true":
            continue
        pair = _pnpm_key(str(key))
        if pair is not None:
            found[pair] = None
    return list(found)


_PNPM_V5 = re.compile(r"^/((?:@[^/]+/)?[^/@]+)/(\d[^/_]*)")  # /name/1.0.0 or /@s/name/1.0.0_peer@2


def _pnpm_key(key: str) -> tuple[str, str] | None:
    v5 = _PNPM_V5.match(key)
    if v5:
        return v5.group(1), v5.group(2)
    key = key.split("(", 1)[0].removeprefix("/")  # v6+ peer suffix: name@1.0.0(react@18.0.0)
    name, version = split_spec(key)
    return (name, version) if name and _REGISTRY_VERSION.match(version) else None
