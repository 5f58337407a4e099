"""Reading and writing IDX files: headers, bounds, conversions and layouts around the native loops.

An IDX file is ``00 00 <type code> <ndim>``, ``ndim`` big-endian uint32 dimensions, then the values in
big-endian C order. fastidx decodes the payload straight into the final array: gzip is inflated in
chunks by ISA-L or zlib (:mod:`fastidx._inflate` chooses), and uint8 data bound for another dtype goes through a
256-entry lookup table (:func:`fastidx._kernels.lut_map`) built with the very NumPy expression the
caller would have written, so the results are bit-identical to it.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import sys
import threading
from typing import NamedTuple

import numpy as np

from . import _inflate, _kernels
from ._conversion import Conversion
from ._errors import (
    GzipError,
    IDXError,
    IDXHeaderError,
    IDXTrailingDataError,
    IDXTruncatedError,
    source_name,
)

#: IDX type code -> NumPy dtype (the on-disk values are big-endian).
TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(np.int16),
    0x0C: np.dtype(np.int32),
    0x0D: np.dtype(np.float32),
    0x0E: np.dtype(np.float64),
}
_CODE_OF = {dtype: code for code, dtype in TYPE_CODES.items()}

#: More dimensions than any dataset has; a header claiming more is treated as garbage.
MAX_NDIM = 32

_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot expand data by more than 1032:1, so a gzip stream of n bytes never decodes to more.
_MAX_DEFLATE_RATIO = 1032
# Output arrays start on a 64-byte boundary (a cache line, the widest SIMD register).
_ALIGN = 64
_READ_CHUNK = 1 << 18  # compressed bytes read from a file per call
_STREAM_FIRST = 1 << 16  # bytes of a non-seekable stream read before its header is checked
_STREAM_BLOCK = 16 << 20  # a stream's payload is decoded in blocks of this size (see read_idx)
_TRAILING_PROBE = 1 << 16  # at most this many bytes after the payload are decoded to report them
_MAP_CHUNK = 1 << 18  # uint8 bytes decoded per lookup-table pass: stays in L2 cache
_PREFAULT_MIN = 8 << 20  # below this, a thread costs more than the faults it saves
_PREFAULT_STEP = 2 << 20  # pages faulted in per system call
_PREFAULT_AHEAD = 8 << 20  # at most this much beyond what the decoder has written
_DIRECT_CHUNK = 4 << 20  # decoded bytes written straight into the output per step
_RECOUNT_MIN = 64 << 20  # untrusted gzip sizes above this are counted before allocating
_MAX_ARRAY_BYTES = 1 << 62
_WORD = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


class Header(NamedTuple):
    """A parsed IDX header."""

    dtype: np.dtype  # the stored dtype, native byte order
    shape: tuple[int, ...]
    nbytes: int  # bytes of the header itself

    @property
    def payload_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _describe(header: Header) -> str:
    dims = "x".join(str(d) for d in header.shape)
    return f"header declares {dims} {header.dtype.name} = {header.payload_bytes} bytes"


class _EndOfInput(Exception):
    """Internal: the decoded stream ended after ``got`` bytes of a read."""

    def __init__(self, got: int):
        self.got = got


# ---------------------------------------------------------------------------------------------
# Sources: a path, a bytes-like object or a binary file object, gzip or raw.


class _Input:
    """The compressed (or raw) bytes of a source: their total size and a way to read them in chunks.

    A non-seekable stream (or a file object without ``readinto``) is read only as the decoder asks
    for it, so that a bad header is refused after the first chunk; its ``size`` is ``None`` and
    it cannot be read again (``replayable`` is False).
    """

    def __init__(self, source, name: str):
        self.name = name
        self._file = None
        self._stream = None
        self._owned = False
        self._data: memoryview | None = None
        if isinstance(source, (str, os.PathLike)):
            try:
                self._file = open(source, "rb", buffering=0)
            except IsADirectoryError:
                raise IDXError(name, "is a directory, not an IDX file") from None
            self._owned = True
        elif isinstance(source, (bytes, bytearray, memoryview)) or _is_buffer(source):
            self._data = memoryview(source).cast("B")
        elif hasattr(source, "read"):
            self._file = source
        else:
            raise TypeError(
                f"read_idx() needs a path, a bytes-like object or a binary file object, "
                f"not {type(source).__name__}"
            )
        self._pos = 0
        self._buffer = None
        self._head = b""  # stream bytes read ahead by peek() and not handed out yet
        if self._file is not None and not (_seekable(self._file) and hasattr(self._file, "readinto")):
            self._stream, self._file = self._file, None
            self.size = None
        elif self._data is not None:
            self.size = len(self._data)
            self._start = 0
        else:
            self._start = self._file.tell()
            self.size = self._file.seek(0, io.SEEK_END) - self._start
            self._file.seek(self._start)
        self.replayable = self._stream is None
        self.is_gzip = self.peek(0, 2) == _GZIP_MAGIC

    def peek(self, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset`` without moving the read position (streams: from the start
        only, before anything was read)."""
        if self._stream is not None:
            if self._pos or offset:
                raise RuntimeError("a stream can only be peeked at its start")
            while len(self._head) < n:
                more = self._stream.read(max(n - len(self._head), _STREAM_FIRST))
                if not more:
                    break
                self._head += more
            return self._head[:n]
        if self._data is not None:
            return bytes(self._data[offset : offset + n])
        here = self._file.tell()
        self._file.seek(self._start + offset)
        out = self._file.read(n) or b""
        self._file.seek(here)
        return out

    def readinto(self, dst: memoryview) -> int:
        """Raw sources: fill ``dst`` (or as much as there is); return bytes read."""
        if self._data is not None:
            n = min(len(dst), self.size - self._pos)
            dst[:n] = self._data[self._pos : self._pos + n]
            self._pos += n
            return n
        got = 0
        if self._head:
            got = min(len(dst), len(self._head))
            dst[:got] = self._head[:got]
            self._head = self._head[got:]
        while got < len(dst):
            n = self._read_some(dst[got:])
            if not n:
                break
            got += n
        self._pos += got
        return got

    def _read_some(self, dst: memoryview) -> int:
        if self._file is not None:
            return self._file.readinto(dst)
        data = self._stream.read(len(dst))
        if not data:
            return 0
        dst[: len(data)] = data
        return len(data)

    def next_chunk(self):
        """Gzip sources: the next piece of compressed input, or ``None`` at the end."""
        if self._data is not None:
            if self._pos >= self.size:
                return None
            chunk = self._data[self._pos :]
            self._pos = self.size
            return chunk
        if self._head:
            chunk, self._head = self._head, b""
            self._pos += len(chunk)
            return chunk
        if self._stream is not None:
            chunk = self._stream.read(_READ_CHUNK)
            if not chunk:
                return None
            self._pos += len(chunk)
            return chunk
        if self._buffer is None:
            self._buffer = bytearray(min(_READ_CHUNK, max(self.size, 1)))
        n = self._file.readinto(self._buffer)
        if not n:
            return None
        self._pos += n
        return memoryview(self._buffer)[:n]

    def close(self):
        if self._owned and self._file is not None:
            self._file.close()
        self._file = None
        self._stream = None
        self._data = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _is_buffer(obj) -> bool:
    try:
        memoryview(obj)
    except TypeError:
        return False
    return True


