"""Decompress a layer blob as a stream, with guards against compression bombs and truncation.

The compression is told by magic bytes (a media type is only a hint and often wrong). Output is produced
in bounded steps whatever the ratio, the total and the ratio to the compressed bytes really consumed are
checked at every step, and a stream that ends where its format says more must follow is an error rather
than a quiet end: that is how a truncated layer is told from one that is merely missing its tar trailer.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import zlib
from typing import BinaryIO, Protocol

import zstandard

from dockyard.scanning.types import UnsafeInput

try:  # ISA-L inflates gzip about twice as fast as zlib, and inflating is most of the time a layer takes
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a dependency; plain zlib is only slower
    _zlib = zlib  # type: ignore[assignment]

KIB, MIB = 1 << 10, 1 << 20
_IN_CHUNK = 256 * KIB  # compressed bytes per read: small, so the ratio guard sees what was really consumed
_OUT_CHUNK = 1 * MIB  # decompressed bytes per step: bounds memory whatever the compression ratio
_GZIP_ERRORS = (zlib.error, getattr(_zlib, "error", zlib.error))
_PREFETCH = 4  # decompressed chunks a prefetching thread may hold ready: bounded memory


class LayerError(UnsafeInput):
    """The layer stream itself is unsafe or broken; raised through detectors, never turned into a warning."""


class _Decoder(Protocol):
    def read_chunk(self) -> bytes:
        """The next decompressed bytes (at most _OUT_CHUNK), or b"" at the end of the stream."""

    def consumed(self) -> int:
        """Compressed bytes consumed so far."""


class _Input:
    """The compressed bytes: lets the first few be peeked at and counts what was read."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._head = b""
        self.count = 0

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            chunk = self._raw.read(n - len(self._head))
            if not chunk:
                break
            self._head += chunk
        return self._head[:n]

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out = self._head if n < 0 else self._head[:n]
            self._head = self._head[len(out) :]
        else:
            out = self._raw.read(n)
        self.count += len(out)
        return out


class _PlainDecoder:
    def __init__(self, src: _Input) -> None:
        self._src = src

    def read_chunk(self) -> bytes:
        return self._src.read(_OUT_CHUNK)

    def consumed(self) -> int:
        return self._src.count


class _GzipDecoder:
    """Gzip, including streams of several members (eStargz layers have one per file)."""

    def __init__(self, src: _Input) -> None:
        self._src = src
        self._d = _zlib.decompressobj(31)
        self._in = b""
        self._between = False  # a member ended; another may follow

    def consumed(self) -> int:
        return self._src.count - len(self._in)

    def read_chunk(self) -> bytes:
        while True:
            if not self._in:
                self._in = self._src.read(_IN_CHUNK)
                if not self._in:
                    if self._between:
                        return b""
                    raise LayerError("truncated layer: the gzip stream ends inside a member")
            if self._between:
                rest = self._in.lstrip(b"\0")  # some writers pad between members
                if not rest:
                    self._in = b""
                    continue
                if rest[:1] != b"\x1f":  # trailing bytes that are not gzip: the stream is over
                    self._in = b""
                    return b""
                self._in, self._between = rest, False
                self._d = _zlib.decompressobj(31)
            try:
                out = self._d.decompress(self._in, _OUT_CHUNK)
            except _GZIP_ERRORS as exc:
                raise LayerError(f"corrupt gzip stream: {exc}") from None
            if self._d.eof:
                self._in, self._between = self._d.unused_data, True
            else:
                self._in = self._d.unconsumed_tail
            if out:
                return out


