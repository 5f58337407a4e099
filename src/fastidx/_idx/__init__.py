"""The IDX codec: reading and writing IDX files, around the native loops.

An IDX file is ``00 00 <type code> <ndim>``, ``ndim`` big-endian uint32 dimensions, then the values in
big-endian C order. fastidx decodes the payload straight into the final array: gzip is inflated in
chunks by ISA-L or zlib (:mod:`fastidx._inflate` chooses), and uint8 data bound for another dtype goes
through a 256-entry lookup table (:func:`fastidx._kernels.lut_map`) built with the very NumPy
expression the caller would have written, so the results are bit-identical to it.

One concern per module, each importing only those before it:

- :mod:`.source` — the bytes of a path, a bytes-like object or a file object, in chunks;
- :mod:`.decoded` — those bytes decoded (gzip members by ISA-L or zlib, or raw), trailing data;
- :mod:`.header` — the header format: type codes, parsing, encoding;
- :mod:`.bounds` — a header that declares more than the input holds, refused before allocating;
- :mod:`.output` — aligned output arrays, ``out=`` checks, the prefaulting thread;
- :mod:`.convert` — the lookup-table map and conversions of arrays already in memory;
- :mod:`.reader` — :class:`IDXReader`, :func:`read_idx`, :func:`read_header`;
- :mod:`.writer` — :func:`write_idx`.
"""

from .convert import convert_uint8, layout_shape, map_uint8
from .header import CODE_OF, MAX_NDIM, TYPE_CODES, Header
from .output import aligned_empty
from .reader import IDXReader, read_header, read_idx
from .writer import write_idx

__all__ = [
    "CODE_OF", "MAX_NDIM", "TYPE_CODES", "Header", "IDXReader", "aligned_empty", "convert_uint8",
    "layout_shape", "map_uint8", "read_header", "read_idx", "write_idx",
]
