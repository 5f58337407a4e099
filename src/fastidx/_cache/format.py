"""The format of the decoded cache's files: a fixed 32-byte header, JSON metadata, the data.

Every file starts with, little-endian::

    magic b"FIDXCACH" | u32 format version | u32 kind (1 frames, 2 raw) | u32 meta length
    | u32 CRC-32 of meta | u64 data offset

then ``meta``, a JSON object: shape, stored dtype, source hash and name, dataset, variant; for frames
``rows_per_frame`` and the table of ``[offset, compressed size, decoded size, checksum]`` of each
frame (:mod:`.frames`); raw files (:mod:`.raw`) start their data on a 4096-byte boundary and keep a
CRC-32 of the payload. This module parses and checks headers, nothing else.
"""

from __future__ import annotations

import errno
import json
import math
import os
import struct
import zlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

FORMAT_VERSION = 1
MAGIC = b"FIDXCACH"
KIND_FRAMES = 1
KIND_RAW = 2
_FIXED = struct.Struct("<8sIIIIQ")  # magic, version, kind, meta length, meta CRC-32, data offset
VARIANTS = ("stored", "upright")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: Decoded bytes per zstd frame (rounded down to whole rows): small enough for fine-grained slices
#: (``train[:6000]`` decodes 5 of 45 frames) and many frames per core, big enough that per-frame
#: costs are noise. 2 MiB frames made whole loads ~5% faster but ``train[:6000]`` 35% slower.
FRAME_BYTES = 1 << 20


def rows_per_frame(shape, dtype) -> int:
    row_bytes = math.prod(shape[1:]) * np.dtype(dtype).itemsize
    return max(1, FRAME_BYTES // max(row_bytes, 1))



class CorruptEntry(Exception):
    """Internal: a cache file failed a check; ``str()`` says which."""


def entry_name(digest: str, variant: str) -> str:
    return f"{digest}.{variant}.fidx"


def raw_name(digest: str, variant: str, conversion: str) -> str:
    return f"{digest}.{variant}.{conversion}.raw"


def parse_json(blob):
    """``json.loads`` for files of the cache: anything unreadable, absurdly nested JSON included,
    raises ValueError (never RecursionError)."""
    try:
        return json.loads(blob)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


# ---------------------------------------------------------------------------------------------
# Headers.


class Header:
    """The parsed header of a cache file."""

    def __init__(self, kind: int, meta: dict, data_offset: int, file_size: int):
        if not isinstance(meta, dict):
            raise TypeError("metadata is not an object")
        self.kind = kind
        self.meta = meta
        self.data_offset = data_offset
        self.file_size = file_size
        self.shape = tuple(meta["shape"])
        if not all(type(n) is int and n >= 0 for n in self.shape) or not self.shape:
            raise ValueError(f"bad shape {meta['shape']!r}")
        self.dtype = np.dtype(meta["dtype"])

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize


def encode_header(kind: int, meta: dict, data_offset: int) -> bytes:
    blob = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
    head = _FIXED.pack(MAGIC, FORMAT_VERSION, kind, len(blob), zlib.crc32(blob), data_offset) + blob
    if len(head) > data_offset:
        raise AssertionError("cache header larger than the space reserved for it")
    return head + bytes(data_offset - len(head))


def _pread(fd: int, n: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
    return os.read(fd, n)  # pragma: no cover


def read_header(fd: int, file_size: int) -> Header:
    """Parse and check the header of an open cache file (raises :class:`CorruptEntry`)."""
    fixed = _pread(fd, _FIXED.size, 0)
    if len(fixed) < _FIXED.size:
        raise CorruptEntry(f"file is {file_size} bytes, shorter than a cache header")
    magic, version, kind, meta_len, crc, data_offset = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise CorruptEntry("not a fastidx cache file (bad magic number)")
    if version != FORMAT_VERSION:
        raise CorruptEntry(f"cache format version {version}, this fastidx reads {FORMAT_VERSION}")
    if kind not in (KIND_FRAMES, KIND_RAW):
        raise CorruptEntry(f"unknown cache file kind {kind}")
    if _FIXED.size + meta_len > min(data_offset, file_size):
        raise CorruptEntry("header is truncated")
    blob = _pread(fd, meta_len, _FIXED.size)
    if len(blob) != meta_len or zlib.crc32(blob) != crc:
        raise CorruptEntry("header checksum mismatch")
    try:
        meta = parse_json(blob)
        header = Header(kind, meta, data_offset, file_size)
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptEntry(f"unreadable header metadata ({exc})") from None
    if kind == KIND_FRAMES:
        frames = meta.get("frames")
        rows_per = meta.get("rows_per_frame")
        if not isinstance(frames, list) or not isinstance(rows_per, int) or rows_per < 1:
            raise CorruptEntry("header lacks its frame table")
        if len(frames) != max(1, -(-header.rows // rows_per)):
            raise CorruptEntry("frame table does not cover the rows")
        end = data_offset
        try:
            for i, (offset, csize, dsize, _) in enumerate(frames):
                if offset != end:
                    raise CorruptEntry(f"frame {i} is listed at byte {offset}, expected {end}")
                if dsize != (min(header.rows, (i + 1) * rows_per) - i * rows_per) * header.row_bytes:
                    raise CorruptEntry(f"frame {i} claims {dsize} decoded bytes")
                end += csize
        except (TypeError, ValueError):
            raise CorruptEntry("unreadable frame table") from None
        if end != file_size:
            raise CorruptEntry(f"file is {file_size} bytes, its frames end at {end}")
    else:
        try:
            nbytes = math.prod(header.shape) * np.dtype(meta["array_dtype"]).itemsize
        except (KeyError, TypeError, ValueError):
            raise CorruptEntry("unreadable array dtype") from None
        if data_offset + nbytes != file_size:
            raise CorruptEntry(f"file is {file_size} bytes, expected {data_offset + nbytes}")
    return header


def _open_quietly(path, flags: int) -> int:
    """Open without updating the access time, when the system allows it: looking at the cache
    (listing, verifying, pruning) must not count as using an entry (see fastidx.cache.prune)."""
    noatime = getattr(os, "O_NOATIME", 0)
    if noatime:
        try:
            return os.open(path, flags | noatime)
        except PermissionError:  # O_NOATIME needs the file's owner (or CAP_FOWNER)
            pass
    return os.open(path, flags)


def open_header(path: Path, kind: int, digest: str | None = None, variant: str | None = None,
                *, quiet: bool = False):
    """``(fd, header)`` of a valid cache file of ``kind``; ``None`` if absent; CorruptEntry if bad.
    ``quiet``: do not update the file's access time (management, not use)."""
    flags = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_BINARY", 0)
    try:
        fd = _open_quietly(path, flags) if quiet else os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptEntry("is a symlink, not a file fastidx wrote") from None
        raise CorruptEntry(f"cannot be opened: {exc.strerror or exc}") from None
    try:
        header = read_header(fd, os.fstat(fd).st_size)
        if header.kind != kind:
            raise CorruptEntry(f"is a cache file of kind {header.kind}, expected {kind}")
        meta = header.meta
        if digest is not None and meta.get("source_sha256") != digest:
            raise CorruptEntry("belongs to another source file")
        if variant is not None and meta.get("variant") != variant:
            raise CorruptEntry("holds another variant of the data")
    except BaseException:
        os.close(fd)
        raise
    return fd, header


