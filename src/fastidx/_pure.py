"""The pure-Python fallback of :mod:`fastidx._native`: the same names and behaviour, on zlib and NumPy.

Used where the extension could not be built (no C compiler, no Cython or zlib headers) or when
``FASTIDX_PURE=1`` asks for it; :mod:`fastidx._kernels` makes the choice. Every function accepts
what its native twin accepts and returns, writes and raises the same things (``InflateError`` with
the same ``kind``, message and offset), so ``fastidx._idx`` never knows which one it drives. It is
slower: Python's ``zlib`` returns new ``bytes`` that are then copied into the caller's memory, and
there is no page prefaulting.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

ZLIB_VERSION = zlib.ZLIB_RUNTIME_VERSION

# Compressed bytes handed to zlib per call. Python's zlib copies the input it could not consume
# (``unconsumed_tail``) after every call; small slices keep that copy small when the caller's
# destination fills up long before a large chunk of input is used.
_IN_SLICE = 1 << 16
# Decoded bytes asked of zlib per call: each call returns a new ``bytes`` object of up to this size,
# copied into the destination, so it bounds the fallback's extra memory.
_OUT_SLICE = 1 << 18

# Where the inflater stands in a (possibly multi-member) gzip stream, as in _native.pyx.
_IN_MEMBER = 0  # inside a gzip member: bytes go to zlib
_AFTER_MEMBER = 1  # a member ended cleanly; next comes another member, zero padding or the end
_IN_PADDING = 2  # zero bytes after a member

_GZIP_WBITS = 16 + zlib.MAX_WBITS
# CPython words zlib's errors as "Error <code> while decompressing data[: <zlib's msg>]".
_ZLIB_MESSAGE = re.compile(r"Error (-?\d+) while decompressing data(?:: (.*))?\Z", re.DOTALL)


class InflateError(Exception):
    """A damaged gzip stream. ``kind`` is ``"zlib"`` (zlib's ``msg`` in ``args[0]``) or ``"junk"``."""

    def __init__(self, kind, message, offset):
        super().__init__(message)
        self.kind = kind
        self.offset = offset


def _zlib_message(exc: zlib.error) -> str:
    match = _ZLIB_MESSAGE.match(str(exc))
    if match is None:
        return str(exc)
    return match.group(2) if match.group(2) is not None else f"zlib error {match.group(1)}"


def _byte_view(buf, writable: bool) -> memoryview:
    view = memoryview(buf)
    if view.ndim != 1 or view.format not in ("B", "<B", "=B") or not view.c_contiguous:
        raise ValueError("Buffer dtype mismatch: expected a contiguous 1-D buffer of uint8")
    if writable and view.readonly:
        raise ValueError("buffer source array is read-only")
    return view


class Inflater:
    """Streaming gzip decoder writing into caller-owned memory (see ``fastidx._native.Inflater``).

    ``feed(chunk)`` hands it the next compressed bytes (it keeps a reference until they are used up);
    ``inflate_into(dst)`` decodes into ``dst`` until it is full or the input is used up and returns the
    number of bytes written. Multi-member streams and zero padding between or after members are
    accepted; the CRC-32 and length of every member are checked by zlib.
    """

    def __init__(self):
        self._zlib = zlib.decompressobj(_GZIP_WBITS)
        self._state = _IN_MEMBER
        self._view = memoryview(b"")
        self._pos = 0
        self._len = 0
        self.members = 0
        self.total_in = 0
        self.total_out = 0

    def feed(self, data) -> None:
        """Give the next chunk of compressed input; the previous one must be used up."""
        if self._pos < self._len:
            raise RuntimeError("feed() called before the previous input was consumed")
        view = memoryview(data).cast("B")
        self._view = view
        self._len = len(view)
        self._pos = 0

    @property
    def needs_input(self) -> bool:
        """True when every fed byte has been consumed."""
        return self._pos >= self._len

    @property
    def at_member_end(self) -> bool:
        """True when the stream could legitimately end here (after a complete member)."""
        return self._state != _IN_MEMBER

    def inflate_into(self, dst) -> int:
        """Decode into ``dst`` until it is full or the fed input is used up; return bytes written."""
        if dst is None:
            raise TypeError("Argument 'dst' must not be None")
        out = _byte_view(dst, writable=True)
        dst_len = len(out)
        produced = 0
        while produced < dst_len:
            if self._state == _IN_MEMBER:
                # Called even with no input left: zlib may still hold decoded bytes for us.
                piece = self._view[self._pos : self._pos + _IN_SLICE]
                try:
                    data = self._zlib.decompress(piece, min(dst_len - produced, _OUT_SLICE))
                except zlib.error as exc:
                    # CPython records the unconsumed input before raising: count what zlib read.
                    self._advance_in(len(piece) - len(self._zlib.unconsumed_tail))
                    raise InflateError("zlib", _zlib_message(exc), self.total_in) from None
                ended = self._zlib.eof
                left = self._zlib.unused_data if ended else self._zlib.unconsumed_tail
                used_in = len(piece) - len(left)
                self._advance_in(used_in)
                out[produced : produced + len(data)] = data
                produced += len(data)
                self.total_out += len(data)
                if ended:
                    self.members += 1
                    self._state = _AFTER_MEMBER
                elif used_in == 0 and not data:
                    break  # needs more input
            elif self._pos >= self._len:
                break
            else:
                byte = self._view[self._pos]
                if byte == 0:
                    self._state = _IN_PADDING
                    self._advance_in(1)
                elif byte == 0x1F:
                    self._zlib = zlib.decompressobj(_GZIP_WBITS)
                    self._state = _IN_MEMBER
                else:
                    raise InflateError(
                        "junk",
                        "byte 0x%02x where a gzip member or the end was expected" % byte,
                        self.total_in,
                    )
        return produced

    def _advance_in(self, n: int) -> None:
        self._pos += n
        self.total_in += n


# Source bytes per np.take call: NumPy widens the indices to intp, 8 bytes each, in a temporary.
_MAP_SLICE = 1 << 15

_WORDS = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.uint64))


