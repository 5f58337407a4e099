"""The memory this process may still take before the kernel kills it: its memory cgroup's limit.

``max_memory="auto"`` (and the default, ``None``) turns this into a :class:`MemoryBudget`, so a
load whose arrays would not fit is refused with :class:`fastidx.MemoryLimitError` instead of the
process being killed by the OOM killer. Outside Linux, or without a limit, there is no budget.

What is read, at most three small files per load (no subprocesses, no walking of ``/sys``):

- ``/proc/self/cgroup`` (once per process) names this process's cgroup;
- cgroup v1 (``/sys/fs/cgroup/memory/<path>``): ``memory.usage_in_bytes`` and ``memory.stat``,
  whose ``hierarchical_memory_limit`` is the smallest limit of the cgroup and its ancestors;
- cgroup v2 (``/sys/fs/cgroup/<path>``): ``memory.max`` and ``memory.current`` of the cgroup and of
  each ancestor that has them (the tightest wins), and the cgroup's ``memory.stat``.

Available = limit - usage + inactive file pages: clean page cache the kernel drops before it kills
anyone (the "working set" rule of Kubernetes and cAdvisor). A limit of ``max`` or anything at or
above 2**60 bytes (v1's "unlimited" is 2**63 rounded to pages) means no limit. A container that
mounts its own cgroup at the mount point while ``/proc/self/cgroup`` names a path from the host
(Docker without a cgroup namespace) is handled by falling back to the mount point itself.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np

from ._errors import MemoryLimitError

#: At or above this, a limit is "no limit" (v1 reports 9223372036854771712 for unlimited).
UNLIMITED = 1 << 60

_located: dict = {}


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 16).decode("ascii", "replace")
    except OSError:
        return None


def _join(*parts: str) -> str:
    return os.path.normpath(os.path.join(*parts))


def _number(text: str | None) -> int | None:
    """A byte count from a cgroup file: None for absent, unreadable, ``max`` or huge."""
    if text is None:
        return None
    text = text.strip()
    if not text.isdigit():
        return None  # "max", "-1", empty
    value = int(text)
    return value if value < UNLIMITED else None


def _stat(text: str | None, key: str) -> int:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _locate(root: str):
    """``(version, cgroup directory, cgroup mount)`` of this process's memory cgroup, or None."""
    text = _read(_join(root, "proc/self/cgroup"))
    if text is None:
        return None
    v2 = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if "memory" in controllers.split(","):
            mount = _join(root, "sys/fs/cgroup/memory")
            for where in (_join(mount, path.lstrip("/")), mount):
                if os.path.isfile(_join(where, "memory.usage_in_bytes")):
                    return 1, where, mount
        elif hid == "0" and controllers == "":
            v2 = path
    if v2 is not None:
        mount = _join(root, "sys/fs/cgroup")
        for where in (_join(mount, v2.lstrip("/")), mount):
            if os.path.isfile(_join(where, "memory.current")) or os.path.isfile(_join(where, "memory.max")):
                return 2, where, mount
    return None


#: The file system root the cgroup files are read under; tests point it at a fake tree.
_ROOT = "/"


def available(_root=None) -> tuple[int, int] | None:
    """``(bytes still available, the limit)`` under this process's memory cgroup, or None when
    there is no limit (or no way to know one). ``_root`` replaces ``/`` (tests)."""
    root = _ROOT if _root is None else os.fspath(_root)
    if root == "/":
        if not sys.platform.startswith("linux"):
            return None
        # Where the cgroup is does not change; what it holds does, so only the place is kept.
        key = os.getpid()
        if key not in _located:
            _located.clear()
            _located[key] = _locate("/")
        found = _located[key]
    else:
        found = _locate(root)
    if found is None:
        return None
    version, where, mount = found
    return _v1(where) if version == 1 else _v2(where, mount)


