"""Managing fastidx's decoded-array cache: what is in it, whether it is intact, removing it.

``load_data()`` and ``load()`` keep every IDX file they parse in the cache directory (``cache_dir=``,
else ``$FASTIDX_HOME``, else the user cache directory), under ``decoded/``: zstd-compressed frames
for every load, and uncompressed files for ``mmap=True`` and shuffled batches. Entries are keyed by
the SHA-256 of the source file, so they never go stale; they only pile up when sources change.
Downloaded source files are not part of this cache and are left alone here.

>>> from fastidx import cache
>>> summary = cache.info()              # doctest: +SKIP
>>> summary.entries, summary.total_bytes  # doctest: +SKIP
(8, 71234567)
>>> [c.path.name for c in cache.verify() if not c.ok]  # damaged entries  # doctest: +SKIP
[]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _cache
from ._errors import CacheWarning, MemoryLimitError

__all__ = [
    "CacheEntry",
    "CacheInfo",
    "CacheWarning",
    "CheckResult",
    "ClearResult",
    "MemoryLimitError",
    "clear",
    "info",
    "list_entries",
    "verify",
]

# Temporary files younger than this may belong to a writer at work: clear() leaves them.
_TEMP_GRACE_S = 3600


@dataclass(frozen=True)
class CacheEntry:
    """One file of the decoded-array cache.

    Attributes
    ----------
    path : pathlib.Path
    kind : str
        ``"frames"`` (zstd-compressed rows, used by every cached load) or ``"raw"`` (uncompressed,
        for ``mmap=True`` and shuffled batches).
    dataset : str or None
        The dataset that first wrote the entry (entries are shared by identical files).
    source_name : str
        File name of the IDX source.
    source_sha256 : str
        SHA-256 of the source file: the entry's key.
    variant : str
        ``"stored"`` or ``"upright"`` (EMNIST images transposed back).
    shape : tuple of int
    dtype : str
        dtype of the array the entry holds (``"uint8"``, ``"float32"``, ...).
    conversion : str or None
        For raw files: ``"native"`` or the hash of the conversion options they hold.
    size_on_disk : int
        Bytes the file takes.
    array_bytes : int
        Bytes of the array it holds, decoded.
    created : float
        When it was written (seconds since the epoch).
    """

    path: Path
    kind: str
    dataset: str | None
    source_name: str
    source_sha256: str
    variant: str
    shape: tuple[int, ...]
    dtype: str
    conversion: str | None
    size_on_disk: int
    array_bytes: int
    created: float

    @property
    def size(self) -> int:
        """Same as :attr:`size_on_disk`."""
        return self.size_on_disk

    def __str__(self) -> str:
        shape = "x".join(map(str, self.shape))
        what = f"{self.kind}, {self.variant}" + (f", {self.conversion}" if self.conversion else "")
        return f"{self.dataset or '?'} {self.source_name} {shape} {self.dtype} ({what}) {self.path.name}"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of checking one cache file; a damaged one is rebuilt by the next load needing it."""

    path: Path
    ok: bool
    reason: str | None = None  # what is wrong, when not ok

    def __str__(self) -> str:
        return f"{self.path}: {'ok' if self.ok else self.reason}"


@dataclass(frozen=True)
class ClearResult:
    """What :func:`clear` removed."""

    files: int
    bytes: int

    def __str__(self) -> str:
        return f"{self.files} file{'s' if self.files != 1 else ''}, {self.bytes:,} bytes"


@dataclass(frozen=True)
class CacheInfo:
    """A summary of the decoded-array cache."""

    directory: Path
    entries: int
    total_bytes: int  # every file under the directory, indexes and temporary files included
    bytes_by_dataset: dict[str, int] = field(default_factory=dict)


def _directory(cache_dir) -> Path:
    return _cache.decoded_dir(cache_dir)


def _cache_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix in (".fidx", ".raw")
    )


