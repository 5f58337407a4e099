"""The test oracle: a plain IDX reader and writer, plus builders for gzip streams and odd sources.

Written from the IDX format description only (``00 00 <type> <ndim>``, big-endian uint32 dims,
big-endian C-order values), with struct, gzip and ``np.frombuffer``; it shares no code with fastidx.
It is deliberately simple and strict so that a disagreement points at fastidx.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import pathlib
import struct
import tempfile
import threading
import zlib

import numpy as np

#: IDX type code -> big-endian dtype of the stored values.
CODES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
#: native dtype -> IDX type code
CODE_OF = {dt.newbyteorder("="): code for code, dt in CODES.items()}
#: the dtypes IDX can store, native byte order
DTYPES = tuple(CODE_OF)


class Refused(ValueError):
    """The reference reader refuses the input (any reason)."""


# ---------------------------------------------------------------------------------------------
# IDX


def idx_header(code: int, shape, *, ndim: int | None = None) -> bytes:
    """The raw header bytes; ``ndim`` may lie about ``len(shape)``."""
    ndim = len(shape) if ndim is None else ndim
    return bytes([0, 0, code, ndim]) + b"".join(struct.pack(">I", d) for d in shape)


def write(array) -> bytes:
    """The raw IDX encoding of ``array`` (any byte order)."""
    array = np.asarray(array)
    code = CODE_OF[array.dtype.newbyteorder("=")]
    return idx_header(code, array.shape) + array.astype(CODES[code]).tobytes(order="C")


def decompress(data: bytes) -> bytes:
    """The decoded bytes of ``data``: gunzipped when it starts with the gzip magic, else itself."""
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise Refused(f"gzip: {exc}") from None
    return bytes(data)


def parse_header(raw: bytes):
    """``(dtype, shape, header_bytes)`` of decoded IDX bytes."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise Refused("bad magic")
    code, ndim = raw[2], raw[3]
    if code not in CODES:
        raise Refused("bad type code")
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise Refused("bad dims")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return CODES[code], shape, 4 + 4 * ndim


