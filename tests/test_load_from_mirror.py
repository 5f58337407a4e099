"""End to end: ``load_data()`` with no path, its files served by a faulty mirror on 127.0.0.1.

The acceptance of the data-acquisition work seen from the user's side: the loader rides out 503s
and dropped connections and returns exactly MNIST, repairs a damaged cache, refuses tampered bytes,
serves many processes with one download per file, and says what to do when offline.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import time

import numpy as np
import pytest

import fastidx
from fastidx.datasets import mnist
from http_server import MNIST_DIR, leftovers, needs_shared_data  # fixtures fetch_env, server: conftest.py

pytestmark = needs_shared_data

TRAIN_IMAGES = "/mnist/train-images-idx3-ubyte.gz"
TRAIN_LABELS = "/mnist/train-labels-idx1-ubyte.gz"


def keras_reference():
    """What Keras's loader code returns for the shared MNIST files (gzip + np.frombuffer)."""

    def read(name, offset):
        with gzip.open(MNIST_DIR / name, "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)

    y_train = read("train-labels-idx1-ubyte.gz", 8)
    y_test = read("t10k-labels-idx1-ubyte.gz", 8)
    x_train = read("train-images-idx3-ubyte.gz", 16).reshape(len(y_train), 28, 28)
    x_test = read("t10k-images-idx3-ubyte.gz", 16).reshape(len(y_test), 28, 28)
    return (x_train, y_train), (x_test, y_test)


@pytest.fixture(scope="module")
def reference():
    return keras_reference()


def assert_same(result, expected):
    for got, want in zip(
        (*result[0], *result[1]), (*expected[0], *expected[1]), strict=True
    ):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want)


def test_load_data_rides_out_503s_and_dropped_connections(fetch_env, server, reference):
    server.add_dir("/mnist", MNIST_DIR)
    server.fault(TRAIN_IMAGES, status_times=2, drop_after=3_000_000, drop_times=1)
    server.fault(TRAIN_LABELS, status=502, status_times=1)
    began = time.monotonic()
    result = mnist.load_data(mirrors=server.url)
    elapsed = time.monotonic() - began
    assert_same(result, reference)
    images = server.get(TRAIN_IMAGES)
    size = (MNIST_DIR / "train-images-idx3-ubyte.gz").stat().st_size
    # Two 503s, a body reset after exactly 3,000,000 bytes (the server waits until the client's
    # kernel has them before it resets), then one Range request for the rest: every byte is sent
    # once. Deterministic: the client reads what has arrived (read1), so a reset loses nothing.
    assert images.statuses == [503, 503, 200, 206]
    assert images.ranges == [None, None, None, "bytes=3000000-"]
    assert images.bytes_sent == size
    assert server.get(TRAIN_LABELS).statuses == [502, 200]
    assert leftovers(fetch_env / "mnist") == []
    print(f"\nrecovered in {elapsed:.2f} s: {images.requests} requests, {images.bytes_sent} bytes")

    # The warm load makes no network call at all.
    server.reset_stats()
    assert_same(mnist.load_data(mirrors=server.url), reference)
    assert server.total_requests() == 0


def test_tampered_bytes_are_refused_every_time(fetch_env, server):
    server.add_dir("/mnist", MNIST_DIR)
    server.fault(TRAIN_LABELS, flip_bit=8 * 1000 + 3)
    for _ in range(2):
        with pytest.raises(fastidx.ChecksumError) as info:
            mnist.load_data(mirrors=server.url, progress=False)
        message = str(info.value)
        assert "train-labels-idx1-ubyte.gz" in message and "127.0.0.1" in message
        assert not (fetch_env / "mnist" / "train-labels-idx1-ubyte.gz").exists()
    assert leftovers(fetch_env / "mnist") == []


@pytest.mark.parametrize("damage", ["truncate", "junk"])
def test_a_damaged_download_is_fetched_again_with_a_warning(fetch_env, server, reference, damage):
    server.add_dir("/mnist", MNIST_DIR)
    mnist.load_data(mirrors=server.url, cache=False)
    victim = fetch_env / "mnist" / "train-images-idx3-ubyte.gz"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00junk" * 1000)
    server.reset_stats()
    with pytest.warns(fastidx.CacheWarning, match="train-images-idx3-ubyte.gz"):
        result = mnist.load_data(mirrors=server.url, cache=False)
    assert_same(result, reference)
    assert server.get(TRAIN_IMAGES).requests == 1
    assert server.total_requests() == 1


def test_offline_with_an_empty_cache_says_what_to_do(fetch_env, server, monkeypatch):
    server.add_dir("/mnist", MNIST_DIR)
    monkeypatch.setenv("FASTIDX_OFFLINE", "1")
    with pytest.raises(fastidx.DatasetNotFoundError) as info:
        mnist.load_data(mirrors=server.url)
    message = str(info.value)
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "FASTIDX_MIRROR"):
        assert name in message
    assert str(fetch_env / "mnist") in message
    assert server.total_requests() == 0


CHILD = """
import hashlib, json, sys, time
from pathlib import Path
go = Path(sys.argv[2])
Path(sys.argv[3]).touch()
while not go.exists():
    time.sleep(0.005)
from fastidx.datasets import mnist
arrays = mnist.load_data(mirrors=sys.argv[1], progress=False)
print(json.dumps([hashlib.sha256(a.tobytes()).hexdigest() for split in arrays for a in split]))
"""


def test_six_processes_get_exact_arrays_from_one_download_per_file(
    fetch_env, server, reference, tmp_path
):
    server.add_dir("/mnist", MNIST_DIR)
    sizes = {f"/mnist/{p.name}": p.stat().st_size for p in MNIST_DIR.glob("*.gz")}
    for path in sizes:  # slow bodies: every process arrives while the first still downloads
        server.fault(path, rate=8e6)
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, server.url, str(go), str(tmp_path / f"ready-{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready-{i}").exists() for i in range(6)):
            assert time.monotonic() < deadline, "children did not start"
            time.sleep(0.01)
        go.touch()
        results = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            child.kill()
    for child, (_, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
    expected = [hashlib.sha256(a.tobytes()).hexdigest() for split in reference for a in split]
    assert all(json.loads(out) == expected for out, _ in results)
    for path, size in sizes.items():
        stats = server.get(path)
        assert stats.requests == 1 and stats.bytes_sent <= 1.2 * size, (path, stats)
    assert leftovers(fetch_env / "mnist") == []
