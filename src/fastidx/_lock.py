"""The one lock primitive of fastidx: an OS lock on a lock file that fastidx owns.

Used by the decoded-array cache (one builder per entry) and by the downloader (one process per
file, and the fetch manifest). A lock file is opened relative to its directory, both with
``O_NOFOLLOW``, with ``O_CREAT`` and never ``O_TRUNC``: nothing is ever written through a symlink
and an existing file is never emptied. A lock file (or its directory) that is a symlink, or not a
regular file, is refused with :class:`~fastidx.CacheDirError` naming it.

The lock itself is ``flock(2)`` (``msvcrt.locking`` on Windows), held by the open file: the kernel
releases it when its holder dies, so a killed process never blocks the others, and two threads of
one process exclude each other like two processes do. Waits are bounded: :meth:`FileLock.acquire`
polls (1 ms, doubling up to 50 ms) until its timeout and then returns False.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from pathlib import Path

from ._errors import CacheDirError, CacheLayoutError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted as a lock file must not block open()
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    import msvcrt


class LockTimeout(TimeoutError):
    """The lock was still held by another process or thread when the wait ran out."""


def _symlink_error(path, what: str) -> CacheLayoutError:
    return CacheLayoutError(
        f"{what} {path} is a symlink or not a regular {'directory' if 'directory' in what else 'file'}"
        f"; fastidx never writes through symlinks in its cache: remove it (or choose another "
        f"cache_dir=)"
    )


def open_lock_file(path: Path) -> int:
    """A read-write descriptor of the lock file ``path``, created empty if absent, never followed."""
    path = Path(path)
    if fcntl is None:  # pragma: no cover - Windows has no O_NOFOLLOW: look before opening
        if path.is_symlink():
            raise _symlink_error(path, "lock file")
        return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _symlink_error(path.parent, "lock directory") from None
        raise CacheDirError(f"cannot open the lock directory {path.parent}: "
                            f"{exc.strerror or exc}") from exc
    try:
        fd = os.open(path.name, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _NONBLOCK | _CLOEXEC, 0o666,
                     dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise _symlink_error(path, "lock file") from None
        raise CacheDirError(f"cannot open the lock file {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _symlink_error(path, "lock file")
    return fd


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK):
            return False
        raise
    return True


class FileLock:
    """An exclusive lock on the file ``path`` (see the module docstring).

    >>> import tempfile, pathlib
    >>> lock = FileLock(pathlib.Path(tempfile.mkdtemp()) / "x.lock")
    >>> lock.acquire(timeout=1.0)
    True
    >>> lock.release()
    """

    def __init__(self, path):
        self.path = Path(path)
        self._fd: int | None = None
        self._held = False

    def acquire(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the lock: True once held, False on timeout."""
        if self._fd is None:
            self._fd = open_lock_file(self.path)
        deadline = time.monotonic() + max(0.0, timeout)
        delay = 0.001
        while not _try_lock(self._fd):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.05)
        self._held = True
        return True

    def release(self) -> None:
        """Release the lock (if held) and close the lock file; the file itself stays."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._held and fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            elif self._held:  # pragma: no cover - Windows
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        finally:
            self._held = False
            os.close(fd)


@contextlib.contextmanager
def held(path, timeout: float):
    """Hold the lock on ``path`` for the ``with`` block; :class:`LockTimeout` after ``timeout`` s."""
    lock = FileLock(path)
    try:
        if not lock.acquire(timeout):
            raise LockTimeout(f"gave up after {timeout:g} s waiting for the lock {path}")
        yield
    finally:
        lock.release()
