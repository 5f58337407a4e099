"""The IDX header: ``00 00 <type code> <ndim>``, then ``ndim`` big-endian uint32 dimensions.

Parsing (:func:`parse_header`, from a decoded stream) and encoding (:func:`encode_header`, for
:func:`~fastidx.write_idx`) live here with the type codes, so that the format is written down once.
"""

from __future__ import annotations

import math
import struct
from typing import NamedTuple

import numpy as np

from .._errors import IDXHeaderError
from .decoded import Decoded, EndOfInput

#: IDX type code -> NumPy dtype (the on-disk values are big-endian).
TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(np.int16),
    0x0C: np.dtype(np.int32),
    0x0D: np.dtype(np.float32),
    0x0E: np.dtype(np.float64),
}
#: NumPy dtype (native byte order) -> IDX type code.
CODE_OF = {dtype: code for code, dtype in TYPE_CODES.items()}

#: More dimensions than any dataset has; a header claiming more is treated as garbage.
MAX_NDIM = 32

_MAX_ARRAY_BYTES = 1 << 62


class Header(NamedTuple):
    """A parsed IDX header."""

    dtype: np.dtype  # the stored dtype, native byte order
    shape: tuple[int, ...]
    nbytes: int  # bytes of the header itself

    @property
    def payload_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        """``header declares 60000x28x28 uint8 = 47040000 bytes``: how error messages cite it."""
        dims = "x".join(str(d) for d in self.shape)
        return f"header declares {dims} {self.dtype.name} = {self.payload_bytes} bytes"


def parse_header(stream: Decoded) -> Header:
    """Read and check the header at the start of ``stream``; an :class:`IDXHeaderError` names
    the source and what is wrong."""
    name = stream.inp.name
    if stream.inp.size == 0 or (stream.inp.size is None and not stream.inp.peek(0, 1)):
        raise IDXHeaderError(name, "input is empty")
    head = np.empty(4, np.uint8)
    try:
        stream.read_exact(head)
    except EndOfInput as end:
        raise IDXHeaderError(
            name, f"input ends after {end.got} bytes, inside the 4-byte IDX magic number"
        ) from None
    zero, code, ndim = struct.unpack(">HBB", head.tobytes())
    _check_magic(name, zero, head, code, ndim)
    dims = np.empty(4 * ndim, np.uint8)
    try:
        stream.read_exact(dims)
    except EndOfInput as end:
        raise IDXHeaderError(
            name,
            f"header declares {ndim} dimensions ({4 * ndim} bytes) but the input ends "
            f"after {end.got} of them",
        ) from None
    shape = tuple(int(d) for d in struct.unpack(f">{ndim}I", dims.tobytes()))
    header = Header(TYPE_CODES[code], shape, 4 + 4 * ndim)
    if 0 in shape and math.prod(d for d in shape if d) * header.dtype.itemsize > _MAX_ARRAY_BYTES:
        # No values, but NumPy still refuses extents that multiply past its index range. (With
        # values, the bounds check says more: how much the input really holds.)
        raise IDXHeaderError(name, f"{header.describe()}, in a shape no array can have")
    return header


def _check_magic(name: str, zero: int, head: np.ndarray, code: int, ndim: int) -> None:
    if zero != 0:
        raise IDXHeaderError(
            name,
            f"not an IDX file: it starts with {head[:2].tobytes().hex()}, IDX files start with 0000",
        )
    if code not in TYPE_CODES:
        known = ", ".join(f"0x{c:02X} ({d.name})" for c, d in TYPE_CODES.items())
        raise IDXHeaderError(name, f"unknown IDX type code 0x{code:02X}; known: {known}")
    if ndim == 0:
        raise IDXHeaderError(name, "header declares 0 dimensions")
    if ndim > MAX_NDIM:
        raise IDXHeaderError(name, f"header declares {ndim} dimensions (at most {MAX_NDIM})")


def encode_header(array: np.ndarray) -> tuple[bytes, np.dtype]:
    """The header bytes of ``array`` and its dtype in native byte order; ``ValueError`` for what
    IDX cannot store (another dtype, no or too many dimensions, a dimension of 2**32 or more)."""
    native = array.dtype.newbyteorder("=") if array.dtype.byteorder not in "=|" else array.dtype
    if native not in CODE_OF:
        known = ", ".join(d.name for d in TYPE_CODES.values())
        raise ValueError(f"IDX cannot store dtype {array.dtype}; supported: {known}")
    if not 1 <= array.ndim <= MAX_NDIM:
        raise ValueError(f"IDX stores 1 to {MAX_NDIM} dimensions, not {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX dimensions must be below 2**32: {array.shape}")
    header = struct.pack(">HBB", 0, CODE_OF[native], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header, native
