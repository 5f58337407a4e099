"""Hashing a source while it is decoded: :class:`HashingReader` gives the decoder the file's
bytes and feeds them to a SHA-256 on a thread of its own (:class:`_Hasher`), or in the reading
thread under a memory limit; the cache entry is then named by the digest of the very bytes
decoded. Also the background threads' lower CPU priority (:func:`background_priority`)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def background_priority() -> None:
    """Background work (this thread): on a busy machine the decoding the user waits for goes
    first (Linux: a thread's nice value is its own)."""
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class _Hasher:
    """SHA-256 on a thread of its own: the decoding thread hands over copies of the bytes it
    reads (a memcpy) instead of hashing them (about 30 ms for MNIST's 11 MB on the machine
    where this was measured, a quarter of a first load). At most :data:`_HASH_BACKLOG` bytes
    wait; beyond, the reader waits for the hasher, which only hashes (a bounded wait)."""

    def __init__(self):
        import hashlib  # OpenSSL's: only a load that hashes its source pays for the import

        self._hash = hashlib.sha256()
        self._cv = threading.Condition()
        self._queue: deque = deque()
        self._pending = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fastidx-hash")
        self._thread.start()

    def feed(self, view) -> None:
        data = bytes(view)
        with self._cv:
            while self._pending > _HASH_BACKLOG and self._thread.is_alive():
                self._cv.wait(0.1)
            self._queue.append(data)
            self._pending += len(data)
            self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def hexdigest(self) -> str:
        self.close()
        self._thread.join()
        return self._hash.hexdigest()

    def _run(self) -> None:
        background_priority()  # the decoding the user waits for goes first
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                data = self._queue.popleft()
            self._hash.update(data)  # hashlib releases the GIL for large updates
            with self._cv:
                self._pending -= len(data)
                self._cv.notify_all()


#: Bytes read but not yet hashed that a first load may hold (see :class:`_Hasher`).
_HASH_BACKLOG = 4 << 20


class _InlineHasher:
    """SHA-256 in the reading thread: under a memory limit, where no copy may wait."""

    def __init__(self):
        import hashlib  # OpenSSL's: only a load that hashes its source pays for the import

        self._hash = hashlib.sha256()
        self.feed = self._hash.update

    def close(self) -> None:
        pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _hasher():
    from .. import _memlimit

    return _Hasher() if _memlimit.available() is None else _InlineHasher()


class HashingReader:
    """The source file, hashed (SHA-256) as the decoder reads it: the entry's key is then the
    digest of the very bytes decoded, at no extra pass over the file, and on another thread
    (:class:`_Hasher`). Re-reads (the decoder peeks at the header) are not hashed twice;
    :meth:`digest` is None unless every byte was read in order."""

    def __init__(self, path: Path):
        self._file = open(path, "rb", buffering=0)
        self.name = os.fspath(path)  # errors name the source
        self.read_ns = time.time_ns()
        self._size = os.fstat(self._file.fileno()).st_size
        self._hasher = _hasher()
        self._hashed = 0

    def _account(self, pos: int, data, n: int) -> None:
        if pos <= self._hashed < pos + n:
            self._hasher.feed(memoryview(data)[self._hashed - pos : n])
            self._hashed = pos + n

    def readinto(self, buffer) -> int:
        pos = self._file.tell()
        n = self._file.readinto(buffer) or 0
        self._account(pos, buffer, n)
        return n

    def read(self, n: int = -1) -> bytes:
        pos = self._file.tell()
        data = self._file.read(n)
        self._account(pos, data, len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()
        self._hasher.close()  # what was read is still hashed: digest() waits for it

    def digest(self) -> str | None:
        digest = self._hasher.hexdigest()
        return digest if self._hashed == self._size else None
