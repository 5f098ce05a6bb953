"""Real language package trees for the detector and source tests, built by the real tools.

pip installs real distributions from PyPI, npm installs real packages (and writes real lockfiles in all
three formats), the Go toolchain links real binaries (offline: the one dependency is vendored), the JDK's
``jar`` tool writes real archives, and umoci writes real OCI layouts. Each builder runs once per session
(see the fixtures in the test modules); a missing tool skips, a failing one fails.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PYPI_PACKAGES = {"urllib3": "1.26.4", "Django": "3.2"}
NPM_PACKAGES = {
    "lodash": "4.17.15",
    "minimist": "1.2.0",
    "debug": "2.6.8",
    "ms": "2.1.1",
    "@types/minimist": "1.2.0",
}
# debug@2.6.8 needs ms@2.0.0 while the project pins ms@2.1.1, so npm nests a second ms under debug.
NPM_NESTED = ("ms", "2.0.0")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def run(
    cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 600
) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


# -- Python


def pip_site_packages(root: Path) -> Path:
    """A site-packages directory with real urllib3 and Django wheels installed (dist-info records)."""
    target = root / "site-packages"
    specs = [f"{name}=={version}" for name, version in PYPI_PACKAGES.items()]
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-compile",
            "--target",
            str(target),
            *specs,
        ]
    )
    return target


# -- npm


@dataclass
class NpmProject:
    root: Path  # package.json, package-lock.json (v3) and node_modules/
    lockfiles: dict[int, Path]  # lockfileVersion -> a package-lock.json of that format for the same tree


def npm_project(root: Path) -> NpmProject:
    npm = need("npm")
    project = root / "app"
    project.mkdir(parents=True)
    (project / "package.json").write_text(
        json.dumps({"name": "fixture-app", "version": "0.0.1", "private": True})
    )
    flags = ["--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
    specs = [f"{name}@{version}" for name, version in NPM_PACKAGES.items()]
    run([npm, "install", "--prefix", str(project), *flags, *specs], cwd=project)
    lockfiles = {3: project / "package-lock.json"}
    for version in (1, 2):
        # The same installed tree, described in an older lockfile format (npm rewrites only the lockfile).
        copy = root / f"lock-v{version}"
        shutil.copytree(project, copy, symlinks=True)
        (copy / "package-lock.json").unlink()
        run(
            [
                npm,
                "install",
                "--prefix",
                str(copy),
                *flags,
                "--package-lock-only",
                f"--lockfile-version={version}",
            ]
        )
        lockfiles[version] = copy / "package-lock.json"
    return NpmProject(project, lockfiles)


JS_TOOLS = {"yarn": "1.22.22", "@yarnpkg/cli-dist": "4.5.3", "pnpm": "9.15.0"}


def js_lockfiles(root: Path) -> dict[str, Path]:
    """Real lockfiles of the NPM_PACKAGES project written by yarn v1, yarn berry and pnpm (installed from the
    npm registry into a private prefix): label -> project folder (its lockfile and node_modules)."""
    npm = need("npm")
    node = need("node")
    tools = root / "tools"
    flags = ["--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
    run([npm, "install", "--prefix", str(tools), *flags, *(f"{n}@{v}" for n, v in JS_TOOLS.items())])
    modules = tools / "node_modules"
    specs = [f"{name}@{version}" for name, version in NPM_PACKAGES.items()]
    env = {
        **os.environ,
        "YARN_ENABLE_TELEMETRY": "0",
        "YARN_ENABLE_SCRIPTS": "false",
        "YARN_NODE_LINKER": "node-modules",
        "YARN_ENABLE_GLOBAL_CACHE": "false",
        "COREPACK_ENABLE_STRICT": "0",
    }
    commands = {
        "yarn-v1": [node, str(modules / "yarn/bin/yarn.js"), "add", "--ignore-scripts", "--non-interactive"],
        "yarn-berry": [node, str(modules / "@yarnpkg/cli-dist/bin/yarn.js"), "add"],
        "pnpm": [node, str(modules / "pnpm/bin/pnpm.cjs"), "add", "--ignore-scripts"],
    }
    projects = {}
    for label, command in commands.items():
        project = root / label / "app"
        project.mkdir(parents=True)
        (project / "package.json").write_text(
            json.dumps({"name": "fixture-app", "version": "0.0.1", "private": True})
        )
        run([*command, *specs], cwd=project, env=env)
        projects[label] = project
    return projects


# -- Go


@dataclass
class GoBinaries:
    go_version: str  # what `go env GOVERSION` says, e.g. go1.19.8
    binaries: dict[str, Path]  # label -> executable


GO_MAIN = """\
package main

import (
\t"fmt"

\t"example.com/greet"
\t"example.com/old"
)

