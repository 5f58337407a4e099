"""Arrays of a Keras-format ``.npz`` archive, read without inflating more than is needed.

Each member's npy header and the archive's record of its size are read before any data, so that a
lying or oversized member is refused, and ``max_memory`` enforced, before anything large is
allocated; then only the requested rows are inflated, a chunk at a time, into their array.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .._errors import IDXError

if TYPE_CHECKING:
    from pathlib import Path

_CHUNK = 1 << 20  # bytes inflated per read from a member


class NpyMember:
    """One array of an open ``.npz``: its npy header, checked against the archive's size record."""

    def __init__(self, archive, key: str, file: Path):
        self.archive, self.key, self.file = archive, key, file
        try:
            self.info = archive.getinfo(key + ".npy")
        except KeyError:
            raise IDXError(str(file), f"is not a Keras-format dataset archive: no {key!r}") from None
        fmt = np.lib.format
        with archive.open(self.info) as f:
            try:
                version = fmt.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = fmt.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = fmt.read_array_header_2_0(f)
                else:
                    raise ValueError(f"npy format version {version} is not supported")
            except ValueError as exc:
                raise IDXError(str(file), f"member {key}.npy has a bad npy header: {exc}") from None
            self.offset = f.tell()
        if dtype.hasobject or dtype.itemsize == 0 or len(shape) == 0:
            raise IDXError(str(file), f"member {key}.npy holds {dtype} data of shape {shape}, "
                                      f"not an array of numbers")
        self.shape, self.dtype, self.fortran = tuple(shape), dtype, bool(fortran) and len(shape) > 1
        self.row_items = math.prod(self.shape[1:])
        self.row_bytes = self.row_items * dtype.itemsize
        need = self.shape[0] * self.row_bytes
        have = self.info.file_size - self.offset
        if have != need:
            raise IDXError(
                str(file),
                f"member {key}.npy declares {'x'.join(map(str, self.shape))} {dtype} = {need} bytes "
                f"but holds {have}",
            )
        # A Fortran-ordered array is read whole and then sliced.
        self.fortran_bytes = need if self.fortran else 0

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` in native byte order, inflating only what they need (all of
        a Fortran-ordered array)."""
        native = self.dtype.newbyteorder("=")
        with self.archive.open(self.info) as f:
            if self.fortran:
                whole = np.empty(self.shape[::-1], native)
                self._fill(f, self.offset, whole)
                out = np.ascontiguousarray(whole.T[start:stop])
            else:
                out = np.empty((stop - start,) + self.shape[1:], native)
                self._fill(f, self.offset + start * self.row_bytes, out)
        if native != self.dtype and native.itemsize > 1:
            out.byteswap(inplace=True)
        return out

    def _fill(self, f, offset: int, out: np.ndarray) -> None:
        # Skip to ``offset`` a chunk at a time (ZipExtFile.seek would inflate 16 MiB per step).
        skipped = 0
        while skipped < offset:
            chunk = f.read(min(_CHUNK, offset - skipped))
            if not chunk:
                raise IDXError(str(self.file), f"member {self.key}.npy ends after "
                                               f"{skipped - self.offset} of its bytes")
            skipped += len(chunk)
        view = memoryview(out.reshape(-1).view(np.uint8))
        done = 0
        while done < len(view):
            chunk = f.read(min(_CHUNK, len(view) - done))
            if not chunk:
                raise IDXError(str(self.file), f"member {self.key}.npy ends after "
                                               f"{offset - self.offset + done} of its bytes")
            view[done : done + len(chunk)] = chunk
            done += len(chunk)


def bytes_needed(xm: NpyMember, ym: NpyMember, rows: int, conversion, hot_row_bytes: int) -> int:
    """What reading ``rows`` rows of images ``xm`` and labels ``ym`` takes: both arrays, the
    converted images (``conversion`` checked against the stored dtype first), one-hot rows of
    ``hot_row_bytes``, a Fortran-order member's transposition."""
    converted = 0
    if conversion is not None:
        try:
            target = conversion.target(xm.dtype.newbyteorder("="))
            conversion.shape(xm.shape)
        except ValueError as exc:
            raise ValueError(f"{xm.file}[{xm.key}]: {exc}") from None
        if target != xm.dtype:
            converted = rows * xm.row_items * target.itemsize
    return rows * (xm.row_bytes + ym.row_bytes + hot_row_bytes) + converted + xm.fortran_bytes


def upright(x: np.ndarray) -> np.ndarray:
    """EMNIST stores every image transposed; put them upright in place, a block at a time."""
    block = 4096
    for start in range(0, x.shape[0], block):
        part = x[start : start + block]
        part[...] = part.transpose(0, 2, 1).copy()
    return x
