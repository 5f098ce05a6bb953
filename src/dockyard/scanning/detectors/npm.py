"""npm packages: installed ``node_modules/**/package.json`` files and the lockfiles of npm, yarn and pnpm.

Installed packages are the ground truth; a lockfile matters for images that ship one (an application
directory). ``package-lock.json`` is read in all three formats: lockfileVersion 1 (the nested ``dependencies``
tree), 2 (both) and 3 (the flat ``packages`` map keyed by install path); ``yarn.lock`` (v1 and berry) and
``pnpm-lock.yaml`` are read by ``npm_lockfiles``. The application's own package is listed too, as Trivy does:
from its ``package.json`` when a lockfile or ``node_modules`` sits beside it, else from the lockfile's ``""``
entry. When a lockfile sits next to the ``node_modules`` it describes, the indexer's merge keeps the installed
copies of each package and the lockfile only fills in packages of which no copy is installed there
(``lockfile_duplicates``).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from typing import Any, BinaryIO

from packageurl import PackageURL

from dockyard.scanning.detectors.base import DetectorResult
from dockyard.scanning.detectors.npm_lockfiles import pnpm_lock, yarn_lock
from dockyard.scanning.types import Component, Ecosystem, UnsafeInput

MAX_PACKAGE_JSON = 1 << 20
MAX_LOCKFILE = 64 << 20  # a large monorepo's lockfile is tens of MiB
MAX_V1_DEPTH = 64  # the v1 tree nests one level per node_modules level; deeper is hostile


def is_installed_package_json(path: str) -> bool:
    """``.../node_modules/<name>/package.json`` or ``.../node_modules/@scope/<name>/package.json``.

    A package.json deeper inside a package (``node_modules/x/esm/package.json``, test fixtures) describes no
    installed package, and the project's own package.json outside node_modules is the application itself.
    """
    parts = path.split("/")
    if len(parts) < 3 or parts[-1] != "package.json" or parts[-2].startswith("."):
        return False
    if parts[-3] == "node_modules":
        return not parts[-2].startswith("@")
    return len(parts) >= 4 and parts[-4] == "node_modules" and parts[-3].startswith("@")


LOCKFILES = frozenset({"package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml"})


def is_lockfile(path: str) -> bool:
    """A project lockfile. Lockfiles inside node_modules are skipped: npm's hidden
    ``node_modules/.package-lock.json`` repeats what the installed package.json files say, and a lockfile
    shipped inside a dependency describes that package's development tree, which is not installed."""
    if posixpath.basename(path) not in LOCKFILES:
        return False
    return "node_modules" not in path.split("/")


def is_project_manifest(path: str) -> bool:
    """A ``package.json`` outside any ``node_modules``: an application's own manifest, if a lockfile or an
    installed ``node_modules`` sits beside it (``lockfile_duplicates`` drops the others)."""
    parts = path.split("/")
    return parts[-1] == "package.json" and "node_modules" not in parts


def _project_folder(installed_path: str) -> str:
    """``srv/app/node_modules/a/node_modules/b/package.json`` -> ``srv/app``, the project it is in."""
    parts = installed_path.split("/")
    return "/".join(parts[: parts.index("node_modules")])


def lockfile_duplicates(components: list[Component]) -> set[int]:
    """Indexes of the npm components the merge drops, so each package is listed once per place it is in:

    - a lockfile's entry for a package installed, in any version, in the ``node_modules`` tree next to that
      lockfile: the installed copies are the ones reported (a lockfile naming another version is stale,
      after ``npm install --no-save`` or a hand-edited tree: its version is not in the image);
    - a lockfile's entry for the application itself when its ``package.json`` is there: the manifest is;
    - a ``package.json`` outside ``node_modules`` with neither a lockfile nor ``node_modules`` beside it:
      no application, just a file (a fixture, a web asset's metadata).
    """
    npm = [(i, c) for i, c in enumerate(components) if c.ecosystem == Ecosystem.NPM.value]
    installed: dict[str, list[str]] = {}
    projects: set[str] = set()  # folders holding a lockfile or an installed node_modules
    manifests: dict[str, set[str]] = {}  # folder -> names its package.json gives
    for _, c in npm:
        if is_lockfile(c.path):
            projects.add(posixpath.dirname(c.path))
        elif is_project_manifest(c.path):
            manifests.setdefault(posixpath.dirname(c.path), set()).add(c.name)
        else:
            installed.setdefault(c.name, []).append(c.path)
            projects.add(_project_folder(c.path))
    dropped = set()
    for i, c in npm:
        folder = posixpath.dirname(c.path)
        if is_project_manifest(c.path):
            if folder not in projects:
                dropped.add(i)
        elif is_lockfile(c.path):
            prefix = f"{folder}/node_modules/" if folder else "node_modules/"
            if c.name in manifests.get(folder, ()) or any(
                p.startswith(prefix) for p in installed.get(c.name, ())
            ):
                dropped.add(i)
    return dropped


def npm_purl(name: str, version: str) -> str:
    namespace, _, bare = name.rpartition("/")
    return PackageURL(type="npm", namespace=namespace or None, name=bare, version=version).to_string()


