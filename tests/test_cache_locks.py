"""Locks and warnings of the cache: lock files are never written through a symlink, a lock dies with
its holder, and a CacheWarning points at the caller's line once per load."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import multiprocessing
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastidx
from fastidx import _fetch, registry
from fastidx._errors import CacheDirError, CacheWarning
from fastidx._lock import FileLock, LockTimeout, held
from fastidx.datasets import mnist

VICTIM_TEXT = b"precious data outside the cache\n"


def write_dataset(directory: Path, n=40, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n, 6, 5), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n // 2, 6, 5), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n // 2, dtype=np.uint8),
    }
    for name, array in arrays.items():
        fastidx.write_idx(directory / name, array)
    return arrays


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "outside" / "victim.txt"
    path.parent.mkdir()
    path.write_bytes(VICTIM_TEXT)
    return path


# --- the primitive -------------------------------------------------------------------------------


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path, victim):
    link = tmp_path / "x.lock"
    link.symlink_to(victim)
    with pytest.raises(CacheDirError, match="x.lock"):
        FileLock(link).acquire(1.0)
    assert victim.read_bytes() == VICTIM_TEXT


def test_a_lock_file_in_a_symlinked_directory_is_refused(tmp_path, victim):
    (tmp_path / "locks").symlink_to(victim.parent)
    with pytest.raises(CacheDirError, match="locks"):
        FileLock(tmp_path / "locks" / "x.lock").acquire(1.0)
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.txt"]


def test_a_fifo_planted_as_a_lock_file_neither_blocks_nor_is_used(tmp_path):
    os.mkfifo(tmp_path / "x.lock")
    with pytest.raises(CacheDirError, match="not a regular file"):
        FileLock(tmp_path / "x.lock").acquire(1.0)


def test_an_existing_lock_file_is_never_truncated(tmp_path):
    path = tmp_path / "x.lock"
    path.write_bytes(b"left by someone")
    with held(path, 1.0):
        pass
    assert path.read_bytes() == b"left by someone"


def test_a_held_lock_excludes_other_threads_within_the_bounded_wait(tmp_path):
    path = tmp_path / "x.lock"
    with held(path, 1.0):
        other = FileLock(path)
        try:
            assert other.acquire(0.05) is False
        finally:
            other.release()
        with pytest.raises(LockTimeout, match="x.lock"):
            with held(path, 0.0):
                pass
    with held(path, 0.0):  # free again
        pass


def _hold_and_die(path, ready):
    lock = FileLock(path)
    lock.acquire(5.0)
    ready.set()
    os._exit(0)  # no release: the kernel must drop the lock


def test_the_kernel_releases_the_lock_of_a_dead_holder(tmp_path):
    path = tmp_path / "x.lock"
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    ready = ctx.Event()
    process = ctx.Process(target=_hold_and_die, args=(path, ready))
    process.start()
    process.join(30)
    assert ready.is_set() and process.exitcode == 0
    with held(path, 5.0):
        pass


# --- the cache's build lock and the downloader's lock --------------------------------------------


def test_a_symlinked_build_lock_is_refused_with_a_cache_dir_error(tmp_path, victim):
    directory = tmp_path / "d"
    write_dataset(directory)
    source = directory / "train-images-idx3-ubyte.gz"
    locks = tmp_path / "c" / "decoded" / "locks"
    locks.mkdir(parents=True)
    key = hashlib.sha256(os.fsencode(os.path.abspath(source))).hexdigest()[:32]
    link = locks / f"{key}.stored.fidx.lock"  # a frames entry's build lock is named by its path
    link.symlink_to(victim)
    with pytest.raises(CacheDirError, match=link.name):
        mnist.load("train", directory, cache_dir=tmp_path / "c")
    assert victim.read_bytes() == VICTIM_TEXT


def _mirror_spec(mirror: Path) -> registry.DatasetSpec:
    """MNIST's spec for small files written into ``mirror/mnist`` (no internet URLs)."""
    spec = registry.get("mnist")
    (mirror / "mnist").mkdir(parents=True)
    files = {}
    for role, file in spec.files.items():
        path = mirror / "mnist" / file.name
        n = 4 if "train" in role else 2
        shape = (n, 28, 28) if "images" in role else (n,)
        fastidx.write_idx(path, np.zeros(shape, np.uint8))
        files[role] = dataclasses.replace(
            file, size=path.stat().st_size, sha256=sha256(path),
            content_sha256=hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest(), urls=())
    return dataclasses.replace(spec, files=files, splits={"train": 4, "test": 2})


def test_a_symlinked_download_lock_is_refused_with_a_cache_dir_error(tmp_path, victim):
    spec = _mirror_spec(tmp_path / "mirror")
    home = tmp_path / "home"
    (home / "mnist").mkdir(parents=True)
    link = home / "mnist" / ".train-images-idx3-ubyte.gz.lock"
    link.symlink_to(victim)
    with pytest.raises(CacheDirError, match="train-images-idx3-ubyte.gz.lock"):
        _fetch.fetch(spec, cache_dir=home, mirrors=(tmp_path / "mirror").as_uri(), offline=False)
    assert victim.read_bytes() == VICTIM_TEXT
    link.unlink()
    files = _fetch.fetch(spec, cache_dir=home, mirrors=(tmp_path / "mirror").as_uri(), offline=False)
    assert files["train_images"].read_bytes() == (tmp_path / "mirror" / "mnist" /
                                                   "train-images-idx3-ubyte.gz").read_bytes()


# --- CacheWarning --------------------------------------------------------------------------------


def test_a_cache_warning_points_at_the_callers_line_once_per_load(tmp_path):
    directory = tmp_path / "d"
    write_dataset(directory)
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        mnist.load_data(directory, cache_dir=blocker / "cache")
    cache_warnings = [w for w in caught if issubclass(w.category, CacheWarning)]
    assert len(cache_warnings) == 1, [str(w.message) for w in cache_warnings]
    assert cache_warnings[0].filename == __file__ and cache_warnings[0].lineno == line
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two loads: one warning each
            mnist.load("test", directory, cache_dir=blocker / "cache")
    assert [w.filename for w in caught] == [__file__, __file__]


def test_a_cache_warning_from_a_batch_iterator_points_at_the_loop(tmp_path):
    directory = tmp_path / "d"
    arrays = write_dataset(directory)
    mnist.load("train", directory, cache_dir=tmp_path / "c", mmap=True)
    raw = next((tmp_path / "c" / "decoded").glob("*.native.raw"))
    raw.write_bytes(b"garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = mnist.iter_batches("train", 8, path=directory, cache_dir=tmp_path / "c", shuffle=True,
                                     seed=1)
        rows = [x for x, _ in batches]
    assert [w.filename for w in caught if issubclass(w.category, CacheWarning)] == [__file__]
    assert sorted(map(bytes, np.concatenate(rows))) == sorted(map(bytes,
                                                               arrays["train-images-idx3-ubyte.gz"]))
