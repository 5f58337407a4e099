"""The background writer of frames entries: compress chunks of rows as zstd frames on a thread of
its own while the load goes on, then name the entry, write its header and rename it into place.

Failures are reported (one :class:`fastidx.CacheWarning`) by the next load, or at exit.
"""

from __future__ import annotations

import _thread
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
from . import budget, tree
from .hashing import background_priority
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


class _Worker:
    """The one background thread of a process that compresses and writes entries, in the order
    their loads opened them; it ends when none is waiting and the next entry starts another.
    A first load of MNIST opens four entries and starts one thread, not four, without waiting
    for it to run (``threading.Thread.start`` waits: 0.2-9 ms measured on a 2-vCPU virtual
    machine, where the other vCPU is idle or busy compressing the previous entry). Not being a
    ``threading`` thread, it is not joined at exit: an ``atexit`` hook waits for the entries."""

    def __init__(self):
        self.lock = threading.Lock()
        self.jobs: deque = deque()
        self.thread = None

    def submit(self, writer) -> None:
        with self.lock:
            self.jobs.append(writer)
            if self.thread is None:
                try:
                    self.thread = _thread.start_new_thread(self._serve, ())
                except BaseException:  # no thread (RuntimeError at a thread limit): no job either
                    self.jobs.pop()
                    raise

    def _serve(self) -> None:
        background_priority()
        while True:
            with self.lock:
                if not self.jobs:
                    self.thread = None
                    return
                writer = self.jobs.popleft()
            try:
                writer._run()
            except BaseException as exc:  # never leave the entries behind it waiting
                _failures.append(f"could not write the cache entry {writer.final} ({exc})")
            finally:
                writer._finished.set()

    def after_fork(self) -> None:
        """In a child process: the parent's thread and entries are not the child's."""
        self.lock = threading.Lock()
        self.jobs = deque()
        self.thread = None


_worker = _Worker()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_worker.after_fork)


class EntryWriter:
    """Compresses chunks of whole rows as independent zstd frames into a temporary file, on the
    process's background writer thread (:class:`_Worker`), then renames the file into place.

    The decoding thread hands over each chunk with :meth:`add`: ``owned`` chunks are buffers of
    the writer's (:meth:`buffer`); the others are views of the caller's output, copied by
    :meth:`close` if still waiting when the load returns (the caller may change its array).
    After :meth:`close` the load goes on while the thread finishes: checks that every row was
    written, writes the header, syncs and renames. It holds the entry's build lock until then,
    so another load of the same entry waits for a whole file; at exit, Python waits for it.
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
        self._finished = threading.Event()
        if _report_at_exit not in _registered:
            _registered.append(_report_at_exit)
            atexit.register(_report_at_exit)
        try:
            _worker.submit(self)
        except BaseException:  # the caller releases the lock; the temporary file is reclaimed
            self._file.close()
            self._finished.set()
            raise
        _writers.append((os.getpid(), self))

    @property
    def running(self) -> bool:
        """Not finished yet (waiting for the thread, or being written)."""
        return not self._finished.is_set()

    # -- the decoding thread's side

    def buffer(self) -> np.ndarray:
        """A buffer for one chunk of rows (recycled once its frame is written)."""
        with self._cv:
            while self._pending > self.backlog and self.running:
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
            while self.backlog < _BACKLOG and self.running and (
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
        self._finished.wait()

    def join(self) -> str | None:
        """Wait until the entry is written or dropped (no limit is needed: the thread only
        compresses and writes what it has, this entry's and those queued before it)."""
        self._finished.wait()
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
        """The entry's key: the SHA-256 of the bytes the load decoded (see :class:`.hashing.HashingReader`)."""
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
        if tree.entries_within(written.parent, budget.max_size(written.parent.parent)):
            return
        from .. import cache as management

        management.prune(cache_dir=written.parent.parent, keep={written.name, *keep}, _wait=False)


def _join_writers() -> None:
    """Wait for this process's entries (bounded: the thread only compresses and writes them)."""
    for pid, writer in list(_writers):
        if pid == os.getpid():
            writer.join()


def wait_for_writers() -> None:
    """Wait until this process's background cache writers are done; report their failures."""
    _join_writers()
    _writers[:] = [(p, w) for p, w in _writers if p == os.getpid() and w.running]
    report_failures()


def report_failures() -> None:
    """One CacheWarning for the cache entries background writers could not write."""
    if _failures:
        failed = "; ".join(_failures)
        _failures.clear()
        warn_cache(f"{failed}; the loads themselves were not affected (later loads decode the "
                   f"source again until the entry can be written)", key="cache write failed")


def _report_at_exit() -> None:
    """At exit: wait for the entries still being written, then report failures."""
    _join_writers()
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

