"""A full disk or a read-only cache never fails a load: it falls back to decoding the source, with
one CacheWarning, never a bare OSError. Real file systems: a tiny tmpfs and a read-only bind mount
(both need root; the tests skip with the reason otherwise)."""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import cache_data
import fastidx
from fastidx import _cache
from fastidx._errors import CacheWarning
from fastidx.datasets import mnist

SHAPE = (10, 10)


def write_dataset(directory: Path, n: int) -> dict:
    # random pixels: they do not compress, so their entries really need the space
    return cache_data.write_dataset(directory, SHAPE, n, n // 5, seed=7)


def _mount(*args) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    if done.returncode:
        pytest.skip(f"cannot mount here ({done.stderr.strip() or done.returncode}): "
                    f"the test needs root and mount(8)")


@pytest.fixture
def mounts():
    points = []

    def mount(*args, point: Path):
        point.mkdir(parents=True, exist_ok=True)
        _mount(*args, str(point))
        points.append(point)
        return point

    yield mount
    for writer in [w for _, w in _cache.writer._writers]:
        writer.join()
    for point in reversed(points):
        subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)


def cache_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


def test_a_full_disk_never_fails_a_load(tmp_path, mounts):
    arrays = write_dataset(tmp_path / "d", n=6000)  # 600 kB of images, 100 kB of test images
    tiny = mounts("-t", "tmpfs", "-o", "size=256k", "tmpfs", point=tmp_path / "tiny")
    images = arrays["train-images-idx3-ubyte.gz"]
    for options in ({}, {"normalize": True}, {"mmap": True}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            (x, y), (xt, _) = mnist.load_data(tmp_path / "d", cache_dir=tiny, **options)
            _cache.wait_for_writers()  # what the writer thread could not write is reported
        if options.get("normalize"):
            assert x.tobytes() == (images / np.float32(255)).tobytes()
        else:
            assert x.tobytes() == images.tobytes()
        assert xt.tobytes() == arrays["t10k-images-idx3-ubyte.gz"].tobytes() or options
        found = cache_warnings(caught)
        assert 1 <= len(found) <= 2, found  # this load's, and the last writer's after it
        assert all("No space left" in m for m in found), found
    assert not list((tiny / "decoded").glob(".*.tmp"))  # no partial file left behind
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = mnist.iter_batches("train", 1000, path=tmp_path / "d", cache_dir=tiny,
                                     shuffle=True, seed=3)
        rows = np.concatenate([b for b, _ in batches])
    assert len(cache_warnings(caught)) <= 1
    assert sorted(map(bytes, rows)) == sorted(map(bytes, images))


def _populate(cache_dir: Path, directory: Path) -> None:
    mnist.load_data(directory, cache_dir=cache_dir)
    _cache.wait_for_writers()


def test_a_read_only_cache_never_fails_a_load(tmp_path, mounts):
    arrays = write_dataset(tmp_path / "d", n=300)
    images = arrays["train-images-idx3-ubyte.gz"]
    source = tmp_path / "writable"
    _populate(source, tmp_path / "d")
    ro = mounts("--bind", str(source), point=tmp_path / "ro")
    _mount("-o", "remount,ro,bind", str(ro))
    calls = {
        "mmap": lambda: mnist.load("train", tmp_path / "d", cache_dir=ro, mmap=True)[0],
        "shuffled": lambda: np.concatenate([b for b, _ in mnist.iter_batches(
            "train", 64, path=tmp_path / "d", cache_dir=ro, shuffle=True, seed=1)]),
        "plain": lambda: mnist.load("train", tmp_path / "d", cache_dir=ro)[0],
    }
    for name, call in calls.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x = call()
        if name == "shuffled":
            assert sorted(map(bytes, x)) == sorted(map(bytes, images))
            assert len(cache_warnings(caught)) == 1, cache_warnings(caught)
        else:
            assert x.tobytes() == images.tobytes()
            assert len(cache_warnings(caught)) == (1 if name == "mmap" else 0), cache_warnings(caught)
    # A damaged entry in a read-only cache: one warning, the right numbers.
    subprocess.run(["umount", str(ro)], check=True, timeout=30)
    entry = max((source / "decoded").glob("*.fidx"), key=lambda p: p.stat().st_size)
    data = bytearray(entry.read_bytes())
    data[-10] ^= 0xFF
    entry.write_bytes(bytes(data))
    _mount("--bind", str(source), str(ro))
    _mount("-o", "remount,ro,bind", str(ro))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, _ = mnist.load("train", tmp_path / "d", cache_dir=ro, normalize=True)
    assert x.tobytes() == (images / np.float32(255)).tobytes()
    found = cache_warnings(caught)
    assert len(found) == 1 and "cannot be rebuilt" in found[0], found


def test_a_writer_that_cannot_flush_still_releases_the_build_lock(tmp_path):
    # /dev/full fails every write with ENOSPC: the frame stays in the file's buffer, so closing
    # the file fails too. Before the fix that skipped the lock's release, and the next load of the
    # same source waited out the 10-minute lock timeout.
    from fastidx import _idx
    from fastidx._lock import FileLock

    lock_file = tmp_path / "entry.lock"
    lock = FileLock(lock_file)
    assert lock.acquire(1.0)
    header = _idx.Header(dtype=np.dtype(np.uint8), shape=(4, 3), nbytes=16)
    meta = {"rows_per_frame": 4}
    writer = _cache.writer.EntryWriter(lock, os.open("/dev/full", os.O_WRONLY), tmp_path / "tmp",
                                 tmp_path / "final", header, meta)
    writer.report_later = False
    writer.add(np.zeros((4, 3), np.uint8), owned=False)
    writer.close()
    assert "No space left" in (writer.join() or "")
    other = FileLock(lock_file)
    assert other.acquire(0.0)  # free at once
    other.release()