def _word_array(buf, name: str, writable: bool) -> np.ndarray:
    if buf is None:
        raise TypeError(f"Argument '{name}' must not be None")
    arr = np.asarray(buf)
    if arr.ndim != 1 or not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be a contiguous 1-D array")
    if arr.dtype.newbyteorder("=") not in _WORDS or not arr.dtype.isnative:
        raise ValueError(f"{name} must hold native unsigned 1, 2, 4 or 8-byte words, not {arr.dtype}")
    if writable and not arr.flags.writeable:
        raise ValueError("buffer source array is read-only")
    return arr


def lut_map(src, lut, dst) -> None:
    """``dst[i] = lut[src[i]]``: the fused uint8 -> any-dtype conversion, on raw bit patterns.

    ``lut`` holds the 256 converted values (as same-sized unsigned words, so any 1, 2, 4 or 8-byte
    dtype works); ``dst`` must hold at least ``len(src)`` words.
    """
    src = _word_array(src, "src", writable=False)
    lut = _word_array(lut, "lut", writable=False)
    dst = _word_array(dst, "dst", writable=True)
    if src.dtype != np.uint8:
        raise ValueError(f"src must be uint8, not {src.dtype}")
    if lut.dtype != dst.dtype:
        raise ValueError(f"lut ({lut.dtype}) and dst ({dst.dtype}) must have the same word size")
    n = src.shape[0]
    if lut.shape[0] != 256:
        raise ValueError("lut must have 256 entries, not %d" % lut.shape[0])
    if dst.shape[0] < n:
        raise ValueError("destination too small: need %d values, got %d" % (n, dst.shape[0]))
    for start in range(0, n, _MAP_SLICE):
        end = min(start + _MAP_SLICE, n)
        np.take(lut, src[start:end], out=dst[start:end])


def byteswap(data) -> None:
    """Reverse the byte order of every word in place (big-endian IDX -> native little-endian)."""
    data = _word_array(data, "data", writable=True)
    if data.dtype.itemsize > 1 and data.shape[0]:
        data.byteswap(inplace=True)


def prefault(buf) -> bool:
    """Always False: pure Python cannot ask the kernel to map pages of an arbitrary buffer.

    The native version faults in the pages of ``buf`` from a second thread; False tells the caller
    that the decoder's own page faults will do (exactly what it is told by a kernel that lacks
    ``MADV_POPULATE_WRITE``).
    """
    _byte_view(buf, writable=True)
    return False
