"""Processes that build the same cache entry at the same moment: one builder, whole files only."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

import fastidx
from fastidx import cache

PROCESSES = 5


def _worker(directory, cache_dir, barrier, options, queue):
    """Load the dataset once everyone is ready; report the arrays' hashes and how often this
    process decoded the source into a new entry."""
    from fastidx import _cache
    from fastidx.datasets import mnist

    builds = []
    original = _cache.Source._build

    def counting(self, *args, **kwargs):
        builds.append(self.path.name)
        return original(self, *args, **kwargs)

    _cache.Source._build = counting
    try:
        barrier.wait(timeout=60)
        (x, y), (xt, yt) = mnist.load_data(directory, cache_dir=cache_dir, **options)
        digest = hashlib.sha256()
        for a in (x, y, xt, yt):
            digest.update(str((a.shape, a.dtype.str)).encode())
            digest.update(np.ascontiguousarray(a).tobytes())
        queue.put((digest.hexdigest(), builds, None))
    except BaseException as exc:  # report, so that the test fails with the reason
        queue.put((None, builds, repr(exc)))


def _expected(arrays, options):
    digest = hashlib.sha256()
    for a in arrays:
        if a.ndim == 3 and options.get("normalize"):
            a = a.astype(np.float32) / np.float32(255)
        digest.update(str((a.shape, a.dtype.str)).encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("options", [{"normalize": True}, {"mmap": True}], ids=["cached", "mmap"])
def test_concurrent_first_loads_build_each_entry_once(tmp_path, options, monkeypatch):
    rng = np.random.default_rng(3)
    # Big enough (about 3 MB of images) that the builders really overlap.
    arrays = [
        rng.integers(0, 256, (4000, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, 4000, dtype=np.uint8),
        rng.integers(0, 256, (500, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, 500, dtype=np.uint8),
    ]
    directory = tmp_path / "data"
    directory.mkdir()
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    for name, array in zip(names, arrays):
        fastidx.write_idx(directory / name, array)
    cache_dir = tmp_path / "cache"
    # The children import fastidx from wherever this process does.
    src = str(Path(fastidx.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    queue = context.Queue()
    workers = [
        context.Process(target=_worker, args=(str(directory), str(cache_dir), barrier, options, queue))
        for _ in range(PROCESSES)
    ]
    for w in workers:
        w.start()
    results = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0

    assert [error for _, _, error in results] == [None] * PROCESSES
    assert {digest for digest, _, _ in results} == {_expected(arrays, options)}
    builds = sorted(name for _, built, _ in results for name in built)
    assert builds == sorted(names), "each source must be decoded into the cache exactly once"

    decoded = cache_dir / "decoded"
    assert len(list(decoded.glob("*.fidx"))) == 4
    assert len(list(decoded.glob("*.raw"))) == (4 if options.get("mmap") else 0)
    assert not [p.name for p in decoded.iterdir() if p.name.startswith(".")], "temporary files left"
    checks = cache.verify(cache_dir)
    assert checks and all(c.ok for c in checks), checks
