"""Where the decoded cache is, and the safety rules of its directories.

Everything lives under ``cache_root(cache_dir) / "decoded"`` (node-local when that is on a
network file system: see :mod:`fastidx._cluster`); fastidx never writes or deletes through a
symlink there, and reclaims the temporary files of killed builders under their lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from .._errors import CacheDirError, CacheLayoutError


def decoded_dir(cache_dir=None) -> Path:
    from .._cluster import node_local  # never on NFS & co: locks there cannot be trusted
    from .._paths import cache_root

    return node_local(cache_root(cache_dir) / "decoded", "its decoded cache")


def own_dir(path: Path, create: bool = True) -> Path:
    """``path``, a directory of fastidx's cache layout (created if absent and ``create``).

    Raises :class:`CacheLayoutError` if it is a symlink or not a directory: fastidx never writes
    or deletes through a symlink inside its cache, and refuses a layout it did not make.
    """
    if create:
        with contextlib.suppress(FileExistsError):
            path.mkdir(parents=True)
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # absent (a parent may be a file)
        if create:
            raise
        return path
    if not stat.S_ISDIR(mode):
        raise CacheLayoutError(
            f"{path} is {'a symlink' if stat.S_ISLNK(mode) else 'not a directory'}: this is not the "
            f"layout fastidx makes in its cache, and fastidx never writes or deletes through "
            f"symlinks there; remove it (fastidx rebuilds it) or choose another cache_dir="
        )
    return path


def reclaim_temps(directory: Path, name: str) -> None:
    """Remove the temporary files of ``name`` left by killed builders. Caller holds its lock:
    every writer of such a file holds it until the file is renamed or removed."""
    prefix = f".{name}."
    with contextlib.suppress(OSError):
        for leftover in os.listdir(directory):
            if leftover.startswith(prefix) and leftover.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    if stat.S_ISREG(os.lstat(directory / leftover).st_mode):
                        os.unlink(directory / leftover)


# Errors that make the cache unusable for writing, not the load: it goes on from the source.
_UNWRITABLE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)


def unwritable(exc: BaseException) -> bool:
    if isinstance(exc, CacheLayoutError):
        return False
    return isinstance(exc, CacheDirError) or getattr(exc, "errno", None) in _UNWRITABLE

