"""Frames entries (``<sha256>.<variant>.fidx``): rows as independent zstd frames, decoded in parallel.

Each frame holds ``rows_per_frame`` whole rows (about :data:`FRAME_BYTES`) and carries its decoded
size and a content checksum (the low 32 bits of XXH64) that libzstd verifies on decompression; the
header's table (:mod:`.format`) repeats that checksum, so a frame found in the wrong place is
caught. Writing them is :mod:`.writer`'s job.
"""

from __future__ import annotations

import mmap as _mmap
import os
import threading
from typing import TYPE_CHECKING

import numpy as np
import zstandard

from .format import KIND_FRAMES, CorruptEntry, Header, open_header

if TYPE_CHECKING:
    from pathlib import Path

    from .stream import Output

def _threads() -> int:
    """Decode threads: the process's CPU budget (affinity, OMP_NUM_THREADS, cgroup quota, Ray's
    per-trial CPUs; see ``_cpus``), at most 8."""
    from .._cpus import budget

    return min(budget(), 8)


def in_parallel(work, todo, threads: int) -> None:
    """``work(i)`` for each ``i`` of ``todo`` on ``threads`` threads, this one included; the
    error of the lowest ``i`` that failed is raised once every thread has stopped.

    Threads per load, not a pool per process: their stacks go when the load is done instead of
    staying in every trial of a search (and ``concurrent.futures`` is not imported: 1 MiB).
    """
    items = iter(todo)
    take = threading.Lock()
    failed: list = []
    stop = False

    def run():
        while not stop and not failed:
            with take:
                i = next(items, None)
            if i is None:
                return
            try:
                work(i)
            except BaseException as exc:  # noqa: B036 - handed to the calling thread
                failed.append((i, exc))
                return

    helpers = [threading.Thread(target=run, name="fastidx-decode") for _ in range(threads - 1)]
    try:
        for helper in helpers:
            helper.start()
        run()
    finally:
        stop = True
        for helper in helpers:
            if helper.ident is not None:
                helper.join()
    if failed:
        raise min(failed, key=lambda item: item[0])[1]


def _decompress_into(dctx, frame, dst: np.ndarray) -> None:
    want = dst.shape[0]
    view = memoryview(dst)
    got = 0
    reason = None
    reader = dctx.stream_reader(frame)
    try:
        while got < want:
            n = reader.readinto(view[got:])
            if not n:
                break
            got += n
        extra = reader.readinto(bytearray(1)) if got == want else 0
    except zstandard.ZstdError as exc:
        reason = str(exc)
    finally:
        reader.close()
        del reader
    if reason is not None:
        raise CorruptEntry(f"a frame is damaged: {reason}")
    if got != want or extra:
        raise CorruptEntry(f"a frame decodes to {'more' if extra else got} bytes, expected {want}")




class Frames:
    """An open, header-checked frames entry."""

    def __init__(self, path: Path, fd: int, header: Header):
        self.path = path
        self.header = header
        self.rows_per = header.meta["rows_per_frame"]
        self.table = header.meta["frames"]
        # Per thread: a zstd decompressor (they are not thread-safe) and a staging buffer. They
        # belong to this open entry and go with it: no thread keeps buffers after a load.
        self._states: dict = {}
        try:
            size = header.file_size
            self._map = _mmap.mmap(fd, size, access=_mmap.ACCESS_READ) if size else None
        finally:
            os.close(fd)

    @classmethod
    def open(cls, path: Path, digest=None, variant=None):
        opened = open_header(path, KIND_FRAMES, digest, variant)
        return None if opened is None else cls(path, *opened)

    def _state(self, nbytes: int):
        state = self._states.get(threading.get_ident())
        if state is None:
            state = self._states[threading.get_ident()] = [zstandard.ZstdDecompressor(),
                                                           np.empty(0, np.uint8)]
        if state[1].shape[0] < nbytes:
            # Its own anonymous mapping, not malloc: unmapped when dropped, where a malloc'd
            # buffer would stay in its thread's arena for the life of the process.
            state[1] = np.frombuffer(_mmap.mmap(-1, nbytes), np.uint8)
        return state[0], state[1]

    def close(self):
        self._states = {}
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a view still held by an exception's traceback: the GC unmaps it
                pass
            self._map = None

    def frame_span(self, i: int) -> tuple[int, int]:
        first = i * self.rows_per
        return first, min(first + self.rows_per, self.header.rows)

    def frame_bytes(self, i: int) -> memoryview:
        offset, csize, _, checksum = self.table[i]
        frame = memoryview(self._map)[offset : offset + csize]
        if int.from_bytes(frame[-4:], "little") != checksum:
            raise CorruptEntry(f"frame {i} is not the frame the table lists")
        return frame

    def decode(self, i: int, dst: np.ndarray | None = None) -> np.ndarray:
        """Frame ``i``'s rows as uint8 bytes (in ``dst`` or this thread's staging buffer)."""
        dsize = self.table[i][2]
        frame = self.frame_bytes(i)
        if dst is None:
            dctx, staging = self._state(dsize)
            dst = staging[:dsize]
        else:
            dctx, _ = self._state(0)
        _decompress_into(dctx, frame, dst)
        return dst

    def read_into(self, out: Output) -> None:
        """Decode the frames covering ``out``'s rows into it, in parallel threads."""
        if out.stop <= out.start:
            return
        first = out.start // self.rows_per
        last = (out.stop - 1) // self.rows_per
        todo = range(first, last + 1)

        def work(i):
            row0, row1 = self.frame_span(i)
            direct = out.direct(row0, row1 - row0)
            if direct is not None:
                self.decode(i, direct)
            else:
                out.put(row0, self.decode(i))

        try:
            if len(todo) == 1:
                work(first)
                return
            in_parallel(work, todo, min(_threads(), len(todo)))
        finally:
            self._states = {}  # the threads keep nothing of this load

    def iter_rows(self, start: int, stop: int):
        """``(row0, bytes)`` for each frame covering ``[start, stop)``, decoded one at a time."""
        if stop <= start:
            return
        for i in range(start // self.rows_per, (stop - 1) // self.rows_per + 1):
            yield self.frame_span(i)[0], self.decode(i)


def verify_file(path: Path) -> str | None:
    """None if the cache file at ``path`` is intact, else what is wrong with it."""
    from .format import KIND_RAW
    from .raw import payload_problem

    try:
        opened = open_header(path, KIND_FRAMES if path.suffix == ".fidx" else KIND_RAW, quiet=True)
    except CorruptEntry as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot be read: {exc}"
    if opened is None:
        return "disappeared"
    fd, header = opened
    if header.kind == KIND_FRAMES:
        frames = Frames(path, fd, header)
        try:
            for i in range(len(frames.table)):
                frames.decode(i)
        except CorruptEntry as exc:
            return str(exc)
        finally:
            frames.close()
        return None
    try:
        return payload_problem(fd, header)
    finally:
        os.close(fd)
