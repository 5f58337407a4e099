"""The directories of the decoded cache as its management sees them: the names fastidx writes in
each, and directories opened without following symlinks, so that every name is looked at with
``lstat`` and removed with ``unlink`` relative to them (:mod:`fastidx.cache` lists, verifies,
clears and prunes through these)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from pathlib import Path

from .._errors import CacheLayoutError
from .layout import decoded_dir

_HEX64 = "[0-9a-f]{64}"
_ENTRY = re.compile(rf"{_HEX64}\.(stored|upright)\.fidx")
_RAW = re.compile(rf"{_HEX64}\.(stored|upright)\.(native|x[0-9a-f]{{16}})\.raw")
_TEMP = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")
_SUBDIRS = {  # the directories of the layout, and the names fastidx writes in each
    "sources": re.compile(r"([0-9a-f]{32}\.json|\..+\.[0-9a-f]{12}\.tmp)"),
    "stamps": re.compile(rf"({_RAW.pattern}\.json|\..+\.[0-9a-f]{{12}}\.tmp)"),
    "warm": re.compile(r"([a-z0-9_]+\.[01]\.(native|x[0-9a-f]{16})\.txt|\..+\.[0-9a-f]{12}\.tmp)"),
    "locks": None,  # lock files are never deleted (a waiter may hold one) and never counted
}
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW
_DIR_FD = os.open in os.supports_dir_fd and os.unlink in os.supports_dir_fd


def _directory(cache_dir, wait=True) -> Path:
    if wait:
        from .writer import wait_for_writers

        wait_for_writers()  # this process's entries are complete before they are looked at
    return decoded_dir(cache_dir)


class _Dir:
    """A directory of the cache layout, opened without following symlinks: every name in it is
    looked at with ``lstat`` and removed with ``unlink`` relative to it."""

    def __init__(self, path: Path, parent: _Dir | None = None):
        self.path = path
        self.fd = None
        try:
            if _DIR_FD:
                self.fd = os.open(path.name if parent else path, _DIR_FLAGS,
                                  dir_fd=parent.fd if parent else None)
            elif not stat.S_ISDIR(os.lstat(path).st_mode):  # pragma: no cover - Windows
                raise NotADirectoryError(path)
            self.exists = True
        except FileNotFoundError:
            self.exists = False
        except OSError as exc:
            if not isinstance(exc, NotADirectoryError) and exc.errno != errno.ELOOP:
                raise
            raise CacheLayoutError(
                f"{path} is a symlink or not a directory: this is not the layout fastidx makes in "
                f"its cache, so fastidx refuses to delete anything in it; remove it yourself (it "
                f"is not fastidx's) or choose another cache_dir="
            ) from None

    def names(self) -> list[str]:
        if not self.exists:
            return []
        return sorted(os.listdir(self.fd if self.fd is not None else self.path))

    def lstat(self, name: str):
        if self.fd is not None:
            return os.lstat(name, dir_fd=self.fd)
        return os.lstat(self.path / name)  # pragma: no cover - Windows

    def unlink(self, name: str) -> int | None:
        """Remove the regular file ``name``: its size, or None if it is gone or not a file."""
        try:
            st = self.lstat(name)
            if not stat.S_ISREG(st.st_mode):
                return None
            if self.fd is not None:
                os.unlink(name, dir_fd=self.fd)
            else:  # pragma: no cover - Windows
                os.unlink(self.path / name)
        except FileNotFoundError:
            return None
        return st.st_size

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def _layout(cache_dir, wait=True):
    """The cache's directories, checked before anything is deleted: ``(decoded, {name: _Dir})``."""
    subs = {}
    with _Dir(_directory(cache_dir, wait)) as top:
        try:
            for name in _SUBDIRS:
                subs[name] = _Dir(top.path / name, top) if top.exists else _Dir(top.path / name)
            yield top, subs
        finally:
            for sub in subs.values():
                sub.close()


def _entry_stats(top: _Dir) -> list:
    """``(name, lstat)`` of each regular file in ``top`` named like an entry."""
    found = []
    for name in top.names():
        if _ENTRY.fullmatch(name) or _RAW.fullmatch(name):
            with contextlib.suppress(OSError):
                st = top.lstat(name)
                if stat.S_ISREG(st.st_mode):
                    found.append((name, st))
    return found


def _entry_names(top: _Dir) -> list[str]:
    return [name for name, _ in _entry_stats(top)]


def entries_within(directory: Path, limit: int | None) -> bool:
    """Whether the entries in ``directory`` (the files :func:`fastidx.cache.prune` counts) take at
    most ``limit`` bytes: one listing and an ``lstat`` each, no header read."""
    if limit is None:
        return True
    with _Dir(directory) as top:
        return sum(st.st_size for _, st in _entry_stats(top)) <= limit
