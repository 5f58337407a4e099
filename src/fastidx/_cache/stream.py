"""Decoding a source IDX file once, a frame's worth of rows at a time, into the caller's array and/or
a cache writer; :class:`Output` is the array being filled (rows selected, values converted)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .. import _idx
from .format import rows_per_frame

if TYPE_CHECKING:
    from pathlib import Path


def allocate(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A C-contiguous, 64-byte-aligned empty array.

    It comes from ``np.empty``, which on Linux advises transparent huge pages for arrays of 4 MiB
    and more: filling the MNIST float32 outputs then costs 30 ms instead of 140 ms of page faults
    on the development machine. (An anonymous ``mmap`` with the same advice is shared memory to
    the kernel and faults slower still.)
    """
    return _idx.aligned_empty(shape, dtype)



class Output:
    """Rows ``[start, stop)`` of a stored array, converted by ``conv`` (a
    :class:`~fastidx._conversion.Conversion`) into the caller's array chunk by chunk."""

    def __init__(self, shape, stored: np.dtype, start: int, stop: int, conv):
        self.start, self.stop = start, stop
        self.stored = stored
        target = conv.target(stored)
        self.table = table = conv.table(stored)
        self.row_items = math.prod(shape[1:])
        self.row_bytes = self.row_items * stored.itemsize
        self.identity = table is None and target == stored
        self.array = allocate(conv.shape((stop - start,) + tuple(shape[1:])), target)
        self.flat = self.array.reshape(-1)

    def direct(self, row0: int, k: int):
        """The output's bytes for rows ``[row0, row0 + k)``, when they can be decoded into it."""
        if self.identity and self.start <= row0 and row0 + k <= self.stop:
            a = (row0 - self.start) * self.row_items
            return self.flat[a : a + k * self.row_items].view(np.uint8)
        return None

    def put(self, row0: int, chunk: np.ndarray) -> None:
        """Store the rows of ``chunk`` (bytes of whole rows from ``row0``) that fall in the output."""
        k = chunk.shape[0] // self.row_bytes if self.row_bytes else 0
        lo, hi = max(row0, self.start), min(row0 + k, self.stop)
        if lo >= hi:
            return
        src = chunk[(lo - row0) * self.row_bytes : (hi - row0) * self.row_bytes]
        dst = self.flat[(lo - self.start) * self.row_items : (hi - self.start) * self.row_items]
        if self.table is not None:
            _idx.map_uint8(src, self.table, dst)
        elif self.identity:
            np.copyto(dst.view(np.uint8), src)
        else:
            np.copyto(dst, src.view(self.stored), casting="unsafe")


def transpose_rows(chunk: np.ndarray, shape, dst: np.ndarray) -> np.ndarray:
    """EMNIST's stored-transposed images, put upright: ``dst`` holds the same rows, transposed."""
    k = chunk.shape[0] // (shape[1] * shape[2])
    images = chunk.reshape(k, shape[1], shape[2])
    out = dst[: chunk.shape[0]].reshape(k, shape[2], shape[1])
    np.copyto(out, images.transpose(0, 2, 1))
    return dst[: chunk.shape[0]]



def stream_source(source: Path, *, upright: bool, make_output=None, writer_for=None) -> Output | None:
    """Decode ``source`` once, a frame's worth of rows at a time.

    ``make_output(shape, dtype)`` returns the :class:`Output` to fill (or None): it is called with
    the shape of the rows it will get (upright if asked) before anything large is allocated.
    ``writer_for(header)`` returns a writer (or None) that receives every chunk (:class:`~.writer.EntryWriter`
    or a raw writer); the caller closes it. Inflating, transposing and converting run in
    this thread; an :class:`~.writer.EntryWriter` compresses on its own.
    """
    with _idx.IDXReader(source) as reader:
        header = reader.header
        upright = upright and len(header.shape) == 3
        shape = (header.shape[0], header.shape[2], header.shape[1]) if upright else header.shape
        out = make_output(shape, header.dtype) if make_output is not None else None
        writer = writer_for(header) if writer_for is not None else None
        rows_per = rows_per_frame(header.shape, header.dtype)
        row_bytes = reader.row_bytes
        first, last = 0, reader.rows
        if writer is None and out is not None:
            # Nothing to cache: decode only as far as the output needs.
            first = (out.start // rows_per) * rows_per
            last = out.stop
            reader.skip_rows(first)
        # Never more rows than asked for: a legal 0-row file may declare enormous rows.
        scratch = _Scratch(min(rows_per, last - first) * row_bytes, writer)
        for row0 in range(first, last, rows_per):
            k = min(rows_per, last - row0)
            chunk = None if upright or out is None else out.direct(row0, k)
            base = None
            if chunk is None:
                base = scratch.take()
                chunk = base[: k * row_bytes]
            reader.read_rows(chunk)
            if upright:
                flipped = scratch.take()
                chunk = transpose_rows(chunk, header.shape, flipped)
                scratch.spare.append(base)
                base = flipped
            if out is not None and base is not None:
                out.put(row0, chunk)
            if writer is not None:
                writer.add(chunk, base is not None, base)
            elif base is not None:
                scratch.spare.append(base)
        if last == reader.rows:
            reader.finish()
        return out


class _Scratch:
    """Buffers for chunks of rows: the background writer's (each handed over with its chunk and
    recycled once written), else a few reused ones."""

    def __init__(self, nbytes: int, writer):
        self.writer = writer if hasattr(writer, "buffer") else None
        self.nbytes = nbytes
        self.spare: list = []

    def take(self) -> np.ndarray:
        if self.spare:
            return self.spare.pop()
        if self.writer is not None:
            return self.writer.buffer()
        return np.empty(self.nbytes, np.uint8)

