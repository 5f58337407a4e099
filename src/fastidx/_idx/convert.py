"""Conversions of uint8 data already in memory: the lookup-table map and a
:class:`~fastidx._conversion.Conversion` applied to a whole array (the cache and the ``.npz``
loader use these; the decoder applies the same table while it decodes)."""

from __future__ import annotations

import numpy as np

from .. import _kernels
from .._conversion import Conversion
from .output import aligned_empty

#: Unsigned integer of each item size: tables and byte swaps work on the bits.
WORD = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def layout_shape(shape: tuple[int, ...], layout) -> tuple[int, ...]:
    """The shape of a stored ``(N, H, W)`` array in the requested layout."""
    return Conversion(layout=layout).shape(shape)


def map_uint8(src: np.ndarray, table: np.ndarray, dst: np.ndarray) -> None:
    """``dst.flat[i] = table[src.flat[i]]`` for contiguous ``src`` (uint8) and ``dst`` (table's dtype),
    in the native loop with the GIL released."""
    word = WORD[table.dtype.itemsize]
    _kernels.lut_map(src.reshape(-1), table.view(word), dst.reshape(-1).view(word))


def convert_uint8(x: np.ndarray, conversion: Conversion) -> np.ndarray:
    """Apply a :class:`~fastidx._conversion.Conversion` to an array already in memory.

    Returns a new aligned array (or ``x`` reshaped, when nothing is converted)."""
    target = conversion.target(x.dtype)
    shape = conversion.shape(x.shape)
    table = conversion.table(x.dtype)
    if table is None:
        if target == x.dtype:
            return np.ascontiguousarray(x).reshape(shape)
        return x.astype(target).reshape(shape)
    out = aligned_empty(shape, target)
    map_uint8(np.ascontiguousarray(x), table, out)
    return out