class _ZstdFrames:
    """Follows zstd frame and block headers in the compressed bytes, because the zstandard reader reports a
    stream cut inside a frame as a clean end: only frame boundaries are legitimate ends."""

    def __init__(self) -> None:
        self._state, self._need, self._acc, self._skip, self._checksum = "magic", 4, b"", 0, False

    @property
    def complete(self) -> bool:
        return self._state == "magic" and not self._acc and not self._skip

    def feed(self, data: bytes) -> None:
        pos, n = 0, len(data)
        while pos < n:
            if self._skip:
                step = min(self._skip, n - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._need - len(self._acc), n - pos)
            self._acc += data[pos : pos + take]
            pos += take
            if len(self._acc) == self._need:
                value, self._acc = self._acc, b""
                self._advance(value)

    def _advance(self, value: bytes) -> None:
        num = int.from_bytes(value, "little")
        if self._state == "magic":
            if num == 0xFD2FB528:
                self._state, self._need = "frame", 1
            elif num & 0xFFFFFFF0 == 0x184D2A50:
                self._state, self._need = "skippable", 4
            else:
                raise LayerError("corrupt zstd stream: no frame magic where a frame should start")
        elif self._state == "skippable":
            self._skip, self._state, self._need = num, "magic", 4
        elif self._state == "frame":
            single_segment = num >> 5 & 1
            self._checksum = bool(num & 4)
            fcs = (single_segment, 2, 4, 8)[num >> 6]
            self._skip = (0 if single_segment else 1) + (0, 1, 2, 4)[num & 3] + fcs
            self._state, self._need = "block", 3
        elif self._state == "block":
            block_type, size = num >> 1 & 3, num >> 3
            if block_type == 3:
                raise LayerError("corrupt zstd stream: reserved block type")
            self._skip = 1 if block_type == 1 else size
            if num & 1:  # last block of the frame
                self._state, self._need = ("checksum", 4) if self._checksum else ("magic", 4)
        else:  # checksum
            self._state, self._need = "magic", 4


class _ZstdDecoder:
    def __init__(self, src: _Input) -> None:
        self._src = src
        self._frames = _ZstdFrames()
        # The decompressor's default window limit (128 MiB) bounds the memory a hostile frame can demand.
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            self, read_size=_IN_CHUNK, read_across_frames=True, closefd=False
        )

    def read(self, n: int = -1) -> bytes:  # the zstandard reader's source
        data = self._src.read(n)
        self._frames.feed(data)
        return data

    def consumed(self) -> int:
        return self._src.count

    def read_chunk(self) -> bytes:
        try:
            out = self._reader.read(_OUT_CHUNK)
        except zstandard.ZstdError as exc:
            raise LayerError(f"corrupt zstd stream: {exc}") from None
        if not out and not self._frames.complete:
            raise LayerError("truncated layer: the zstd stream ends inside a frame")
        return out


class _Prefetched:
    """A decoder run by a thread a few chunks ahead of its reader. ISA-L, zlib and zstd release the GIL, and
    so do reading and hashing the compressed bytes, so inflating overlaps the tar walk and the detectors
    (about a third of a cold layer's time). ``close`` stops and joins the thread, after which the input is
    the caller's again. An error the thread met in what the reader never asked for (reading ahead past the
    tar's end) is kept as ``undelivered``: a source's digest check fails there, at the last byte."""

    def __init__(self, decoder: _Decoder) -> None:
        self._decoder = decoder
        self._ready: queue.Queue[tuple[bytes, int, BaseException | None]] = queue.Queue(_PREFETCH)
        self._stop = threading.Event()
        self._consumed, self._over, self._closed = 0, False, False
        self._failure: BaseException | None = None
        self.undelivered: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="layer-inflate", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._decoder.read_chunk()
                self._put((chunk, self._decoder.consumed(), None))
                if not chunk:
                    return
        except BaseException as exc:  # raised in the reader's thread, where it would have been raised
            self._failure = exc
            self._put((b"", 0, exc))

    def _put(self, item: tuple[bytes, int, BaseException | None]) -> None:
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def read_chunk(self) -> bytes:
        if self._closed:
            raise ValueError("read from a closed layer stream")
        if self._over:
            return b""
        chunk, consumed, exc = self._ready.get()
        if exc is not None:
            self._over, self._failure = True, None
            raise exc
        self._over, self._consumed = not chunk, consumed
        return chunk

    def consumed(self) -> int:
        return self._consumed

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):  # a chunk taken makes room for one the thread puts
                self._ready.get_nowait()
            self._thread.join(0.01)
        if not self._closed:
            self._closed, self.undelivered = True, self._failure


