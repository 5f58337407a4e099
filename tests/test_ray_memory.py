"""A trial's private memory: a warm cached load leaves nothing behind but its arrays.

In a search, every trial process keeps whatever a load leaves: decode threads, their zstd
contexts and staging buffers, and malloc arenas they filled. Measured from
``/proc/self/smaps_rollup`` (private anonymous memory) in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from http_server import MNIST_DIR, needs_shared_data

pytestmark = [needs_shared_data,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")]

MEASURE = r"""
import json, sys, threading
import numpy as np
from fastidx.datasets import mnist

def anon_kib():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("Anonymous:"):
            return int(line.split()[1])

path, cache = sys.argv[1], sys.argv[2]
# Everything a load imports, imported: the 1-frame labels decode on the calling thread.
mnist.load("test[:10]", path=path, cache_dir=cache, normalize=True)
before = anon_kib()
(x, y), (xt, yt) = mnist.load_data(path=path, cache_dir=cache, normalize=True)
after = anon_kib()
arrays = sum(a.nbytes for a in (x, y, xt, yt)) // 1024
from fastidx import _kernels
print(json.dumps({"left_kib": after - before - arrays, "threads": threading.active_count(),
                  "kernels": _kernels.IMPLEMENTATION}))
"""


def test_a_warm_cached_load_leaves_no_threads_and_little_memory_behind(tmp_path):
    cache = tmp_path / "cache"
    build = "import sys; from fastidx.datasets import mnist; " \
            "mnist.load_data(path=sys.argv[1], cache_dir=sys.argv[2], normalize=True)"
    subprocess.run([sys.executable, "-c", build, str(MNIST_DIR), str(cache)], check=True,
                   timeout=600)
    env_threads = {"OMP_NUM_THREADS": "2"}  # a parallel decode even on a 1-CPU budget
    import os

    run = subprocess.run([sys.executable, "-c", MEASURE, str(MNIST_DIR), str(cache)],
                         capture_output=True, text=True, timeout=600, check=True,
                         env={**os.environ, **env_threads})
    got = json.loads(run.stdout)
    assert got["threads"] == 1  # no decode pool stays behind
    if got["kernels"] == "native":  # the pure-Python fallback's own buffers vary (~1-1.5 MiB)
        assert got["left_kib"] <= 1024, got  # 93 KiB; before: ~2,200 KiB (threads, arenas, buffers)
