"""Uncompressed cache files (``<sha256>.<variant>.<conv>.raw``): written once, memory-mapped later.

A raw file holds the rows converted (``<conv>`` is ``native`` or a hash of the conversion) after a
4096-byte header (:mod:`.format`) whose metadata keeps a CRC-32 of the payload. A map cannot notice
a change made later, so each open compares the file's stat with the one recorded when it was
written (``stamps/<name>.json``) and checks the whole payload's CRC-32 only when they differ.
This module is what a warm ``mmap=True`` load imports: no zstd, no threads, no hashing.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap as _mmap
import os
import time
import zlib
from typing import TYPE_CHECKING

import numpy as np

from .format import KIND_RAW, CorruptEntry, Header, _pread, encode_header, parse_json
from .identity import stat_of

if TYPE_CHECKING:
    from pathlib import Path

RAW_ALIGN = 4096


def stamp_path(path) -> str:
    directory, name = os.path.split(os.fspath(path))
    return os.path.join(directory, "stamps", f"{name}.json")


def stamp_raw(path: Path) -> None:
    """Record the stat of the raw file ``path`` (just renamed into place, under its lock)."""
    from .._atomic import atomic_write
    from .layout import own_dir

    record = stamp_path(path)
    with contextlib.suppress(OSError):
        from pathlib import Path

        own_dir(Path(record).parent)
        st = os.lstat(path)
        with atomic_write(record, sync=False) as f:
            f.write(json.dumps({"stat": stat_of(st)}).encode())


def read_stamp(path) -> list | None:
    try:
        with open(stamp_path(path), "rb") as f:
            return parse_json(f.read())["stat"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_raw(path: Path, fd: int, header: Header, conversion: str) -> None:
    """Raise :class:`CorruptEntry` (closing ``fd``) if the raw file is not the one written."""
    try:
        if header.meta.get("conversion") != conversion:
            raise CorruptEntry("holds another conversion of the data")
        if read_stamp(path) == stat_of(os.fstat(fd)):
            return
        reason = payload_problem(fd, header)
        if reason is not None:
            raise CorruptEntry(f"changed since it was written: {reason}")
        stamp_raw(path)  # the same bytes (copied, touched): trusted again from now on
    except BaseException:
        os.close(fd)
        raise


def payload_problem(fd: int, header: Header) -> str | None:
    """None if the payload of an open raw file matches its CRC-32, else what is wrong."""
    crc = 0
    pos = header.data_offset
    while pos < header.file_size:
        block = _pread(fd, min(1 << 22, header.file_size - pos), pos)
        if not block:
            return "file is shorter than its header says"
        crc = zlib.crc32(block, crc)
        pos += len(block)
    if crc != header.meta.get("payload_crc32"):
        return "payload checksum mismatch"
    return None


#: Bytes converted and written at a time when a raw file is built: a first ``mmap=True`` load
#: holds no buffer bigger than this (plus the decoded frame) whatever the target dtype.
RAW_PIECE_BYTES = 1 << 17


def write_raw(f, frames, target: np.dtype, table, conversion: str, options=None) -> None:
    """Write the rows of ``frames`` uncompressed (converted through ``table``) to the file ``f``.

    One frame is decoded at a time and converted in pieces of :data:`RAW_PIECE_BYTES` into one
    reused buffer, so the memory a build takes does not grow with the target dtype.
    """
    header = frames.header
    meta = dict(header.meta)
    for key in ("frames", "rows_per_frame", "codec"):
        meta.pop(key, None)
    meta.update(conversion=conversion, array_dtype=target.str, created_ns=time.time_ns())
    if options is not None:
        meta["options"] = options
    crc = 0
    stored = header.dtype
    step = max(1, RAW_PIECE_BYTES // max(target.itemsize, 1))  # items per piece
    staging = None if table is None and target == stored else np.empty(step, target)
    from .._idx import map_uint8
    from .._memlimit import DirtyBound

    bound = DirtyBound(f)
    f.seek(RAW_ALIGN)
    for i in range(len(frames.table)):
        chunk = frames.decode(i)
        if staging is None:
            crc = zlib.crc32(chunk, crc)
            f.write(memoryview(chunk))
            bound.wrote(chunk.nbytes)
            continue
        items = chunk.view(stored)
        for a in range(0, items.shape[0], step):
            piece = items[a : a + step]
            converted = staging[: piece.shape[0]]
            if table is not None:
                map_uint8(piece, table, converted)
            else:
                np.copyto(converted, piece, casting="unsafe")
            data = converted.view(np.uint8)
            crc = zlib.crc32(data, crc)
            f.write(memoryview(data))
            bound.wrote(data.nbytes)
    meta["payload_crc32"] = crc
    f.seek(0)
    f.write(encode_header(KIND_RAW, meta, RAW_ALIGN))


def map_raw(fd: int, header: Header) -> np.ndarray:
    """A copy-on-write memory map of a raw file's array: shared pages, private writes."""
    try:
        dtype = np.dtype(header.meta["array_dtype"])
        count = math.prod(header.shape)
        if count == 0:
            return np.empty(header.shape, dtype)
        buffer = _mmap.mmap(fd, header.file_size, access=_mmap.ACCESS_COPY)
        from .._memlimit import read_without_readahead

        if read_without_readahead(fd) and hasattr(_mmap, "MADV_RANDOM"):
            buffer.madvise(_mmap.MADV_RANDOM)
    finally:
        os.close(fd)
    return np.frombuffer(buffer, dtype, count, header.data_offset).reshape(header.shape)