class DecompressedStream:
    """The decompressed bytes of a blob, with the size and ratio guards applied as they are produced."""

    def __init__(
        self, fileobj: BinaryIO, max_bytes: int, bomb_min_bytes: int, max_ratio: int, prefetch: bool = False
    ) -> None:
        self.max_bytes, self.bomb_min_bytes, self.max_ratio = max_bytes, bomb_min_bytes, max_ratio
        src = _Input(fileobj)
        magic = src.peek(4)
        self._decoder: _Decoder
        if magic[:2] == b"\x1f\x8b":
            self.compression, self._decoder = "gzip", _GzipDecoder(src)
        elif magic == b"\x28\xb5\x2f\xfd" or (
            len(magic) == 4 and magic[0] & 0xF0 == 0x50 and magic[1:] == b"\x2a\x4d\x18"
        ):
            self.compression, self._decoder = "zstd", _ZstdDecoder(src)
        elif magic[:3] == b"BZh" or magic[:4] == b"\xfd7zX":
            raise LayerError("unsupported layer compression (bzip2/xz); OCI layers are tar, gzip or zstd")
        else:
            self.compression, self._decoder = "none", _PlainDecoder(src)
        self._prefetched = _Prefetched(self._decoder) if prefetch and self.compression != "none" else None
        if self._prefetched is not None:
            self._decoder = self._prefetched
        self._buf = b""
        self._pos = 0
        self.total = 0

    def close(self) -> None:
        """Stop a prefetching thread (the stream then reads no more of its input)."""
        if self._prefetched is not None:
            self._prefetched.close()

    def source_failure(self) -> BaseException | None:
        """After ``close``: an error reading the compressed bytes that the prefetching thread met ahead of the
        reader and nobody saw (a digest or length mismatch found at the blob's last byte). An error in the
        compressed data past the tar's end is not one: a stream read without prefetching never reaches it."""
        failure = self._prefetched.undelivered if self._prefetched is not None else None
        return None if isinstance(failure, LayerError) else failure

    def _fill(self) -> bool:
        chunk = self._decoder.read_chunk()
        if not chunk:
            return False
        self.total += len(chunk)
        if self.total > self.max_bytes:
            raise LayerError(f"layer decompresses to more than {self.max_bytes} bytes")
        consumed = self._decoder.consumed()
        if self.total > self.bomb_min_bytes and self.total > self.max_ratio * max(1, consumed):
            raise LayerError(
                f"compression bomb: {self.total} bytes from {consumed} compressed "
                f"(more than {self.max_ratio}:1)"
            )
        self._buf, self._pos = chunk, 0
        return True

    def read(self, n: int) -> bytes:
        """Up to n bytes (fewer only at a chunk boundary or the end); b"" at the end."""
        if self._pos >= len(self._buf) and not self._fill():
            return b""
        end = min(self._pos + n, len(self._buf))
        out = self._buf[self._pos : end]
        self._pos = end
        return out

    def read_exact(self, n: int) -> bytes:
        """n bytes, or fewer only at the end of the stream."""
        out = self.read(n)
        if len(out) == n or not out:
            return out
        parts = [out]
        got = len(out)
        while got < n:
            more = self.read(n - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def skip(self, n: int) -> int:
        """Discard n bytes; returns how many there were."""
        done = 0
        while done < n:
            if self._pos >= len(self._buf) and not self._fill():
                break
            step = min(n - done, len(self._buf) - self._pos)
            self._pos += step
            done += step
        return done
