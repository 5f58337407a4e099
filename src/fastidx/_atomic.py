"""Files that appear whole or not at all: write to a unique temporary name, then rename."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def new_temp(target: Path, suffix: str = ".tmp") -> tuple[int, Path]:
    """Create a new, empty temporary file beside ``target``: ``(fd, path)``.

    Named ``.<target name>.<random>.<suffix>`` so leftovers of a killed process can be found.
    Unlike mkstemp's 0600 its mode follows the umask, so a cache shared between users stays
    readable.
    """
    flags = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_BINARY", 0))
    while True:
        path = target.with_name(f".{target.name}.{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", *, sync: bool = True):
    """Open a temporary file beside ``path``; on success it is flushed, synced and renamed onto
    ``path``; on any error (KeyboardInterrupt included) it is removed and ``path`` is untouched.
    ``sync=False`` skips the ``fsync`` for small records whose loss in a crash costs only time
    (an unreadable record is ignored and rewritten)."""
    fd, tmp = new_temp(Path(path))
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
