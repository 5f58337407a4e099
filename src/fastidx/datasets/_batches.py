"""Batches of a split: ``iter_batches`` reads a frame of rows (in order) or gathers shuffled rows
from an uncompressed file, so that a whole split is never held in memory."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np

from .. import _idx
from .._cache.format import CorruptEntry, rows_per_frame
from .._cache.stream import Output, stream_source, transpose_rows
from .._memlimit import check_budget

if TYPE_CHECKING:
    from pathlib import Path


class Labels:
    """The labels that go with the batches: the (already sliced) array, the label count of the
    file, its name for errors, and ``one_hot`` (a function making one-hot rows, or None)."""

    __slots__ = ("array", "count", "name", "one_hot", "row_bytes")

    def __init__(self, array: np.ndarray, count: int, name: str, one_hot=None, row_bytes=None):
        self.array, self.count, self.name, self.one_hot = array, count, name, one_hot
        self.row_bytes = array.itemsize if row_bytes is None else row_bytes

    def rows(self, rows):
        y = self.array[rows]
        return self.one_hot(y) if self.one_hot is not None else y


class Batching:
    """One pass: ``size`` rows a batch; ``permute(k)`` (shuffled passes) gives the row offsets to
    visit among the ``k`` selected rows (default ``default_rng(seed).permutation(k)``;
    ``datasets._shard`` makes the sharded ones)."""

    __slots__ = ("size", "shuffle", "seed", "permute", "drop_remainder")

    def __init__(self, size: int, shuffle=False, seed=None, permute=None, drop_remainder=False):
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.permute, self.drop_remainder = permute, drop_remainder

    def order(self, start: int, stop: int) -> np.ndarray:
        if self.permute is None:
            return start + np.random.default_rng(self.seed).permutation(stop - start)
        return start + self.permute(stop - start)

    def done(self, b: int, stop: int) -> bool:
        return b >= stop or (self.drop_remainder and b + self.size > stop)


class _Pass:
    """What both kinds of pass share: the image file, where its rows come from, how they are
    converted and the rows selected."""

    def __init__(self, path: Path, upright: bool, source, frames, conv):
        self.path, self.upright, self.source, self.frames, self.conv = path, upright, source, frames, conv
        if frames is not None:
            self.shape, self.stored = frames.header.shape, frames.header.dtype
        else:
            head = _idx.read_header(path)
            self.shape, self.stored = head.shape, head.dtype
            if upright and len(self.shape) == 3:
                self.shape = (self.shape[0], self.shape[2], self.shape[1])
        self.row_bytes = math.prod(self.shape[1:]) * self.stored.itemsize
        self.start = self.stop = 0

    def output(self, b0: int, b1: int) -> Output:
        return Output(self.shape, self.stored, b0, b1, self.conv)

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()


def iter_batches(path: Path, labels: Labels, batching: Batching, *, select, place, conv,
                 upright=False, max_memory=None):
    """Batches of rows ``select(n)`` of ``path`` with the matching ``labels`` (already sliced).

    Checks what it can (shapes, counts, ``max_memory``) now, and returns the generator.
    """
    from .._cache.source import Source

    source = (Source(path, upright=upright, cache_dir=place.cache_dir, dataset=place.dataset)
              if place.cache else None)
    frames = source.ensure_frames() if source is not None else None
    todo = _Pass(path, upright, source, frames, conv)
    try:
        _check(todo, labels, batching, select, max_memory)
    except BaseException:
        todo.close()
        raise
    return _shuffled(todo, labels, batching) if batching.shuffle else _sequential(todo, labels, batching)


def _check(todo: _Pass, labels: Labels, batching: Batching, select, max_memory) -> None:
    n = todo.shape[0]
    if n != labels.count:
        from .._errors import IDXError

        raise IDXError(str(todo.path), f"holds {n} images but {labels.name} holds {labels.count} labels")
    target = todo.conv.target(todo.stored)
    todo.conv.shape((0,) + tuple(todo.shape[1:]))
    todo.start, todo.stop = select(n)
    span = todo.stop - todo.start
    batch = min(batching.size, max(span, 0))
    need = (
        batch * (math.prod(todo.shape[1:]) * target.itemsize + labels.row_bytes)
        + labels.array.nbytes
        + (batch * todo.row_bytes + span * 8 if batching.shuffle
           else rows_per_frame(todo.shape, todo.stored) * todo.row_bytes)
    )
    check_budget(need, max_memory, f"a batch of {batch} rows with its buffers")


def _sequential(todo: _Pass, labels: Labels, batching: Batching):
    start, stop, size = todo.start, todo.stop, batching.size
    try:
        chunks = (todo.frames.iter_rows(start, stop) if todo.frames is not None
                  else _source_chunks(todo.path, todo.upright, start, stop))
        b = start
        if batching.done(b, stop):
            return
        out = todo.output(b, min(b + size, stop))
        for row0, chunk in chunks:
            end = row0 + (chunk.shape[0] // todo.row_bytes if todo.row_bytes else 0)
            while True:
                out.put(row0, chunk)
                if out.stop > end:
                    break
                yield out.array, labels.rows(slice(out.start - start, out.stop - start))
                b = out.stop
                if batching.done(b, stop):
                    return
                out = todo.output(b, min(b + size, stop))
    finally:
        todo.close()


def _shuffled(todo: _Pass, labels: Labels, batching: Batching):
    temp = opened = None
    row_bytes, size = todo.row_bytes, batching.size
    try:
        if todo.source is not None:
            opened = todo.source.ensure_raw("native", lambda stored_dtype: (stored_dtype, None))
        if opened is not None:
            fd, offset = opened[0], opened[1].data_offset
        else:
            temp = _uncompressed_copy(todo.path, todo.upright)
            fd, offset = temp.fileno(), 0
        order = batching.order(todo.start, todo.stop)
        rows = np.empty(min(size, max(todo.stop - todo.start, 0)) * row_bytes, np.uint8)
        for b in range(0, order.shape[0], size):
            pick = order[b : b + size]
            if batching.drop_remainder and pick.shape[0] < size:
                return
            k = pick.shape[0]
            _gather(fd, offset, row_bytes, pick, rows[: k * row_bytes])
            out = todo.output(0, k)
            out.put(0, rows[: k * row_bytes])
            yield out.array, labels.rows(pick - todo.start)
    finally:
        todo.close()
        if temp is not None:
            temp.close()
        elif opened is not None:
            os.close(fd)


def _uncompressed_copy(path: Path, upright: bool):
    """A temporary file holding the rows of ``path`` uncompressed (shuffling without a cache)."""
    import tempfile

    temp = tempfile.TemporaryFile()
    writer = _RawWriter(temp)
    stream_source(path, upright=upright, writer_for=lambda header: writer)
    writer.close()
    return temp


class _RawWriter:
    """Receives chunks of rows for an uncompressed temporary file (shuffling without a cache)."""

    def __init__(self, f):
        self.f = f

    def add(self, chunk, owned=False, base=None):
        self.f.write(memoryview(chunk))

    def close(self):
        self.f.flush()


def _source_chunks(path: Path, upright: bool, start: int, stop: int):
    """``(row0, bytes)`` of about a frame of rows at a time, straight from the source file."""
    with _idx.IDXReader(path) as reader:
        shape = reader.header.shape
        upright = upright and len(shape) == 3
        rows_per = rows_per_frame(shape, reader.header.dtype)
        staging = np.empty(min(rows_per, stop - start) * reader.row_bytes, np.uint8)
        flipped = np.empty(staging.shape[0] if upright else 0, np.uint8)
        reader.skip_rows(start)
        for row0 in range(start, stop, rows_per):
            k = min(rows_per, stop - row0)
            chunk = staging[: k * reader.row_bytes]
            reader.read_rows(chunk)
            yield row0, transpose_rows(chunk, shape, flipped) if upright else chunk
        if stop == reader.rows:
            reader.finish()


def _gather(fd: int, offset: int, row_bytes: int, rows: np.ndarray, dst: np.ndarray) -> None:
    """``dst[j] = row rows[j]`` of the uncompressed file ``fd``, read in file order."""
    view = memoryview(dst)
    for j in np.argsort(rows, kind="stable").tolist():
        pos = offset + int(rows[j]) * row_bytes
        part = view[j * row_bytes : (j + 1) * row_bytes]
        if hasattr(os, "preadv"):
            got = os.preadv(fd, [part], pos)
        else:  # pragma: no cover - Windows
            os.lseek(fd, pos, os.SEEK_SET)
            got = os.readv(fd, [part])
        if got != row_bytes:
            raise CorruptEntry(f"short read at byte {pos}")


def npz_batches(x, y, batching: Batching, one_hot, conv):
    """Batches of arrays already in memory (a Keras ``.npz``): rows converted batch by batch."""
    n = x.shape[0]
    order = batching.permute(n) if batching.permute is not None else None
    n = n if order is None else order.shape[0]
    size = batching.size
    for b in range(0, n, size):
        if batching.drop_remainder and b + size > n:
            return
        rows = slice(b, b + size) if order is None else order[b : b + size]
        xb = _idx.convert_uint8(np.ascontiguousarray(x[rows]), conv)
        yb = y[rows]
        yield xb, (one_hot(yb) if one_hot is not None else yb)