def read(data) -> np.ndarray:
    """Parse IDX bytes (gzip or raw) into a writable native-order array; strict about sizes."""
    raw = decompress(bytes(data))
    dtype, shape, start = parse_header(raw)
    count = 1
    for d in shape:
        count *= d
    if len(raw) - start != count * dtype.itemsize:
        raise Refused("payload size does not match the header")
    try:
        values = np.frombuffer(raw, dtype=dtype, offset=start).reshape(shape)
    except ValueError as exc:  # e.g. a zero-size array whose shape NumPy cannot represent
        raise Refused(str(exc)) from None
    return values.astype(dtype.newbyteorder("="))


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bytes (so NaNs, -0.0 and payload bits must match too)."""
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
    )


# ---------------------------------------------------------------------------------------------
# gzip builders


def gzip_member(data: bytes, level: int = 6) -> bytes:
    """One gzip member (mtime 0, no name), compressed with zlib at ``level``."""
    return gzip.compress(data, compresslevel=level, mtime=0)


def gzip_members(data: bytes, cuts) -> bytes:
    """``data`` split at the offsets ``cuts`` into consecutive gzip members, concatenated."""
    bounds = [0, *sorted(cuts), len(data)]
    return b"".join(gzip_member(data[a:b]) for a, b in zip(bounds, bounds[1:]))


def gzip_stored(data: bytes) -> bytes:
    """A gzip member built by hand from stored (uncompressed) deflate blocks.

    Byte-for-byte deterministic whatever zlib build is installed, which the committed corpus needs.
    """
    out = bytearray(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
    blocks = [data[i : i + 65535] for i in range(0, len(data), 65535)] or [b""]
    for i, block in enumerate(blocks):
        out.append(1 if i == len(blocks) - 1 else 0)  # BFINAL, BTYPE=00 (stored)
        out += struct.pack("<HH", len(block), len(block) ^ 0xFFFF) + block
    out += struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
    return bytes(out)


def gzip_member_with_fields(
    data: bytes, *, extra: bytes | None = None, name: bytes | None = None,
    comment: bytes | None = None, header_crc: bool = False,
) -> bytes:
    """A gzip member whose header carries the optional FEXTRA/FNAME/FCOMMENT/FHCRC fields (RFC 1952)."""
    flags = (
        (0x04 if extra is not None else 0)
        | (0x08 if name is not None else 0)
        | (0x10 if comment is not None else 0)
        | (0x02 if header_crc else 0)
    )
    head = bytearray(b"\x1f\x8b\x08" + bytes([flags]) + b"\x00\x00\x00\x00\x00\x03")
    if extra is not None:
        head += struct.pack("<H", len(extra)) + extra
    if name is not None:
        head += name + b"\x00"
    if comment is not None:
        head += comment + b"\x00"
    if header_crc:
        head += struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = deflate.compress(data) + deflate.flush()
    return bytes(head) + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def corrupt_crc(member: bytes) -> bytes:
    """The member with one bit of its trailer CRC-32 flipped."""
    out = bytearray(member)
    out[-8] ^= 0x01
    return bytes(out)


def corrupt_isize(member: bytes) -> bytes:
    """The member with its trailer ISIZE off by one."""
    out = bytearray(member)
    out[-4:] = struct.pack("<I", (struct.unpack("<I", member[-4:])[0] + 1) & 0xFFFFFFFF)
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Sources


class NonSeekable(io.RawIOBase):
    """A binary reader over bytes that says it cannot seek (like a socket) and hands out small reads."""

    def __init__(self, data: bytes, chunk: int = 4093):
        self._inner = io.BytesIO(data)
        self._chunk = chunk

    def readable(self):
        return True

    def seekable(self):
        return False

    def readinto(self, b):
        piece = self._inner.read(min(len(b), self._chunk))
        b[: len(piece)] = piece
        return len(piece)

    def tell(self):
        raise OSError("not seekable")

    def seek(self, *args):
        raise OSError("not seekable")


class Pipe:
    """A real OS pipe whose writer thread feeds ``data``; use as a context manager.

    ``with Pipe(data) as f: read_idx(f)`` -- ``f`` is a buffered reader on the read end.
    """

    def __init__(self, data: bytes):
        self._data = data

    def __enter__(self):
        r, w = os.pipe()
        self.reader = os.fdopen(r, "rb")

        def feed():
            with os.fdopen(w, "wb") as f:
                try:
                    f.write(self._data)
                except BrokenPipeError:  # the reader gave up early: fine
                    pass

        self._thread = threading.Thread(target=feed, daemon=True)
        self._thread.start()
        return self.reader

    def __exit__(self, *exc):
        self.reader.close()  # unblocks the writer if it is still writing
        self._thread.join(10)


SOURCE_KINDS = (
    "bytes", "bytearray", "memoryview", "str", "pathlib", "file", "bytesio", "nonseekable", "pipe",
    "midfile",
)


@contextlib.contextmanager
def open_source(kind: str, data: bytes, tmp_dir, name: str = "data.idx"):
    """``data`` presented as a source of the given kind; yields ``(source, expected_name)``.

    ``expected_name`` is what an error message must name: the path for paths and named files,
    ``"<bytes>"`` for bytes-like objects, ``"<stream>"`` for anonymous streams.
    """
    if kind == "bytes":
        yield bytes(data), "<bytes>"
    elif kind == "bytearray":
        yield bytearray(data), "<bytes>"
    elif kind == "memoryview":
        # a slice of a bigger buffer, so that offsets into the underlying memory are exercised
        yield memoryview(b"xyz" + bytes(data) + b"abc")[3:-3], "<bytes>"
    elif kind == "bytesio":
        yield io.BytesIO(data), "<stream>"
    elif kind == "nonseekable":
        yield NonSeekable(data), "<stream>"
    elif kind == "pipe":
        with Pipe(data) as f:
            yield f, "<stream>"
    else:
        fd, path = tempfile.mkstemp(dir=tmp_dir, prefix=f"{kind}-", suffix=f"-{name}")
        prefix = b"PREFIX-not-idx\x00\x01" if kind == "midfile" else b""
        with os.fdopen(fd, "wb") as f:
            f.write(prefix + bytes(data))
        try:
            if kind == "str":
                yield path, path
            elif kind == "pathlib":
                yield pathlib.Path(path), path
            elif kind in ("file", "midfile"):
                with open(path, "rb") as f:
                    f.seek(len(prefix))
                    yield f, path
            else:
                raise ValueError(f"unknown source kind {kind!r}")
        finally:
            os.unlink(path)
