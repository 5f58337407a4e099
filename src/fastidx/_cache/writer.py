"""The background writer of frames entries: compress chunks of rows as zstd frames on a thread of
its own while the load goes on, then name the entry, write its header and rename it into place.

Failures are reported (one :class:`fastidx.CacheWarning`) by the next load, or at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import threading
import time
import warnings
from collections import deque
from typing import TYPE_CHECKING

import numpy as np
import zstandard

from .._errors import CacheWarning, warn_cache
from . import budget
from .format import _FIXED, KIND_FRAMES, encode_header, entry_name, rows_per_frame
from .identity import remember_digest

if TYPE_CHECKING:
    from pathlib import Path

    from .. import _idx

#: zstd level. A first load decodes on one core while this writer compresses on the other; at
#: -5 it keeps pace with ISA-L's inflate (MNIST's train images: 55 ms against 72 ms at -1 and
#: 80 ms at 1), for 28% more disk than -1 (16.5 MB against 12.9 for MNIST) and no slower warm
#: loads. The level is recorded in each entry; readers accept any.
LEVEL = -5

#: Decoded bytes that may wait for the background writer before the decoding waits for it
#: (less under a memory limit: see :func:`_backlog`).
_BACKLOG = 64 << 20


def _backlog(chunk_bytes: int) -> int:
    """:data:`_BACKLOG`, or under a memory cgroup one chunk: the rows a first load decodes only
    for the cache (those outside a slice) then take three chunk buffers at most (one queued, one
    being compressed, one being decoded), a working set that ``max_memory="auto"``'s reserve
    covers. (An eighth of the free memory, at least two chunks, got slices that "auto" allowed
    OOM-killed: 4-6 MiB of buffers at 32-64 MiB, beyond the 4 MiB reserve.)"""
    from .. import _memlimit

    return _BACKLOG if _memlimit.available() is None else chunk_bytes


#: Cache-writing failures of background writers, reported (once each) by the next load.
_failures: list[str] = []
_writers: list = []
_registered: list = []


def _background_priority() -> None:
    """Background work (this thread): on a busy machine the decoding the user waits for goes
    first (Linux: a thread's nice value is its own)."""
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class _Hasher:
    """SHA-256 on a thread of its own: the decoding thread hands over copies of the bytes it
    reads (a memcpy) instead of hashing them (about 30 ms for MNIST's 11 MB on the machine
    where this was measured, a quarter of a first load). At most :data:`_HASH_BACKLOG` bytes
    wait; beyond, the reader waits for the hasher, which only hashes (a bounded wait)."""

    def __init__(self):
        import hashlib  # OpenSSL's: only a load that hashes its source pays for the import

        self._hash = hashlib.sha256()
        self._cv = threading.Condition()
        self._queue: deque = deque()
        self._pending = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fastidx-hash")
        self._thread.start()

    def feed(self, view) -> None:
        data = bytes(view)
        with self._cv:
            while self._pending > _HASH_BACKLOG and self._thread.is_alive():
                self._cv.wait(0.1)
            self._queue.append(data)
            self._pending += len(data)
            self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def hexdigest(self) -> str:
        self.close()
        self._thread.join()
        return self._hash.hexdigest()

    def _run(self) -> None:
        _background_priority()  # the decoding the user waits for goes first
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                data = self._queue.popleft()
            self._hash.update(data)  # hashlib releases the GIL for large updates
            with self._cv:
                self._pending -= len(data)
                self._cv.notify_all()


#: Bytes read but not yet hashed that a first load may hold (see :class:`_Hasher`).
_HASH_BACKLOG = 4 << 20


class _InlineHasher:
    """SHA-256 in the reading thread: under a memory limit, where no copy may wait."""

    def __init__(self):
        import hashlib  # OpenSSL's: only a load that hashes its source pays for the import

        self._hash = hashlib.sha256()
        self.feed = self._hash.update

    def close(self) -> None:
        pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _hasher():
    from .. import _memlimit

    return _Hasher() if _memlimit.available() is None else _InlineHasher()


class HashingReader:
    """The source file, hashed (SHA-256) as the decoder reads it: the entry's key is then the
    digest of the very bytes decoded, at no extra pass over the file, and on another thread
    (:class:`_Hasher`). Re-reads (the decoder peeks at the header) are not hashed twice;
    :meth:`digest` is None unless every byte was read in order."""

    def __init__(self, path: Path):
        self._file = open(path, "rb", buffering=0)
        self.name = os.fspath(path)  # errors name the source
        self.read_ns = time.time_ns()
        self._size = os.fstat(self._file.fileno()).st_size
        self._hasher = _hasher()
        self._hashed = 0

    def _account(self, pos: int, data, n: int) -> None:
        if pos <= self._hashed < pos + n:
            self._hasher.feed(memoryview(data)[self._hashed - pos : n])
            self._hashed = pos + n

    def readinto(self, buffer) -> int:
        pos = self._file.tell()
        n = self._file.readinto(buffer) or 0
        self._account(pos, buffer, n)
        return n

    def read(self, n: int = -1) -> bytes:
        pos = self._file.tell()
        data = self._file.read(n)
        self._account(pos, data, len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()
        self._hasher.close()  # what was read is still hashed: digest() waits for it

    def digest(self) -> str | None:
        digest = self._hasher.hexdigest()
        return digest if self._hashed == self._size else None


class EntryWriter:
    """Compresses chunks of whole rows as independent zstd frames into a temporary file, on a
    thread of its own, then renames the file into place.

    The decoding thread hands over each chunk with :meth:`add`: ``owned`` chunks are buffers of
    the writer's (:meth:`buffer`); the others are views of the caller's output, copied by
    :meth:`close` if still waiting when the load returns (the caller may change its array).
    After :meth:`close` the load goes on while the thread finishes: checks that every row was
    written, writes the header, syncs and renames. It holds the entry's build lock until then,
    so another load of the same entry waits for a whole file. Python joins the thread at exit.
    """

    def __init__(self, lock, fd: int, tmp: Path, final: Path | None, header: _idx.Header,
                 meta: dict, source=None):
        self.lock, self.tmp, self.final = lock, tmp, final
        self.meta = meta
        # Without ``final``: (path, identity, decoded dir, variant, the HashingReader read)
        self.source = source
        self.rows_per = meta["rows_per_frame"]
        self.rows = header.shape[0]
        self.chunk_bytes = (min(self.rows_per, self.rows) * math.prod(header.shape[1:])
                            * header.dtype.itemsize)
        n_frames = max(1, -(-self.rows // self.rows_per))
        # The header goes at the front once the frame sizes are known: reserve room for it.
        blob = json.dumps(dict(meta, frames=[], source_sha256="0" * 64), separators=(",", ":"))
        self.data_offset = -(-(_FIXED.size + len(blob) + 80 * n_frames + 64) // 64) * 64
        self.backlog = _backlog(self.chunk_bytes)
        self.error: str | None = None
        self.report_later = True
        self._file = os.fdopen(fd, "wb")
        self._cv = threading.Condition()
        self._queue: deque = deque()
        self._busy = None
        self._free: list = []
        self._pending = 0
        self._closed = self._aborted = False
        self._thread = threading.Thread(target=self._run, name="fastidx-cache-writer")
        if _report_at_exit not in _registered:
            _registered.append(_report_at_exit)
            atexit.register(_report_at_exit)
        self._thread.start()
        _writers.append((os.getpid(), self))

    # -- the decoding thread's side

    def buffer(self) -> np.ndarray:
        """A buffer for one chunk of rows (recycled once its frame is written)."""
        with self._cv:
            while self._pending > self.backlog and self._thread.is_alive():
                self._cv.wait(0.1)
            if self._free:
                return self._free.pop()
        return np.empty(self.chunk_bytes, np.uint8)

    def add(self, chunk: np.ndarray, owned: bool, base=None) -> None:
        with self._cv:
            self._queue.append([chunk, owned, base])
            if owned:
                self._pending += chunk.nbytes
            self._cv.notify_all()

    def recycle(self, base: np.ndarray) -> None:
        with self._cv:
            self._free.append(base)

    def close(self) -> None:
        """No more chunks: copy those the caller still owns, let the thread finish on its own.

        Under a memory limit (a smaller backlog) there may be no room for the copies: then wait
        until the thread has compressed the caller's chunks (bounded: it only compresses them)."""
        with self._cv:
            while self.backlog < _BACKLOG and self._thread.is_alive() and (
                    any(not item[1] for item in self._queue)
                    or (self._busy is not None and not self._busy[1])):
                self._cv.wait(0.1)
            for item in self._queue:
                if not item[1]:
                    item[0], item[1] = item[0].copy(), True
                    self._pending += item[0].nbytes
            busy = self._busy
            if busy is not None and not busy[1]:
                # Being compressed from the caller's array, which may change once we return:
                # compress a copy again rather than wait (the thread drops its first result).
                self._queue.appendleft([busy[0].copy(), True, None])
                self._pending += busy[0].nbytes
                busy.append("redo")
            self._closed = True
            self._cv.notify_all()

    def abort(self) -> None:
        """Drop the entry: the thread removes its temporary file and releases the lock."""
        with self._cv:
            self._aborted = self._closed = True
            self._queue.clear()
            self._cv.notify_all()
        self.report_later = False
        self._thread.join()

    def join(self) -> str | None:
        """Wait for the thread (no limit is needed: it only compresses and writes what it has)."""
        self._thread.join()
        return self.error

    # -- the writer thread

    def _next(self):
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if self._aborted or not self._queue:
                return None
            self._busy = self._queue.popleft()
            return self._busy

    def _done(self, item) -> bool:
        """The thread is done compressing ``item``: False if its frame must be dropped."""
        with self._cv:
            self._busy = None
            if item[1]:
                self._pending -= item[0].nbytes
                if item[2] is not None and len(self._free) < 4:
                    self._free.append(item[2])
            self._cv.notify_all()
            return len(item) == 3

    def _run(self) -> None:
        _background_priority()
        try:
            self._write_all()
            if not self._aborted:
                os.replace(self.tmp, self.final)
                enforce_budget(self.final)
        except BaseException as exc:  # the load has returned: report with the next one
            if not self._aborted:
                self.error = (f"could not write the cache entry {self.final} "
                              f"({getattr(exc, 'strerror', None) or exc})")
        finally:
            with self._cv:
                self._aborted = self._aborted or self.error is not None
                self._queue.clear()
                self._free.clear()  # a finished writer (kept in _writers) holds no buffers
                self._cv.notify_all()
            try:
                # After a failed write, closing flushes what is buffered into the same full
                # disk and fails again: that must not keep the build lock held.
                with contextlib.suppress(OSError):
                    self._file.close()
                if self._aborted:
                    with contextlib.suppress(OSError):
                        os.unlink(self.tmp)
            finally:
                self.lock.release()
            from .._memlimit import release_free_memory

            release_free_memory()
            if self.error is not None and self.report_later:
                _failures.append(self.error)

    def _name_by_content(self) -> None:
        """The entry's key: the SHA-256 of the bytes the load decoded (see HashingReader)."""
        path, ident, directory, variant, reader = self.source
        self.source = None
        digest = reader.digest()
        if digest is None:
            raise AssertionError("the source was not read whole")
        remember_digest(path, directory, ident, digest, reader.read_ns)
        self.meta["source_sha256"] = digest
        self.final = directory / entry_name(digest, variant)

    def _write_all(self) -> None:
        from .._memlimit import DirtyBound

        zc = zstandard.ZstdCompressor(level=LEVEL, write_checksum=True, write_content_size=True)
        f, end, frames = self._file, self.data_offset, []
        bound = DirtyBound(f)
        f.seek(end)
        while (item := self._next()) is not None:
            keep = False
            try:
                frame = zc.compress(memoryview(item[0]))
                decoded = item[0].shape[0]
            finally:
                keep = self._done(item)
            if not keep:
                continue
            f.write(frame)
            bound.wrote(len(frame))
            frames.append([end, len(frame), decoded, int.from_bytes(frame[-4:], "little")])
            end += len(frame)
        if self._aborted:
            return
        if self.final is None:  # the load has read the whole source by now
            self._name_by_content()
        if not frames:  # an array with no rows still gets its one (empty) frame
            frame = zc.compress(b"")
            f.write(frame)
            frames.append([end, len(frame), 0, int.from_bytes(frame[-4:], "little")])
        if len(frames) != max(1, -(-self.rows // self.rows_per)):
            raise AssertionError(f"{len(frames)} frames written for {self.rows} rows")
        f.seek(0)
        f.write(encode_header(KIND_FRAMES, dict(self.meta, frames=frames), self.data_offset))
        f.flush()
        os.fsync(f.fileno())


def enforce_budget(written: Path, keep=()) -> None:
    """After writing ``written``: evict least recently used entries beyond the size budget
    (:func:`fastidx.cache.prune`), never ``written`` itself nor the names in ``keep``. Under the
    budget (the usual case) the entries are only listed: the thread runs beside a load that
    needs the interpreter lock between its native calls."""
    with contextlib.suppress(OSError, ValueError):
        if budget.within(written.parent, budget.max_size(written.parent.parent)):
            return
        from .. import cache as management

        management.prune(cache_dir=written.parent.parent, keep={written.name, *keep}, _wait=False)


def wait_for_writers() -> None:
    """Wait until this process's background cache writers are done; report their failures."""
    for pid, writer in list(_writers):
        if pid == os.getpid():
            writer.join()
    _writers[:] = [(p, w) for p, w in _writers if p == os.getpid() and w._thread.is_alive()]
    report_failures()


def report_failures() -> None:
    """One CacheWarning for the cache entries background writers could not write."""
    if _failures:
        failed = "; ".join(_failures)
        _failures.clear()
        warn_cache(f"{failed}; the loads themselves were not affected (later loads decode the "
                   f"source again until the entry can be written)", key="cache write failed")


def _report_at_exit() -> None:
    # Python has joined the writer threads by now (they are not daemons).
    if _failures:
        warnings.warn("; ".join(_failures), CacheWarning, stacklevel=1)
        _failures.clear()



def frames_meta(header: _idx.Header, digest: str, variant: str, source: Path, dataset) -> dict:
    shape = list(header.shape)
    if variant == "upright" and len(shape) == 3:
        shape = [shape[0], shape[2], shape[1]]
    return {
        "dataset": dataset,
        "source_name": source.name,
        "source_sha256": digest,
        "variant": variant,
        "shape": shape,
        "dtype": header.dtype.str,
        "rows_per_frame": rows_per_frame(header.shape, header.dtype),
        "codec": f"zstd level {LEVEL}",
        "created_ns": time.time_ns(),
    }

