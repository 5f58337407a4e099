"""The cache never harms what is not its own and never trusts what changed: clear() and prune()
never follow symlinks, uncompressed files are re-checked when their stat changes, nested JSON and
killed builds are handled, the size budget evicts least recently used files, raw files first."""

from __future__ import annotations

import json
import os
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

import cache_data
import fastidx
import fastidx._lock
from fastidx import _cache, cache
from fastidx._errors import CacheDirError, CacheLayoutError, CacheWarning
from fastidx.datasets import mnist

SHAPE = (6, 5)
VICTIM = b"precious data outside the cache\n"


def write_dataset(directory: Path, n=120, seed=0) -> dict:
    return cache_data.write_dataset(directory, SHAPE, n, n // 4, seed)


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data", write_dataset(tmp_path / "data")


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory that is not the cache, with a file that must survive."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "victim.json").write_bytes(VICTIM)
    (path / "0123456789abcdef0123456789abcdef.json").write_bytes(VICTIM)  # a source-index name
    return path


def untouched(outside: Path) -> bool:
    return sorted(p.name for p in outside.iterdir()) == [
        "0123456789abcdef0123456789abcdef.json", "victim.json"] and all(
        p.read_bytes() == VICTIM for p in outside.iterdir())


# --- item 1: clear() never follows symlinks ------------------------------------------------------


@pytest.mark.parametrize("where", ["sources", "stamps", "locks"])
def test_clear_refuses_a_symlinked_directory_of_the_layout(data, tmp_path, outside, where):
    directory, _ = data
    cache_dir = tmp_path / "c"
    mnist.load_data(directory, cache_dir=cache_dir, mmap=True)
    _cache.wait_for_writers()
    sub = cache_dir / "decoded" / where
    if sub.exists():
        for p in sub.iterdir():
            p.unlink()
        sub.rmdir()
    sub.symlink_to(outside)
    before = sorted(p.name for p in (cache_dir / "decoded").iterdir())
    with pytest.raises(CacheDirError, match=where):
        cache.clear(cache_dir=cache_dir)
    assert untouched(outside)
    assert sorted(p.name for p in (cache_dir / "decoded").iterdir()) == before  # nothing deleted
    with pytest.raises(CacheLayoutError):
        cache.prune(0, cache_dir=cache_dir)
    assert untouched(outside)


def test_clear_refuses_a_symlinked_decoded_directory(data, tmp_path, outside):
    directory, _ = data
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "decoded").symlink_to(outside)
    with pytest.raises(CacheDirError, match="decoded"):
        cache.clear(cache_dir=tmp_path / "c")
    with pytest.raises(CacheDirError, match="decoded"):
        mnist.load("train", directory, cache_dir=tmp_path / "c")  # loads refuse it too
    assert untouched(outside)


def test_clear_deletes_only_names_fastidx_creates(data, tmp_path, outside):
    directory, _ = data
    cache_dir = tmp_path / "c"
    mnist.load_data(directory, cache_dir=cache_dir)
    decoded = cache_dir / "decoded"
    (decoded / "notes.txt").write_bytes(b"mine")
    (decoded / ("a" * 64 + ".stored.fidx.bak")).write_bytes(b"mine")
    (decoded / ("b" * 64 + ".stored.fidx")).symlink_to(outside / "victim.json")
    result = cache.clear(cache_dir=cache_dir)
    assert result.files == 4  # the entries; never the lock files
    assert untouched(outside)
    assert sorted(p.name for p in decoded.iterdir() if p.is_file() or p.is_symlink()) == [
        "a" * 64 + ".stored.fidx.bak", "b" * 64 + ".stored.fidx", "notes.txt"]
    assert list((decoded / "locks").iterdir())  # lock files stay: a waiter may hold one


# --- item 5: uncompressed files are re-checked when their stat changes ----------------------------


def _raw(cache_dir: Path, conversion="native") -> Path:
    _cache.wait_for_writers()
    return max((cache_dir / "decoded").glob(f"*.{conversion}.raw"), key=lambda p: p.stat().st_size)