def _seekable(f) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError, ValueError):
        return False


class _Decoded:
    """The decoded IDX byte stream of an :class:`_Input`: exact reads and a final completeness check.

    gzip is inflated by ISA-L when ``fastidx._inflate`` says so, else by zlib. Anything ISA-L
    refuses (or a member header it would judge differently) is decoded again by zlib from the start
    of the stream, and zlib's verdict stands: the errors, and what is accepted, are zlib's.
    """

    def __init__(self, inp):
        self.inp = inp
        self.offset = 0  # decoded bytes handed out so far
        self._chunks = inp  # where compressed chunks come from (a replay once zlib takes over)
        self._inflater = _inflate.new_inflater(inp.replayable) if inp.is_gzip else None

    @property
    def inflater(self) -> str | None:
        """``"isal"``, ``"zlib"``, or ``None`` for raw input."""
        if self._inflater is None:
            return None
        return "isal" if isinstance(self._inflater, _inflate.IsalInflater) else "zlib"

    def read_exact(self, dst: np.ndarray) -> None:
        """Fill the uint8 array ``dst`` with the next decoded bytes, or raise :class:`_EndOfInput`."""
        want = dst.shape[0]
        if self._inflater is None:
            got = self.inp.readinto(memoryview(dst))
        else:
            try:
                got = self._inflate(dst)
            except _ZlibMustJudge:
                self._hand_over_to_zlib()
                got = self._inflate(dst)
        self.offset += got
        if got < want:
            raise _EndOfInput(got)

    def read_chunk(self, limit: int):
        """The next decoded bytes (at least one, at most ``limit``) in a buffer of their own, that
        nothing will write to again; :class:`_EndOfInput` when the stream has ended."""
        inflater = self._inflater
        if isinstance(inflater, _inflate.IsalInflater):
            try:
                while True:
                    try:
                        chunk = inflater.inflate_chunk(limit)
                    except _kernels.InflateError as exc:
                        if exc.kind == "fallback":
                            raise _ZlibMustJudge() from None
                        raise self._gzip_error(exc) from None
                    if chunk:
                        self.offset += len(chunk)
                        return chunk
                    next_chunk = self._chunks.next_chunk()
                    if next_chunk is None:
                        if not inflater.at_member_end:
                            raise _ZlibMustJudge()
                        raise _EndOfInput(0)
                    inflater.feed(next_chunk)
            except _ZlibMustJudge:
                self._hand_over_to_zlib()
        # zlib (or raw): a fresh buffer per call; only ever the fallback, so its cost is no matter.
        out = np.empty(min(limit, _MAP_CHUNK), np.uint8)
        try:
            self.read_exact(out)
        except _EndOfInput as end:
            if not end.got:
                raise
            return out[: end.got]
        return out

    def _hand_over_to_zlib(self) -> None:
        """Decode the stream again with zlib from its start, up to where the decoder stands."""
        self._chunks = _Replay(self.inp)
        self._inflater = _inflate.ZlibInflater()
        scratch, skipped = np.empty(_MAP_CHUNK, np.uint8), 0
        while skipped < self.offset:
            n = self._inflate(scratch[: min(scratch.shape[0], self.offset - skipped)])
            if n == 0:
                raise GzipError(
                    self.inp.name,
                    f"ISA-L and zlib disagree on this gzip stream: zlib ends it after {skipped} "
                    f"decoded bytes, ISA-L had {self.offset}",
                )
            skipped += n

    def _inflate(self, dst: np.ndarray) -> int:
        inflater = self._inflater
        want = dst.shape[0]
        got = 0
        while got < want:
            try:
                got += inflater.inflate_into(dst[got:])
            except _kernels.InflateError as exc:
                if exc.kind == "fallback":
                    raise _ZlibMustJudge() from None
                raise self._gzip_error(exc) from None
            if got >= want:
                break
            if not inflater.needs_input:
                raise GzipError(self.inp.name, "zlib made no progress on the gzip stream")
            chunk = self._chunks.next_chunk()
            if chunk is None:
                if not inflater.at_member_end:
                    if isinstance(inflater, _inflate.IsalInflater):
                        raise _ZlibMustJudge()  # zlib's words for a truncated stream
                    raise GzipError(
                        self.inp.name,
                        f"gzip stream is truncated: it ends inside a compressed member after "
                        f"{inflater.total_in} compressed bytes ({self.offset + got} decoded)",
                    )
                return got
            inflater.feed(chunk)
        return got

    def _gzip_error(self, exc) -> GzipError:
        if exc.kind == "junk":
            return GzipError(
                self.inp.name,
                f"junk after the gzip stream at compressed offset {exc.offset}: {exc}",
            )
        reason = str(exc)
        known = {
            "incorrect data check": "gzip CRC-32 mismatch: the compressed data is corrupted",
            "incorrect length check": "gzip length check failed: the member's ISIZE does not match",
            "incorrect header check": "invalid gzip member header",
            "unknown compression method": "gzip member uses an unknown compression method",
        }
        message = known.get(reason, f"corrupt gzip data ({reason})")
        return GzipError(self.inp.name, f"{message} near compressed offset {exc.offset}")

    def finish(self, header: Header) -> None:
        """Check that nothing follows the payload and (gzip) that the stream is complete and intact.

        At most ``_TRAILING_PROBE`` bytes beyond the payload are decoded: a file with more is
        refused without inflating (or reading) the rest, however large it would decode."""
        if self._inflater is None and self.inp.size is not None:
            extra, more = self.inp.size - self.inp._pos, False
        else:
            probe = np.empty(_TRAILING_PROBE, np.uint8)
            try:
                self.read_exact(probe)
            except _EndOfInput as end:
                extra, more = end.got, False
            else:
                extra, more = _TRAILING_PROBE, True
        if extra:
            count = f"at least {extra}" if more else f"{extra}"
            raise IDXTrailingDataError(
                self.inp.name, f"{_describe(header)} but {count} more bytes come after the payload"
            )


