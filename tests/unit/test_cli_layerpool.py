"""``dockyard scan``'s layer workers (dockyard.cli.layerpool): real forked processes, what they send back, how
their failures reach the user, and that nothing of them outlives the pool."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
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


def wait_for(path: Path, seconds: float = 20) -> None:
    """In a worker: until another process creates ``path`` (a bounded wait, so a broken pool fails)."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} never came")
        time.sleep(0.01)


def test_a_worker_with_more_than_a_pipe_holds_does_not_stall_while_another_is_awaited(tmp_path: Path) -> None:
    """Worker 2 sends layer B's facts (far more than a pipe holds) before it reads C; worker 1's layer A,
    the one the parent waits for first, is finished only once C has begun. Reading only A's pipe, the
    parent would never drain B's facts, C would never begin and A never end."""
    big, small = layer(2, 50), layer(3, 10)
    c_began = tmp_path / "c-began"

    def index(ref: LayerRef, advance) -> LayerFacts:  # type: ignore[no-untyped-def]
        if ref.digest == small.digest:
            c_began.touch()
        elif ref.digest != big.digest:  # A
            wait_for(c_began)
        warnings = ["x" * 1000] * 4000 if ref.digest == big.digest else []  # 4 MB of JSON
        return LayerFacts(digest=ref.digest, warnings=warnings)

    layers = [layer(1, 100), big, small]  # A to worker 1 (the largest), B and C to worker 2
    assert [len(share) for share in share_out(layers, 2)] == [1, 2]
    before = child_processes()
    with LayerPool(layers, index, repr, workers=2) as pool:
        assert [len(pool.facts(ref.digest).warnings) for ref in layers] == [0, 4000, 0]
    assert child_processes() == before


def test_by_default_one_worker_per_cpu_this_process_may_use_at_most_four(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dockyard.cli.layerpool import MAX_DEFAULT_WORKERS, default_workers

    allowed = os.sched_getaffinity(0)
    try:  # taskset (or a container's cpuset) gives this process one CPU of the machine's
        os.sched_setaffinity(0, {min(allowed)})
        assert default_workers() == 1
    finally:
        os.sched_setaffinity(0, allowed)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))  # a large machine
    assert default_workers() == MAX_DEFAULT_WORKERS == 4


def test_a_worker_killed_by_a_signal_says_so_with_a_hint_about_memory() -> None:
    def killed(ref: LayerRef, advance) -> LayerFacts:  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does
        raise AssertionError("not reached")

    before = child_processes()
    with (
        LayerPool([layer(1, 10)], killed, repr, workers=1) as pool,
        pytest.raises(WorkerFailed, match=r"layer worker killed by SIGKILL \(out of memory\?"),
    ):
        pool.facts(layer(1, 10).digest)
    assert child_processes() == before


def test_workers_ignore_interrupts_the_parent_alone_stops_them(tmp_path: Path) -> None:
    """^C at a terminal reaches the whole process group: a worker must not fail its layer on it (nor run on
    into the caller's frames); the parent decides, and it is the one that gets KeyboardInterrupt."""
    go = tmp_path / "go"

    def waits(ref: LayerRef, advance) -> LayerFacts:  # type: ignore[no-untyped-def]
        wait_for(go)
        return facts_in_worker(ref, advance)

    before = child_processes()
    with LayerPool([layer(1, 10), layer(2, 10)], waits, repr, workers=2) as pool:
        workers = child_processes() - before
        assert len(workers) == 2
        for pid in workers:  # at once: until a worker's handlers are set, the signal waits, blocked
            os.kill(pid, signal.SIGINT)
        time.sleep(0.2)
        go.touch()
        assert [pool.facts(layer(n, 10).digest).warnings for n in (1, 2)] == [["read 10"]] * 2
    assert child_processes() == before


def test_when_no_worker_can_be_forked_the_layers_are_left_to_the_caller(tmp_path: Path) -> None:
    """A real EAGAIN from fork (no processes left to this user: RLIMIT_NPROC), in a process of its own."""
    script = textwrap.dedent(
        """
        import fcntl, io, os, resource
        from dockyard.cli.layerpool import LayerPool
        from dockyard.scanning.sources import LayerRef

        if os.getuid() == 0:  # root may exceed RLIMIT_NPROC: nobody, once all is imported, may not
            os.setgid(65534)
            os.setuid(65534)
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))

        layers = [LayerRef(f"sha256:{n:064x}", "x", 10, io.BytesIO) for n in (1, 2, 3)]
        warnings = []
        with LayerPool(layers, None, repr, workers=2, warn=warnings.append) as pool:
            print(bool(pool), [ref.digest in pool for ref in layers])
        for line in warnings:
            print(line)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "False [False, False, False]",
        "cannot start a layer worker process (Resource temporarily unavailable): reading 3 layers in the "
        "scanning process",
    ]


def test_a_second_interrupt_while_closing_kills_and_reaps_the_workers(tmp_path: Path) -> None:
    """^C, then ^C again while the pool closes, with workers slow to stop (here: deaf to SIGTERM, as one
    busy in a long system call would be for a while): none is left running or unreaped."""

    def deaf(ref: LayerRef, advance) -> LayerFacts:  # type: ignore[no-untyped-def]
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        (tmp_path / ref.digest[-4:]).touch()
        time.sleep(30)
        raise AssertionError("not reached")

    before = child_processes()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt), LayerPool([layer(1, 10), layer(2, 10)], deaf, repr, workers=2):
        while len(list(tmp_path.iterdir())) < 2:
            time.sleep(0.01)
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()  # the second ^C
        raise KeyboardInterrupt  # the first
    assert time.monotonic() - began < 4  # killed at the second ^C, not after the grace period
    assert child_processes() == before


def test_a_worker_that_does_not_stop_in_time_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dockyard.cli import layerpool

    monkeypatch.setattr(layerpool, "STOP_GRACE", 0.3)

    def deaf(ref: LayerRef, advance) -> LayerFacts:  # type: ignore[no-untyped-def]
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        (tmp_path / "started").touch()
        time.sleep(30)
        raise AssertionError("not reached")

    before = child_processes()
    began = time.monotonic()
    with LayerPool([layer(1, 10)], deaf, repr, workers=1):
        wait_for(tmp_path / "started")
    assert time.monotonic() - began < 10
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
