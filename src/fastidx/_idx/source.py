"""Where an IDX file's bytes come from: a path, a bytes-like object or a binary file object.

:class:`Input` hands out the compressed (or raw) bytes in chunks and knows their total size;
:class:`Replay` reads a gzip input's bytes once more from the start (for the zlib fallback and for
counting a payload). What the bytes decode to is :mod:`.decoded`'s business.
"""

from __future__ import annotations

import io
import os

from .._errors import IDXError

GZIP_MAGIC = b"\x1f\x8b"
READ_CHUNK = 1 << 18  # compressed bytes read from a file per call
STREAM_FIRST = 1 << 16  # bytes of a non-seekable stream read before its header is checked


class Input:
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
        self.is_gzip = self.peek(0, 2) == GZIP_MAGIC

    @property
    def remaining(self) -> int | None:
        """Bytes not read yet (``None`` for a stream of unknown size)."""
        return None if self.size is None else self.size - self._pos

    def peek(self, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset`` without moving the read position (streams: from the start
        only, before anything was read)."""
        if self._stream is not None:
            if self._pos or offset:
                raise RuntimeError("a stream can only be peeked at its start")
            while len(self._head) < n:
                more = self._stream.read(max(n - len(self._head), STREAM_FIRST))
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
            chunk = self._stream.read(READ_CHUNK)
            if not chunk:
                return None
            self._pos += len(chunk)
            return chunk
        if self._buffer is None:
            self._buffer = bytearray(min(READ_CHUNK, max(self.size, 1)))
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


class Replay:
    """A gzip input's compressed bytes once more from the start, leaving the original untouched."""

    is_gzip = True
    replayable = True

    def __init__(self, inp: Input):
        self.name = inp.name
        self._inp = inp
        self._offset = 0

    def peek(self, offset: int, n: int) -> bytes:
        return self._inp.peek(offset, n)

    def next_chunk(self):
        data = self._inp.peek(self._offset, READ_CHUNK)
        if not data:
            return None
        self._offset += len(data)
        return data


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