class _ZlibMustJudge(Exception):
    """Internal: ISA-L refused the stream (or met a header zlib must judge): replay it with zlib."""


class _Replay:
    """A gzip input's compressed bytes once more from the start, leaving the original untouched."""

    is_gzip = True
    replayable = True

    def __init__(self, inp):
        self.name = inp.name
        self._inp = inp
        self._offset = 0

    def peek(self, offset: int, n: int) -> bytes:
        return self._inp.peek(offset, n)

    def next_chunk(self):
        data = self._inp.peek(self._offset, _READ_CHUNK)
        if not data:
            return None
        self._offset += len(data)
        return data


# ---------------------------------------------------------------------------------------------
# Headers and bounds.


def _read_header(stream: _Decoded) -> Header:
    name = stream.inp.name
    if stream.inp.size == 0 or (stream.inp.size is None and not stream.inp.peek(0, 1)):
        raise IDXHeaderError(name, "input is empty")
    head = np.empty(4, np.uint8)
    try:
        stream.read_exact(head)
    except _EndOfInput as end:
        raise IDXHeaderError(
            name, f"input ends after {end.got} bytes, inside the 4-byte IDX magic number"
        ) from None
    zero, code, ndim = struct.unpack(">HBB", head.tobytes())
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
    dims = np.empty(4 * ndim, np.uint8)
    try:
        stream.read_exact(dims)
    except _EndOfInput as end:
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
        raise IDXHeaderError(name, f"{_describe(header)}, in a shape no array can have")
    return header