def _v1(where: str) -> tuple[int, int] | None:
    stat = _read(_join(where, "memory.stat"))
    limit = _number(str(_stat(stat, "hierarchical_memory_limit") or "")
                    or _read(_join(where, "memory.limit_in_bytes")))
    usage = _number(_read(_join(where, "memory.usage_in_bytes")))
    if limit is None or usage is None:
        return None
    free = limit - usage + _stat(stat, "total_inactive_file")
    return max(free, 0), limit


def _v2(where: str, mount: str) -> tuple[int, int] | None:
    """The tightest ``memory.max`` of the cgroup and its ancestors up to the mount point."""
    best = None
    level = where
    while True:
        limit = _number(_read(_join(level, "memory.max")))
        if limit is not None:
            usage = _number(_read(_join(level, "memory.current"))) or 0
            if level == where:
                usage -= _stat(_read(_join(level, "memory.stat")), "inactive_file")
            if best is None or limit - usage < best[0]:
                best = (limit - usage, limit)
        if level == mount or not level.startswith(mount.rstrip("/") + "/"):
            break
        level = os.path.dirname(level)
    if best is None:
        return None
    return max(best[0], 0), best[1]


#: What a load needs besides its arrays, kept free by ``max_memory="auto"``: arrays of 4 MiB and
#: more are backed by 2 MiB huge pages (up to 2 MiB beyond their size), and a first load's cache
#: writer takes up to three 1 MiB chunk buffers, a zstd context and dirty page cache (1.5-2 MiB
#: measured). With 4 MiB, full MNIST train was allowed and OOM-killed in a 64 MiB cgroup.
WORKING_BYTES = 6 << 20


def budget(_root=None):
    """The :class:`MemoryBudget` of ``max_memory="auto"``, or None (no limit)."""
    found = available(_root)
    if found is None:
        return None
    free, limit = found
    return MemoryBudget(
        max(free - WORKING_BYTES, 0), 0,
        f"bytes this process can still take under its memory limit of {limit:,} bytes "
        f"({limit / 2**20:.0f} MiB, memory cgroup) with {WORKING_BYTES >> 20} MiB kept for working buffers",
    )


