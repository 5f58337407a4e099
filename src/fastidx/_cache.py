"""The decoded-array cache: parse an IDX file once, load it again at the cost of writing the output.

Layout under ``cache_root(cache_dir) / "decoded"``::

    <sha256>.<variant>.fidx          decoded rows as independent zstd frames (always written)
    <sha256>.<variant>.<conv>.raw    the rows uncompressed, for ``mmap=True`` and shuffling
    sources/<key>.json               stat index: path, (dev, inode, size, mtime, ctime) -> sha256
    locks/<entry>.lock               one builder at a time per entry, across processes

``<sha256>`` is the SHA-256 of the source file's bytes, so an entry never outlives a change of its
source: a rewritten file hashes differently and gets a new entry. ``<variant>`` is ``stored`` (rows
as the file stores them) or ``upright`` (EMNIST images transposed back). ``<conv>`` is ``native``
for the stored values, else ``x`` and a hash of the conversion options (dtype, normalize, mean, std).

Every file starts with a 32-byte fixed header, little-endian::

    magic b"FIDXCACH" | u32 format version | u32 kind (1 frames, 2 raw) | u32 meta length
    | u32 CRC-32 of meta | u64 data offset

then ``meta``, a JSON object: shape, stored dtype, source hash and name, dataset, variant; for frames
``rows_per_frame`` and the table of ``[offset, compressed size, decoded size, checksum]`` of each
frame. Each frame holds ``rows_per_frame`` whole rows (about :data:`FRAME_BYTES`) and carries its
decoded size and a content checksum (the low 32 bits of XXH64) that libzstd verifies on
decompression; the table repeats that checksum, so a frame found in the wrong place is caught.
Raw files start their data on a 4096-byte boundary and keep a CRC-32 of the payload in ``meta``,
checked by :func:`verify_file` (``mmap=True`` checks only the header and the file size, so that a
load stays well under a millisecond).

Files are written to a unique temporary name and renamed into place; a lock file serialises the
builders of one entry, so concurrent processes build it once and nobody ever reads a torn file.
An entry that fails any check is rebuilt from its source with a :class:`fastidx.CacheWarning`.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import json
import math
import mmap as _mmap
import os
import stat
import struct
import threading
import time
import warnings
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zstandard

from . import _idx
from ._atomic import atomic_write, new_temp
from ._conversion import Conversion
from ._errors import CacheDirError, CacheLayoutError, CacheWarning, MemoryLimitError, warn_cache
from ._lock import FileLock

FORMAT_VERSION = 1
MAGIC = b"FIDXCACH"
KIND_FRAMES = 1
KIND_RAW = 2
_FIXED = struct.Struct("<8sIIIIQ")  # magic, version, kind, meta length, meta CRC-32, data offset

#: Decoded bytes per zstd frame (rounded down to whole rows): small enough for fine-grained slices
#: (``train[:6000]`` decodes 5 of 45 frames) and many frames per core, big enough that per-frame
#: costs are noise. 2 MiB frames made whole loads ~5% faster but ``train[:6000]`` 35% slower.
FRAME_BYTES = 1 << 20
#: zstd level: a "fast" level decodes about 20% faster than level 1 for 10% more disk.
LEVEL = -1
_RAW_ALIGN = 4096
#: A stat index record is trusted only for files last modified this long before they were hashed:
#: a rewrite within the file system's timestamp granularity could otherwise go unseen.
_RACY_NS = 2_000_000_000
_LOCK_TIMEOUT = 600.0
VARIANTS = ("stored", "upright")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class CorruptEntry(Exception):
    """Internal: a cache file failed a check; ``str()`` says which."""


# ---------------------------------------------------------------------------------------------
# Where things are.


def decoded_dir(cache_dir=None) -> Path:
    from ._cluster import node_local  # never on NFS & co: locks there cannot be trusted
    from ._paths import cache_root

    return node_local(cache_root(cache_dir) / "decoded", "its decoded cache")


def entry_name(digest: str, variant: str) -> str:
    return f"{digest}.{variant}.fidx"


def raw_name(digest: str, variant: str, conversion: str) -> str:
    return f"{digest}.{variant}.{conversion}.raw"


def conversion_id(dtype, normalize, mean, std) -> str:
    """``native`` for the stored values, else a hash of the conversion options."""
    return Conversion(dtype, normalize, mean, std).key


def conversion(stored: np.dtype, dtype, normalize, mean, std):
    """``(target dtype, 256-entry table or None)`` for data stored as ``stored``."""
    conv = Conversion(dtype, normalize, mean, std)
    return conv.target(stored), conv.table(stored)


# ---------------------------------------------------------------------------------------------
# Source identity: the SHA-256 of the source file, remembered per path while the file is unchanged.


def _identity(path) -> list[int]:
    """What changes when a file is rewritten: device, inode, size, mtime and ctime."""
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def parse_json(blob):
    """``json.loads`` for files of the cache: anything unreadable, absurdly nested JSON included,
    raises ValueError (never RecursionError)."""
    try:
        return json.loads(blob)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _record_path(path, directory: Path) -> tuple[str, Path]:
    name = os.path.abspath(path)
    key = hashlib.sha256(os.fsencode(name)).hexdigest()[:32]
    return name, directory / "sources" / f"{key}.json"


def known_digest(path, directory: Path) -> tuple[str | None, list[int]]:
    """``(SHA-256 or None, identity)``: the digest the stat index holds for ``path`` if the file is
    unchanged since it was hashed (one ``stat`` and one small read, nothing written)."""
    ident = _identity(path)
    name, record = _record_path(path, directory)
    try:
        known = parse_json(record.read_bytes())
        if (
            known["path"] == name
            and known["stat"] == ident
            and known["hashed_ns"] - max(ident[3], ident[4]) > _RACY_NS
        ):
            return known["sha256"], ident
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None, ident


def source_digest(path: Path, directory: Path) -> tuple[str, list[int]]:
    """SHA-256 of ``path``'s bytes and the file's identity (:func:`_identity`) when it was taken;
    a stat index in ``directory/sources`` avoids re-hashing an unchanged file."""
    digest, ident = known_digest(path, directory)
    if digest is None:
        digest = hash_and_record(path, directory, ident)
    return digest, ident


def hash_and_record(path: Path, directory: Path, ident: list[int]) -> str:
    """Hash ``path`` and remember the digest for the identity ``ident`` in the stat index."""
    hashed_ns = time.time_ns()
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    remember_digest(path, directory, ident, digest, hashed_ns)
    return digest


def remember_digest(path: Path, directory: Path, ident: list[int], digest: str,
                    hashed_ns: int) -> None:
    """Record in the stat index that ``path`` with identity ``ident`` had ``digest`` at
    ``hashed_ns`` (best effort: the index only saves hashing)."""
    name, record = _record_path(path, directory)
    with contextlib.suppress(OSError):  # CacheDirError included
        own_dir(record.parent)
        with atomic_write(record, sync=False) as f:
            f.write(json.dumps({"path": name, "stat": ident, "hashed_ns": hashed_ns,
                                "sha256": digest}).encode())


# ---------------------------------------------------------------------------------------------
# Headers.


class Header:
    """The parsed header of a cache file."""

    def __init__(self, kind: int, meta: dict, data_offset: int, file_size: int):
        if not isinstance(meta, dict):
            raise TypeError("metadata is not an object")
        self.kind = kind
        self.meta = meta
        self.data_offset = data_offset
        self.file_size = file_size
        self.shape = tuple(meta["shape"])
        if not all(type(n) is int and n >= 0 for n in self.shape) or not self.shape:
            raise ValueError(f"bad shape {meta['shape']!r}")
        self.dtype = np.dtype(meta["dtype"])

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize


def encode_header(kind: int, meta: dict, data_offset: int) -> bytes:
    blob = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
    head = _FIXED.pack(MAGIC, FORMAT_VERSION, kind, len(blob), zlib.crc32(blob), data_offset) + blob
    if len(head) > data_offset:
        raise AssertionError("cache header larger than the space reserved for it")
    return head + bytes(data_offset - len(head))


def _pread(fd: int, n: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
    return os.read(fd, n)  # pragma: no cover


def read_header(fd: int, file_size: int) -> Header:
    """Parse and check the header of an open cache file (raises :class:`CorruptEntry`)."""
    fixed = _pread(fd, _FIXED.size, 0)
    if len(fixed) < _FIXED.size:
        raise CorruptEntry(f"file is {file_size} bytes, shorter than a cache header")
    magic, version, kind, meta_len, crc, data_offset = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise CorruptEntry("not a fastidx cache file (bad magic number)")
    if version != FORMAT_VERSION:
        raise CorruptEntry(f"cache format version {version}, this fastidx reads {FORMAT_VERSION}")
    if kind not in (KIND_FRAMES, KIND_RAW):
        raise CorruptEntry(f"unknown cache file kind {kind}")
    if _FIXED.size + meta_len > min(data_offset, file_size):
        raise CorruptEntry("header is truncated")
    blob = _pread(fd, meta_len, _FIXED.size)
    if len(blob) != meta_len or zlib.crc32(blob) != crc:
        raise CorruptEntry("header checksum mismatch")
    try:
        meta = parse_json(blob)
        header = Header(kind, meta, data_offset, file_size)
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptEntry(f"unreadable header metadata ({exc})") from None
    if kind == KIND_FRAMES:
        frames = meta.get("frames")
        rows_per = meta.get("rows_per_frame")
        if not isinstance(frames, list) or not isinstance(rows_per, int) or rows_per < 1:
            raise CorruptEntry("header lacks its frame table")
        if len(frames) != max(1, -(-header.rows // rows_per)):
            raise CorruptEntry("frame table does not cover the rows")
        end = data_offset
        try:
            for i, (offset, csize, dsize, _) in enumerate(frames):
                if offset != end:
                    raise CorruptEntry(f"frame {i} is listed at byte {offset}, expected {end}")
                if dsize != (min(header.rows, (i + 1) * rows_per) - i * rows_per) * header.row_bytes:
                    raise CorruptEntry(f"frame {i} claims {dsize} decoded bytes")
                end += csize
        except (TypeError, ValueError):
            raise CorruptEntry("unreadable frame table") from None
        if end != file_size:
            raise CorruptEntry(f"file is {file_size} bytes, its frames end at {end}")
    else:
        try:
            nbytes = math.prod(header.shape) * np.dtype(meta["array_dtype"]).itemsize
        except (KeyError, TypeError, ValueError):
            raise CorruptEntry("unreadable array dtype") from None
        if data_offset + nbytes != file_size:
            raise CorruptEntry(f"file is {file_size} bytes, expected {data_offset + nbytes}")
    return header


def _open_quietly(path, flags: int) -> int:
    """Open without updating the access time, when the system allows it: looking at the cache
    (listing, verifying, pruning) must not count as using an entry (see fastidx.cache.prune)."""
    noatime = getattr(os, "O_NOATIME", 0)
    if noatime:
        try:
            return os.open(path, flags | noatime)
        except PermissionError:  # O_NOATIME needs the file's owner (or CAP_FOWNER)
            pass
    return os.open(path, flags)


def open_header(path: Path, kind: int, digest: str | None = None, variant: str | None = None,
                *, quiet: bool = False):
    """``(fd, header)`` of a valid cache file of ``kind``; ``None`` if absent; CorruptEntry if bad.
    ``quiet``: do not update the file's access time (management, not use)."""
    flags = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_BINARY", 0)
    try:
        fd = _open_quietly(path, flags) if quiet else os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptEntry("is a symlink, not a file fastidx wrote") from None
        raise CorruptEntry(f"cannot be opened: {exc.strerror or exc}") from None
    try:
        header = read_header(fd, os.fstat(fd).st_size)
        if header.kind != kind:
            raise CorruptEntry(f"is a cache file of kind {header.kind}, expected {kind}")
        meta = header.meta
        if digest is not None and meta.get("source_sha256") != digest:
            raise CorruptEntry("belongs to another source file")
        if variant is not None and meta.get("variant") != variant:
            raise CorruptEntry("holds another variant of the data")
    except BaseException:
        os.close(fd)
        raise
    return fd, header


