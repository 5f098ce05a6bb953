"""``dockyard scan``'s layer workers (dockyard.cli.layerpool): real forked processes, what they send back, how
their failures reach the user, and that nothing of them outlives the pool."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from tests.support.cli import child_processes

from dockyard.cli.layerpool import LayerPool, WorkerFailed, share_out
from dockyard.scanning.indexer import LayerFacts
from dockyard.scanning.sources import LayerRef

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the pool forks")


def layer(n: int, size: int) -> LayerRef:
    return LayerRef(f"sha256:{n:064x}", "application/vnd.oci.image.layer.v1.tar+gzip", size, io.BytesIO)


def facts_in_worker(ref: LayerRef, advance) -> LayerFacts:  # type: ignore[no-untyped-def]
    for _ in range(ref.size // 1000):
        advance(1000)
    return LayerFacts(digest=ref.digest, os_files={"pid": str(os.getpid())}, warnings=[f"read {ref.size}"])


def test_share_out_balances_by_size_and_keeps_image_order() -> None:
    layers = [layer(1, 100), layer(2, 10), layer(3, 60), layer(4, 10), layer(5, 30)]
    shares = share_out(layers, 2)
    assert [[ref.size for ref in share] for share in shares] == [[100, 10], [10, 60, 30]]
    assert share_out(layers, 8) == [[ref] for ref in sorted(layers, key=lambda ref: -ref.size)]
    assert share_out(layers[:1], 0) == [layers[:1]]


def test_facts_come_from_other_processes_with_their_progress() -> None:
    before = child_processes()
    layers = [layer(1, 50_000), layer(2, 3_000), layer(3, 20_000)]
    seen: dict[str, int] = {}
    with LayerPool(layers, facts_in_worker, repr, workers=2) as pool:
        assert all(ref.digest in pool for ref in layers)
        for ref in layers:
            facts = pool.facts(ref.digest, lambda n, d=ref.digest: seen.__setitem__(d, seen.get(d, 0) + n))
            assert facts.digest == ref.digest and facts.warnings == [f"read {ref.size}"]
            assert facts.os_files["pid"] != str(os.getpid())
            assert seen[ref.digest] == ref.size  # every byte reported, the last few with the facts
    pids = {pool.facts(ref.digest).os_files["pid"] for ref in layers}
    assert len(pids) == 2  # two workers for three layers
    assert child_processes() == before


def test_an_error_in_a_worker_is_the_message_describe_gives() -> None:
    def fails(ref: LayerRef, advance) -> LayerFacts:  # type: ignore[no-untyped-def]
        raise OSError(2, "No such file or directory", f"/blobs/{ref.digest}")

    before = child_processes()
    describe = lambda exc: f"described: {exc.strerror}"  # noqa: E731
    with (
        LayerPool([layer(1, 10)], fails, describe, workers=1) as pool,
        pytest.raises(WorkerFailed, match=r"^described: No such file or directory$"),
    ):
        pool.facts(layer(1, 10).digest)
    assert child_processes() == before


def test_a_worker_that_dies_is_an_error_not_a_hang() -> None:
    def dies(ref: LayerRef, advance) -> LayerFacts:  # type: ignore[no-untyped-def]
        os._exit(3)

    with (
        LayerPool([layer(1, 10)], dies, repr, workers=1) as pool,
        pytest.raises(WorkerFailed, match="ended without its facts"),
    ):
        pool.facts(layer(1, 10).digest)


def test_closing_stops_busy_workers_and_they_clean_up(tmp_path: Path) -> None:
    """What the scan does when it fails in the parent (an empty database, ^C) while workers still read."""
    started = tmp_path / "started"

    def slow(ref: LayerRef, advance) -> LayerFacts:  # type: ignore[no-untyped-def]
        partial = tmp_path / f".tmp-{ref.digest[-8:]}"
        partial.write_text("half an entry")
        try:
            started.touch()
            time.sleep(60)
        finally:
            partial.unlink()
        raise AssertionError("not reached")

    before = child_processes()
    began = time.monotonic()
    with LayerPool([layer(1, 10), layer(2, 10)], slow, repr, workers=2):
        while not started.exists() or len(list(tmp_path.glob(".tmp-*"))) < 2:
            time.sleep(0.01)
    assert time.monotonic() - began < 30
    assert child_processes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["started"]  # both partial files removed
