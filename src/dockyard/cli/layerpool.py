"""Index a scan's layers in forked worker processes while the scanning process does the rest of its start.

A cold ``dockyard scan`` spends most of its time on two things that do not depend on each other: reading
the layers (inflating and walking the tars, the detectors) and importing SQLAlchemy, the models and the
matcher and opening the database. The pool is forked before those imports, so each worker is a small copy
of a process that has imported only the indexer; the parent goes on importing while they read. Layers are
shared out by size (largest first, each to the least-loaded worker), one worker per CPU at most.

A worker sends frames down its own pipe: progress (bytes read of a layer), a layer's facts (the JSON the
layer cache stores) or the one-line error message the user is to see. A worker never returns into the
caller's frames: whatever happens it leaves through ``os._exit``, so the parent's ``with`` blocks (the
image source's temporary directory, the database) are unwound once, by the parent. ``close`` stops and
reaps every worker still running (SIGTERM, which a worker turns into an orderly exit so that a layer-cache
entry being written is removed rather than left half-written).
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockyard.scanning.indexer import LayerFacts
    from dockyard.scanning.sources import LayerRef

_FRAME = struct.Struct("!cIQ")  # kind, layer number within the worker, bytes read or payload length
_PROGRESS, _FACTS, _ERROR = b"P", b"F", b"E"
PROGRESS_INTERVAL = 0.1  # seconds between progress frames: a few hundred bytes a minute in the pipe

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
    exited: bool = False


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


class LayerPool:
    """Workers indexing ``layers``; ``facts(digest)`` waits for a layer's facts. A context manager."""

    def __init__(
        self,
        layers: Sequence[LayerRef],
        index: IndexLayer,
        describe: Callable[[BaseException], str],
        workers: int,
    ) -> None:
        self._workers: list[_Worker] = []
        self._done: dict[str, LayerFacts] = {}
        self._owner: dict[str, _Worker] = {}
        self._read: dict[str, int] = {}  # bytes read that no caller has been told of yet, by layer
        try:
            for share in share_out(layers, workers) if layers else []:
                self._fork(share, index, describe)
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
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            os.close(read_fd)
            for other in self._workers:
                os.close(other.fd)
            _work(write_fd, share, index, describe)
        os.close(write_fd)
        worker = _Worker(pid, read_fd, share)
        self._workers.append(worker)
        for layer in share:
            self._owner[layer.digest] = worker

    def facts(self, digest: str, advance: Callable[[int], None] | None = None) -> LayerFacts:
        """The facts of a layer a worker indexes, waiting for them (``advance`` gets the bytes read as the
        worker reports them); WorkerFailed with the worker's message when it failed."""
        from dockyard.scanning.indexer import LayerFacts

        worker = self._owner[digest]
        while True:
            if advance is not None and self._read.get(digest):
                advance(self._read.pop(digest))
            if digest in self._done:
                return self._done[digest]
            if worker.exited:
                raise WorkerFailed(f"layer {digest}: the indexing process ended without its facts")
            chunk = os.read(worker.fd, 1 << 20)
            if not chunk:
                self._reap(worker)
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
                    raise WorkerFailed(payload.decode("utf-8", "replace"))

    def _reap(self, worker: _Worker) -> None:
        if not worker.exited:
            os.close(worker.fd)
            os.waitpid(worker.pid, 0)
            worker.exited = True

    def close(self) -> None:
        """Stop the workers still running and reap all of them: no process is left behind."""
        for worker in self._workers:
            if not worker.exited:
                with contextlib.suppress(ProcessLookupError):  # it has exited; waitpid reaps it
                    os.kill(worker.pid, signal.SIGTERM)
        for worker in self._workers:
            self._reap(worker)


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
    raise SystemExit(1)


def _work(
    fd: int, share: list[LayerRef], index: IndexLayer, describe: Callable[[BaseException], str]
) -> None:
    code = 1
    try:
        signal.signal(signal.SIGTERM, _stop)  # unwinds (and removes a half-written cache entry) first
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