# ---------------------------------------------------------------------------------------------
# Output arrays.


def allocate(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A C-contiguous, 64-byte-aligned empty array.

    It comes from ``np.empty``, which on Linux advises transparent huge pages for arrays of 4 MiB
    and more: filling the MNIST float32 outputs then costs 30 ms instead of 140 ms of page faults
    on the development machine. (An anonymous ``mmap`` with the same advice is shared memory to
    the kernel and faults slower still.)
    """
    return _idx._aligned_empty(shape, dtype)


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
        from . import _memlimit

        return _memlimit.budget()
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


class Output:
    """Rows ``[start, stop)`` of a stored array, converted into the caller's array chunk by chunk."""

    def __init__(self, shape, stored: np.dtype, start: int, stop: int, target: np.dtype,
                 table, layout, *, array=None):
        self.start, self.stop = start, stop
        self.stored = stored
        self.table = table
        self.row_items = math.prod(shape[1:])
        self.row_bytes = self.row_items * stored.itemsize
        self.identity = table is None and target == stored
        final = _idx.layout_shape((stop - start,) + tuple(shape[1:]), layout)
        self.array = allocate(final, target) if array is None else array
        self.flat = self.array.reshape(-1)

    def direct(self, row0: int, k: int):
        """The output's bytes for rows ``[row0, row0 + k)``, when they can be decoded into it."""
        if self.identity and self.start <= row0 and row0 + k <= self.stop:
            a = (row0 - self.start) * self.row_items
            return self.flat[a : a + k * self.row_items].view(np.uint8)
        return None

    def put(self, row0: int, chunk: np.ndarray) -> None:
        """Store the rows of ``chunk`` (bytes of whole rows from ``row0``) that fall in the output."""
        k = chunk.shape[0] // self.row_bytes if self.row_bytes else 0
        lo, hi = max(row0, self.start), min(row0 + k, self.stop)
        if lo >= hi:
            return
        src = chunk[(lo - row0) * self.row_bytes : (hi - row0) * self.row_bytes]
        dst = self.flat[(lo - self.start) * self.row_items : (hi - self.start) * self.row_items]
        if self.table is not None:
            _idx.map_uint8(src, self.table, dst)
        elif self.identity:
            np.copyto(dst.view(np.uint8), src)
        else:
            np.copyto(dst, src.view(self.stored), casting="unsafe")


# ---------------------------------------------------------------------------------------------
# Threads: one pool for decoding frames, one worker for the compress-and-write stage of a build.

_pools: dict = {}


def _threads() -> int:
    """Decode threads: the process's CPU budget (affinity, OMP_NUM_THREADS, cgroup quota, Ray's
    per-trial CPUs; see ``_cpus``), at most 8."""
    from ._cpus import budget

    return min(budget(), 8)


def _pool(name: str, workers: int) -> ThreadPoolExecutor:
    pool = _pools.get(name)
    if pool is None or pool[0] != os.getpid():
        pool = (os.getpid(), ThreadPoolExecutor(workers, thread_name_prefix=f"fastidx-{name}"))
        _pools[name] = pool
    return pool[1]


def _decompress_into(dctx, frame, dst: np.ndarray) -> None:
    want = dst.shape[0]
    view = memoryview(dst)
    got = 0
    reason = None
    reader = dctx.stream_reader(frame)
    try:
        while got < want:
            n = reader.readinto(view[got:])
            if not n:
                break
            got += n
        extra = reader.readinto(bytearray(1)) if got == want else 0
    except zstandard.ZstdError as exc:
        reason = str(exc)
    finally:
        reader.close()
        del reader
    if reason is not None:
        raise CorruptEntry(f"a frame is damaged: {reason}")
    if got != want or extra:
        raise CorruptEntry(f"a frame decodes to {'more' if extra else got} bytes, expected {want}")


# ---------------------------------------------------------------------------------------------
# Frames entries: reading.


class Frames:
    """An open, header-checked frames entry."""

    def __init__(self, path: Path, fd: int, header: Header):
        self.path = path
        self.header = header
        self.rows_per = header.meta["rows_per_frame"]
        self.table = header.meta["frames"]
        # Per thread: a zstd decompressor (they are not thread-safe) and a staging buffer. They
        # belong to this open entry and go with it: no thread keeps buffers after a load.
        self._states: dict = {}
        try:
            size = header.file_size
            self._map = _mmap.mmap(fd, size, access=_mmap.ACCESS_READ) if size else None
        finally:
            os.close(fd)

    @classmethod
    def open(cls, path: Path, digest=None, variant=None):
        opened = open_header(path, KIND_FRAMES, digest, variant)
        return None if opened is None else cls(path, *opened)

    def _state(self, nbytes: int):
        state = self._states.get(threading.get_ident())
        if state is None:
            state = self._states[threading.get_ident()] = [zstandard.ZstdDecompressor(),
                                                           np.empty(0, np.uint8)]
        if state[1].shape[0] < nbytes:
            # Its own anonymous mapping, not malloc: unmapped when dropped, where a malloc'd
            # buffer would stay in its thread's arena for the life of the process.
            state[1] = np.frombuffer(_mmap.mmap(-1, nbytes), np.uint8)
        return state[0], state[1]

    def close(self):
        self._states = {}
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a view still held by an exception's traceback: the GC unmaps it
                pass
            self._map = None

    def frame_span(self, i: int) -> tuple[int, int]:
        first = i * self.rows_per
        return first, min(first + self.rows_per, self.header.rows)

    def frame_bytes(self, i: int) -> memoryview:
        offset, csize, _, checksum = self.table[i]
        frame = memoryview(self._map)[offset : offset + csize]
        if int.from_bytes(frame[-4:], "little") != checksum:
            raise CorruptEntry(f"frame {i} is not the frame the table lists")
        return frame

    def decode(self, i: int, dst: np.ndarray | None = None) -> np.ndarray:
        """Frame ``i``'s rows as uint8 bytes (in ``dst`` or this thread's staging buffer)."""
        dsize = self.table[i][2]
        frame = self.frame_bytes(i)
        if dst is None:
            dctx, staging = self._state(dsize)
            dst = staging[:dsize]
        else:
            dctx, _ = self._state(0)
        _decompress_into(dctx, frame, dst)
        return dst

    def read_into(self, out: Output) -> None:
        """Decode the frames covering ``out``'s rows into it, in parallel threads."""
        if out.stop <= out.start:
            return
        first = out.start // self.rows_per
        last = (out.stop - 1) // self.rows_per
        todo = range(first, last + 1)

        def work(i):
            row0, row1 = self.frame_span(i)
            direct = out.direct(row0, row1 - row0)
            if direct is not None:
                self.decode(i, direct)
            else:
                out.put(row0, self.decode(i))

        try:
            if len(todo) == 1:
                work(first)
                return
            # A pool per load, not per process: its threads' stacks and malloc arenas (about
            # 2 MiB) go when the load is done instead of staying in every trial of a search.
            pool = ThreadPoolExecutor(min(_threads(), len(todo)), thread_name_prefix="fastidx-decode")
            try:
                for future in [pool.submit(work, i) for i in todo]:
                    future.result()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        finally:
            self._states = {}  # the pool's threads keep nothing of this load

    def iter_rows(self, start: int, stop: int):
        """``(row0, bytes)`` for each frame covering ``[start, stop)``, decoded one at a time."""
        if stop <= start:
            return
        for i in range(start // self.rows_per, (stop - 1) // self.rows_per + 1):
            yield self.frame_span(i)[0], self.decode(i)


# ---------------------------------------------------------------------------------------------
# Decoding a source once: to the caller's output, to a new frames entry, or both.


def _transpose_rows(chunk: np.ndarray, shape, dst: np.ndarray) -> np.ndarray:
    """EMNIST's stored-transposed images, put upright: ``dst`` holds the same rows, transposed."""
    k = chunk.shape[0] // (shape[1] * shape[2])
    images = chunk.reshape(k, shape[1], shape[2])
    out = dst[: chunk.shape[0]].reshape(k, shape[2], shape[1])
    np.copyto(out, images.transpose(0, 2, 1))
    return dst[: chunk.shape[0]]


#: Decoded bytes that may wait for the background writer before the decoding waits for it
#: (less under a memory limit: see :func:`_backlog`).
_BACKLOG = 64 << 20


def _backlog(chunk_bytes: int) -> int:
    """:data:`_BACKLOG`, or under a memory cgroup an eighth of what it still allows (at least two
    chunks): a first load in a 32 MiB container must not queue more than it can hold."""
    from . import _memlimit

    found = _memlimit.available()
    if found is None:
        return _BACKLOG
    return min(_BACKLOG, max(2 * chunk_bytes, found[0] // 8))
#: Cache-writing failures of background writers, reported (once each) by the next load.
_failures: list[str] = []
_writers: list = []
_registered: list = []


class _HashingReader:
    """The source file, hashed (SHA-256) as the decoder reads it: the entry's key is then the
    digest of the very bytes decoded, at no extra pass over the file. Re-reads (the decoder
    peeks at the header) are not hashed twice; :meth:`digest` is None unless every byte was
    read in order."""

    def __init__(self, path: Path):
        self._file = open(path, "rb", buffering=0)
        self.name = os.fspath(path)  # errors name the source
        self.read_ns = time.time_ns()
        self._size = os.fstat(self._file.fileno()).st_size
        self._hash = hashlib.sha256()
        self._hashed = 0

    def _account(self, pos: int, data, n: int) -> None:
        if pos <= self._hashed < pos + n:
            self._hash.update(memoryview(data)[self._hashed - pos : n])
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

    def digest(self) -> str | None:
        return self._hash.hexdigest() if self._hashed == self._size else None


class _EntryWriter:
    """Compresses chunks of whole rows as independent zstd frames into a temporary file, on a
    thread of its own, then renames the file into place.

    The decoding thread hands over each chunk with :meth:`add`: ``owned`` chunks are buffers of
    the writer's (:meth:`buffer`); the others are views of the caller's output, copied by
    :meth:`close` if still waiting when the load returns (the caller may change its array).
    After :meth:`close` the load goes on while the thread finishes: checks that every row was
    written, writes the header, syncs and renames. It holds the entry's build lock until then,
    so another load of the same entry waits for a whole file. Python joins the thread at exit.
    """

    def __init__(self, lock, fd: int, tmp: Path, final: Path | None, header: _idx.Header,
                 meta: dict, source=None):
        self.lock, self.tmp, self.final = lock, tmp, final
        self.meta = meta
        # Without ``final``: (path, identity, decoded dir, variant, the _HashingReader read)
        self.source = source
        self.rows_per = meta["rows_per_frame"]
        self.rows = header.shape[0]
        self.chunk_bytes = (min(self.rows_per, self.rows) * math.prod(header.shape[1:])
                            * header.dtype.itemsize)
        n_frames = max(1, -(-self.rows // self.rows_per))
        # The header goes at the front once the frame sizes are known: reserve room for it.
        blob = json.dumps(dict(meta, frames=[], source_sha256="0" * 64), separators=(",", ":"))
        self.data_offset = -(-(_FIXED.size + len(blob) + 80 * n_frames + 64) // 64) * 64
        self.backlog = _backlog(self.chunk_bytes)
        self.error: str | None = None
        self.report_later = True
        self._file = os.fdopen(fd, "wb")
        self._cv = threading.Condition()
        self._queue: deque = deque()
        self._busy = None
        self._free: list = []
        self._pending = 0
        self._closed = self._aborted = False
        self._thread = threading.Thread(target=self._run, name="fastidx-cache-writer")
        if _report_at_exit not in _registered:
            _registered.append(_report_at_exit)
            atexit.register(_report_at_exit)
        self._thread.start()
        _writers.append((os.getpid(), self))

    # -- the decoding thread's side

    def buffer(self) -> np.ndarray:
        """A buffer for one chunk of rows (recycled once its frame is written)."""
        with self._cv:
            while self._pending > self.backlog and self._thread.is_alive():
                self._cv.wait(0.1)
            if self._free:
                return self._free.pop()
        return np.empty(self.chunk_bytes, np.uint8)

    def add(self, chunk: np.ndarray, owned: bool, base=None) -> None:
        with self._cv:
            self._queue.append([chunk, owned, base])
            if owned:
                self._pending += chunk.nbytes
            self._cv.notify_all()

    def recycle(self, base: np.ndarray) -> None:
        with self._cv:
            self._free.append(base)

    def close(self) -> None:
        """No more chunks: copy those the caller still owns, let the thread finish on its own.

        Under a memory limit (a smaller backlog) there may be no room for the copies: then wait
        until the thread has compressed the caller's chunks (bounded: it only compresses them)."""
        with self._cv:
            while self.backlog < _BACKLOG and self._thread.is_alive() and (
                    any(not item[1] for item in self._queue)
                    or (self._busy is not None and not self._busy[1])):
                self._cv.wait(0.1)
            for item in self._queue:
                if not item[1]:
                    item[0], item[1] = item[0].copy(), True
                    self._pending += item[0].nbytes
            busy = self._busy
            if busy is not None and not busy[1]:
                # Being compressed from the caller's array, which may change once we return:
                # compress a copy again rather than wait (the thread drops its first result).
                self._queue.appendleft([busy[0].copy(), True, None])
                self._pending += busy[0].nbytes
                busy.append("redo")
            self._closed = True
            self._cv.notify_all()

    def abort(self) -> None:
        """Drop the entry: the thread removes its temporary file and releases the lock."""
        with self._cv:
            self._aborted = self._closed = True
            self._queue.clear()
            self._cv.notify_all()
        self.report_later = False
        self._thread.join()

    def join(self) -> str | None:
        """Wait for the thread (no limit is needed: it only compresses and writes what it has)."""
        self._thread.join()
        return self.error

    # -- the writer thread

    def _next(self):
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if self._aborted or not self._queue:
                return None
            self._busy = self._queue.popleft()
            return self._busy

    def _done(self, item) -> bool:
        """The thread is done compressing ``item``: False if its frame must be dropped."""
        with self._cv:
            self._busy = None
            if item[1]:
                self._pending -= item[0].nbytes
                if item[2] is not None and len(self._free) < 4:
                    self._free.append(item[2])
            self._cv.notify_all()
            return len(item) == 3

    def _run(self) -> None:
        if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
            # Background work: on a busy machine the decoding the user waits for goes first.
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        try:
            self._write_all()
            if not self._aborted:
                os.replace(self.tmp, self.final)
                enforce_budget(self.final)
        except BaseException as exc:  # the load has returned: report with the next one
            if not self._aborted:
                self.error = (f"could not write the cache entry {self.final} "
                              f"({getattr(exc, 'strerror', None) or exc})")
        finally:
            with self._cv:
                self._aborted = self._aborted or self.error is not None
                self._queue.clear()
                self._free.clear()  # a finished writer (kept in _writers) holds no buffers
                self._cv.notify_all()
            try:
                # After a failed write, closing flushes what is buffered into the same full
                # disk and fails again: that must not keep the build lock held.
                with contextlib.suppress(OSError):
                    self._file.close()
                if self._aborted:
                    with contextlib.suppress(OSError):
                        os.unlink(self.tmp)
            finally:
                self.lock.release()
            from ._memlimit import release_free_memory

            release_free_memory()
            if self.error is not None and self.report_later:
                _failures.append(self.error)

    def _name_by_content(self) -> None:
        """The entry's key: the SHA-256 of the bytes the load decoded (see _HashingReader)."""
        path, ident, directory, variant, reader = self.source
        self.source = None
        digest = reader.digest()
        if digest is None:
            raise AssertionError("the source was not read whole")
        remember_digest(path, directory, ident, digest, reader.read_ns)
        self.meta["source_sha256"] = digest
        self.final = directory / entry_name(digest, variant)

    def _write_all(self) -> None:
        from ._memlimit import DirtyBound

        zc = zstandard.ZstdCompressor(level=LEVEL, write_checksum=True, write_content_size=True)
        f, end, frames = self._file, self.data_offset, []
        bound = DirtyBound(f)
        f.seek(end)
        while (item := self._next()) is not None:
            keep = False
            try:
                frame = zc.compress(memoryview(item[0]))
                decoded = item[0].shape[0]
            finally:
                keep = self._done(item)
            if not keep:
                continue
            f.write(frame)
            bound.wrote(len(frame))
            frames.append([end, len(frame), decoded, int.from_bytes(frame[-4:], "little")])
            end += len(frame)
        if self._aborted:
            return
        if self.final is None:  # the load has read the whole source by now
            self._name_by_content()
        if not frames:  # an array with no rows still gets its one (empty) frame
            frame = zc.compress(b"")
            f.write(frame)
            frames.append([end, len(frame), 0, int.from_bytes(frame[-4:], "little")])
        if len(frames) != max(1, -(-self.rows // self.rows_per)):
            raise AssertionError(f"{len(frames)} frames written for {self.rows} rows")
        f.seek(0)
        f.write(encode_header(KIND_FRAMES, dict(self.meta, frames=frames), self.data_offset))
        f.flush()
        os.fsync(f.fileno())


def enforce_budget(written: Path, keep=()) -> None:
    """After writing ``written``: evict least recently used entries beyond the size budget
    (:func:`fastidx.cache.prune`), never ``written`` itself nor the names in ``keep``."""
    from . import cache as management

    with contextlib.suppress(OSError, ValueError):
        management.prune(cache_dir=written.parent.parent, keep={written.name, *keep}, _wait=False)


def wait_for_writers() -> None:
    """Wait until this process's background cache writers are done; report their failures."""
    for pid, writer in list(_writers):
        if pid == os.getpid():
            writer.join()
    _writers[:] = [(p, w) for p, w in _writers if p == os.getpid() and w._thread.is_alive()]
    report_failures()


def report_failures() -> None:
    """One CacheWarning for the cache entries background writers could not write."""
    if _failures:
        failed = "; ".join(_failures)
        _failures.clear()
        warn_cache(f"{failed}; the loads themselves were not affected (later loads decode the "
                   f"source again until the entry can be written)", key="cache write failed")


def _report_at_exit() -> None:
    # Python has joined the writer threads by now (they are not daemons).
    if _failures:
        warnings.warn("; ".join(_failures), CacheWarning, stacklevel=1)
        _failures.clear()


def stream_source(source: Path, *, upright: bool, make_output=None, writer_for=None) -> Output | None:
    """Decode ``source`` once, a frame's worth of rows at a time.

    ``make_output(shape, dtype)`` returns the :class:`Output` to fill (or None): it is called with
    the shape of the rows it will get (upright if asked) before anything large is allocated.
    ``writer_for(header)`` returns a writer (or None) that receives every chunk (:class:`_EntryWriter`
    or :class:`_RawWriter`); the caller closes it. Inflating, transposing and converting run in
    this thread; an :class:`_EntryWriter` compresses on its own.
    """
    with _idx.IDXReader(source) as reader:
        header = reader.header
        upright = upright and len(header.shape) == 3
        shape = (header.shape[0], header.shape[2], header.shape[1]) if upright else header.shape
        out = make_output(shape, header.dtype) if make_output is not None else None
        writer = writer_for(header) if writer_for is not None else None
        rows_per = rows_per_frame(header.shape, header.dtype)
        row_bytes = reader.row_bytes
        first, last = 0, reader.rows
        if writer is None and out is not None:
            # Nothing to cache: decode only as far as the output needs.
            first = (out.start // rows_per) * rows_per
            last = out.stop
            reader.skip_rows(first)
        # Never more rows than asked for: a legal 0-row file may declare enormous rows.
        scratch = _Scratch(min(rows_per, last - first) * row_bytes, writer)
        for row0 in range(first, last, rows_per):
            k = min(rows_per, last - row0)
            chunk = None if upright or out is None else out.direct(row0, k)
            base = None
            if chunk is None:
                base = scratch.take()
                chunk = base[: k * row_bytes]
            reader.read_rows(chunk)
            if upright:
                flipped = scratch.take()
                chunk = _transpose_rows(chunk, header.shape, flipped)
                scratch.spare.append(base)
                base = flipped
            if out is not None and base is not None:
                out.put(row0, chunk)
            if writer is not None:
                writer.add(chunk, base is not None, base)
            elif base is not None:
                scratch.spare.append(base)
        if last == reader.rows:
            reader.finish()
        return out


class _Scratch:
    """Buffers for chunks of rows: the background writer's (each handed over with its chunk and
    recycled once written), else a few reused ones."""

    def __init__(self, nbytes: int, writer):
        self.writer = writer if isinstance(writer, _EntryWriter) else None
        self.nbytes = nbytes
        self.spare: list = []

    def take(self) -> np.ndarray:
        if self.spare:
            return self.spare.pop()
        if self.writer is not None:
            return self.writer.buffer()
        return np.empty(self.nbytes, np.uint8)


def rows_per_frame(shape, dtype) -> int:
    row_bytes = math.prod(shape[1:]) * np.dtype(dtype).itemsize
    return max(1, FRAME_BYTES // max(row_bytes, 1))


def _frames_meta(header: _idx.Header, digest: str, variant: str, source: Path, dataset) -> dict:
    shape = list(header.shape)
    if variant == "upright" and len(shape) == 3:
        shape = [shape[0], shape[2], shape[1]]
    return {
        "dataset": dataset,
        "source_name": source.name,
        "source_sha256": digest,
        "variant": variant,
        "shape": shape,
        "dtype": header.dtype.str,
        "rows_per_frame": rows_per_frame(header.shape, header.dtype),
        "codec": f"zstd level {LEVEL}",
        "created_ns": time.time_ns(),
    }


# ---------------------------------------------------------------------------------------------
# Building entries, once per content, across threads and processes.


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


def _unwritable(exc: BaseException) -> bool:
    if isinstance(exc, CacheLayoutError):
        return False
    return isinstance(exc, CacheDirError) or getattr(exc, "errno", None) in _UNWRITABLE


class Source:
    """One source IDX file as the cache sees it: its content hash, variant and entries."""

    def __init__(self, path: Path, *, upright: bool, cache_dir=None, dataset=None):
        self.path = Path(path)
        self.variant = "upright" if upright else "stored"
        self.upright = upright
        self.dataset = dataset
        self.directory = own_dir(decoded_dir(cache_dir), create=False)
        self._digest = None
        self._identity = None
        self._damaged = None  # (path, reason) of an unusable cache file met on the way
        self._no_write = False  # writing failed (and was reported) once: this load reads only

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest, self._identity = source_digest(self.path, self.directory)
        return self._digest

    @property
    def entry_path(self) -> Path:
        return self.directory / entry_name(self.digest, self.variant)

    @property
    def frames_key(self) -> str:
        """Names the build lock and temporary files of this source's frames entry: its path, so
        that a first load need not hash the source before taking the lock."""
        return f"{_record_path(self.path, self.directory)[1].stem}.{self.variant}.fidx"

    # -- damage and fallbacks: one warning each time

    def _discard(self, path: Path, reason) -> None:
        """``path`` is unusable: remove it; the warning comes with what happens instead."""
        self._damaged = (path, reason)
        with contextlib.suppress(OSError):
            os.unlink(path)

    def _warn(self, cannot_write=None) -> None:
        if cannot_write is not None:
            self._no_write = True
        damaged, self._damaged = self._damaged, None
        if damaged is None and cannot_write is not None:
            warn_cache(f"{cannot_write}; loading without the cache", key="no cache")
        elif damaged is not None and cannot_write is None:
            warn_cache(f"fastidx cache file {damaged[0]} is unusable ({damaged[1]}); "
                       f"rebuilding it from the source")
        elif damaged is not None:
            warn_cache(f"fastidx cache file {damaged[0]} is unusable ({damaged[1]}) and cannot be "
                       f"rebuilt ({cannot_write}); loading without the cache")

    def _lock(self, name: str) -> FileLock | None:
        """The build lock of ``name``, held (stale temporary files of ``name`` reclaimed); None
        when the cache cannot be written (warned). A symlink in the layout raises."""
        from ._paths import writable_dir

        if self._no_write:
            return None
        try:
            own_dir(writable_dir(self.directory), create=False)
            lock = FileLock(own_dir(self.directory / "locks") / f"{name}.lock")
            if lock.acquire(_LOCK_TIMEOUT):
                reclaim_temps(self.directory, name)
            return lock
        except OSError as exc:
            if not _unwritable(exc):
                raise
            self._warn(str(exc) if isinstance(exc, CacheDirError)
                       else f"the cache directory {self.directory} cannot be written "
                            f"({exc.strerror or exc})")
            return None

    # -- frames entries

    def open_frames(self) -> Frames | None:
        """The valid frames entry, or None (a damaged one is removed; see :meth:`_warn`)."""
        try:
            return Frames.open(self.entry_path, self.digest, self.variant)
        except CorruptEntry as exc:
            self._discard(self.entry_path, exc)
            return None

    def load(self, make_output) -> Output:
        """Fill an output from the frames entry; on a miss, build the entry while filling it."""
        if self._digest is None:
            self._digest, self._identity = known_digest(self.path, self.directory)
            if self._digest is None and not _record_path(self.path, self.directory)[1].exists():
                return self._first_load(make_output)  # never seen: hashed by the writer
        frames = self.open_frames()
        if frames is not None:
            out = self._read(frames, make_output)
            if out is not None:
                return out
        lock = self._lock(self.frames_key)
        if lock is None:
            return stream_source(self.path, upright=self.upright, make_output=make_output)
        if self._damaged is None:
            frames = self.open_frames()  # built by another process while we waited?
            if frames is not None:
                lock.release()
                out = self._read(frames, make_output)
                if out is not None:
                    return out
                return self.load(make_output)
        return self._build(lock, make_output)

    def _first_load(self, make_output) -> Output:
        """A source the stat index does not know: build its entry under a lock named after its
        path, the background writer hashing it to name the entry."""
        lock = self._lock(self.frames_key)
        if lock is None:
            return stream_source(self.path, upright=self.upright, make_output=make_output)
        if _record_path(self.path, self.directory)[1].exists():
            lock.release()  # built (or being built) by another load while we waited
            return self.load(make_output)
        return self._build(lock, make_output, hashed=False)

    def _read(self, frames: Frames, make_output) -> Output | None:
        """The output filled from ``frames`` (closed), or None if a frame is damaged."""
        try:
            out = make_output(frames.header.shape, frames.header.dtype)
            frames.read_into(out)
            return out
        except CorruptEntry as exc:
            self._discard(self.entry_path, exc)
            return None
        finally:
            frames.close()

    def ensure_frames(self) -> Frames | None:
        """Open the frames entry, building it first if needed; None when the cache is unusable."""
        frames = self.open_frames()
        if frames is not None:
            return frames
        lock = self._lock(self.frames_key)
        if lock is None:
            return None
        frames = self.open_frames() if self._damaged is None else None
        if frames is not None:
            lock.release()
            return frames
        if self._build(lock, wait=True) is not False:
            return self.open_frames()
        return None

    def _build(self, lock: FileLock, make_output=None, *, wait=False, hashed=True):
        """Decode the source into a new frames entry (and the output, if asked for) while the
        caller holds ``lock``. The entry is compressed and written on a background thread that
        owns the lock from then on (``wait``: until it is done; False if it failed). Unless
        ``hashed``, the writer hashes the source and names the entry."""
        self._warn()
        writer = None
        source = self.path if hashed else _HashingReader(self.path)
        digest = self.digest if hashed else None

        def writer_for(header):
            nonlocal writer
            final = self.directory / entry_name(digest, self.variant) if hashed else None
            try:
                fd, tmp = new_temp(self.directory / self.frames_key)
            except OSError as exc:
                if not _unwritable(exc):
                    raise
                self._warn(f"could not create a cache file in {self.directory} "
                           f"({exc.strerror or exc})")
                return None
            meta = _frames_meta(header, digest, self.variant, self.path, self.dataset)
            writer = _EntryWriter(lock, fd, tmp, final, header, meta, None if hashed else (
                self.path, self._identity, self.directory, self.variant, source))
            return writer

        try:
            try:
                out = stream_source(source, upright=self.upright, make_output=make_output,
                                    writer_for=writer_for)
            finally:
                if not hashed:
                    source.close()
            changed = _identity(self.path) != self._identity
        except BaseException:
            writer.abort() if writer is not None else lock.release()
            raise
        if writer is None:
            lock.release()
            return out if not wait else False
        if changed:
            # Rewritten since it was hashed: what was decoded may not be what the key names.
            writer.abort()
            warn_cache(f"{self.path} changed while it was being read; not caching it")
            return out if not wait else False
        writer.close()
        if wait:
            writer.report_later = False
            error = writer.join()
            if error is not None:
                self._warn(error)
                return False
        return out

    # -- uncompressed files

    def raw_path(self, conversion: str) -> Path:
        return self.directory / raw_name(self.digest, self.variant, conversion)

    def open_raw(self, conversion: str):
        """``(fd, header)`` of the valid raw file, or None (a damaged one is removed)."""
        path = self.raw_path(conversion)
        try:
            opened = open_header(path, KIND_RAW, self.digest, self.variant)
            if opened is not None:
                check_raw(path, *opened, conversion)
        except CorruptEntry as exc:
            self._discard(path, exc)
            return None
        return opened

    def ensure_raw(self, conversion: str, convert, options=None):
        """``(fd, header)`` of the raw file of one conversion, building it if needed; None when
        the cache directory is unusable. ``convert(stored dtype)`` gives ``(target, table)``."""
        opened = self.open_raw(conversion)
        if opened is not None:
            return opened
        frames = self.ensure_frames()
        if frames is None:
            return None
        path = self.raw_path(conversion)
        try:
            lock = self._lock(path.name)
            if lock is None:
                return None
            try:
                opened = self.open_raw(conversion) if self._damaged is None else None
                if opened is None:
                    self._warn()
                    target, table = convert(frames.header.dtype)
                    with atomic_write(path) as f:
                        write_raw(f, frames, target, table, conversion, options)
                    stamp_raw(path)
                    enforce_budget(path, keep=(self.entry_path.name,))
                    opened = self.open_raw(conversion)
            finally:
                lock.release()
        except OSError as exc:
            if not _unwritable(exc):
                raise
            self._warn(f"could not write the uncompressed cache file {path} "
                       f"({exc.strerror or exc})")
            return None
        finally:
            frames.close()
            from ._memlimit import release_free_memory

            release_free_memory()
        return opened


# ---------------------------------------------------------------------------------------------
# Uncompressed files: written once, memory-mapped by later loads. A map cannot notice a change
# made later, so each open compares the file's stat with the one recorded when it was written
# (stamps/<name>.json) and checks the whole payload's CRC-32 when they differ.


def _stat_of(st) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _stamp_path(path: Path) -> Path:
    return path.parent / "stamps" / f"{path.name}.json"


def stamp_raw(path: Path) -> None:
    """Record the stat of the raw file ``path`` (just renamed into place, under its lock)."""
    record = _stamp_path(path)
    with contextlib.suppress(OSError):
        own_dir(record.parent)
        st = os.lstat(path)
        with atomic_write(record, sync=False) as f:
            f.write(json.dumps({"stat": _stat_of(st)}).encode())


def check_raw(path: Path, fd: int, header: Header, conversion: str) -> None:
    """Raise :class:`CorruptEntry` (closing ``fd``) if the raw file is not the one written."""
    try:
        if header.meta.get("conversion") != conversion:
            raise CorruptEntry("holds another conversion of the data")
        try:
            known = parse_json(_stamp_path(path).read_bytes())["stat"]
        except (OSError, ValueError, KeyError, TypeError):
            known = None
        if known == _stat_of(os.fstat(fd)):
            return
        reason = payload_problem(fd, header)
        if reason is not None:
            raise CorruptEntry(f"changed since it was written: {reason}")
        stamp_raw(path)  # the same bytes (copied, touched): trusted again from now on
    except BaseException:
        os.close(fd)
        raise


def payload_problem(fd: int, header: Header) -> str | None:
    """None if the payload of an open raw file matches its CRC-32, else what is wrong."""
    crc = 0
    pos = header.data_offset
    while pos < header.file_size:
        block = _pread(fd, min(1 << 22, header.file_size - pos), pos)
        if not block:
            return "file is shorter than its header says"
        crc = zlib.crc32(block, crc)
        pos += len(block)
    if crc != header.meta.get("payload_crc32"):
        return "payload checksum mismatch"
    return None


#: Bytes converted and written at a time when a raw file is built: a first ``mmap=True`` load
#: holds no buffer bigger than this (plus the decoded frame) whatever the target dtype.
RAW_PIECE_BYTES = 1 << 17


def write_raw(f, frames: Frames, target: np.dtype, table, conversion: str, options=None) -> None:
    """Write the rows of ``frames`` uncompressed (converted through ``table``) to the file ``f``.

    One frame is decoded at a time and converted in pieces of :data:`RAW_PIECE_BYTES` into one
    reused buffer, so the memory a build takes does not grow with the target dtype.
    """
    header = frames.header
    meta = dict(header.meta)
    for key in ("frames", "rows_per_frame", "codec"):
        meta.pop(key, None)
    meta.update(conversion=conversion, array_dtype=target.str, created_ns=time.time_ns())
    if options is not None:
        meta["options"] = options
    crc = 0
    stored = header.dtype
    step = max(1, RAW_PIECE_BYTES // max(target.itemsize, 1))  # items per piece
    staging = None if table is None and target == stored else np.empty(step, target)
    from ._memlimit import DirtyBound

    bound = DirtyBound(f)
    f.seek(_RAW_ALIGN)
    for i in range(len(frames.table)):
        chunk = frames.decode(i)
        if staging is None:
            crc = zlib.crc32(chunk, crc)
            f.write(memoryview(chunk))
            bound.wrote(chunk.nbytes)
            continue
        items = chunk.view(stored)
        for a in range(0, items.shape[0], step):
            piece = items[a : a + step]
            converted = staging[: piece.shape[0]]
            if table is not None:
                _idx.map_uint8(piece, table, converted)
            else:
                np.copyto(converted, piece, casting="unsafe")
            data = converted.view(np.uint8)
            crc = zlib.crc32(data, crc)
            f.write(memoryview(data))
            bound.wrote(data.nbytes)
    meta["payload_crc32"] = crc
    f.seek(0)
    f.write(encode_header(KIND_RAW, meta, _RAW_ALIGN))


def map_raw(fd: int, header: Header) -> np.ndarray:
    """A copy-on-write memory map of a raw file's array: shared pages, private writes."""
    try:
        dtype = np.dtype(header.meta["array_dtype"])
        count = math.prod(header.shape)
        if count == 0:
            return np.empty(header.shape, dtype)
        buffer = _mmap.mmap(fd, header.file_size, access=_mmap.ACCESS_COPY)
    finally:
        os.close(fd)
    return np.frombuffer(buffer, dtype, count, header.data_offset).reshape(header.shape)


# ---------------------------------------------------------------------------------------------
# Checking files (for fastidx.cache.verify).


def verify_file(path: Path) -> str | None:
    """None if the cache file at ``path`` is intact, else what is wrong with it."""
    try:
        opened = open_header(path, KIND_FRAMES if path.suffix == ".fidx" else KIND_RAW, quiet=True)
    except CorruptEntry as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot be read: {exc}"
    if opened is None:
        return "disappeared"
    fd, header = opened
    if header.kind == KIND_FRAMES:
        frames = Frames(path, fd, header)
        try:
            for i in range(len(frames.table)):
                frames.decode(i)
        except CorruptEntry as exc:
            return str(exc)
        finally:
            frames.close()
        return None
    try:
        return payload_problem(fd, header)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# The one entry point of the loaders.


def load_array(path: Path, *, select, upright=False, dtype=None, normalize=False, mean=None,
               std=None, layout=None, cache=True, cache_dir=None, mmap=False, max_memory=None,
               dataset=None, what="the array", conv: Conversion | None = None):
    """Rows ``select(n)`` of the IDX file at ``path``, converted; returns ``(array, n)``.

    ``select(n)`` maps the number of stored rows to ``(start, stop)``. With ``cache`` the rows come
    from (and on a first load, go to) the decoded-array cache; ``mmap`` maps an uncompressed cache
    file copy-on-write instead of filling new memory. A :class:`~fastidx._conversion.Conversion`
    ``conv`` (validated once by the caller) stands for the loose ``dtype, normalize, mean, std,
    layout``.
    """
    if conv is not None:
        dtype, normalize, mean, std, layout = conv.options().values()
    total = {}

    def make_output(shape, stored):
        target, table = conversion(stored, dtype, normalize, mean, std)
        start, stop = select(shape[0])
        final = _idx.layout_shape((stop - start,) + tuple(shape[1:]), layout)
        check_budget(math.prod(final) * target.itemsize, max_memory, what)
        total["n"] = shape[0]
        return Output(shape, stored, start, stop, target, table, layout)

    if mmap and not cache:
        raise ValueError("mmap=True maps a file of the cache: it needs cache=True")
    if not cache:
        return stream_source(path, upright=upright, make_output=make_output).array, total["n"]
    report_failures()
    source = Source(path, upright=upright, cache_dir=cache_dir, dataset=dataset)
    if mmap:
        def convert(stored):
            return conversion(stored, dtype, normalize, mean, std)

        options = {"dtype": None if dtype is None else np.dtype(dtype).name,
                   "normalize": bool(normalize), "mean": mean, "std": std}
        opened = source.ensure_raw(conversion_id(dtype, normalize, mean, std), convert, options)
        if opened is not None:
            array = map_raw(*opened)
            n = array.shape[0]
            start, stop = select(n)
            array = array[start:stop]
            return array.reshape(_idx.layout_shape(array.shape, layout)), n
    return source.load(make_output).array, total["n"]


# ---------------------------------------------------------------------------------------------
# Batches.


class _RawWriter:
    """Receives chunks of rows for an uncompressed temporary file (shuffling without a cache)."""

    def __init__(self, f):
        self.f = f

    def add(self, chunk, owned=False, base=None):
        self.f.write(memoryview(chunk))

    def close(self):
        self.f.flush()


def _source_chunks(path: Path, upright: bool, start: int, stop: int):
    """``(row0, bytes)`` of about a frame of rows at a time, straight from the source file."""
    with _idx.IDXReader(path) as reader:
        shape = reader.header.shape
        upright = upright and len(shape) == 3
        rows_per = rows_per_frame(shape, reader.header.dtype)
        staging = np.empty(min(rows_per, stop - start) * reader.row_bytes, np.uint8)
        flipped = np.empty(staging.shape[0] if upright else 0, np.uint8)
        reader.skip_rows(start)
        for row0 in range(start, stop, rows_per):
            k = min(rows_per, stop - row0)
            chunk = staging[: k * reader.row_bytes]
            reader.read_rows(chunk)
            yield row0, _transpose_rows(chunk, shape, flipped) if upright else chunk
        if stop == reader.rows:
            reader.finish()


def _gather(fd: int, offset: int, row_bytes: int, rows: np.ndarray, dst: np.ndarray) -> None:
    """``dst[j] = row rows[j]`` of the uncompressed file ``fd``, read in file order."""
    view = memoryview(dst)
    for j in np.argsort(rows, kind="stable").tolist():
        pos = offset + int(rows[j]) * row_bytes
        part = view[j * row_bytes : (j + 1) * row_bytes]
        if hasattr(os, "preadv"):
            got = os.preadv(fd, [part], pos)
        else:  # pragma: no cover - Windows
            os.lseek(fd, pos, os.SEEK_SET)
            got = os.readv(fd, [part])
        if got != row_bytes:
            raise CorruptEntry(f"short read at byte {pos}")


def iter_batches(path: Path, labels: np.ndarray, n_labels: int, batch_size: int, *, select,
                 shuffle=False, seed=None, drop_remainder=False, upright=False, dtype=None,
                 normalize=False, mean=None, std=None, layout=None, cache=True, cache_dir=None,
                 max_memory=None, dataset=None, one_hot=None, label_row_bytes=1,
                 labels_name="labels", permute=None, conv: Conversion | None = None):
    """Batches of rows ``select(n)`` of ``path`` with the matching ``labels`` (already sliced).

    ``permute(k)`` (shuffled passes) gives the row offsets to visit among the ``k`` selected rows;
    default ``default_rng(seed).permutation(k)`` (``datasets._shard`` makes the sharded ones).

    Checks what it can (shapes, counts, ``max_memory``) now, and returns the generator. A
    :class:`~fastidx._conversion.Conversion` ``conv`` stands for the loose ``dtype, normalize,
    mean, std, layout``.
    """
    import tempfile

    if conv is not None:
        dtype, normalize, mean, std, layout = conv.options().values()

    source = Source(path, upright=upright, cache_dir=cache_dir, dataset=dataset) if cache else None
    frames = source.ensure_frames() if source is not None else None
    if frames is not None:
        shape, stored = frames.header.shape, frames.header.dtype
    else:
        head = _idx.read_header(path)
        shape, stored = head.shape, head.dtype
        if upright and len(shape) == 3:
            shape = (shape[0], shape[2], shape[1])
    try:
        n = shape[0]
        if n != n_labels:
            from ._errors import IDXError

            raise IDXError(str(path), f"holds {n} images but {labels_name} holds {n_labels} labels")
        target, table = conversion(stored, dtype, normalize, mean, std)
        _idx.layout_shape((0,) + tuple(shape[1:]), layout)
        start, stop = select(n)
        row_bytes = math.prod(shape[1:]) * stored.itemsize
        batch = min(batch_size, max(stop - start, 0))
        need = (
            batch * (math.prod(shape[1:]) * target.itemsize + label_row_bytes)
            + labels.nbytes
            + (batch * row_bytes + (stop - start) * 8 if shuffle
               else rows_per_frame(shape, stored) * row_bytes)
        )
        check_budget(need, max_memory, f"a batch of {batch} rows with its buffers")
    except BaseException:
        if frames is not None:
            frames.close()
        raise

    def make(b0, b1):
        return Output(shape, stored, b0, b1, target, table, layout)

    def labels_of(rows):
        y = labels[rows]
        return one_hot(y) if one_hot is not None else y

    def sequential():
        try:
            chunks = (frames.iter_rows(start, stop) if frames is not None
                      else _source_chunks(path, upright, start, stop))
            b = start
            if b >= stop or (drop_remainder and b + batch_size > stop):
                return
            out = make(b, min(b + batch_size, stop))
            for row0, chunk in chunks:
                end = row0 + (chunk.shape[0] // row_bytes if row_bytes else 0)
                while True:
                    out.put(row0, chunk)
                    if out.stop > end:
                        break
                    yield out.array, labels_of(slice(out.start - start, out.stop - start))
                    b = out.stop
                    if b >= stop or (drop_remainder and b + batch_size > stop):
                        return
                    out = make(b, min(b + batch_size, stop))
        finally:
            if frames is not None:
                frames.close()

    def shuffled():
        temp = None
        try:
            opened = None
            if source is not None:
                def convert(stored_dtype):
                    return stored_dtype, None

                opened = source.ensure_raw("native", convert)
            if opened is not None:
                fd, header = opened
                offset = header.data_offset
            else:
                temp = tempfile.TemporaryFile()
                writer = _RawWriter(temp)
                stream_source(path, upright=upright, writer_for=lambda header: writer)
                writer.close()
                fd, offset = temp.fileno(), 0
            if permute is None:
                order = start + np.random.default_rng(seed).permutation(stop - start)
            else:
                order = start + permute(stop - start)
            rows = np.empty(batch * row_bytes, np.uint8)
            for b in range(0, order.shape[0], batch_size):
                pick = order[b : b + batch_size]
                if drop_remainder and pick.shape[0] < batch_size:
                    return
                k = pick.shape[0]
                _gather(fd, offset, row_bytes, pick, rows[: k * row_bytes])
                out = make(0, k)
                out.put(0, rows[: k * row_bytes])
                yield out.array, labels_of(pick - start)
        finally:
            if frames is not None:
                frames.close()
            if temp is not None:
                temp.close()
            elif opened is not None:
                os.close(fd)

    return shuffled() if shuffle else sequential()