def _read_bytes(data: BinaryIO, limit: int, path: str) -> bytes:
    raw = data.read(limit + 1)
    if len(raw) > limit:
        raise UnsafeInput(f"{path}: larger than {limit} bytes")
    return raw


def _read_json(data: BinaryIO, limit: int, path: str) -> Any:
    raw = _read_bytes(data, limit, path)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None  # a broken or absurdly nested file names no package


def _registry_version(version: object) -> str | None:
    """A version string from the registry; None for git, file, link and tarball sources, which OSV has no
    advisories for under the package's name."""
    if not isinstance(version, str) or not version:
        return None
    if version[0].isdigit():
        return version
    return None


def _name_from_install_path(key: str) -> str | None:
    """``node_modules/a/node_modules/@s/b`` -> ``@s/b``; None for workspace folders outside node_modules."""
    marker = "node_modules/"
    at = key.rfind(marker)
    if at < 0 or (at > 0 and key[at - 1] != "/"):
        return None
    return key[at + len(marker) :] or None


def _from_packages(packages: dict) -> Iterator[tuple[str, str]]:
    """lockfileVersion 2/3: the flat map of install path -> package entry."""
    for key, entry in packages.items():
        if not isinstance(key, str) or not isinstance(entry, dict) or not key:
            continue  # "" is the project itself
        if entry.get("link") or entry.get("dev") is True:
            # A link points at a workspace folder (listed under its own key); dev-only packages are not
            # installed by `npm ci --omit=dev`, and installed ones are found through their package.json.
            continue
        installed_as = _name_from_install_path(key)
        if installed_as is None:
            continue  # a workspace folder: the project's own code, not a published package
        # An alias install ("node_modules/x": {"name": "real"}) is the real package under another name.
        name = entry["name"] if isinstance(entry.get("name"), str) else installed_as
        version = _registry_version(entry.get("version"))
        if name and version:
            yield name, version


def _from_dependencies(deps: dict, depth: int = 0) -> Iterator[tuple[str, str]]:
    """lockfileVersion 1: name -> {version, dev, dependencies: {...nested...}}."""
    if depth > MAX_V1_DEPTH:
        raise UnsafeInput("package-lock.json: dependency tree nested too deeply")
    for name, entry in deps.items():
        if not isinstance(name, str) or not isinstance(entry, dict):
            continue
        version = entry.get("version")
        # An alias install ("x": {"version": "npm:real@1.2.3"}) is the real package under another name.
        if isinstance(version, str) and version.startswith("npm:"):
            name, _, version = version[4:].rpartition("@")
        version = _registry_version(version)
        if version and name and entry.get("dev") is not True:
            yield name, version
        nested = entry.get("dependencies")
        if isinstance(nested, dict):
            yield from _from_dependencies(nested, depth + 1)


class NpmDetector:
    """Installed npm packages and the packages a package-lock.json pins."""

    name = "npm"
    max_size = MAX_LOCKFILE

    def wants(self, path: str, mode: int, size: int) -> bool:
        return is_installed_package_json(path) or is_lockfile(path) or is_project_manifest(path)

    def parse(self, path: str, data: BinaryIO, size: int, layer_digest: str) -> DetectorResult:
        base = posixpath.basename(path)
        if base == "yarn.lock":
            pairs = yarn_lock(_read_bytes(data, MAX_LOCKFILE, path))
        elif base == "pnpm-lock.yaml":
            pairs = pnpm_lock(_read_bytes(data, MAX_LOCKFILE, path))
        elif is_lockfile(path):
            pairs = self._lockfile(path, data)
        else:
            pairs = self._package_json(path, data)
        seen: set[tuple[str, str]] = set()
        components = []
        for name, version in pairs:
            if (name, version) in seen:
                continue
            seen.add((name, version))
            components.append(
                Component(
                    name=name,
                    version=version,
                    ecosystem=Ecosystem.NPM.value,
                    purl=npm_purl(name, version),
                    layer_digest=layer_digest,
                    path=path,
                )
            )
        return DetectorResult(components=components)

    def _package_json(self, path: str, data: BinaryIO) -> list[tuple[str, str]]:
        doc = _read_json(data, MAX_PACKAGE_JSON, path)
        if not isinstance(doc, dict):
            return []
        name, version = doc.get("name"), doc.get("version")
        if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
            return []  # e.g. {"type": "module"} markers and private fixtures
        return [(name, version)]

    def _lockfile(self, path: str, data: BinaryIO) -> list[tuple[str, str]]:
        doc = _read_json(data, MAX_LOCKFILE, path)
        if not isinstance(doc, dict):
            return []
        packages = doc.get("packages")
        root = packages.get("") if isinstance(packages, dict) else doc
        own = [(root["name"], root["version"])] if _named(root) else []  # the application itself
        if isinstance(packages, dict):  # v2 carries both forms; "packages" is the complete one
            return own + list(_from_packages(packages))
        deps = doc.get("dependencies")
        if isinstance(deps, dict):
            return own + list(_from_dependencies(deps))
        return own


def _named(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    name, version = entry.get("name"), entry.get("version")
    return isinstance(name, str) and bool(name) and _registry_version(version) is not None