def _check_bounds(inp: _Input, header: Header) -> None:
    """Refuse, before allocating, a header that declares more data than the input can hold.

    (A non-seekable stream has no size to check: :func:`read_idx` decodes it in blocks instead,
    so that no more is allocated than the stream really holds.)"""
    if inp.size is None:
        return
    need = header.payload_bytes
    if not inp.is_gzip:
        have = inp.size - header.nbytes
        if have < need:
            raise IDXTruncatedError(
                inp.name, f"{_describe(header)} but the stream ends after {have}"
            )
        if have > need:
            raise IDXTrailingDataError(
                inp.name, f"{_describe(header)} but {have - need} more bytes follow the payload"
            )
        return
    total = header.nbytes + need
    ceiling = _MAX_DEFLATE_RATIO * inp.size
    if total > ceiling:
        raise IDXTruncatedError(
            inp.name,
            f"{_describe(header)} but a {inp.size}-byte gzip stream cannot decode to more than "
            f"{ceiling} bytes",
        )
    if total <= _RECOUNT_MIN:
        return
    # The trailer's ISIZE is the decoded size (mod 2**32) of the last member. For the usual
    # single-member file it confirms the header; otherwise (multi-member, damaged or lying) the
    # stream is decoded once without keeping anything, so that only what exists gets allocated.
    (isize,) = struct.unpack("<I", inp.peek(inp.size - 4, 4)) if inp.size >= 18 else (-1,)
    if isize == total % 2**32:
        return
    _count_payload(inp, header)


def _count_payload(inp: _Input, header: Header) -> None:
    """Decode a gzip input once without keeping anything; raise :class:`IDXTruncatedError` if it
    holds less than the header declares."""
    total = header.nbytes + header.payload_bytes
    counter = _Decoded(_Replay(inp))
    scratch = np.empty(min(_MAP_CHUNK, total), np.uint8)
    try:
        while counter.offset < total:
            counter.read_exact(scratch[: min(scratch.shape[0], total - counter.offset)])
    except _EndOfInput:
        raise IDXTruncatedError(
            inp.name,
            f"{_describe(header)} but the stream ends after {counter.offset - header.nbytes}",
        ) from None


