"""Decoding an IDX payload: :class:`IDXReader` (whole, in rows or in pieces) and
:func:`read_idx` / :func:`read_header`, the public reader built on it.

uint8 data bound for another dtype goes through a 256-entry lookup table
(:meth:`fastidx._conversion.Conversion.table`) built with the very NumPy expression the caller would
have written, so the results are bit-identical to it; other dtypes are byte-swapped to native order.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from .. import _kernels
from .._conversion import Conversion
from .._errors import GzipError, IDXError, IDXTruncatedError, source_name
from .bounds import check_bounds, count_payload
from .convert import WORD, map_uint8
from .decoded import MAP_CHUNK, Decoded, EndOfInput
from .header import Header, parse_header
from .output import Prefaulter, aligned_empty, check_out, cpu_budget
from .source import STREAM_FIRST, Input

_STREAM_BLOCK = 16 << 20  # a stream's payload is decoded in blocks of at most this size
_DIRECT_CHUNK = 4 << 20  # decoded bytes written straight into the output per step


def read_header(source) -> Header:
    """Parse only the IDX header of ``source`` (path, bytes-like or binary file)."""
    name = source_name(source)
    with Input(source, name) as inp:
        stream = Decoded(inp)
        try:
            return parse_header(stream)
        except IDXError as exc:
            _zlib_judges(stream, exc)
            raise


def read_idx(source, *, dtype=None, normalize: bool = False, mean=None, std=None, layout=None,
             out: np.ndarray | None = None) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a NumPy array, in one pass.

    Parameters
    ----------
    source : str, os.PathLike, bytes-like or binary file object
        Where the IDX data is. gzip is recognised by its magic bytes, not by the file name;
        multi-member gzip streams are accepted and every member's CRC-32 and length are checked.
    dtype : dtype, optional
        Output dtype. Default: the stored dtype, or float32 when ``normalize``, ``mean`` or ``std``
        is given. uint8 data is converted while it is decoded, with no intermediate copy.
    normalize : bool
        Scale uint8 data to [0, 1]: exactly ``x.astype(dtype) / dtype(255)``.
    mean, std : float, optional
        Standardize on the [0, 1] scale, with or without ``normalize`` (torchvision's ``Normalize``
        after ``ToTensor``): exactly ``(x.astype(dtype) / dtype(255) - mean) / std`` computed in
        ``dtype``. ``mean`` and ``std`` are converted to ``dtype`` first, as NumPy does with Python
        floats (a float64 NumPy scalar would make NumPy itself compute in float64). ``std`` must be
        positive and both finite, else ``ValueError``.
    layout : {None, "NHWC", "NCHW", "flat"}
        For (N, H, W) image files: as stored, (N, H, W, 1), (N, 1, H, W) or (N, H*W).
    out : numpy.ndarray, optional
        Decode into this array instead of allocating one; it must have the final shape and dtype,
        be C-contiguous and writable. When decoding fails, ``out`` may have been partly written.

    Returns
    -------
    numpy.ndarray
        A writable, C-contiguous array in native byte order, aligned to 64 bytes when allocated here.

    Raises
    ------
    IDXError
        When the input is not a well-formed IDX file; the message names the source and the problem.

    Examples
    --------
    >>> import fastidx, numpy as np
    >>> data = fastidx.write_idx(None, np.arange(6, dtype=np.uint8).reshape(1, 2, 3))
    >>> x = fastidx.read_idx(data, normalize=True, layout="flat")
    >>> x.shape, x.dtype, bool(x[0, 5] == np.float32(5) / np.float32(255))
    ((1, 6), dtype('float32'), True)
    """
    with IDXReader(source) as reader:
        try:
            conversion = Conversion(dtype, normalize, mean, std, layout)
        except ValueError as exc:
            raise ValueError(f"{reader.name}: {exc}") from None
        return reader.read_all(conversion, out)


