"""One source IDX file as the cache sees it: its content hash, variant and entries; builds each
entry once per content, across threads (build locks) and processes."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import CacheDirError, warn_cache
from . import identity
from .frames import Frames
from .format import KIND_RAW, CorruptEntry, entry_name, open_header, raw_name
from .layout import decoded_dir, own_dir, reclaim_temps, unwritable
from .raw import check_raw, stamp_raw, write_raw
from .stream import Output, stream_source

if TYPE_CHECKING:
    from .._lock import FileLock

# A warm load (everything in place) imports neither the writer, the lock nor the temporary
# files: they are imported where something is built.

_LOCK_TIMEOUT = 600.0


class Source:
    """One source IDX file as the cache sees it: its content hash, variant and entries."""

    def __init__(self, path: Path, *, upright: bool, cache_dir=None, dataset=None):
        self.path = Path(path)
        self.variant = "upright" if upright else "stored"
        self.upright = upright
        self.dataset = dataset
        self.directory = own_dir(decoded_dir(cache_dir), create=False)
        self._cache_dir = cache_dir
        self._digest = None
        self._identity = None
        self._damaged = None  # (path, reason) of an unusable cache file met on the way
        self._no_write = False  # writing failed (and was reported) once: this load reads only

    @property
    def root(self) -> Path:
        """The cache root, whose fetch manifest may know the source's digest."""
        from .._paths import cache_root

        return Path(os.path.abspath(cache_root(self._cache_dir)))

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest, self._identity = identity.source_digest(self.path, self.directory, self.root)
        return self._digest

    @property
    def entry_path(self) -> Path:
        return self.directory / entry_name(self.digest, self.variant)

    @property
    def frames_key(self) -> str:
        """Names the build lock and temporary files of this source's frames entry: its path, so
        that a first load need not hash the source before taking the lock."""
        return f"{identity.record_path(self.path, self.directory)[1].stem}.{self.variant}.fidx"

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

    def _cannot_write(self, exc: OSError, what: str) -> None:
        """Warn that the cache cannot be written (this load then only reads); raise ``exc`` if
        it is not that kind of error (see :func:`.layout.unwritable`)."""
        if not unwritable(exc):
            raise exc
        self._warn(f"{what} ({exc.strerror or exc})")

    def _lock(self, name: str) -> FileLock | None:
        """The build lock of ``name``, held (stale temporary files of ``name`` reclaimed); None
        when the cache cannot be written (warned). A symlink in the layout raises."""
        from .._paths import writable_dir

        if self._no_write:
            return None
        try:
            own_dir(writable_dir(self.directory), create=False)
            from .._lock import FileLock

            lock = FileLock(own_dir(self.directory / "locks") / f"{name}.lock")
            if lock.acquire(_LOCK_TIMEOUT):
                reclaim_temps(self.directory, name)
            return lock
        except OSError as exc:
            if not unwritable(exc):
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
            self._digest, self._identity = identity.known_digest(self.path, self.directory, self.root)
            if self._digest is None and not identity.record_path(self.path, self.directory)[1].exists():
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
        if identity.record_path(self.path, self.directory)[1].exists():
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
        from .._atomic import new_temp
        from .hashing import HashingReader
        from .writer import EntryWriter, frames_meta

        self._warn()
        writer = None
        source = self.path if hashed else HashingReader(self.path)
        digest = self.digest if hashed else None

        def writer_for(header):
            nonlocal writer
            final = self.directory / entry_name(digest, self.variant) if hashed else None
            try:
                fd, tmp = new_temp(self.directory / self.frames_key)
            except OSError as exc:
                self._cannot_write(exc, f"could not create a cache file in {self.directory}")
                return None
            meta = frames_meta(header, digest, self.variant, self.path, self.dataset)
            writer = EntryWriter(lock, fd, tmp, final, header, meta, None if hashed else (
                self.path, self._identity, self.directory, self.variant, source))
            return writer

        try:
            try:
                out = stream_source(source, upright=self.upright, make_output=make_output,
                                    writer_for=writer_for)
            finally:
                if not hashed:
                    source.close()
            changed = identity.stat_identity(self.path) != self._identity
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
                    from .._atomic import atomic_write
                    from .writer import enforce_budget

                    with atomic_write(path) as f:
                        write_raw(f, frames, target, table, conversion, options)
                    stamp_raw(path)
                    enforce_budget(path, keep=(self.entry_path.name,))
                    opened = self.open_raw(conversion)
            finally:
                lock.release()
        except OSError as exc:
            self._cannot_write(exc, f"could not write the uncompressed cache file {path}")
            return None
        finally:
            frames.close()
            from .._memlimit import release_free_memory

            release_free_memory()
        return opened
