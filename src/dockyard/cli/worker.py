"""``dockyard worker``: run the job queue (scans, re-matches, feed updates, purges) in a process of its own.

The server runs ``DOCKYARD_JOB_WORKERS`` job threads itself (1 by default), which is all a small store needs.
At scale, set that to 0 and run one or more ``dockyard worker`` processes beside the server: matching and
layer indexing are CPU-bound Python, and in their own processes they do not compete with HTTP for the GIL.
Workers claim jobs from the database, so any number of them (and of servers) can share one queue.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import typer
from rich.console import Console

from dockyard.config import Settings

err = Console(stderr=True)


def worker(
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="job threads in this process"),
    once: bool = typer.Option(
        False, "--once", help="enqueue what is due, run queued jobs until none is left, then exit"
    ),
) -> None:
    """Run background jobs in the foreground until interrupted (or, with --once, until the queue is empty)."""
    from dockyard.jobs import Worker
    from dockyard.runtime import build_runtime

    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("dockyard").setLevel(settings.log_level.upper())
    state = build_runtime(settings)  # the composition root: migrations, services, subscribers, job kinds
    registry = state.jobs
    scheduler = registry.scheduler(state.sessions)
    workers = [
        Worker(state.sessions, registry, bus=state.bus, scheduler=scheduler, services=state.services)
        for _ in range(threads)
    ]
    try:
        if once:
            scheduler.tick()
            counts = [0] * threads

            def drain(i: int) -> None:
                counts[i] = workers[i].run_until_idle()

            pool = [threading.Thread(target=drain, args=(i,)) for i in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            err.print(f"ran {sum(counts)} jobs")
            return
        stop = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        for w in workers:
            w.start()
        err.print(f"dockyard worker: {threads} job thread{'s' if threads != 1 else ''} (Ctrl-C stops)")
        while not stop.wait(1):
            pass
        err.print("stopping: waiting for running jobs")
        for w in workers:
            w.stop(timeout=60)
    finally:
        state.engine.dispose()
