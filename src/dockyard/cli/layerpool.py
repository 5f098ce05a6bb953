"""Index a scan's layers in forked worker processes while the scanning process does the rest of its start.

A cold ``dockyard scan`` spends most of its time on two things that do not depend on each other: reading
the layers (inflating and walking the tars, the detectors) and importing SQLAlchemy, the models and the
matcher and opening the database. The pool is forked before those imports, so each worker is a small copy
of a process that has imported only the indexer; the parent goes on importing while they read. Layers are
shared out by size (largest first, each to the least-loaded worker), at most one worker per layer.

A worker sends frames down its own pipe: progress (bytes read of a layer), a layer's facts (the JSON the
layer cache stores) or the one-line error message the user is to see. While the parent waits for one
layer it reads every worker's pipe, so no worker stalls on a full pipe (a large facts frame) meanwhile. A
worker never returns into the caller's frames: whatever happens it leaves through ``os._exit``, so the
parent's ``with`` blocks (the image source's temporary directory, the database) are unwound once, by the
parent. Workers ignore ^C (the terminal sends it to them too): the parent alone decides when they stop.
``close`` stops and reaps every worker still running (SIGTERM, which a worker turns into an orderly exit
so that a layer-cache entry being written is removed rather than left half-written; SIGKILL for one that
does not stop in time or when ^C is pressed again).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.scanning.indexer import LayerFacts
    from dockyard.scanning.sources import LayerRef

_FRAME = struct.Struct("!cIQ")  # kind, layer number within the worker, bytes read or payload length
_PROGRESS, _FACTS, _ERROR = b"P", b"F", b"E"
PROGRESS_INTERVAL = 0.1  # seconds between progress frames: a few hundred bytes a minute in the pipe
# More workers than this by default gain little (the parent's own start-up and matching remain) and each
# holds a layer's inflate buffers and facts in memory; DOCKYARD_SCAN_WORKERS asks for more.
MAX_DEFAULT_WORKERS = 4
# Seconds a worker has to stop after SIGTERM before it is killed: an orderly stop takes milliseconds, so
# only a worker stuck in a system call or in C code for this long loses its half-written cache entry.
STOP_GRACE = 5.0
# A larger pipe (Linux; 1 MiB is the unprivileged maximum by default) lets a worker hand over a large
# layer's facts and go on to its next layer while the parent is still importing, before it waits.
_PIPE_SIZE = 1 << 20
_STOPPING = {signal.SIGINT, signal.SIGTERM}  # not delivered between a fork and the child's handlers

# (layer, advance(bytes read)) -> the layer's facts; raises to fail the scan.
IndexLayer = Callable[["LayerRef", Callable[[int], None]], "LayerFacts"]


class WorkerFailed(Exception):
    """A worker could not index a layer; ``str()`` is the message for the user."""


@dataclass
class _Worker:
    pid: int
    fd: int
    layers: list[LayerRef]
    buffer: bytearray = field(default_factory=bytearray)
    error: str | None = None  # the message it sent: it reads no further layer
    status: int | None = None  # its wait status once reaped

    @property
    def exited(self) -> bool:
        return self.status is not None


def default_workers() -> int:
    """One worker per CPU this process may run on (a container's or ``taskset``'s CPU set, not the host's
    count, which would oversubscribe a small share of a large machine), at most MAX_DEFAULT_WORKERS."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        usable = os.cpu_count() or 1
    return max(1, min(usable, MAX_DEFAULT_WORKERS))