class DirtyBound:
    """Keeps the page cache dirtied by writing the file ``f`` bounded under a memory limit.

    A memory cgroup is charged for the dirty pages of the files its processes write, and the
    kernel cannot drop them before they reach the disk: writing a 188 MB cache file in a 32 MiB
    cgroup got the writer OOM-killed whenever the disk was slow. Under a limit, every ``window``
    bytes (an eighth of what the cgroup still allows, 1 to 8 MiB) the file is synced and its clean
    pages dropped (``fdatasync`` + ``POSIX_FADV_DONTNEED``); without a limit this does nothing.
    """

    def __init__(self, f):
        self.f = f
        found = available()
        self.window = None if found is None else max(1 << 20, min(8 << 20, found[0] // 8))
        self.pending = 0

    def wrote(self, nbytes: int) -> None:
        if self.window is None:
            return
        self.pending += nbytes
        if self.pending >= self.window:
            self.pending = 0
            self.f.flush()
            fd = self.f.fileno()
            getattr(os, "fdatasync", os.fsync)(fd)
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def release_free_memory() -> None:
    """Under a memory limit, give the C heap's free memory back to the kernel (glibc only).

    A cache build frees megabytes of frame buffers that glibc keeps for reuse (its mmap
    threshold rises after the first large free); in a 32 MiB cgroup those megabytes are what the
    page cache of a memory map needs afterwards. Without a limit, or off glibc, nothing is done.
    """
    if available() is None:
        return
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # musl and others: nothing to trim this way
        pass


class MemoryBudget:
    """One call's ``max_memory`` and the bytes that call has already taken: a refusal names the
    limit the caller gave, not what was left of it. ``origin`` says where a limit the caller did
    not give comes from (``max_memory="auto"``, see :mod:`fastidx._memlimit`)."""

    __slots__ = ("limit", "used", "origin")

    def __init__(self, limit: int, used: int = 0, origin: str | None = None):
        self.limit, self.used, self.origin = limit, used, origin

    def after(self, nbytes: int) -> MemoryBudget:
        return MemoryBudget(self.limit, self.used + nbytes, self.origin)


def memory_budget(max_memory) -> MemoryBudget | None:
    """``max_memory=`` checked once, where a call starts: a whole number of bytes >= 0, or
    ``"auto"`` / None (the default): the process's memory cgroup limit, if any."""
    if max_memory is None or (isinstance(max_memory, str) and max_memory == "auto"):
        return budget()
    if isinstance(max_memory, MemoryBudget):
        return max_memory
    number = isinstance(max_memory, (int, float, np.integer, np.floating)) and not isinstance(max_memory, bool)
    if not number or not math.isfinite(max_memory) or max_memory < 0 or max_memory != int(max_memory):
        raise ValueError(f"max_memory must be a whole number of bytes >= 0 or 'auto' (None: the "
                         f"process's memory limit, if any), not {max_memory!r}")
    return MemoryBudget(int(max_memory))


def check_budget(nbytes: int, max_memory, what: str) -> None:
    budget = memory_budget(max_memory)
    if budget is not None and budget.used + nbytes > budget.limit:
        taken = f" on top of the {budget.used:,} bytes this load already holds" if budget.used else ""
        if budget.origin is not None:
            raise MemoryLimitError(
                f"{what} needs {nbytes:,} bytes{taken}, more than the {budget.limit:,} "
                f"{budget.origin}; use mmap=True (memory maps cost no private memory), "
                f"iter_batches() or a slice (e.g. 'train[:10%]')"
            )
        raise MemoryLimitError(
            f"{what} needs {nbytes:,} bytes{taken}, more than max_memory={budget.limit:,}; "
            f"load a slice (e.g. 'train[:10%]') or use iter_batches()"
        )


#: A memory map is read without kernel readahead when this many readahead windows would not fit
#: in what the cgroup still allows (see :func:`read_without_readahead`).
READAHEAD_WINDOWS = 4


def readahead_bytes(fd: int, _root=None) -> int | None:
    """The kernel's readahead window for the file ``fd``: ``read_ahead_kb`` of its file system's
    backing device in sysfs, or None when sysfs does not say."""
    root = _ROOT if _root is None else os.fspath(_root)
    try:
        dev = os.fstat(fd).st_dev
    except OSError:
        return None
    name = f"{os.major(dev)}:{os.minor(dev)}"
    for rel in (f"sys/class/bdi/{name}/read_ahead_kb", f"sys/dev/block/{name}/queue/read_ahead_kb",
                f"sys/dev/block/{name}/../queue/read_ahead_kb"):
        kb = _number(_read(os.path.join(root, rel)))  # not normalised: ".." follows the link
        if kb is not None:
            return kb << 10
    return None


def read_without_readahead(fd: int) -> bool:
    """Whether a memory map of ``fd`` should be read without readahead (``MADV_RANDOM``).

    The kernel reads a mapped file in windows of its device's ``read_ahead_kb`` (8 MiB on some
    virtual disks), centred on the page that faulted, and the cgroup is charged for a window's
    pages while they are locked for reading. Reading a 188 MB map in a 32 MiB cgroup with 8 MiB
    windows re-read the pages just behind each fault and got the reader OOM-killed about one run
    in three when the disk was slow: the faulting page could not be charged while every page
    cache page of the cgroup was locked under readahead. Under a memory limit that cannot hold
    :data:`READAHEAD_WINDOWS` windows (or an unknown window), a map is read a page per fault:
    slower (about 7x for a first sequential pass), never more than one page locked at a time.
    """
    found = available()
    if found is None:
        return False
    window = readahead_bytes(fd)
    return window is None or READAHEAD_WINDOWS * window > found[0]
