"""fastidx's exceptions.

Every class derives from :class:`FastIDXError` and from the built-in exception a caller would
naturally catch, so ``except ValueError`` / ``except OSError`` keep working.
"""

from __future__ import annotations

import os


class FastIDXError(Exception):
    """Base class of every error fastidx raises on purpose."""


class IDXError(FastIDXError, ValueError):
    """Malformed IDX input. The message names the source and the fact that failed.

    ``source`` is the name of the file (or ``"<bytes>"``, ``"<stream>"``) that was being read.
    """

    def __init__(self, source: str, message: str):
        self.source = source
        self.reason = message
        super().__init__(f"{source}: {message}")

    def __reduce__(self):
        return (type(self), (self.source, self.reason))


class IDXHeaderError(IDXError):
    """The IDX header is invalid (magic, type code, number of dimensions, sizes)."""


class IDXTruncatedError(IDXError):
    """The input ends before the payload the header declares."""


class IDXTrailingDataError(IDXError):
    """There are bytes after the payload the header declares."""


class GzipError(IDXError):
    """The gzip stream around the IDX data is damaged (bad header, CRC, length, truncation, junk)."""


class DownloadError(FastIDXError, OSError):
    """A file could not be fetched from any of its mirrors."""


class ChecksumError(DownloadError, ValueError):
    """Fetched or cached bytes do not match the registry's hash."""


class DatasetNotFoundError(FastIDXError, FileNotFoundError):
    """The files of a dataset are not available locally and cannot (or may not) be downloaded."""


class CacheDirError(FastIDXError, OSError):
    """The cache directory cannot be created or written."""


class CacheLayoutError(CacheDirError):
    """The cache holds a symlink (or another kind of file) where fastidx's own layout has one of
    its directories or lock files: refused, nothing is written or deleted through it."""


def source_name(source) -> str:
    """A short human-readable name for a source, used in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    name = getattr(source, "name", None)
    if isinstance(name, (str, os.PathLike)):
        return os.fspath(name)
    return "<stream>"


class CacheWarning(UserWarning):
    """A cached file was damaged or unusable: it was removed (or set aside) and will be fetched again."""


class ClusterWarning(UserWarning):
    """fastidx runs on a cluster in a way that costs downloads or copies: a Ray worker without
    ``FASTIDX_HOME``, a cache directory on a network file system (moved to node-local storage)."""


class MemoryLimitError(FastIDXError, MemoryError, ValueError):
    """The requested arrays would exceed ``max_memory``; raised before anything is allocated."""


class PurePythonWarning(RuntimeWarning):
    """fastidx's compiled extension is missing: the slower pure-Python fallback is in use.

    Raised once, when fastidx is imported; ``FASTIDX_PURE=1`` chooses the fallback on purpose and
    silences it.
    """


# --- warnings ------------------------------------------------------------------------------------

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_scope = None  # created on first use: a threading.local with the current call's warnings


def _stacklevel() -> int:
    """The ``stacklevel`` that makes ``warnings.warn``, called by the caller of our caller, point
    at the first frame outside the fastidx package (the user's line)."""
    import sys

    frame = sys._getframe(2)  # the caller of warn_cache
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def warn_cache(message: str, key=None) -> None:
    """Issue a :class:`CacheWarning` pointing at the user's line (the first frame outside fastidx).

    Inside :func:`one_warning_per_call` (around every public load), a warning with the same ``key``
    (default: the message) is issued only once per call, whatever the warnings filters say.
    """
    import warnings

    state = _scope_state()
    if state.depth:
        key = message if key is None else key
        if key in state.seen:
            return
        state.seen.add(key)
    warnings.warn(message, CacheWarning, stacklevel=_stacklevel())


def _scope_state():
    global _scope
    if _scope is None:
        from _thread import _local  # threading.local, without importing threading

        _scope = _local()
    if not hasattr(_scope, "depth"):
        _scope.depth, _scope.seen = 0, set()
    return _scope


def one_warning_per_call(function):
    """Decorator of public load functions: each distinct cache warning at most once per call."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        state = _scope_state()
        state.depth += 1
        try:
            return function(*args, **kwargs)
        finally:
            state.depth -= 1
            if not state.depth:
                state.seen = set()

    return wrapper