def _entry(path: Path) -> CacheEntry:
    kind = _cache.KIND_FRAMES if path.suffix == ".fidx" else _cache.KIND_RAW
    opened = _cache.open_header(path, kind)
    if opened is None:
        raise FileNotFoundError(path)
    fd, header = opened
    os.close(fd)
    meta = header.meta
    dtype = np.dtype(meta.get("array_dtype", meta["dtype"]))
    return CacheEntry(
        path=path,
        kind="frames" if kind == _cache.KIND_FRAMES else "raw",
        dataset=meta.get("dataset"),
        source_name=meta.get("source_name", ""),
        source_sha256=meta.get("source_sha256", ""),
        variant=meta.get("variant", ""),
        shape=header.shape,
        dtype=dtype.name,
        conversion=meta.get("conversion"),
        size_on_disk=header.file_size,
        array_bytes=int(np.prod(header.shape)) * dtype.itemsize,
        created=meta.get("created_ns", 0) / 1e9,
    )


def list_entries(cache_dir=None) -> list[CacheEntry]:
    """Every readable entry of the cache, sorted by file name (see :func:`verify` for the rest).

    Examples
    --------
    >>> from fastidx import cache
    >>> for e in cache.list_entries():                       # doctest: +SKIP
    ...     print(e.dataset, e.source_name, e.kind, e.shape, e.size_on_disk)
    mnist train-images-idx3-ubyte.gz frames (60000, 28, 28) 9841909
    """
    entries = []
    for path in _cache_files(_directory(cache_dir)):
        with contextlib.suppress(_cache.CorruptEntry, OSError, KeyError, TypeError, ValueError):
            entries.append(_entry(path))
    return entries


def verify(cache_dir=None, *, remove: bool = False) -> list[CheckResult]:
    """Check every cache file completely (header, every frame's checksum, raw payload CRC-32).

    Parameters
    ----------
    remove : bool
        Delete the damaged files too (loads would rebuild them anyway).

    Returns
    -------
    list of CheckResult
        One per cache file; ``[r for r in results if not r.ok]`` are the damaged ones.
    """
    results = []
    for path in _cache_files(_directory(cache_dir)):
        reason = _cache.verify_file(path)
        results.append(CheckResult(path, reason is None, reason))
        if reason is not None and remove:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return results


def clear(dataset: str | None = None, cache_dir=None) -> ClearResult:
    """Remove the cache's entries (all, or those written for ``dataset``).

    Clearing everything also drops the source index and stale temporary files; entries being
    written by another process at the same moment are not disturbed.
    """
    directory = _directory(cache_dir)
    removed = []
    if dataset is None:
        removed += [_unlink(path) for path in _cache_files(directory)]
        sources = directory / "sources"
        if sources.is_dir():
            removed += [_unlink(path) for path in sources.iterdir() if path.is_file()]
            shutil.rmtree(sources, ignore_errors=True)
        if directory.is_dir():
            now = time.time()
            for path in directory.iterdir():
                if path.name.startswith(".") and path.name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        if now - path.stat().st_mtime > _TEMP_GRACE_S:
                            removed.append(_unlink(path))
    else:
        removed += [_unlink(e.path) for e in list_entries(cache_dir) if e.dataset == dataset]
    removed = [size for size in removed if size is not None]
    return ClearResult(len(removed), sum(removed))


def _unlink(path: Path) -> int | None:
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return None
    return size


def info(cache_dir=None) -> CacheInfo:
    """How many entries the cache holds and the bytes it takes, in total and per dataset."""
    directory = _directory(cache_dir)
    total = 0
    if directory.is_dir():
        for root, _, files in os.walk(directory):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.stat(os.path.join(root, name)).st_size
    by_dataset: dict[str, int] = {}
    entries = list_entries(cache_dir)
    for entry in entries:
        key = entry.dataset or "?"
        by_dataset[key] = by_dataset.get(key, 0) + entry.size_on_disk
    return CacheInfo(directory, len(entries), total, by_dataset)
