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


class MemoryLimitError(FastIDXError, MemoryError, ValueError):
    """The requested arrays would exceed ``max_memory``; raised before anything is allocated."""


class PurePythonWarning(RuntimeWarning):
    """fastidx's compiled extension is missing: the slower pure-Python fallback is in use.

    Raised once, when fastidx is imported; ``FASTIDX_PURE=1`` chooses the fallback on purpose and
    silences it.
    """
