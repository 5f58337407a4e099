"""The decoded-array cache: cached, uncached and memory-mapped loads agree for every option; entries
follow their source's content; damaged entries are rebuilt with a warning; cache management."""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

import cache_data
import fastidx
from fastidx import _cache, cache
from fastidx.cache import CacheWarning, MemoryLimitError
from fastidx.datasets import emnist, mnist

SHAPE = (7, 5)  # small, non-square images: a transposition or layout mix-up shows


def write_dataset(directory: Path, n_train=300, n_test=50, seed=0, names=None) -> dict:
    """Official-name gz IDX files in ``directory``; returns the arrays written."""
    return cache_data.write_dataset(directory, SHAPE, n_train, n_test, seed, names)


@pytest.fixture
def small_frames(monkeypatch):
    """Frames of 14 rows, so that small test files have many frames."""
    monkeypatch.setattr(_cache.format, "FRAME_BYTES", 14 * SHAPE[0] * SHAPE[1])


@pytest.fixture
def data(tmp_path, small_frames):
    directory = tmp_path / "data"
    return directory, write_dataset(directory)


def expected(x: np.ndarray, y: np.ndarray, options: dict):
    """What each option means, as the NumPy idioms people write."""
    dtype = options.get("dtype")
    transform = options.get("normalize") or "mean" in options or "std" in options
    if transform:
        t = np.dtype(dtype or np.float32)
        x = x.astype(t)
        x = x / t.type(255)  # mean/std imply the [0, 1] scale
        if "mean" in options:
            x = x - t.type(options["mean"])
        if "std" in options:
            x = x / t.type(options["std"])
    elif dtype is not None:
        x = x.astype(dtype)
    layout = options.get("layout")
    if layout == "NHWC":
        x = x[..., None]
    elif layout == "NCHW":
        x = x[:, None]
    elif layout == "flat":
        x = x.reshape(len(x), -1)
    if options.get("one_hot"):
        y = np.eye(10, dtype="float32")[y]
    return x, y


OPTIONS = [
    {},
    {"dtype": "float32"},
    {"dtype": "int16"},
    {"normalize": True},
    {"normalize": True, "dtype": "float64"},
    {"normalize": True, "dtype": "float16"},
    {"mean": 33.3, "std": 78.5},
    {"normalize": True, "mean": 0.1307, "std": 0.3081},
    {"layout": "NHWC"},
    {"layout": "NCHW", "normalize": True},
    {"layout": "flat", "dtype": "float32"},
    {"one_hot": True, "normalize": True},
]


