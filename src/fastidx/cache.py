"""Managing fastidx's decoded-array cache: what is in it, whether it is intact, removing it.

``load_data()`` and ``load()`` keep every IDX file they parse in the cache directory (``cache_dir=``,
else ``$FASTIDX_HOME``, else the user cache directory), under ``decoded/``: zstd-compressed frames
for every load, and uncompressed files for ``mmap=True`` and shuffled batches. Entries are keyed by
the SHA-256 of the source file, so they never go stale; they only pile up when sources change.
Downloaded source files are not part of this cache and are left alone here.

The cache has a size budget (:func:`max_size`): after writing an entry, fastidx removes the least
recently used entries, uncompressed files first, until the cache fits; :func:`prune` does it on
demand. Only names fastidx itself creates are ever deleted, and never through a symlink.

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
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _cache
from ._cache.budget import DEFAULT_MAX_SIZE, ENV_MAX_SIZE, max_size, parse_size
from ._cache.budget import SETTINGS as _SETTINGS
from ._cache.tree import _SUBDIRS, _TEMP, _Dir, _entry_names, _layout
from ._errors import CacheWarning, MemoryLimitError

__all__ = [
    "CacheEntry",
    "CacheInfo",
    "CacheWarning",
    "CheckResult",
    "ClearResult",
    "DEFAULT_MAX_SIZE",
    "ENV_MAX_SIZE",
    "MemoryLimitError",
    "PruneResult",
    "clear",
    "info",
    "list_entries",
    "max_size",
    "parse_size",
    "prune",
    "set_max_size",
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
    options : dict or None
        For raw files: the conversion they hold, ``{"dtype", "normalize", "mean", "std"}``
        (``None`` for files written by fastidx before it recorded them).
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
    options: dict | None = None
    last_used: float = 0.0

    @property
    def size(self) -> int:
        """Same as :attr:`size_on_disk`."""
        return self.size_on_disk

    @property
    def description(self) -> str:
        """What distinguishes this entry from the other entries of the same source."""
        parts = [self.kind, self.variant, self.dtype]
        if self.options:
            parts += [f"{k}={v}" for k, v in self.options.items()
                      if v is not None and v is not False and k != "dtype"]
        elif self.conversion and self.conversion != "native":
            parts.append(f"conversion {self.conversion}")
        return ", ".join(parts)

    def __str__(self) -> str:
        shape = "x".join(map(str, self.shape))
        return (f"{self.dataset or '?'} {self.source_name} {shape} ({self.description}) "
                f"{self.path.name}")


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
    """What :func:`clear` removed: ``files`` cache entries (lock files are never counted),
    ``bytes`` freed in all (the source index and stale temporary files included)."""

    files: int
    bytes: int

    def __str__(self) -> str:
        return f"{self.files} file{'s' if self.files != 1 else ''}, {self.bytes:,} bytes"


@dataclass(frozen=True)
class CacheInfo:
    """A summary of the decoded-array cache."""

    directory: Path
    entries: int
    total_bytes: int  # the entries, indexes and temporary files (lock files are empty: not counted)
    bytes_by_dataset: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` removed to bring the cache within ``max_size`` bytes."""

    removed: list  # of CacheEntry, in the order they were removed
    bytes: int  # bytes freed
    remaining_bytes: int  # bytes the entries still take
    max_size: int | None  # the budget applied (None: no limit)

    @property
    def files(self) -> int:
        return len(self.removed)

    def __str__(self) -> str:
        return f"{self.files} file{'s' if self.files != 1 else ''}, {self.bytes:,} bytes"



def _entry(path: Path) -> CacheEntry:
    kind = _cache.KIND_FRAMES if path.suffix == ".fidx" else _cache.KIND_RAW
    opened = _cache.open_header(path, kind, quiet=True)
    if opened is None:
        raise FileNotFoundError(path)
    fd, header = opened
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    meta = header.meta
    dtype = np.dtype(meta.get("array_dtype", meta["dtype"]))
    options = meta.get("options")
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
        options=dict(options) if isinstance(options, dict) else None,
        last_used=max(st.st_atime, st.st_mtime),
    )