func main() { fmt.Println(greet.Hello(), old.Name()) }
"""


def go_binaries(root: Path) -> GoBinaries:
    """A module with one vendored dependency and one replaced one, linked for three targets.

    The module proxy is not reachable from the test machines, so the dependencies are vendored: the build
    info then records them with the versions vendor/modules.txt gives, exactly as for downloaded ones."""
    go = need("go")
    src = root / "src"
    (src / "vendor/example.com/greet").mkdir(parents=True)
    (src / "vendor/example.com/old").mkdir(parents=True)
    (src / "go.mod").write_text(
        textwrap.dedent("""\
            module example.com/hello

            go 1.19

            require (
            \texample.com/greet v1.2.3
            \texample.com/old v1.0.0
            )

            replace example.com/old v1.0.0 => example.com/greet2 v1.3.0
            """)
    )
    (src / "vendor/modules.txt").write_text(
        "# example.com/greet v1.2.3\n## explicit\nexample.com/greet\n"
        "# example.com/old v1.0.0 => example.com/greet2 v1.3.0\n## explicit\nexample.com/old\n"
    )
    (src / "vendor/example.com/greet/greet.go").write_text(
        'package greet\n\nfunc Hello() string { return "hi" }\n'
    )
    (src / "vendor/example.com/old/old.go").write_text('package old\n\nfunc Name() string { return "old" }\n')
    (src / "main.go").write_text(GO_MAIN)
    env = {
        **os.environ,
        "GOCACHE": str(root / "cache"),
        "GOPATH": str(root / "gopath"),
        "GOPROXY": "off",
        "GOFLAGS": "-mod=vendor",
        "CGO_ENABLED": "0",
        "GOTOOLCHAIN": "local",
        "GOTELEMETRY": "off",
    }
    # Native builds only: the Debian toolchain ships its standard library prebuilt for the host, while a
    # cross build (or -trimpath) recompiles it, which costs a minute per target on the test machines.
    targets = {"native": [], "stripped": ["-ldflags=-s -w"]}
    binaries = {}
    for label, flags in targets.items():
        out = root / "bin" / label / "hello"
        run([go, "build", *flags, "-o", str(out), "."], cwd=src, env=env)
        binaries[label] = out
    version = run([go, "env", "GOVERSION"], env=env).strip()
    return GoBinaries(version, binaries)


# -- Java


@dataclass
class JavaArchives:
    app_jar: Path  # pom.properties for com.example:app:1.0.0 and a nested lib/inner-2.1.jar
    war: Path  # WEB-INF/lib holding the app jar (so: nesting two deep) and a manifest-only jar
    manifest_only: Path  # no pom.properties; Implementation-* attributes in MANIFEST.MF


def _jar(jar_tool: str, out: Path, content: Path, manifest: Path | None = None) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [jar_tool, "--create", "--file", str(out)]
    if manifest is not None:
        cmd += ["--manifest", str(manifest)]
    run([*cmd, "-C", str(content), "."])
    return out


def _pom_properties(tree: Path, group: str, artifact: str, version: str) -> None:
    d = tree / "META-INF" / "maven" / group / artifact
    d.mkdir(parents=True)
    (d / "pom.properties").write_text(
        f"#Created by Apache Maven 3.9.6\nartifactId={artifact}\ngroupId={group}\nversion={version}\n"
    )


def java_archives(root: Path) -> JavaArchives:
    jar_tool, javac = need("jar"), need("javac")
    classes = root / "classes"
    classes.mkdir(parents=True)
    (root / "Hello.java").write_text("public class Hello { public static void main(String[] a) {} }\n")
    run([javac, "-d", str(classes), str(root / "Hello.java")])

    inner_tree = root / "inner"
    shutil.copytree(classes, inner_tree)
    _pom_properties(inner_tree, "org.example", "inner", "2.1")
    inner = _jar(jar_tool, root / "out" / "inner-2.1.jar", inner_tree)

    app_tree = root / "app"
    shutil.copytree(classes, app_tree)
    _pom_properties(app_tree, "com.example", "app", "1.0.0")
    (app_tree / "lib").mkdir()
    shutil.copy(inner, app_tree / "lib" / "inner-2.1.jar")
    app = _jar(jar_tool, root / "out" / "app-1.0.0.jar", app_tree)

    manifest = root / "MANIFEST.txt"
    manifest.write_text(
        "Implementation-Title: legacy-util\n"
        "Implementation-Version: 0.9\n"
        "Implementation-Vendor-Id: net.legacy\n"
    )
    manifest_only = _jar(jar_tool, root / "out" / "legacy-util-0.9.jar", classes, manifest)

    war_tree = root / "war"
    (war_tree / "WEB-INF" / "lib").mkdir(parents=True)
    (war_tree / "index.html").write_text("<p>hi</p>\n")
    shutil.copy(app, war_tree / "WEB-INF" / "lib" / app.name)
    shutil.copy(manifest_only, war_tree / "WEB-INF" / "lib" / manifest_only.name)
    war = _jar(jar_tool, root / "out" / "shop.war", war_tree)
    return JavaArchives(app, war, manifest_only)


# -- Image layers and layouts


def gnu_tar(out: Path, tree: Path) -> Path:
    """A layer tar of ``tree`` made by GNU tar, with the ownership a real image has."""
    tar = need("tar")
    run(
        [
            tar,
            "--create",
            "--file",
            str(out),
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
            str(tree),
            ".",
        ]
    )
    return out


def tar_members(blob: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        return [m.name for m in tf.getmembers()]


def umoci_layout(layout: Path, tag: str, layer_tars: list[Path], *, architecture: str = "amd64") -> None:
    """An image in the OCI layout ``layout`` (created if needed) under ``tag``, one layer per tar."""
    umoci = need("umoci")
    if not (layout / "oci-layout").exists():
        run([umoci, "init", "--layout", str(layout)])
    run([umoci, "new", "--image", f"{layout}:{tag}"])
    run([umoci, "config", "--image", f"{layout}:{tag}", "--architecture", architecture, "--os", "linux"])
    for layer in layer_tars:
        run([umoci, "raw", "add-layer", "--image", f"{layout}:{tag}", str(layer)])


# -- Feeding detectors the way the layer walker does


@dataclass
class Walked:
    components: list  # list[Component]
    warnings: list[str]
    wanted: list[str]  # paths the detector asked for


def layer_of(tree: Path, out: Path, prefix: str = "") -> Path:
    """A layer tar holding ``tree`` under ``prefix`` (symlinks kept as symlinks; uncompressed, because
    compression is the walker's business, not the detectors')."""
    with tarfile.open(out, "w") as tf:
        tf.add(tree, arcname=prefix or ".", recursive=True)
    return out


def walk_layer(detector, layer: Path, digest: str = "sha256:" + "ab" * 32) -> Walked:
    """Stream a layer once, front to back (tarfile's ``r|*`` mode: member files cannot seek backwards), and
    hand every regular file the detector wants to its parse(), as the indexer's walker does."""
    walked = Walked([], [], [])
    with tarfile.open(layer, "r|*") as tf:
        for member in tf:
            path = member.name.removeprefix("./").lstrip("/")
            if not member.isfile() or member.size > detector.max_size:
                continue
            if not detector.wants(path, member.mode, member.size):
                continue
            walked.wanted.append(path)
            fileobj = tf.extractfile(member)
            assert fileobj is not None
            result = detector.parse(path, fileobj, member.size, digest)
            walked.components += result.components
            walked.warnings += result.warnings
    return walked


# -- Hand-written image formats (what umoci and skopeo cannot write)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def write_blob(layout: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest[7:]).write_bytes(data)
    return digest


def add_index(layout: Path, ref: str, children: list[tuple[str, dict]]) -> str:
    """A hand-written image index over existing manifests (umoci has no command for one)."""
    index = json.loads((layout / "index.json").read_text())
    by_ref = {d["annotations"]["org.opencontainers.image.ref.name"]: d for d in index["manifests"]}
    manifests = [
        {k: by_ref[tag][k] for k in ("mediaType", "digest", "size")} | {"platform": platform}
        for tag, platform in children
    ]
    # BuildKit adds attestation manifests as platform unknown/unknown: they are not images to scan.
    manifests.append(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifests[0]["digest"],
            "size": manifests[0]["size"],
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
        }
    )
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
    digest = write_blob(layout, body)
    index["manifests"].append(
        {
            "mediaType": OCI_INDEX,
            "digest": digest,
            "size": len(body),
            "annotations": {"org.opencontainers.image.ref.name": ref},
        }
    )
    (layout / "index.json").write_text(json.dumps(index))
    return digest


def docker_save_legacy(path: Path, images: list[tuple[str, list[bytes]]]) -> None:
    """``docker save`` before Docker 25: <id>/layer.tar per layer (repeats are symlinks), <hex>.json."""
    entries, seen = [], {}
    with tarfile.open(path, "w") as tf:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        for n, (tag, layers) in enumerate(images):
            diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
            paths = []
            for i, (layer, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
                name = f"{n}{i}{'0' * 62}/layer.tar"
                if diff_id in seen:
                    link = tarfile.TarInfo(name)
                    link.type, link.linkname = tarfile.SYMTYPE, f"../{seen[diff_id]}"
                    tf.addfile(link)
                else:
                    add(name, layer)
                    seen[diff_id] = name
                paths.append(name)
            config = json.dumps(
                {"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
            ).encode()
            config_name = hashlib.sha256(config).hexdigest() + ".json"
            add(config_name, config)
            entries.append({"Config": config_name, "RepoTags": [tag], "Layers": paths})
        add("manifest.json", json.dumps(entries).encode())


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()
