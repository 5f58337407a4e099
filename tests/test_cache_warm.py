"""The warm default ``load_data(mmap=True)``: answered by the warm record (``_cache.warm``) by
``stat`` alone, importing none of the machinery of downloads, hashing, zstd or threads; any change
to what it names sends the load down the full path, which checks everything."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fastidx.datasets import mnist

# What a warm mmap load must not import (checked in a fresh process).
HEAVY = ("zstandard", "concurrent.futures", "hashlib", "_hashlib", "json", "logging", "pathlib",
         "threading", "fastidx.registry", "fastidx._fetch", "fastidx._cache.frames",
         "fastidx._cache.writer", "fastidx._cache.source", "fastidx._idx", "gzip", "secrets")

PROBE = """
import sys, json
import numpy as np
from fastidx.datasets import mnist
before = set(sys.modules)
(x, y), (xt, yt) = mnist.load_data(mmap=True{options})
new = sorted(set(sys.modules) - before)
print(json.dumps({{"new": new, "sums": [int(a.sum(dtype=np.int64)) for a in (x, y, xt, yt)],
                   "shapes": [a.shape for a in (x, y, xt, yt)]}}))
"""


@pytest.fixture
def home(mnist_home):
    return mnist_home


def warm_up(monkeypatch, **options) -> None:
    """A full-path load in this process, which writes the warm record. The stat index trusts a
    digest only for files modified 2 s before they were hashed, and these were just copied."""
    from fastidx._cache import identity

    with monkeypatch.context() as patch:
        patch.setattr(identity, "RACY_NS", -(10**18))
        mnist.load_data(mmap=True, **options)


def probe(options: str = "") -> dict:
    done = subprocess.run([sys.executable, "-W", "error", "-c", PROBE.format(options=options)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def expected(options=None):
    (x, y), (xt, yt) = mnist.load_data(cache=False, **(options or {}))
    return [int(a.sum(dtype=np.int64)) for a in (x, y, xt, yt)]


def test_a_warm_mmap_load_imports_only_the_warm_record(home, monkeypatch):
    first = probe()  # builds the entries and the raw files (the sources are too new to record)
    assert "fastidx._fetch" in first["new"]
    warm_up(monkeypatch)
    assert list((home / "decoded" / "warm").iterdir())
    warm = probe()
    assert not [m for m in warm["new"] if m in HEAVY or m.startswith(HEAVY)], warm["new"]
    assert warm["sums"] == first["sums"] == expected()
    assert warm["shapes"] == [[60000, 28, 28], [60000], [10000, 28, 28], [10000]]


def test_a_warm_mmap_load_with_options_maps_the_same_arrays(home, monkeypatch):
    warm_up(monkeypatch, normalize=True, layout="flat", shard=(1, 3))
    warm = probe(', normalize=True, layout="flat", shard=(1, 3)')
    assert "fastidx._fetch" not in warm["new"]
    (x, y), (xt, yt) = mnist.load_data(normalize=True, layout="flat", shard=(1, 3), cache=False)
    # float sums: compare against the arrays themselves, in this process
    got = mnist.load_data(normalize=True, layout="flat", shard=(1, 3), mmap=True)
    for a, b in zip((x, y, xt, yt), (*got[0], *got[1])):
        assert a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert warm["shapes"] == [list(a.shape) for a in (x, y, xt, yt)]


def _record(home):
    (record,) = (home / "decoded" / "warm").iterdir()
    return record


def test_a_touched_source_sends_the_load_down_the_full_path(home, monkeypatch):
    warm_up(monkeypatch)
    source = home / "mnist" / "t10k-labels-idx1-ubyte.gz"
    os.utime(source, ns=(1, 1))
    again = probe()
    assert "fastidx._fetch" in again["new"]  # the manifest and the stat index are asked again
    assert again["sums"] == expected()
    warm_up(monkeypatch)  # the full path writes the record afresh
    assert "fastidx._fetch" not in probe()["new"]


def test_a_raw_file_changed_behind_the_record_is_caught(home, monkeypatch):
    warm_up(monkeypatch)
    lines = _record(home).read_text().splitlines()
    raw = lines[6].split("\t")[1]  # the train images
    with open(raw, "r+b") as f:
        f.seek(4096 + 1000)
        f.write(b"\xff")
    with pytest.warns(Warning):  # the full path checks the payload, warns and rebuilds
        (x, _), _ = mnist.load_data(mmap=True)
    (want, _), _ = mnist.load_data(cache=False)
    assert np.array_equal(x, want)


def test_a_record_of_another_fastidx_is_ignored(home, monkeypatch):
    warm_up(monkeypatch)
    record = _record(home)
    lines = record.read_text().splitlines()
    lines[0] = lines[0].replace("fastidx-warm 1\t", "fastidx-warm 1\t9")  # another version
    record.write_text("\n".join(lines) + "\n")
    again = probe()
    assert "fastidx._fetch" in again["new"]
    assert again["sums"] == expected()


DEFAULT_PROBE = """
import sys, json, threading
import numpy as np
from fastidx.datasets import mnist
from fastidx._cache import identity
identity.RACY_NS = -(10**18)  # the sources were copied just now: trust the stat index at once
before = set(sys.modules)
(x, y), (xt, yt) = mnist.load_data(normalize=True)
print(json.dumps({"new": sorted(set(sys.modules) - before), "threads": threading.active_count(),
                  "sums": [float(a.sum(dtype=np.float64)) for a in (x, y, xt, yt)]}))
"""

# What a warm default load has no use for: building, writing, locking, hashing, logging, pools.
BUILDING = ("concurrent.futures", "hashlib", "_hashlib", "logging", "secrets", "random", "queue",
            "atexit", "fastidx._cache.writer", "fastidx._atomic", "fastidx._lock", "fcntl")


def test_a_warm_default_load_imports_nothing_it_does_not_use_and_leaves_no_thread(home):
    def run():
        done = subprocess.run([sys.executable, "-W", "error", "-c", DEFAULT_PROBE],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = run()  # builds the frames entries (writer, locks, hashing)
    assert "fastidx._cache.writer" in first["new"]
    warm = run()
    assert not [m for m in warm["new"] if m in BUILDING or m.startswith(BUILDING)], warm["new"]
    assert warm["threads"] == 1  # the decode threads are gone, and no pool waits for work
    assert warm["sums"] == first["sums"]


def test_in_parallel_runs_every_item_once_and_raises_the_first_failure():
    import threading

    from fastidx._cache.frames import in_parallel

    seen, lock = [], threading.Lock()

    def work(i):
        with lock:
            seen.append(i)

    in_parallel(work, range(50), 4)
    assert sorted(seen) == list(range(50))

    def failing(i):
        if i in (3, 7):
            raise ValueError(f"item {i}")

    for _ in range(10):
        before = threading.active_count()
        with pytest.raises(ValueError, match="item 3"):
            in_parallel(failing, range(8), 3)
        assert threading.active_count() == before  # every helper joined