def _flip_in_place(path: Path, offset: int, keep_mtime: bool) -> None:
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["new-mtime", "mtime-restored"])
@pytest.mark.parametrize("how", ["mmap", "shuffled"])
def test_a_flipped_bit_in_an_uncompressed_file_is_detected_and_rebuilt(data, tmp_path, keep_mtime,
                                                                       how):
    directory, arrays = data
    cache_dir = tmp_path / "c"
    images = arrays["train-images-idx3-ubyte.gz"]
    mnist.load("train", directory, cache_dir=cache_dir, mmap=True)
    raw = _raw(cache_dir)
    for flip in range(3):  # every later rewrite is noticed too
        _flip_in_place(raw, raw.stat().st_size - 1 - 7 * flip, keep_mtime)
        with pytest.warns(CacheWarning, match="changed since it was written"):
            if how == "mmap":
                x, _ = mnist.load("train", directory, cache_dir=cache_dir, mmap=True)
            else:
                batches = mnist.iter_batches("train", 50, path=directory, cache_dir=cache_dir,
                                             shuffle=True, seed=flip)
                x = np.concatenate([b for b, _ in batches])
                x = x[np.argsort([bytes(r) for r in x])]
                images = images[np.argsort([bytes(r) for r in images])]
        assert x.tobytes() == images.tobytes()
        raw = _raw(cache_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mnist.load("train", directory, cache_dir=cache_dir, mmap=True)  # healthy: no warning


def test_an_unchanged_copy_of_an_uncompressed_file_is_verified_once_then_trusted(data, tmp_path):
    directory, arrays = data
    cache_dir = tmp_path / "c"
    mnist.load("train", directory, cache_dir=cache_dir, mmap=True, normalize=True)
    raw = _raw(cache_dir, "x*")
    copy = raw.with_name("copy")
    copy.write_bytes(raw.read_bytes())
    os.replace(copy, raw)  # same bytes, new inode: re-verified by its CRC, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, _ = mnist.load("train", directory, cache_dir=cache_dir, mmap=True, normalize=True)
    assert x.tobytes() == (arrays["train-images-idx3-ubyte.gz"] / np.float32(255)).tobytes()
    stamp = json.loads((cache_dir / "decoded" / "stamps" / f"{raw.name}.json").read_bytes())
    assert stamp["stat"][1] == raw.stat().st_ino


# --- item 12: deeply nested JSON -----------------------------------------------------------------


def _nested_header(path: Path) -> None:
    """Replace the header's metadata by valid, deeply nested JSON with a correct CRC."""
    data = bytearray(path.read_bytes())
    magic, version, kind, meta_len, crc, offset = _cache.format._FIXED.unpack_from(data)
    blob = b"[" * 100_000 + b"]" * 100_000
    offset = -(-(_cache.format._FIXED.size + len(blob)) // 64) * 64
    head = _cache.format._FIXED.pack(magic, version, kind, len(blob), zlib.crc32(blob), offset) + blob
    path.write_bytes(head + bytes(offset - len(head)))


def test_deeply_nested_json_in_a_header_is_damage_not_a_recursion_error(data, tmp_path):
    directory, arrays = data
    cache_dir = tmp_path / "c"
    mnist.load("train", directory, cache_dir=cache_dir)
    _cache.wait_for_writers()
    entry = max((cache_dir / "decoded").glob("*.fidx"), key=lambda p: p.stat().st_size)
    _nested_header(entry)
    results = cache.verify(cache_dir)
    assert [r.path for r in results if not r.ok] == [entry]
    assert "nested" in next(r.reason for r in results if not r.ok)
    assert entry.name not in {e.path.name for e in cache.list_entries(cache_dir)}
    with pytest.warns(CacheWarning, match="rebuilding"):
        x, _ = mnist.load("train", directory, cache_dir=cache_dir)
    assert x.tobytes() == arrays["train-images-idx3-ubyte.gz"].tobytes()


def test_deeply_nested_json_in_the_source_index_is_ignored(data, tmp_path):
    directory, arrays = data
    cache_dir = tmp_path / "c"
    mnist.load("train", directory, cache_dir=cache_dir)
    for record in (cache_dir / "decoded" / "sources").glob("*.json"):
        record.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    x, _ = mnist.load("train", directory, cache_dir=cache_dir)  # re-hashes, rewrites the record
    assert x.tobytes() == arrays["train-images-idx3-ubyte.gz"].tobytes()
    record = next((cache_dir / "decoded" / "sources").glob("*.json"))
    assert json.loads(record.read_bytes())["sha256"]


# --- item 13: temporary files of killed builds -----------------------------------------------------


def test_stale_temporary_files_are_reclaimed_by_the_next_build_of_the_entry(data, tmp_path):
    directory, _ = data
    cache_dir = tmp_path / "c"
    mnist.load("train", directory, cache_dir=cache_dir, mmap=True)
    _cache.wait_for_writers()
    decoded = cache_dir / "decoded"
    # Temporary files are named after what they become: a raw file's name, or for frames the
    # key of the source (its path), since a first load names the entry only once it is hashed.
    keys = [_cache.Source(directory / name, upright=False, cache_dir=cache_dir).frames_key
            for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")]
    entries = keys + sorted(p.name for p in decoded.glob("*.raw"))
    leftovers = [decoded / f".{name}.{i:012x}.tmp" for name in entries for i in range(2)]
    for path in leftovers:  # what killed builders leave behind
        path.write_bytes(b"x" * 1000)
    unrelated = decoded / ".notes.000000000000.tmp"
    unrelated.write_bytes(b"not a temporary file of an entry")
    cache.clear(cache_dir=cache_dir)  # they are young: clear() leaves them to their writers
    assert all(p.exists() for p in leftovers)
    mnist.load("train", directory, cache_dir=cache_dir, mmap=True)  # rebuilds every entry
    _cache.wait_for_writers()
    assert not [p for p in leftovers if p.exists()]
    assert unrelated.exists()


def test_a_build_killed_part_way_leaves_nothing_a_later_load_trusts(data, tmp_path):
    import subprocess
    import sys

    directory, arrays = data
    cache_dir = tmp_path / "c"
    code = (
        "import os, sys\n"
        "from fastidx import _cache\n"
        "from fastidx.datasets import mnist\n"
        "real = _cache.writer.EntryWriter._write_all\n"
        "def dying(self):\n"
        "    self._file.write(b'partial frames')\n"
        "    self._file.flush()\n"
        "    os._exit(9)\n"
        "_cache.writer.EntryWriter._write_all = dying\n"
        f"mnist.load('train', {str(directory)!r}, cache_dir={str(cache_dir)!r})\n"
        "_cache.wait_for_writers()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=120)
    assert done.returncode == 9
    decoded = cache_dir / "decoded"
    assert list(decoded.glob(".*.tmp")) and not list(decoded.glob("*.fidx"))
    x, _ = mnist.load("train", directory, cache_dir=cache_dir)
    _cache.wait_for_writers()
    assert x.tobytes() == arrays["train-images-idx3-ubyte.gz"].tobytes()
    assert not list(decoded.glob(".*.tmp")) and len(list(decoded.glob("*.fidx"))) == 2


# --- item 17: the size budget --------------------------------------------------------------------


def _age(path: Path, seconds_ago: float) -> None:
    stamp = time.time() - seconds_ago
    os.utime(path, (stamp, stamp))


def test_prune_evicts_least_recently_used_uncompressed_files_first(data, tmp_path):
    directory, _ = data
    cache_dir = tmp_path / "c"
    mnist.load("train", directory, cache_dir=cache_dir, mmap=True)
    mnist.load("train", directory, cache_dir=cache_dir, mmap=True, normalize=True)
    _cache.wait_for_writers()
    decoded = cache_dir / "decoded"
    native = _raw(cache_dir)  # the images' uint8 file
    labels = min(decoded.glob("*.native.raw"), key=lambda p: p.stat().st_size)
    converted = _raw(cache_dir, "x*")
    frames = sorted(decoded.glob("*.fidx"), key=lambda p: p.stat().st_size)
    _age(converted, 3000)  # the least recently used raw file
    _age(native, 2000)
    for p in frames:
        _age(p, 9000)  # older, but compressed: they go last
    sizes = {p.name: p.stat().st_size for p in decoded.iterdir() if p.is_file()}
    total = sum(sizes.values())
    result = cache.prune(total - 1, cache_dir=cache_dir)
    assert [e.path.name for e in result.removed] == [converted.name]
    assert result.bytes == sizes[converted.name] and result.remaining_bytes == total - result.bytes
    result = cache.prune(sizes[frames[-1].name] + sizes[frames[0].name], cache_dir=cache_dir)
    assert [e.path.name for e in result.removed] == [native.name, labels.name]  # oldest use first
    result = cache.prune(sizes[frames[-1].name], cache_dir=cache_dir)
    assert [e.kind for e in result.removed] == ["frames"]
    assert result.remaining_bytes <= sizes[frames[-1].name]
    assert not (decoded / "stamps" / f"{native.name}.json").exists()


def test_the_budget_applies_after_each_write_from_env_or_setting(data, tmp_path, monkeypatch):
    directory, arrays = data
    cache_dir = tmp_path / "c"
    assert cache.max_size(cache_dir) == cache.DEFAULT_MAX_SIZE
    cache.set_max_size("1KiB", cache_dir=cache_dir)
    assert cache.max_size(cache_dir) == 1024
    monkeypatch.setenv(cache.ENV_MAX_SIZE, "unlimited")
    assert cache.max_size(cache_dir) is None
    monkeypatch.setenv(cache.ENV_MAX_SIZE, "5kb")
    assert cache.max_size(cache_dir) == 5000
    x, _ = mnist.load("train", directory, cache_dir=cache_dir, mmap=True)
    _cache.wait_for_writers()
    assert x.tobytes() == arrays["train-images-idx3-ubyte.gz"].tobytes()
    kept = cache.list_entries(cache_dir)
    # Over budget: everything but the last file written (the images' uncompressed file) and the
    # frames it was made from is evicted.
    assert sum(e.size for e in kept) > 5000
    assert sorted((e.source_name, e.kind) for e in kept) == [
        ("train-images-idx3-ubyte.gz", "frames"), ("train-images-idx3-ubyte.gz", "raw")]
    monkeypatch.setenv(cache.ENV_MAX_SIZE, "lots")
    with pytest.raises(ValueError, match=cache.ENV_MAX_SIZE):
        cache.max_size(cache_dir)


# --- item 18: entries say what distinguishes them; locks are never counted ------------------------


def test_entries_of_one_source_are_told_apart_and_locks_never_counted(data, tmp_path):
    directory, _ = data
    cache_dir = tmp_path / "c"
    mnist.load("train", directory, cache_dir=cache_dir, mmap=True, normalize=True)
    mnist.load("train", directory, cache_dir=cache_dir, mmap=True, mean=0.1307, std=0.3081)
    images = [e for e in cache.list_entries(cache_dir)
              if e.source_name.startswith("train-images") and e.kind == "raw"]
    assert len(images) == 2
    assert len({str(e) for e in images}) == 2
    assert {e.options["normalize"] for e in images} == {True, False}
    assert any("mean=0.1307" in e.description and "std=0.3081" in e.description for e in images)
    summary = cache.info(cache_dir)
    entries = cache.list_entries(cache_dir)
    assert summary.entries == len(entries) == 2 + 2 + 1  # frames x2, raw images x2, raw labels
    locks = list((cache_dir / "decoded" / "locks").iterdir())
    assert locks
    assert cache.clear(cache_dir=cache_dir).files == len(entries)


# --- issue 10: the background writer, per-load buffers ---------------------------------------------


class _GatedCompressor:
    """zstandard.ZstdCompressor whose first compress() waits for a gate: the writer lags."""

    gate = None
    real = _cache.writer.zstandard.ZstdCompressor

    def __init__(self, **kwargs):
        self._real = self.real(**kwargs)

    def compress(self, data):
        type(self).gate.wait(60)
        return self._real.compress(data)


def test_an_array_changed_right_after_the_first_load_does_not_change_the_cache(data, tmp_path,
                                                                               monkeypatch):
    import threading

    directory, arrays = data
    images = arrays["train-images-idx3-ubyte.gz"]
    monkeypatch.setattr(_cache.format, "FRAME_BYTES", 7 * SHAPE[0] * SHAPE[1])  # many frames
    _GatedCompressor.gate = threading.Event()
    monkeypatch.setattr(_cache.writer.zstandard, "ZstdCompressor", _GatedCompressor)
    cache_dir = tmp_path / "c"
    x, _ = mnist.load("train", directory, cache_dir=cache_dir)  # returns while the writer waits
    assert x.tobytes() == images.tobytes()
    x[...] = 0  # the caller owns its array at once
    _GatedCompressor.gate.set()
    _cache.wait_for_writers()
    monkeypatch.undo()
    assert all(r.ok for r in cache.verify(cache_dir))
    x2, _ = mnist.load("train", directory, cache_dir=cache_dir)
    assert x2.tobytes() == images.tobytes()


def test_a_load_during_a_background_write_waits_for_the_whole_entry(data, tmp_path, monkeypatch):
    import threading

    directory, arrays = data
    images = arrays["train-images-idx3-ubyte.gz"]
    _GatedCompressor.gate = threading.Event()
    monkeypatch.setattr(_cache.writer.zstandard, "ZstdCompressor", _GatedCompressor)
    builds = []
    real_build = _cache.Source._build
    monkeypatch.setattr(_cache.Source, "_build",
                        lambda self, *a, **k: builds.append(self.path.name) or real_build(self, *a, **k))
    cache_dir = tmp_path / "c"
    mnist.load("train", directory, cache_dir=cache_dir)
    opener = threading.Timer(0.2, _GatedCompressor.gate.set)  # the writer resumes later on
    opener.start()
    try:
        x, _ = mnist.load("train", directory, cache_dir=cache_dir, normalize=True)
    finally:
        opener.join()
    assert x.tobytes() == (images / np.float32(255)).tobytes()
    assert sorted(builds) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


def test_a_warm_load_leaves_no_buffers_behind(tmp_path):
    import gc
    import tracemalloc

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4000, 28, 28), dtype=np.uint8)  # about 3 frames of 1 MiB
    (tmp_path / "d").mkdir()
    fastidx.write_idx(tmp_path / "d" / "train-images-idx3-ubyte.gz", images)
    fastidx.write_idx(tmp_path / "d" / "train-labels-idx1-ubyte.gz", np.zeros(4000, np.uint8))
    fastidx.write_idx(tmp_path / "d" / "t10k-images-idx3-ubyte.gz", images[:10])
    fastidx.write_idx(tmp_path / "d" / "t10k-labels-idx1-ubyte.gz", np.zeros(10, np.uint8))
    mnist.load("train", tmp_path / "d", cache_dir=tmp_path / "c")
    _cache.wait_for_writers()
    tracemalloc.start()
    try:
        x, _ = mnist.load("train", tmp_path / "d", cache_dir=tmp_path / "c", normalize=True)
        assert x.tobytes() == (images / np.float32(255)).tobytes()
        del x
        gc.collect()
        left, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert left < _cache.FRAME_BYTES // 2, f"{left:,} bytes still allocated after the load"


def test_a_warm_load_takes_no_lock_and_writes_nothing(data, tmp_path, monkeypatch):
    directory, arrays = data
    cache_dir = tmp_path / "c"
    monkeypatch.setattr(_cache.identity, "RACY_NS", -(10**18))  # trust the stat index at once
    mnist.load("train", directory, cache_dir=cache_dir, normalize=True)
    _cache.wait_for_writers()

    def snapshot():
        return sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size)
                      for p in cache_dir.rglob("*") if p.is_file())

    before = snapshot()

    def no_lock(*args, **kwargs):
        raise AssertionError("a warm load took a lock")

    stats = []
    real_identity = _cache.identity.stat_identity
    monkeypatch.setattr(fastidx._lock.FileLock, "acquire", no_lock)
    monkeypatch.setattr(_cache.identity, "stat_identity", lambda path: stats.append(path) or real_identity(path))
    x, _ = mnist.load("train", directory, cache_dir=cache_dir, normalize=True)
    assert x.tobytes() == (arrays["train-images-idx3-ubyte.gz"] / np.float32(255)).tobytes()
    assert snapshot() == before
    assert len(stats) == 2  # one stat per source file (images, labels)


def test_the_entry_is_keyed_by_the_bytes_decoded_even_if_the_source_changes_meanwhile(
        data, tmp_path, monkeypatch):
    """The background writer hashes the source after the load returned: it must hash the bytes
    that were decoded, not the file as it is by then (here rewritten with the same stat)."""
    import threading

    directory, arrays = data
    name = directory / "train-images-idx3-ubyte.gz"
    gate = threading.Event()
    real = _cache.writer.EntryWriter._name_by_content
    monkeypatch.setattr(_cache.writer.EntryWriter, "_name_by_content",
                        lambda self: gate.wait(60) and real(self))
    cache_dir = tmp_path / "c"
    x, _ = mnist.load("train", directory, cache_dir=cache_dir)
    frozen = _cache.identity.stat_identity(name)
    new = arrays["train-images-idx3-ubyte.gz"][::-1].copy()
    fastidx.write_idx(name, new)  # same size; its stat is made to look unchanged below
    monkeypatch.setattr(_cache.identity, "stat_identity", lambda path: frozen if path == name else
                        [0, 0, 0, 0, 0])
    gate.set()
    _cache.wait_for_writers()
    x, _ = mnist.load("train", directory, cache_dir=cache_dir)
    assert x.tobytes() == new.tobytes()
