"""Refusing, before anything large is allocated, a header that declares more than the input holds.

Files and bytes are judged by their size (gzip: deflate cannot expand more than 1032:1, and a large
declared size must agree with the trailer's ISIZE or the stream is counted first). A non-seekable
stream has no size: :meth:`~.reader.IDXReader.read_blocks` bounds it by the data that arrives.
"""

from __future__ import annotations

import struct

import numpy as np

from .._errors import IDXTrailingDataError, IDXTruncatedError
from .decoded import MAP_CHUNK, Decoded, EndOfInput
from .header import Header
from .source import Input, Replay

# Deflate cannot expand data by more than 1032:1, so a gzip stream of n bytes never decodes to more.
_MAX_DEFLATE_RATIO = 1032
_RECOUNT_MIN = 64 << 20  # untrusted gzip sizes above this are counted before allocating


def check_bounds(inp: Input, header: Header) -> None:
    """Refuse, before allocating, a header that declares more data than the input can hold.

    (A non-seekable stream has no size to check: :func:`~.reader.read_idx` decodes it in blocks
    instead, so that no more is allocated than the stream really holds.)"""
    if inp.size is None:
        return
    need = header.payload_bytes
    if not inp.is_gzip:
        have = inp.size - header.nbytes
        if have < need:
            raise IDXTruncatedError(
                inp.name, f"{header.describe()} but the stream ends after {have}"
            )
        if have > need:
            raise IDXTrailingDataError(
                inp.name, f"{header.describe()} but {have - need} more bytes follow the payload"
            )
        return
    total = header.nbytes + need
    ceiling = _MAX_DEFLATE_RATIO * inp.size
    if total > ceiling:
        raise IDXTruncatedError(
            inp.name,
            f"{header.describe()} but a {inp.size}-byte gzip stream cannot decode to more than "
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
    count_payload(inp, header)


def count_payload(inp: Input, header: Header) -> None:
    """Decode a gzip input once without keeping anything; raise :class:`IDXTruncatedError` if it
    holds less than the header declares."""
    total = header.nbytes + header.payload_bytes
    counter = Decoded(Replay(inp))
    scratch = np.empty(min(MAP_CHUNK, total), np.uint8)
    try:
        while counter.offset < total:
            counter.read_exact(scratch[: min(scratch.shape[0], total - counter.offset)])
    except EndOfInput:
        counter.zlib_agrees(at_end=True)
        raise IDXTruncatedError(
            inp.name,
            f"{header.describe()} but the stream ends after {counter.offset - header.nbytes}",
        ) from None