def list_entries(cache_dir=None) -> list[CacheEntry]:
    """Every readable entry of the cache, sorted by file name (see :func:`verify` for the rest).

    Entries of one source differ by ``kind`` (compressed frames or an uncompressed file),
    ``variant`` and, for uncompressed files, the conversion they hold (``options``: dtype,
    normalize, mean, std); :attr:`CacheEntry.description` says it in words.

    Examples
    --------
    >>> from fastidx import cache
    >>> for e in cache.list_entries():                       # doctest: +SKIP
    ...     print(e.dataset, e.source_name, e.description, e.size_on_disk)
    mnist train-images-idx3-ubyte.gz frames, stored, uint8 9841909
    mnist train-images-idx3-ubyte.gz raw, stored, float32, normalize=True 188160000
    """
    with _layout(cache_dir) as (top, _):
        names = _entry_names(top)
    entries = []
    for name in names:
        with contextlib.suppress(_cache.CorruptEntry, OSError, KeyError, TypeError, ValueError):
            entries.append(_entry(top.path / name))
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
    with _layout(cache_dir) as (top, _):
        for name in _entry_names(top):
            reason = _cache.verify_file(top.path / name)
            results.append(CheckResult(top.path / name, reason is None, reason))
            if reason is not None and remove:
                top.unlink(name)
    return results


def clear(dataset: str | None = None, cache_dir=None) -> ClearResult:
    """Remove the cache's entries (all, or those written for ``dataset``).

    Only names fastidx itself creates are removed, only regular files, never through a symlink:
    a cache whose layout is not fastidx's (``decoded/`` or one of its directories is a symlink or
    a file) raises :class:`~fastidx.CacheDirError` (a ``CacheLayoutError``) before anything is
    deleted. Clearing everything also drops the source index and temporary files older than an
    hour; entries being written by another process at the same moment are not disturbed. Lock
    files stay (a waiting process may hold one) and are never counted.

    Returns
    -------
    ClearResult
        ``files``: entries removed; ``bytes``: everything freed.
    """
    freed, files = [], 0
    with _layout(cache_dir) as (top, subs):
        for name in _entry_names(top):
            if dataset is not None:
                try:
                    if _entry(top.path / name).dataset != dataset:
                        continue
                except (_cache.CorruptEntry, OSError, KeyError, TypeError, ValueError):
                    continue
            size = top.unlink(name)
            if size is not None:
                files += 1
                freed.append(size)
                if name.endswith(".raw"):
                    freed.append(subs["stamps"].unlink(f"{name}.json") or 0)
        if dataset is None:
            freed += _clear_indexes(top, subs)
    return ClearResult(files, sum(freed))


def _clear_indexes(top: _Dir, subs: dict) -> list[int]:
    freed = []
    for name in ("sources", "stamps", "warm"):
        pattern = _SUBDIRS[name]
        freed += [subs[name].unlink(n) or 0 for n in subs[name].names() if pattern.fullmatch(n)]
    now = time.time()
    for name in top.names():
        if _TEMP.fullmatch(name):
            with contextlib.suppress(OSError):
                if now - top.lstat(name).st_mtime > _TEMP_GRACE_S:
                    freed.append(top.unlink(name) or 0)
    return freed


def info(cache_dir=None) -> CacheInfo:
    """How many entries the cache holds and the bytes it takes, in total and per dataset.

    ``total_bytes`` counts the entries, the source index and temporary files; lock files (empty)
    are never counted as files or entries.
    """
    total = 0
    with _layout(cache_dir) as (top, subs):
        directory = top.path
        for name in top.names():
            with contextlib.suppress(OSError):
                st = top.lstat(name)
                if stat.S_ISREG(st.st_mode) and name != _SETTINGS:
                    total += st.st_size
        for sub in ("sources", "stamps", "warm"):
            for name in subs[sub].names():
                with contextlib.suppress(OSError):
                    total += subs[sub].lstat(name).st_size
    by_dataset: dict[str, int] = {}
    entries = list_entries(cache_dir)
    for entry in entries:
        key = entry.dataset or "?"
        by_dataset[key] = by_dataset.get(key, 0) + entry.size_on_disk
    return CacheInfo(directory, len(entries), total, by_dataset)