class _Prefaulter:
    """Faults an output's pages in from a second thread while the decoder writes into them.

    In a fresh process every 4 KiB of new output costs a page fault on first write, as much time
    as decoding a float32 MNIST; the kernel can map them on the other core meanwhile. The thread
    never runs more than ``_PREFAULT_AHEAD`` bytes beyond what the decoder has written, so a header
    that lies about its size commits no more memory than the data that really arrives.
    """

    def __init__(self, array: np.ndarray, enabled: bool = True):
        self._bytes = array.reshape(-1).view(np.uint8)
        self._written = 0
        self._stopped = False
        self._cond = threading.Condition()
        self._thread = None
        if enabled and self._bytes.shape[0] >= _PREFAULT_MIN:
            self._thread = threading.Thread(target=self._run, name="fastidx-prefault", daemon=True)
            self._thread.start()

    def advance(self, written: int) -> None:
        """The decoder has written the first ``written`` bytes."""
        if self._thread is not None:
            with self._cond:
                self._written = written
                self._cond.notify()

    def _run(self) -> None:
        total, pos = self._bytes.shape[0], 0
        while pos < total:
            end = min(pos + _PREFAULT_STEP, total)
            with self._cond:
                while not self._stopped and end > self._written + _PREFAULT_AHEAD:
                    self._cond.wait()
                if self._stopped:
                    return
            if not _kernels.prefault(self._bytes[pos:end]):
                return  # the kernel cannot: the decoder's own faults will do
            pos = end

    def close(self) -> None:
        if self._thread is not None:
            with self._cond:
                self._stopped = True
                self._cond.notify()
            self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _cpu_budget() -> int:
    """CPUs this process may use: affinity, ``OMP_NUM_THREADS``, cgroup quota and, in a Ray worker,
    its assigned CPUs (one rule for every thread fastidx starts: see ``_cpus``)."""
    from ._cpus import budget

    return budget()


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGN, np.uint8)
    start = -raw.ctypes.data % _ALIGN
    return raw[start : start + nbytes].view(dtype).reshape(shape)


# ---------------------------------------------------------------------------------------------
# Conversions and layouts.


def layout_shape(shape: tuple[int, ...], layout) -> tuple[int, ...]:
    """The shape of a stored ``(N, H, W)`` array in the requested layout."""
    return Conversion(layout=layout).shape(shape)


def _check_out(out, shape, dtype, name):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, not {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name}: out has shape {out.shape}, the data needs {shape}")
    if out.dtype != dtype:
        raise ValueError(f"{name}: out has dtype {out.dtype}, the data needs {dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: out must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name}: out is read-only")


def map_uint8(src: np.ndarray, table: np.ndarray, dst: np.ndarray) -> None:
    """``dst.flat[i] = table[src.flat[i]]`` for contiguous ``src`` (uint8) and ``dst`` (table's dtype),
    in the native loop with the GIL released."""
    word = _WORD[table.dtype.itemsize]
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
    out = _aligned_empty(shape, target)
    map_uint8(np.ascontiguousarray(x), table, out)
    return out


def read_header(source) -> Header:
    """Parse only the IDX header of ``source`` (path, bytes-like or binary file)."""
    name = source_name(source)
    with _Input(source, name) as inp:
        return _read_header(_Decoded(inp))


def read_idx(
    source,
    *,
    dtype=None,
    normalize: bool = False,
    mean=None,
    std=None,
    layout=None,
    out: np.ndarray | None = None,
) -> np.ndarray:
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
    name = source_name(source)
    with IDXReader(source) as reader:
        header = reader.header
        try:
            conversion = Conversion(dtype, normalize, mean, std, layout)
            target = conversion.target(header.dtype)
            shape = conversion.shape(header.shape)
            table = conversion.table(header.dtype) if target != header.dtype else None
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        if out is not None:
            _check_out(out, shape, target, name)
            result = out
        elif reader.size_known:
            result = reader.allocate(shape, target)
        else:
            # A stream of unknown size: decode it into blocks first, so that a header lying
            # about its size costs no more memory than the data that really arrives.
            blocks = reader.read_blocks()
            result = reader.allocate(shape, target)
            reader.convert_blocks(blocks, result.reshape(-1), table)
            reader.finish()
            return result
        # The prefaulting thread is the one helper thread of a decode: only with 2 CPUs to spare.
        prefault = out is None and _cpu_budget() >= 2
        with _Prefaulter(result, enabled=prefault) as prefaulter:
            reader.decode_into(result.reshape(-1), table, prefaulter.advance)
        reader.finish()
    return result