def share_out(layers: Sequence[LayerRef], workers: int) -> list[list[LayerRef]]:
    """Layers for each of at most ``workers`` workers: largest first, each to the least-loaded one, and
    each worker's list in image order (so the layer the parent needs first tends to come first)."""
    workers = max(1, min(workers, len(layers)))
    shares: list[list[LayerRef]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for layer in sorted(layers, key=lambda ref: -(ref.size or 0)):
        least = loads.index(min(loads))
        shares[least].append(layer)
        loads[least] += layer.size or 1
    order = {id(ref): i for i, ref in enumerate(layers)}
    return [sorted(share, key=lambda ref: order[id(ref)]) for share in shares if share]


def _ignore(message: str) -> None:
    pass


class LayerPool:
    """Workers indexing ``layers``; ``facts(digest)`` waits for a layer's facts. A context manager.

    When a worker cannot be started (fork or pipe fails: EAGAIN, ENOMEM, EMFILE) the pool says so through
    ``warn`` and starts no more: the layers it would have read are not ``in`` the pool, and the caller reads
    them itself."""

    def __init__(
        self,
        layers: Sequence[LayerRef],
        index: IndexLayer,
        describe: Callable[[BaseException], str],
        workers: int,
        warn: Callable[[str], None] = _ignore,
    ) -> None:
        self._workers: list[_Worker] = []
        self._done: dict[str, LayerFacts] = {}
        self._owner: dict[str, _Worker] = {}
        self._read: dict[str, int] = {}  # bytes read that no caller has been told of yet, by layer
        self._selector = selectors.DefaultSelector()
        try:
            shares = share_out(layers, workers) if layers else []
            for started, share in enumerate(shares):
                try:
                    self._fork(share, index, describe)
                except OSError as exc:
                    unstarted = sum(len(s) for s in shares[started:])
                    warn(
                        f"cannot start a layer worker process ({exc.strerror or exc}): reading {unstarted} "
                        f"layer{'s' if unstarted != 1 else ''} in the scanning process"
                    )
                    break
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> LayerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __bool__(self) -> bool:
        """Whether any worker was started."""
        return bool(self._workers)

    def __contains__(self, digest: str) -> bool:
        return digest in self._owner

    def _fork(
        self, share: list[LayerRef], index: IndexLayer, describe: Callable[[BaseException], str]
    ) -> None:
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(ImportError, AttributeError, OSError):  # not Linux, a lower limit: smaller
            import fcntl

            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        # ^C or SIGTERM between the fork and the child's own handlers would raise in the child's copy of
        # the caller's frames: both wait, blocked, until the child has set its handlers.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
        try:
            try:
                pid = os.fork()
            except OSError:
                os.close(read_fd)
                os.close(write_fd)
                raise
            if pid == 0:  # the worker: never returns
                try:
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    signal.signal(signal.SIGTERM, _stop)  # unwinds (removing a half-written entry) first
                    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                    self._selector.close()  # the parent's
                    os.close(read_fd)
                    for other in self._workers:
                        os.close(other.fd)
                    _work(write_fd, share, index, describe)
                finally:
                    os._exit(1)
            # Recorded before ^C is let through again: close() must know of every worker there is.
            os.close(write_fd)
            worker = _Worker(pid, read_fd, share)
            self._workers.append(worker)
            for layer in share:
                self._owner[layer.digest] = worker
            self._selector.register(read_fd, selectors.EVENT_READ, worker)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def facts(self, digest: str, advance: Callable[[int], None] | None = None) -> LayerFacts:
        """The facts of a layer a worker indexes, waiting for them (``advance`` gets the bytes read as the
        worker reports them); WorkerFailed with the worker's message when it failed."""
        worker = self._owner[digest]
        while True:
            if advance is not None and self._read.get(digest):
                advance(self._read.pop(digest))
            if digest in self._done:
                return self._done[digest]
            if worker.error is not None:  # this layer's, or an earlier one's of the same worker
                raise WorkerFailed(worker.error)
            if worker.status is not None:
                raise WorkerFailed(f"layer {digest}: {_ending(worker.status)}")
            self._take_in()

    def _take_in(self, timeout: float | None = None, *, keep: bool = True) -> None:
        """Wait (at most ``timeout``) until a worker writes or exits, and take in what every ready worker
        sent: all pipes are read, not only the awaited worker's, so that a worker with more to send than a
        pipe holds is never left blocked while the parent waits for another (whose layer may come last).
        ``keep=False``: read and drop, only to see the workers' ends."""
        from dockyard.scanning.indexer import LayerFacts

        for key, _ in self._selector.select(timeout):
            worker: _Worker = key.data
            chunk = os.read(worker.fd, 1 << 20)
            if not chunk:
                self._reap(worker)
                continue
            if not keep:
                continue
            worker.buffer += chunk
            for kind, number, payload in _frames(worker.buffer):
                layer = worker.layers[number]
                if kind == _PROGRESS:
                    self._read[layer.digest] = self._read.get(layer.digest, 0) + int.from_bytes(
                        payload, "big"
                    )
                elif kind == _FACTS:
                    self._done[layer.digest] = LayerFacts.from_json(payload)
                else:
                    worker.error = payload.decode("utf-8", "replace")

    def _reap(self, worker: _Worker) -> None:
        if not worker.exited:
            with contextlib.suppress(KeyError, ValueError):  # not registered, or the selector is closed
                self._selector.unregister(worker.fd)
            os.close(worker.fd)
            worker.status = os.waitpid(worker.pid, 0)[1]

    def _signal(self, signum: int) -> None:
        for worker in self._workers:
            if not worker.exited:
                with contextlib.suppress(ProcessLookupError):  # it has exited; waitpid reaps it
                    os.kill(worker.pid, signum)

    def close(self) -> None:
        """Stop the workers still running and reap all of them: no process is left behind, whether they
        stop in time or not, and however often ^C is pressed meanwhile (a ^C while closing kills the
        workers at once, then is raised as KeyboardInterrupt once they are reaped)."""
        with self._interrupt_kills() as interrupted:
            self._signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            while any(not worker.exited for worker in self._workers):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._signal(signal.SIGKILL)
                    for worker in self._workers:
                        self._reap(worker)
                    break
                # Each pipe is read to its end, which is the worker's exit (what is in it no longer matters).
                self._take_in(remaining, keep=False)
            self._selector.close()
        if interrupted:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def _interrupt_kills(self) -> Iterator[list[bool]]:
        """While closing, ^C kills the workers instead of raising between a kill and a waitpid (which would
        leave them running, or unreaped); yields a list that is not empty once ^C was pressed."""
        interrupted: list[bool] = []
        if threading.current_thread() is not threading.main_thread():  # only it may set handlers
            yield interrupted
            return

        def kill(signum: int, frame: FrameType | None) -> None:
            interrupted.append(True)
            self._signal(signal.SIGKILL)

        previous = signal.signal(signal.SIGINT, kill)
        try:
            yield interrupted
        finally:
            signal.signal(signal.SIGINT, previous)


def _ending(status: int) -> str:
    """How a worker that sent no facts ended, for the user: a signal (the OOM killer's SIGKILL) or a code."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == signal.SIGKILL:  # what the kernel's OOM killer sends; nothing else here does
            return (
                f"layer worker killed by {name} (out of memory? fewer workers need less: "
                "DOCKYARD_SCAN_WORKERS=1, or 0 to read the layers in the scanning process)"
            )
        return f"layer worker killed by {name}"
    return f"the indexing process ended without its facts (exit status {os.waitstatus_to_exitcode(status)})"


def _frames(buffer: bytearray) -> list[tuple[bytes, int, bytes]]:
    """The complete frames at the start of ``buffer`` (removed from it)."""
    frames = []
    while len(buffer) >= _FRAME.size:
        kind, number, length = _FRAME.unpack_from(buffer)
        if len(buffer) < _FRAME.size + length:
            break
        frames.append((kind, number, bytes(buffer[_FRAME.size : _FRAME.size + length])))
        del buffer[: _FRAME.size + length]
    return frames


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _send(fd: int, kind: bytes, number: int, payload: bytes) -> None:
    _write_all(fd, _FRAME.pack(kind, number, len(payload)) + payload)


def _stop(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one must not interrupt the unwinding
    raise SystemExit(1)


def _work(
    fd: int, share: list[LayerRef], index: IndexLayer, describe: Callable[[BaseException], str]
) -> None:
    code = 1
    try:
        for number, layer in enumerate(share):
            pending, last = 0, time.monotonic()

            def advance(n: int, number: int = number) -> None:
                nonlocal pending, last
                pending += n
                now = time.monotonic()
                if now - last >= PROGRESS_INTERVAL:
                    _send(fd, _PROGRESS, number, pending.to_bytes(8, "big"))
                    pending, last = 0, now

            try:
                facts = index(layer, advance)
            except BaseException as exc:
                _send(fd, _ERROR, number, describe(exc).encode("utf-8", "replace"))
                return
            if pending:
                _send(fd, _PROGRESS, number, pending.to_bytes(8, "big"))
            _send(fd, _FACTS, number, facts.to_json().encode())
        code = 0
    except BaseException:  # the parent is gone (a broken pipe) or stopped us: nothing more to say
        pass
    finally:
        os._exit(code)