# --- the size budget -----------------------------------------------------------------------------

def set_max_size(size, cache_dir=None) -> int | None:
    """Store the size budget of one cache directory (``size`` as for :func:`parse_size`); it applies
    to every process using that directory unless ``$FASTIDX_CACHE_MAX_SIZE`` is set. Returns it.

    >>> import tempfile
    >>> from fastidx import cache
    >>> cache.set_max_size("500MB", cache_dir=tempfile.mkdtemp())
    500000000
    """
    limit = parse_size(size)
    directory = _cache.own_dir(_cache.decoded_dir(cache_dir))
    import json

    from ._atomic import atomic_write

    with atomic_write(directory / _SETTINGS, "w") as f:
        json.dump({"max_size": limit}, f)
    return limit


def prune(max_size=None, cache_dir=None, *, keep=(), _wait=True) -> PruneResult:
    """Remove least recently used entries until the cache takes at most ``max_size`` bytes.

    Uncompressed files (``mmap=True``, shuffled batches: large, rebuilt from the frames at the
    cost of one decode) go first, oldest use first; then compressed frames entries. Damaged
    entries go before anything else. "Used" is the later of the file's access time (as the file
    system keeps it: with ``relatime``, to within a day) and its modification time.

    Parameters
    ----------
    max_size : int, str or None
        The budget (``2_000_000_000``, ``"2GB"``, ``"500MiB"``); default :func:`max_size` (the
        environment variable, the directory's setting, or 2 GiB).
    cache_dir : path, optional
        The cache directory (default ``$FASTIDX_HOME`` or the user cache directory).
    keep : iterable of str
        File names never removed (the entries a load is about to use).

    Returns
    -------
    PruneResult
        ``removed`` (the :class:`CacheEntry` of each removed file, in order), ``bytes`` freed,
        ``remaining_bytes`` and the ``max_size`` applied.

    Examples
    --------
    >>> from fastidx import cache
    >>> result = cache.prune("1GB")                         # doctest: +SKIP
    >>> [e.path.name for e in result.removed], result.bytes  # doctest: +SKIP
    """
    limit = builtins_max_size(cache_dir) if max_size is None else parse_size(max_size)
    keep = set(keep)
    removed, freed = [], 0
    with _layout(cache_dir, _wait) as (top, subs):
        candidates = []
        for name in _entry_names(top):
            try:
                entry, rank = _entry(top.path / name), 1 if name.endswith(".raw") else 2
            except (_cache.CorruptEntry, OSError, KeyError, TypeError, ValueError):
                entry, rank = _unreadable(top, name), 0
            if entry is not None:
                candidates.append((rank, entry.last_used, name, entry))
        total = sum(c[3].size_on_disk for c in candidates)
        candidates.sort(key=lambda c: c[:2])  # damaged, then raw, then frames; oldest use first
        for _, _, name, entry in candidates:
            if limit is None or total <= limit:
                break
            if name in keep:
                continue
            size = top.unlink(name)
            if size is None:
                continue
            if name.endswith(".raw"):
                subs["stamps"].unlink(f"{name}.json")
            removed.append(entry)
            freed += size
            total -= size
    return PruneResult(removed, freed, total, limit)


builtins_max_size = max_size  # prune()'s parameter shadows the function of the same name


def _unreadable(top: _Dir, name: str) -> CacheEntry | None:
    try:
        st = top.lstat(name)
    except OSError:
        return None
    return CacheEntry(top.path / name, "damaged", None, "", "", "", (), "", None, st.st_size, 0,
                      0.0, None, max(st.st_atime, st.st_mtime))