def write_idx(dest, array, *, compress: bool | None = None, compresslevel: int = 6):
    """Write ``array`` as an IDX file.

    Parameters
    ----------
    dest : str, os.PathLike, binary file object or None
        Where to write. ``None`` returns the encoded bytes. Files are written to a temporary name
        and renamed into place, so a reader never sees a half-written file.
    array : array_like
        uint8, int8, int16, int32, float32 or float64 data with 1 to 32 dimensions (each < 2**32).
    compress : bool, optional
        gzip the output. Default: when ``dest`` is a name ending in ``.gz``.
    compresslevel : int
        gzip level, 1 (fastest) to 9 (smallest). The default 6 is gzip(1)'s: on MNIST level 9
        saves 2% of the size for 14 times the time.

    Returns
    -------
    bytes or None
        The encoded file when ``dest`` is None.

    Examples
    --------
    >>> import fastidx, numpy as np
    >>> blob = fastidx.write_idx(None, np.array([1, 2, 3], dtype=np.int16))
    >>> blob.hex()
    '00000b0100000003000100020003'
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=") if array.dtype.byteorder not in "=|" else array.dtype
    if native not in _CODE_OF:
        known = ", ".join(d.name for d in TYPE_CODES.values())
        raise ValueError(f"IDX cannot store dtype {array.dtype}; supported: {known}")
    if not 0 <= compresslevel <= 9:
        raise ValueError(f"compresslevel must be 0 to 9, not {compresslevel}")
    if not 1 <= array.ndim <= MAX_NDIM:
        raise ValueError(f"IDX stores 1 to {MAX_NDIM} dimensions, not {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX dimensions must be below 2**32: {array.shape}")
    is_path = isinstance(dest, (str, os.PathLike))
    if compress is None:
        compress = is_path and os.fspath(dest).endswith(".gz")
    header = struct.pack(">HBB", 0, _CODE_OF[native], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=native.newbyteorder(">"))

    def emit(f):
        if compress:
            with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, compresslevel=compresslevel) as gz:
                gz.write(header)
                gz.write(memoryview(payload.reshape(-1).view(np.uint8)))
        else:
            f.write(header)
            f.write(memoryview(payload.reshape(-1).view(np.uint8)))

    if dest is None:
        buffer = io.BytesIO()
        emit(buffer)
        return buffer.getvalue()
    if is_path:
        from ._atomic import atomic_write

        with atomic_write(dest) as f:
            emit(f)
        return None
    emit(dest)
    return None



class IDXReader:
    """Sequential decoding of an IDX payload, for callers that want it in pieces or converted.

    The header is parsed and bounds-checked on opening. :meth:`decode_into` decodes the next values
    into a caller's 1-D array, converting uint8 data through a table on the way; :meth:`read_rows`
    and :meth:`skip_rows` work in whole rows of the stored dtype. :meth:`finish` checks, once every
    row has been read, that the input ends there. :func:`read_idx` is this, start to finish.

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
        self._input = _Input(source, self.name)
        try:
            self._stream = _Decoded(self._input)
            self.header = _read_header(self._stream)
            _check_bounds(self._input, self.header)
        except BaseException:
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

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A 64-byte-aligned output array. When the system refuses it for a gzip input whose size
        was not counted, the input is counted first: a stream holding less than its header claims
        (say, with a forged trailer) is an :class:`IDXTruncatedError`, not a ``MemoryError``."""
        try:
            return _aligned_empty(shape, dtype)
        except MemoryError:
            if self._input.is_gzip and self._input.replayable:
                _count_payload(self._input, self.header)
            raise MemoryError(
                f"{self.name}: cannot allocate {math.prod(shape) * dtype.itemsize} bytes of "
                f"{dtype.name} for what the {_describe(self.header)}"
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
                size = min(left, max(_STREAM_FIRST, min(have, _STREAM_BLOCK)))
                block = np.empty(size - size % itemsize if size < left else size, np.uint8)
                blocks.append(block)
                self._stream.read_exact(block)
                left -= block.shape[0]
                have += block.shape[0]
        except _EndOfInput:
            got = self._stream.offset - self.header.nbytes
            raise IDXTruncatedError(
                self.name, f"{_describe(self.header)} but the stream ends after {got}"
            ) from None
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
                if stored.itemsize > 1 and sys.byteorder == "little":
                    _kernels.byteswap(block.view(_WORD[stored.itemsize]))
                part[...] = values
            start += values.shape[0]
            del block, values, part
        self._values += start
        self.row = self._values // self.row_items if self.row_items else self.rows

    def decode_into(self, flat: np.ndarray, table=None, advance=None) -> None:
        """Decode the next ``len(flat)`` values into the contiguous 1-D array ``flat``.

        Without ``table``, ``flat`` has the stored dtype (bytes are swapped to native order) or
        any other numeric dtype (values are cast a chunk at a time). With ``table`` (uint8 data
        only, see :meth:`fastidx._conversion.Conversion.table`) every byte ``v`` becomes ``table[v]``. ``advance(n)``,
        if given, is told after each step that the first ``n`` bytes of ``flat`` are written.
        """
        stored = self.header.dtype
        count = flat.shape[0]
        try:
            if table is not None:
                self._decode_mapped(flat, table, advance)
            elif flat.dtype == stored:
                raw = flat.view(np.uint8)
                for start in range(0, raw.shape[0], _DIRECT_CHUNK):
                    part = raw[start : start + _DIRECT_CHUNK]
                    self._stream.read_exact(part)
                    if stored.itemsize > 1 and sys.byteorder == "little":
                        _kernels.byteswap(part.view(_WORD[stored.itemsize]))
                    if advance is not None:
                        advance(start + part.shape[0])
            else:
                per = max(1, _MAP_CHUNK // stored.itemsize)
                staging = np.empty(min(per, count), stored)
                for start in range(0, count, per):
                    part = staging[: min(per, count - start)]
                    self._stream.read_exact(part.view(np.uint8))
                    if stored.itemsize > 1 and sys.byteorder == "little":
                        _kernels.byteswap(part.view(_WORD[stored.itemsize]))
                    flat[start : start + part.shape[0]] = part
                    if advance is not None:
                        advance((start + part.shape[0]) * flat.dtype.itemsize)
        except _EndOfInput:
            got = self._stream.offset - self.header.nbytes
            raise IDXTruncatedError(
                self.name, f"{_describe(self.header)} but the stream ends after {got}"
            ) from None
        self._values += count
        self.row = self._values // self.row_items if self.row_items else self.rows

    def _decode_mapped(self, flat, table, advance) -> None:
        if self.header.dtype != np.uint8:
            raise ValueError(f"{self.name}: a conversion table applies to uint8 data only")
        count = flat.shape[0]
        if self._stream.inflater == "isal":
            # ISA-L hands out each decoded piece in a buffer of its own: map straight from it.
            start = 0
            while start < count:
                piece = self._stream.read_chunk(min(_MAP_CHUNK, count - start))
                piece = np.frombuffer(piece, np.uint8)
                map_uint8(piece, table, flat[start : start + piece.shape[0]])
                start += piece.shape[0]
                if advance is not None:
                    advance(start * flat.dtype.itemsize)
            return
        staging = self._staging(min(_MAP_CHUNK, count))
        for start in range(0, count, _MAP_CHUNK):
            part = staging[: min(_MAP_CHUNK, count - start)]
            self._stream.read_exact(part)
            map_uint8(part, table, flat[start : start + part.shape[0]])
            if advance is not None:
                advance((start + part.shape[0]) * flat.dtype.itemsize)

    def _staging(self, nbytes: int) -> np.ndarray:
        if self._scratch is None or self._scratch.shape[0] < nbytes:
            self._scratch = np.empty(max(1, nbytes), np.uint8)
        return self._scratch

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
        per = max(1, _MAP_CHUNK // max(self.row_bytes, 1))
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