class IDXReader:
    """Sequential decoding of an IDX payload, for callers that want it in pieces or converted.

    The header is parsed and bounds-checked on opening. :meth:`decode_into` decodes the next values
    into a caller's 1-D array, converting uint8 data through a table on the way; :meth:`read_rows`
    and :meth:`skip_rows` work in whole rows of the stored dtype. :meth:`finish` checks, once every
    row has been read, that the input ends there. :func:`read_idx` is :meth:`read_all`.

    >>> import fastidx, numpy as np
    >>> blob = fastidx.write_idx(None, np.arange(6, dtype=np.uint8).reshape(3, 2))
    >>> with IDXReader(blob) as reader:
    ...     first = np.empty(2 * reader.row_bytes, np.uint8)
    ...     reader.read_rows(first)
    ...     reader.skip_rows(1)
    ...     reader.finish()
    >>> first
    array([0, 1, 2, 3], dtype=uint8)
    """

    def __init__(self, source):
        self.name = source_name(source)
        self._input = Input(source, self.name)
        try:
            self._stream = Decoded(self._input)
            self.header = parse_header(self._stream)
            check_bounds(self._input, self.header)
        except BaseException as exc:
            try:
                _zlib_judges(getattr(self, "_stream", None), exc)
            finally:
                self._input.close()
            raise
        shape = self.header.shape
        self.rows = shape[0]
        self.row_items = math.prod(shape[1:])
        self.row_bytes = self.row_items * self.header.dtype.itemsize
        self.row = 0  # rows handed out so far
        self._values = 0  # values handed out so far
        self._scratch = None

    @property
    def size_known(self) -> bool:
        """False for a non-seekable stream: nothing bounds its payload but the data itself."""
        return self._input.size is not None

    def read_all(self, conversion: Conversion, out: np.ndarray | None = None) -> np.ndarray:
        """The whole payload, converted, in a new array (or in ``out``); then :meth:`finish`."""
        header = self.header
        try:
            target = conversion.target(header.dtype)
            shape = conversion.shape(header.shape)
            table = conversion.table(header.dtype) if target != header.dtype else None
        except ValueError as exc:
            _zlib_judges(self._stream, exc)
            raise ValueError(f"{self.name}: {exc}") from None
        if out is not None:
            check_out(out, shape, target, self.name)
            result = out
        elif self.size_known:
            result = self.allocate(shape, target)
        else:
            # A stream of unknown size: decode it into blocks first, so that a header lying
            # about its size costs no more memory than the data that really arrives.
            blocks = self.read_blocks()
            result = self.allocate(shape, target)
            self.convert_blocks(blocks, result.reshape(-1), table)
            self.finish()
            return result
        # The prefaulting thread is the one helper thread of a decode: only with 2 CPUs to spare.
        prefault = out is None and cpu_budget() >= 2
        with Prefaulter(result, enabled=prefault) as prefaulter:
            self.decode_into(result.reshape(-1), table, prefaulter.advance)
        self.finish()
        return result

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A 64-byte-aligned output array. When the system refuses it for a gzip input whose size
        was not counted, the input is counted first: a stream holding less than its header claims
        (say, with a forged trailer) is an :class:`IDXTruncatedError`, not a ``MemoryError``."""
        try:
            return aligned_empty(shape, dtype)
        except MemoryError:
            if self._input.is_gzip and self._input.replayable:
                count_payload(self._input, self.header)
            raise MemoryError(
                f"{self.name}: cannot allocate {math.prod(shape) * dtype.itemsize} bytes of "
                f"{dtype.name} for what the {self.header.describe()}"
            ) from None

    def read_blocks(self) -> list[np.ndarray]:
        """The whole remaining payload as raw stored bytes, in blocks allocated only as the data
        arrives: each as large as all before it (64 KiB to ``_STREAM_BLOCK``), so that at most
        about twice what the stream really holds is ever allocated."""
        itemsize = self.header.dtype.itemsize
        left = (math.prod(self.header.shape) - self._values) * itemsize
        blocks, have = [], 0
        try:
            while left:
                size = min(left, max(STREAM_FIRST, min(have, _STREAM_BLOCK)))
                block = np.empty(size - size % itemsize if size < left else size, np.uint8)
                blocks.append(block)
                self._stream.read_exact(block)
                left -= block.shape[0]
                have += block.shape[0]
        except EndOfInput:
            raise self._truncated() from None
        return blocks

    def convert_blocks(self, blocks: list[np.ndarray], flat: np.ndarray, table=None) -> None:
        """Write what :meth:`read_blocks` returned into ``flat``, as :meth:`decode_into` would,
        releasing each block once it is used."""
        stored = self.header.dtype
        start = 0
        blocks.reverse()
        while blocks:
            block = blocks.pop()
            values = block.view(stored)
            part = flat[start : start + values.shape[0]]
            if table is not None:
                map_uint8(block, table, part)
            else:
                _to_native(block.view(stored))
                part[...] = values
            start += values.shape[0]
            del block, values, part
        self._advance(start)

    def decode_into(self, flat: np.ndarray, table=None, advance=None) -> None:
        """Decode the next ``len(flat)`` values into the contiguous 1-D array ``flat``.

        Without ``table``, ``flat`` has the stored dtype (bytes are swapped to native order) or
        any other numeric dtype (values are cast a chunk at a time). With ``table`` (uint8 data
        only, see :meth:`fastidx._conversion.Conversion.table`) every byte ``v`` becomes ``table[v]``.
        ``advance(n)``, if given, is told after each step that the first ``n`` bytes of ``flat``
        are written.
        """
        try:
            if table is not None:
                self._decode_mapped(flat, table, advance)
            elif flat.dtype == self.header.dtype:
                self._decode_direct(flat, advance)
            else:
                self._decode_cast(flat, advance)
        except EndOfInput:
            raise self._truncated() from None
        self._advance(flat.shape[0])

    def _decode_direct(self, flat, advance) -> None:
        raw = flat.view(np.uint8)
        for start in range(0, raw.shape[0], _DIRECT_CHUNK):
            part = raw[start : start + _DIRECT_CHUNK]
            self._stream.read_exact(part)
            _to_native(part.view(self.header.dtype))
            if advance is not None:
                advance(start + part.shape[0])

    def _decode_cast(self, flat, advance) -> None:
        stored = self.header.dtype
        count = flat.shape[0]
        per = max(1, MAP_CHUNK // stored.itemsize)
        staging = np.empty(min(per, count), stored)
        for start in range(0, count, per):
            part = staging[: min(per, count - start)]
            self._stream.read_exact(part.view(np.uint8))
            _to_native(part)
            flat[start : start + part.shape[0]] = part
            if advance is not None:
                advance((start + part.shape[0]) * flat.dtype.itemsize)

    def _decode_mapped(self, flat, table, advance) -> None:
        if self.header.dtype != np.uint8:
            raise ValueError(f"{self.name}: a conversion table applies to uint8 data only")
        count = flat.shape[0]
        if self._stream.inflater == "isal":
            # ISA-L hands out each decoded piece in a buffer of its own: map straight from it.
            start = 0
            while start < count:
                piece = self._stream.read_chunk(min(MAP_CHUNK, count - start))
                piece = np.frombuffer(piece, np.uint8)
                map_uint8(piece, table, flat[start : start + piece.shape[0]])
                start += piece.shape[0]
                if advance is not None:
                    advance(start * flat.dtype.itemsize)
            return
        staging = self._staging(min(MAP_CHUNK, count))
        for start in range(0, count, MAP_CHUNK):
            part = staging[: min(MAP_CHUNK, count - start)]
            self._stream.read_exact(part)
            map_uint8(part, table, flat[start : start + part.shape[0]])
            if advance is not None:
                advance((start + part.shape[0]) * flat.dtype.itemsize)

    def _staging(self, nbytes: int) -> np.ndarray:
        if self._scratch is None or self._scratch.shape[0] < nbytes:
            self._scratch = np.empty(max(1, nbytes), np.uint8)
        return self._scratch

    def _advance(self, values: int) -> None:
        self._values += values
        self.row = self._values // self.row_items if self.row_items else self.rows

    def _truncated(self) -> IDXTruncatedError:
        self._stream.zlib_agrees(at_end=True)
        got = self._stream.offset - self.header.nbytes
        return IDXTruncatedError(self.name, f"{self.header.describe()} but the stream ends after {got}")

    def read_rows(self, dst: np.ndarray) -> None:
        """Decode the next ``len(dst) // row_bytes`` rows (stored dtype, native order) into the
        uint8 array ``dst``."""
        n = dst.shape[0] // self.row_bytes if self.row_bytes else 0
        if self.row + n > self.rows:
            raise ValueError(f"{self.name}: only {self.rows - self.row} rows left, asked for {n}")
        self.decode_into(dst[: n * self.row_bytes].view(self.header.dtype))

    def skip_rows(self, n: int) -> None:
        """Decode and drop the next ``n`` rows."""
        if self.row + n > self.rows:
            raise ValueError(f"{self.name}: only {self.rows - self.row} rows left, asked for {n}")
        per = max(1, MAP_CHUNK // max(self.row_bytes, 1))
        while n > 0:
            k = min(n, per)
            self.read_rows(self._staging(k * self.row_bytes)[: k * self.row_bytes])
            n -= k

    def finish(self) -> None:
        """After the last row: check that the input ends there (and that gzip is complete)."""
        if self._values != math.prod(self.header.shape):
            raise ValueError(f"{self.name}: {self.rows - self.row} rows not read yet")
        self._stream.finish(self.header)

    def close(self) -> None:
        self._input.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _zlib_judges(stream: Decoded | None, exc: BaseException) -> None:
    """``exc`` is about to be raised about what ``stream`` decoded: if zlib refuses those bytes,
    its :class:`GzipError` is raised instead (see :meth:`Decoded.zlib_agrees`)."""
    if stream is None or not isinstance(exc, (IDXError, ValueError)) or isinstance(exc, GzipError):
        return
    try:
        stream.zlib_agrees()
    except GzipError as refused:
        raise refused from None


def _to_native(values: np.ndarray) -> None:
    """Swap big-endian stored values to native order in place (nothing to do for bytes or on a
    big-endian machine)."""
    if values.dtype.itemsize > 1 and sys.byteorder == "little":
        _kernels.byteswap(values.view(WORD[values.dtype.itemsize]))
