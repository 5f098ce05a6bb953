"""The npm detector on a tree npm really installed, on the lockfiles npm really wrote (v1, v2, v3), and on
the lockfiles yarn (v1, berry) and pnpm really wrote; one component per package when a lockfile sits next to
the node_modules it describes."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from tests.support.langfixtures import (
    NPM_NESTED,
    NPM_PACKAGES,
    NpmProject,
    js_lockfiles,
    layer_of,
    need,
    npm_project,
    run,
    walk_layer,
)

from dockyard.scanning.detectors.base import Detector
from dockyard.scanning.detectors.npm import NpmDetector
from dockyard.scanning.indexer import index_layer, merge
from dockyard.scanning.types import UnsafeInput

DIGEST = "sha256:" + "2" * 64
EXPECTED = {*NPM_PACKAGES.items(), NPM_NESTED}
ROOT = ("fixture-app", "0.0.1")  # the application's own package, listed from its lockfile as Trivy does


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> NpmProject:
    return npm_project(tmp_path_factory.mktemp("npm"))


def _parse(path: str, doc: object):
    raw = json.dumps(doc).encode() if not isinstance(doc, bytes) else doc
    return NpmDetector().parse(path, io.BytesIO(raw), len(raw), DIGEST).components


def test_detector_satisfies_the_interface() -> None:
    assert isinstance(NpmDetector(), Detector)


def test_installed_tree_in_a_layer(project: NpmProject, tmp_path: Path) -> None:
    layer = layer_of(project.root, tmp_path / "layer.tar", "srv/app")
    walked = walk_layer(NpmDetector(), layer, DIGEST)
    from_modules = [c for c in walked.components if "/node_modules/" in c.path]
    from_lock = [c for c in walked.components if c.path.endswith("package-lock.json")]
    assert {(c.name, c.version) for c in from_modules} == EXPECTED
    assert len(from_modules) == len(EXPECTED)  # one per installed package.json, nothing from inner files
    assert {(c.name, c.version) for c in from_lock} == EXPECTED | {ROOT}
    # The app's own manifest is read (the merge keeps it: a lockfile and node_modules are beside it); npm's
    # hidden node_modules/.package-lock.json is not.
    assert [(c.name, c.version) for c in walked.components if c.path == "srv/app/package.json"] == [ROOT]
    assert "srv/app/node_modules/.package-lock.json" not in walked.wanted
    assert "srv/app/package-lock.json" in walked.wanted
    nested = next(c for c in from_modules if c.version == "2.0.0")
    assert nested.path == "srv/app/node_modules/debug/node_modules/ms/package.json"
    scoped = next(c for c in walked.components if c.name == "@types/minimist")
    assert scoped.purl == "pkg:npm/%40types/minimist@1.2.0"
    assert scoped.ecosystem == "npm"
    assert all(c.layer_digest == DIGEST for c in walked.components)


@pytest.mark.parametrize("lockfile_version", [1, 2, 3])
def test_every_lockfile_format_npm_writes(project: NpmProject, lockfile_version: int) -> None:
    path = project.lockfiles[lockfile_version]
    assert json.loads(path.read_text())["lockfileVersion"] == lockfile_version
    components = _parse("app/package-lock.json", path.read_bytes())
    assert {(c.name, c.version) for c in components} == EXPECTED | {ROOT}
    purls = {c.purl for c in components}
    assert "pkg:npm/lodash@4.17.15" in purls
    assert "pkg:npm/ms@2.0.0" in purls and "pkg:npm/ms@2.1.1" in purls


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("usr/lib/node_modules/npm/package.json", True),
        ("app/node_modules/@babel/core/package.json", True),
        ("app/node_modules/a/node_modules/b/package.json", True),
        ("app/node_modules/.pnpm/lodash@4.17.21/node_modules/lodash/package.json", True),
        ("app/package-lock.json", True),
        ("app/package.json", True),  # the application itself (kept where it is a project: see the merge)
        ("app/node_modules/a/esm/package.json", False),  # a {"type": "module"} marker inside a package
        ("app/node_modules/@babel/package.json", False),
        ("app/node_modules/.package-lock.json", False),
        ("app/node_modules/a/package-lock.json", False),  # a dependency's own development lockfile
    ],
)
def test_wants(path: str, wanted: bool) -> None:
    assert NpmDetector().wants(path, 0o644, 100) is wanted


def test_package_json_without_name_or_version_is_skipped() -> None:
    assert _parse("node_modules/x/package.json", {"name": "x"}) == []
    assert _parse("node_modules/x/package.json", {"version": "1.0.0"}) == []
    assert _parse("node_modules/x/package.json", {"name": "x", "version": 1}) == []
    assert _parse("node_modules/x/package.json", b"{not json") == []


def test_lockfile_v3_links_workspaces_dev_and_aliases() -> None:
    lock = {
        "lockfileVersion": 3,
        "packages": {
            "": {"name": "root", "version": "1.0.0"},
            "node_modules/lib-a": {"resolved": "packages/lib-a", "link": True},
            "packages/lib-a": {"name": "lib-a", "version": "0.1.0"},
            "packages/lib-a/node_modules/semver": {"version": "5.7.1"},
            "node_modules/jest": {"version": "29.0.0", "dev": True},
            "node_modules/old-lodash": {"name": "lodash", "version": "4.17.4"},
            "node_modules/from-git": {"version": "git+ssh://git@github.com/a/b.git#abc"},
            "node_modules/@scope/pkg": {"version": "2.0.0"},
            "node_modules/dup/node_modules/@scope/pkg": {"version": "2.0.0"},
        },
    }
    found = {(c.name, c.version) for c in _parse("app/package-lock.json", lock)}
    assert found == {("root", "1.0.0"), ("semver", "5.7.1"), ("lodash", "4.17.4"), ("@scope/pkg", "2.0.0")}


def test_lockfile_v1_aliases_dev_and_nesting() -> None:
    lock = {
        "lockfileVersion": 1,
        "name": "root",
        "version": "1.0.0",
        "dependencies": {
            "a": {"version": "1.0.0", "dependencies": {"b": {"version": "2.0.0"}}},
            "alias": {"version": "npm:lodash@4.17.20"},
            "devonly": {"version": "3.0.0", "dev": True},
            "local": {"version": "file:../local"},
        },
    }
    found = {(c.name, c.version) for c in _parse("package-lock.json", lock)}
    assert found == {("root", "1.0.0"), ("a", "1.0.0"), ("b", "2.0.0"), ("lodash", "4.17.20")}


def test_hostile_lockfiles() -> None:
    deep: dict = {}
    node = deep
    for _ in range(100):
        node["x"] = {"version": "1.0.0", "dependencies": {}}
        node = node["x"]["dependencies"]
    with pytest.raises(UnsafeInput):
        _parse("package-lock.json", {"lockfileVersion": 1, "dependencies": deep})
    too_big = b" " * (NpmDetector.max_size + 1)
    with pytest.raises(UnsafeInput):
        NpmDetector().parse("package-lock.json", io.BytesIO(too_big), len(too_big), DIGEST)


# -- one component per package: the lockfile fills in only what node_modules lacks


def _merged(tree: Path, tmp_path: Path) -> list:
    layer = layer_of(tree, tmp_path / "layer.tar", "srv/app")
    with layer.open("rb") as fh:
        facts = index_layer(fh, DIGEST, [NpmDetector()])
    return merge([facts]).components


def test_tree_with_its_lockfile_lists_each_package_once(project: NpmProject, tmp_path: Path) -> None:
    components = _merged(project.root, tmp_path)
    pairs = [(c.name, c.version) for c in components]
    assert sorted(pairs) == sorted(EXPECTED | {ROOT})  # 5 installed + the nested ms + the app: no repeats
    by_pair = {(c.name, c.version): c.path for c in components}
    assert by_pair[("lodash", "4.17.15")] == "srv/app/node_modules/lodash/package.json"
    assert by_pair[ROOT] == "srv/app/package.json"  # the app's own manifest, not its lockfile's copy of it


def test_installed_tree_without_its_lockfile(project: NpmProject, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(project.root, tree, symlinks=True)
    (tree / "package-lock.json").unlink()
    components = _merged(tree, tmp_path)
    assert sorted((c.name, c.version) for c in components) == sorted(EXPECTED | {ROOT})  # the app too
    assert {c.path for c in components if (c.name, c.version) == ROOT} == {"srv/app/package.json"}


def test_a_package_json_that_is_no_project_is_not_a_component(tmp_path: Path) -> None:
    # Metadata of a web asset, a fixture: no lockfile and no node_modules beside it.
    tree = tmp_path / "tree"
    (tree / "static").mkdir(parents=True)
    (tree / "static" / "package.json").write_text(json.dumps({"name": "widget", "version": "1.0.0"}))
    assert _merged(tree, tmp_path) == []


def test_lockfile_without_node_modules_lists_what_it_pins(project: NpmProject, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(project.root / "package-lock.json", tree / "package-lock.json")
    components = _merged(tree, tmp_path)
    assert sorted((c.name, c.version) for c in components) == sorted(EXPECTED | {ROOT})
    assert {c.path for c in components} == {"srv/app/package-lock.json"}


def test_a_stale_lockfile_adds_no_version_that_is_not_installed(project: NpmProject, tmp_path: Path) -> None:
    # `npm install --no-save` moves node_modules on and leaves package-lock.json as it was.
    tree = tmp_path / "tree"
    shutil.copytree(project.root, tree, symlinks=True)
    flags = ["--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error", "--no-save"]
    run([need("npm"), "install", "--prefix", str(tree), *flags, "lodash@4.17.21"], cwd=tree)
    lock = json.loads((tree / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/lodash"]["version"] == "4.17.15"  # the lockfile is stale
    components = _merged(tree, tmp_path)
    pairs = sorted((c.name, c.version) for c in components)
    assert pairs == sorted(EXPECTED - {("lodash", "4.17.15")} | {("lodash", "4.17.21"), ROOT})
    assert [c.path for c in components if c.name == "lodash"] == ["srv/app/node_modules/lodash/package.json"]


# -- yarn and pnpm lockfiles written by the real tools


@pytest.fixture(scope="session")
def js_projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return js_lockfiles(tmp_path_factory.mktemp("js"))


@pytest.mark.parametrize(
    ("label", "lockfile"),
    [("yarn-v1", "yarn.lock"), ("yarn-berry", "yarn.lock"), ("pnpm", "pnpm-lock.yaml")],
)
def test_yarn_and_pnpm_lockfiles(js_projects: dict[str, Path], label: str, lockfile: str) -> None:
    path = js_projects[label] / lockfile
    components = _parse(f"app/{lockfile}", path.read_bytes())
    assert {(c.name, c.version) for c in components} == EXPECTED
    assert len(components) == len(EXPECTED)
    assert NpmDetector().wants(f"app/{lockfile}", 0o644, 100)
    assert not NpmDetector().wants(f"app/node_modules/x/{lockfile}", 0o644, 100)


@pytest.mark.parametrize("label", ["yarn-v1", "yarn-berry", "pnpm"])
def test_yarn_and_pnpm_trees_list_each_package_once(
    js_projects: dict[str, Path], label: str, tmp_path: Path
) -> None:
    # The lockfile and the node_modules the tool installed beside it (pnpm's under node_modules/.pnpm).
    components = _merged(js_projects[label], tmp_path)
    assert sorted((c.name, c.version) for c in components) == sorted(EXPECTED | {ROOT})
    assert all("/node_modules/" in c.path for c in components if (c.name, c.version) != ROOT)


def test_yarn_v1_aliases_and_non_registry_entries() -> None:
    lock = b"""# yarn lockfile v1