def assert_same(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()  # bit for bit, NaN-safe


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_cached_uncached_and_mmap_loads_are_identical(data, tmp_path, options):
    directory, arrays = data
    cache_dir = tmp_path / "cache"
    runs = {
        "uncached": dict(cache=False),
        "first (builds the cache)": dict(cache_dir=cache_dir),
        "cached": dict(cache_dir=cache_dir),
        "mmap (builds the file)": dict(cache_dir=cache_dir, mmap=True),
        "mmap": dict(cache_dir=cache_dir, mmap=True),
    }
    for split in ("train", "test"):
        want = expected(arrays[f"{split}_images"], arrays[f"{split}_labels"], options)
        for name, how in runs.items():
            got = mnist.load(split, directory, **options, **how)
            for g, w in zip(got, want):
                assert_same(g, w)
                assert g.flags.c_contiguous and g.flags.writeable, name


def test_load_data_is_load_of_both_splits(data, tmp_path):
    directory, arrays = data
    (x, y), (xt, yt) = mnist.load_data(directory, cache_dir=tmp_path / "c")
    assert_same(x, arrays["train_images"])
    assert_same(y, arrays["train_labels"])
    assert_same(xt, arrays["test_images"])
    assert_same(yt, arrays["test_labels"])


def test_first_load_writes_one_entry_per_source_and_no_temporary_file(data, tmp_path):
    directory, _ = data
    mnist.load_data(directory, cache_dir=tmp_path / "c", normalize=True)
    _cache.wait_for_writers()  # entries are written on a background thread
    decoded = tmp_path / "c" / "decoded"
    assert len(list(decoded.glob("*.fidx"))) == 4
    assert not list(decoded.glob(".*"))
    assert not list(decoded.glob("*.raw"))  # uncompressed files only for mmap / shuffling
    assert all(r.ok for r in cache.verify(tmp_path / "c"))


def test_cached_load_does_not_read_the_source(data, tmp_path, monkeypatch):
    directory, arrays = data
    mnist.load("train", directory, cache_dir=tmp_path / "c")
    monkeypatch.setattr(_cache.identity, "RACY_NS", -(10**18))  # trust the stat index at once
    mnist.load("train", directory, cache_dir=tmp_path / "c")  # records the stat index

    def no_decoding(*args, **kwargs):
        raise AssertionError("the source was decoded again")

    monkeypatch.setattr(fastidx._idx, "IDXReader", no_decoding)
    monkeypatch.setattr(hashlib, "file_digest", no_decoding)
    x, _ = mnist.load("train", directory, cache_dir=tmp_path / "c", normalize=True)
    assert_same(x, arrays["train_images"] / np.float32(255))


# ---------------------------------------------------------------------------------------------
# Invalidation.


def test_a_rewritten_source_is_never_served_stale(data, tmp_path):
    directory, arrays = data
    cache_dir = tmp_path / "c"
    x, _ = mnist.load("train", directory, cache_dir=cache_dir)
    assert_same(x, arrays["train_images"])
    new = 255 - arrays["train_images"]
    fastidx.write_idx(directory / "train-images-idx3-ubyte.gz", new)  # same name, new content
    x, _ = mnist.load("train", directory, cache_dir=cache_dir)
    assert_same(x, new)
    x, _ = mnist.load("train", directory, cache_dir=cache_dir, mmap=True)
    assert_same(x, new)


def test_an_in_place_rewrite_of_the_same_size_is_detected(data, tmp_path):
    """Same inode, same size, and possibly the same timestamp tick: the racy-stat guard re-hashes."""
    directory, arrays = data
    cache_dir = tmp_path / "c"
    name = directory / "train-images-idx3-ubyte"  # uncompressed, so a pixel can be patched in place
    fastidx.write_idx(name, arrays["train_images"])
    (directory / "train-images-idx3-ubyte.gz").unlink()
    x, _ = mnist.load("train", directory, cache_dir=cache_dir)
    mnist.load("train", directory, cache_dir=cache_dir)  # the stat index now knows the file
    stat = os.stat(name)
    with open(name, "r+b") as f:
        f.seek(16)
        f.write(bytes([arrays["train_images"][0, 0, 0] ^ 0xFF]))
    os.utime(name, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime
    x, _ = mnist.load("train", directory, cache_dir=cache_dir)
    assert x[0, 0, 0] == arrays["train_images"][0, 0, 0] ^ 0xFF
    assert_same(x[1:], arrays["train_images"][1:])


def test_a_rewrite_within_one_timestamp_tick_is_detected(data, tmp_path, monkeypatch):
    """A rewrite can leave every stat field as it was (same inode and size, mtime and ctime within
    one clock tick): a stat record taken too soon after the file's last change is not trusted
    (here every record is too soon, whatever the machine's speed)."""
    directory, arrays = data
    cache_dir = tmp_path / "c"
    name = directory / "train-images-idx3-ubyte.gz"
    monkeypatch.setattr(_cache.identity, "RACY_NS", 10**15)
    monkeypatch.setattr(_cache.identity, "RACY_FINE_NS", 10**15)
    mnist.load("train", directory, cache_dir=cache_dir)
    frozen = _cache.identity.stat_identity(name)
    monkeypatch.setattr(_cache.identity, "stat_identity", lambda path: frozen if path == name else
                        [0, 0, 0, 0, 0])
    new = arrays["train_images"][::-1].copy()
    fastidx.write_idx(name, new)
    x, _ = mnist.load("train", directory, cache_dir=cache_dir)
    assert_same(x, new)


def test_a_source_changing_during_the_first_load_is_not_cached(data, tmp_path, monkeypatch):
    directory, arrays = data
    name = directory / "train-images-idx3-ubyte.gz"
    real = _cache.identity.stat_identity
    calls = []

    def drifting(path):  # the file's identity changes after it was hashed
        ident = real(path)
        if path != name:
            return ident
        calls.append(path)
        return ident if len(calls) == 1 else ident[:3] + [ident[3] + 1, ident[4]]

    monkeypatch.setattr(_cache.identity, "stat_identity", drifting)
    with pytest.warns(CacheWarning, match="changed while it was being read"):
        x, _ = mnist.load("train", directory, cache_dir=tmp_path / "c")
    assert_same(x, arrays["train_images"])
    _cache.wait_for_writers()
    assert len(list((tmp_path / "c" / "decoded").glob("*.fidx"))) == 1  # the labels only


def test_entries_are_shared_by_identical_files_and_keyed_by_content(tmp_path, small_frames):
    a = write_dataset(tmp_path / "a", seed=1)
    write_dataset(tmp_path / "b", seed=1)
    mnist.load("train", tmp_path / "a", cache_dir=tmp_path / "c")
    mnist.load("train", tmp_path / "b", cache_dir=tmp_path / "c")
    _cache.wait_for_writers()
    assert len(list((tmp_path / "c" / "decoded").glob("*.fidx"))) == 2  # images + labels
    x, _ = mnist.load("train", tmp_path / "b", cache_dir=tmp_path / "c")
    assert_same(x, a["train_images"])


# ---------------------------------------------------------------------------------------------
# Damage.


def _entry(cache_dir: Path, suffix=".fidx") -> Path:
    """The train-images entry (the biggest file of its kind)."""
    _cache.wait_for_writers()
    return max((cache_dir / "decoded").glob(f"*{suffix}"), key=lambda p: p.stat().st_size)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


def _junk(path):
    path.write_bytes(os.urandom(path.stat().st_size))


def _empty(path):
    path.write_bytes(b"")


def _wrong_version(path):
    data = bytearray(path.read_bytes())
    data[8:12] = struct.pack("<I", _cache.FORMAT_VERSION + 1)
    path.write_bytes(bytes(data))


def _flip_frame_byte(path):
    data = bytearray(path.read_bytes())
    offset = struct.unpack_from("<Q", data, 24)[0]
    data[offset + (len(data) - offset) // 2] ^= 0x55  # inside a frame in the middle
    path.write_bytes(bytes(data))


def _flip_header_byte(path):
    data = bytearray(path.read_bytes())
    data[40] ^= 0x01  # inside the JSON metadata
    path.write_bytes(bytes(data))


def _swap_frames(path):
    """Two frames exchanged: each is intact, but the rows would land in the wrong place."""
    data = bytearray(path.read_bytes())
    header = _cache.read_header(os.open(path, os.O_RDONLY), len(data))
    (_, c0, _, _), (_, c1, _, _) = header.meta["frames"][:2]
    start = header.data_offset
    first, second = data[start : start + c0], data[start + c0 : start + c0 + c1]
    data[start : start + c0 + c1] = second + first
    path.write_bytes(bytes(data))


DAMAGE = [_truncate, _junk, _empty, _wrong_version, _flip_frame_byte, _flip_header_byte,
          _swap_frames]


def _built(data, tmp_path, suffix=".fidx", **options):
    """``(directory, arrays, cache_dir, file)``: the train split loaded once with ``options``
    (its cache file built), ``file`` the cache file ending with ``suffix``."""
    directory, arrays = data
    cache_dir = tmp_path / "c"
    mnist.load("train", directory, cache_dir=cache_dir, **options)
    return directory, arrays, cache_dir, _entry(cache_dir, suffix)


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_a_damaged_entry_is_rebuilt_with_a_warning(data, tmp_path, damage):
    directory, arrays, cache_dir, entry = _built(data, tmp_path)
    damage(entry)
    with pytest.warns(CacheWarning, match="rebuilding it from the source"):
        x, y = mnist.load("train", directory, cache_dir=cache_dir, normalize=True)
    assert_same(x, arrays["train_images"] / np.float32(255))
    assert_same(y, arrays["train_labels"])
    assert all(r.ok for r in cache.verify(cache_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, _ = mnist.load("train", directory, cache_dir=cache_dir)  # healthy again: no warning
    assert_same(x, arrays["train_images"])


@pytest.mark.parametrize("damage", [_truncate, _junk, _wrong_version, _flip_header_byte],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_damaged_uncompressed_file_is_rebuilt_with_a_warning(data, tmp_path, damage):
    directory, arrays, cache_dir, raw = _built(data, tmp_path, ".raw", mmap=True, normalize=True)
    damage(raw)
    with pytest.warns(CacheWarning):
        x, _ = mnist.load("train", directory, cache_dir=cache_dir, mmap=True, normalize=True)
    assert_same(x, arrays["train_images"] / np.float32(255))


def test_verify_finds_a_flipped_payload_byte_that_mmap_does_not_check(data, tmp_path):
    directory, arrays, cache_dir, raw = _built(data, tmp_path, ".raw", mmap=True)
    blob = bytearray(raw.read_bytes())
    blob[-1] ^= 1
    raw.write_bytes(bytes(blob))
    results = cache.verify(cache_dir)
    bad = [r for r in results if not r.ok]
    assert [r.path for r in bad] == [raw] and "checksum" in bad[0].reason
    assert len(results) == len(list((cache_dir / "decoded").glob("*.*"))) - 0
    cache.verify(cache_dir, remove=True)
    assert not raw.exists()
    x, _ = mnist.load("train", directory, cache_dir=cache_dir, mmap=True)
    assert_same(x, arrays["train_images"])


@pytest.mark.parametrize("damage", [_flip_frame_byte, _swap_frames, _truncate, _wrong_version],
                         ids=lambda f: f.__name__.strip("_"))
def test_verify_reports_damaged_frames(data, tmp_path, damage):
    directory, _ = data
    cache_dir = tmp_path / "c"
    mnist.load_data(directory, cache_dir=cache_dir)
    entry = _entry(cache_dir)
    assert all(r.ok for r in cache.verify(cache_dir))
    damage(entry)
    results = cache.verify(cache_dir)
    assert [r.path for r in results if not r.ok] == [entry]
    assert len(results) == 4
    assert entry.name not in {e.path.name for e in cache.list_entries(cache_dir)} or damage in (
        _flip_frame_byte, _swap_frames)  # a damaged header hides the entry from the listing


def test_a_broken_source_leaves_no_entry(tmp_path, small_frames):
    arrays = write_dataset(tmp_path / "d")
    path = tmp_path / "d" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(fastidx.IDXError):
        mnist.load("train", tmp_path / "d", cache_dir=tmp_path / "c")
    _cache.wait_for_writers()
    decoded = tmp_path / "c" / "decoded"
    assert not [p for p in decoded.iterdir() if p.is_file() and "images" not in p.name
                and p.stat().st_size > 25000]
    assert not list(decoded.glob(".*.tmp"))
    assert len(list(decoded.glob("*.fidx"))) == 1  # the labels only
    del arrays


# ---------------------------------------------------------------------------------------------
# Memory maps.


def test_mmap_writes_stay_private(data, tmp_path):
    directory, arrays = data
    cache_dir = tmp_path / "c"
    x, y = mnist.load("train", directory, cache_dir=cache_dir, mmap=True, normalize=True)
    raw = _entry(cache_dir, ".raw")
    before = raw.read_bytes()
    x[...] = 7.0
    y[...] = 3
    assert raw.read_bytes() == before
    x2, y2 = mnist.load("train", directory, cache_dir=cache_dir, mmap=True, normalize=True)
    assert_same(x2, arrays["train_images"] / np.float32(255))
    assert_same(y2, arrays["train_labels"])
    assert type(x2) is np.ndarray


def test_mmap_of_a_slice_and_layout_are_views(data, tmp_path):
    directory, arrays = data
    x, y = mnist.load("train[10:-10]", directory, cache_dir=tmp_path / "c", mmap=True, layout="NCHW")
    assert_same(x, arrays["train_images"][10:-10, None])
    assert_same(y, arrays["train_labels"][10:-10])


def test_mmap_needs_the_cache(data):
    directory, _ = data
    with pytest.raises(ValueError, match="mmap=True .* cache=True"):
        mnist.load("train", directory, cache=False, mmap=True)


# ---------------------------------------------------------------------------------------------
# Memory limit, unusable cache directory, EMNIST.


def test_max_memory_refuses_before_allocating(data, tmp_path):
    directory, arrays = data
    n = arrays["train_images"].size
    need = n * 4 + 300  # float32 images + uint8 labels
    with pytest.raises(MemoryLimitError, match="max_memory") as info:
        mnist.load("train", directory, normalize=True, max_memory=need - 1, cache_dir=tmp_path / "c")
    assert isinstance(info.value, MemoryError) and isinstance(info.value, ValueError)
    x, _ = mnist.load("train", directory, normalize=True, max_memory=need, cache_dir=tmp_path / "c")
    assert x.nbytes == n * 4
    with pytest.raises(MemoryLimitError):
        mnist.load("train", directory, max_memory=n, cache=False)  # labels take 300 more
    with pytest.raises(MemoryLimitError):
        mnist.load_data(directory, max_memory=n + 300 + 10, cache_dir=tmp_path / "c")
    mnist.load("train[:10]", directory, max_memory=10 * 35 + 10, cache_dir=tmp_path / "c")


def test_an_unusable_cache_directory_falls_back_to_the_source(data, tmp_path):
    directory, arrays = data
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    with pytest.warns(CacheWarning, match="without the cache"):
        x, _ = mnist.load("train", directory, cache_dir=blocker / "cache", normalize=True)
    assert_same(x, arrays["train_images"] / np.float32(255))


def test_emnist_entries_hold_upright_images(tmp_path, small_frames):
    names = {
        "train_images": "emnist-balanced-train-images-idx3-ubyte.gz",
        "train_labels": "emnist-balanced-train-labels-idx1-ubyte.gz",
        "test_images": "emnist-balanced-test-images-idx3-ubyte.gz",
        "test_labels": "emnist-balanced-test-labels-idx1-ubyte.gz",
    }
    arrays = write_dataset(tmp_path / "e", names=names)
    stored = arrays["train_images"]
    for how in (dict(cache=False), dict(), dict(), dict(mmap=True)):
        x, _ = emnist.balanced.load("train", tmp_path / "e", cache_dir=tmp_path / "c", **how)
        assert_same(x, stored.transpose(0, 2, 1))
        x, _ = emnist.balanced.load("train[5:77]", tmp_path / "e", cache_dir=tmp_path / "c",
                                    raw=True, **how)
        assert_same(x, stored[5:77])


# ---------------------------------------------------------------------------------------------
# fastidx.cache.


def test_list_info_and_clear(tmp_path, small_frames):
    write_dataset(tmp_path / "m")
    names = {
        "train_images": "train-images-idx3-ubyte.gz",
        "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz",
        "test_labels": "t10k-labels-idx1-ubyte.gz",
    }
    write_dataset(tmp_path / "f", seed=5, names=names)
    cache_dir = tmp_path / "c"
    assert cache.list_entries(cache_dir) == [] and cache.info(cache_dir).entries == 0
    mnist.load_data(tmp_path / "m", cache_dir=cache_dir)
    from fastidx.datasets import fashion_mnist

    fashion_mnist.load("train", tmp_path / "f", cache_dir=cache_dir, mmap=True)
    entries = cache.list_entries(cache_dir)
    assert len(entries) == 4 + 2 + 2
    images = [e for e in entries if e.dataset == "mnist" and e.source_name.startswith("train-images")]
    assert len(images) == 1
    entry = images[0]
    assert entry.kind == "frames" and entry.shape == (300, *SHAPE) and entry.dtype == "uint8"
    assert entry.array_bytes == 300 * 35 and entry.size_on_disk == entry.path.stat().st_size
    assert entry.source_sha256 == hashlib.sha256(
        (tmp_path / "m" / "train-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    assert "train-images" in str(entry)
    summary = cache.info(cache_dir)
    assert summary.entries == 8
    assert summary.bytes_by_dataset["mnist"] == sum(e.size for e in entries if e.dataset == "mnist")
    assert summary.total_bytes >= sum(e.size for e in entries)
    result = cache.clear("fashion_mnist", cache_dir)
    assert result.files == 4 and result.bytes > 0
    assert {e.dataset for e in cache.list_entries(cache_dir)} == {"mnist"}
    result = cache.clear(cache_dir=cache_dir)
    assert result.files >= 4
    assert cache.list_entries(cache_dir) == []
    x, _ = mnist.load("train", tmp_path / "m", cache_dir=cache_dir)  # rebuilt as needed
    assert x.shape == (300, *SHAPE)


def test_cache_dir_defaults_to_fastidx_home(data, _isolated_home):
    directory, _ = data
    mnist.load("test", directory)
    assert len(cache.list_entries()) == 2
    assert (_isolated_home / "decoded").is_dir()


def test_cache_warning_and_memory_error_are_exported():
    assert issubclass(CacheWarning, UserWarning)
    assert issubclass(MemoryLimitError, fastidx.FastIDXError)


def test_a_first_load_hashes_its_source_on_another_thread(data, tmp_path, monkeypatch,
                                                         sha256_threads):
    threads = sha256_threads
    monkeypatch.setattr("fastidx._memlimit.available", lambda *a: None)  # no memory limit
    directory, arrays = data
    x, _ = mnist.load("train", directory, cache_dir=tmp_path / "c")
    _cache.wait_for_writers()
    assert threads and "MainThread" not in threads
    digest = hashlib.sha256((directory / "train-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    assert (tmp_path / "c" / "decoded" / f"{digest}.stored.fidx").is_file()
    again, _ = mnist.load("train", directory, cache_dir=tmp_path / "c")
    assert np.array_equal(again, arrays["train_images"]) and np.array_equal(x, again)


def test_the_entries_of_a_load_share_one_writer_thread(data, tmp_path, monkeypatch):
    """The four entries of a first load are compressed by one background thread, in order: it
    is started once (a thread's start waits until the thread runs, a few ms on a busy machine)."""
    import threading

    from fastidx._cache import writer

    started, release = [], threading.Event()
    real = writer.background_priority

    def held_back():
        started.append(threading.get_ident())
        release.wait(60)  # the thread writes nothing until the load has returned
        real()

    monkeypatch.setattr(writer, "background_priority", held_back)
    monkeypatch.setattr("fastidx._memlimit.available", lambda *a: None)  # no memory limit
    directory, arrays = data
    (x, y), (xt, yt) = mnist.load_data(path=directory, cache_dir=tmp_path / "c")
    release.set()
    _cache.wait_for_writers()
    assert len(started) == 1
    assert len(list((tmp_path / "c" / "decoded").glob("*.fidx"))) == 4
    assert all(r.ok for r in cache.verify(tmp_path / "c"))
    (x2, _), (xt2, _) = mnist.load_data(path=directory, cache_dir=tmp_path / "c")
    assert np.array_equal(x2, arrays["train_images"]) and np.array_equal(xt2, arrays["test_images"])


def test_a_process_that_exits_after_a_first_load_leaves_whole_entries(data, tmp_path):
    import subprocess
    import sys

    directory, arrays = data
    code = ("import sys; from fastidx.datasets import mnist; "
            "mnist.load_data(path=sys.argv[1], cache_dir=sys.argv[2])")  # exits at once
    done = subprocess.run([sys.executable, "-W", "error", "-c", code, str(directory), str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    decoded = tmp_path / "c" / "decoded"
    assert len(list(decoded.glob("*.fidx"))) == 4 and not list(decoded.glob(".*.tmp"))
    assert all(r.ok for r in cache.verify(tmp_path / "c"))


def test_a_writer_thread_that_cannot_start_fails_the_load_without_a_hang(data, tmp_path, monkeypatch):
    """At a thread limit the first load fails as Python's thread start does, and nothing waits
    for an entry no thread will write: the next load builds it."""
    from fastidx._cache import writer

    def no_thread(*args):
        raise RuntimeError("can't start new thread")

    import threading

    directory, arrays = data
    with monkeypatch.context() as patch:
        patch.setattr(writer._thread, "start_new_thread", no_thread)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            mnist.load("train", directory, cache_dir=tmp_path / "c")
    waiting = threading.Thread(target=_cache.wait_for_writers, daemon=True)
    waiting.start()
    waiting.join(60)
    assert not waiting.is_alive()  # no writer is left that no thread will ever finish
    assert not writer._worker.jobs
    x, _ = mnist.load("train", directory, cache_dir=tmp_path / "c")
    _cache.wait_for_writers()
    assert np.array_equal(x, arrays["train_images"])
    assert len(list((tmp_path / "c" / "decoded").glob("*.fidx"))) == 2