"alias@npm:lodash@^4.17.20":
  version "4.17.21"

local@file:../local:
  version "1.0.0"

"@scope/pkg@^2.0.0", "@scope/pkg@~2.0.1":
  version "2.0.1"
"""
    assert {(c.name, c.version) for c in _parse("yarn.lock", lock)} == {
        ("lodash", "4.17.21"),
        ("@scope/pkg", "2.0.1"),
    }


def test_pnpm_v5_and_v6_keys() -> None:
    v5 = b"""lockfileVersion: 5.4
packages:
  /foo/1.0.0_react@18.0.0:
    resolution: {integrity: x}
  /@types/node/20.1.0:
    resolution: {integrity: x}
  /jest/29.0.0:
    resolution: {integrity: x}
    dev: true
"""
    v6 = b"""lockfileVersion: '6.0'
packages:
  /@scope/b@1.0.0(react@18.0.0):
    resolution: {integrity: x}
  /lodash@4.17.21:
    resolution: {integrity: x}
"""
    assert {(c.name, c.version) for c in _parse("pnpm-lock.yaml", v5)} == {
        ("foo", "1.0.0"),
        ("@types/node", "20.1.0"),
    }
    assert {(c.name, c.version) for c in _parse("pnpm-lock.yaml", v6)} == {
        ("@scope/b", "1.0.0"),
        ("lodash", "4.17.21"),
    }
