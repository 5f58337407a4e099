"""read_idx on the real MNIST files: identical to the Keras code path, bit-identical conversions,
and one decoding pass with no full-size uint8 intermediate."""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastidx
from shared_data import CANONICAL_DIR as CANONICAL
from shared_data import MNIST_DIR as MNIST

# name -> (IDX header bytes, shape, SHA-256 of the decoded IDX file); from shared/data/README.md
FILES = {
    "train-images-idx3-ubyte.gz": (
        16, (60000, 28, 28), "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte.gz": (
        8, (60000,), "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "t10k-images-idx3-ubyte.gz": (
        16, (10000, 28, 28), "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "t10k-labels-idx1-ubyte.gz": (
        8, (10000,), "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
IMAGES = [name for name in FILES if "images" in name]
CANONICAL_FILES = {
    "mnist-train-labels-idx1-ubyte.gz":
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "mnist-t10k-labels-idx1-ubyte.gz":
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "fashion-train-labels-idx1-ubyte.gz":
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "fashion-t10k-labels-idx1-ubyte.gz":
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


def path_of(name: str) -> Path:
    path = MNIST / name
    if not path.is_file():
        pytest.skip(f"real MNIST file {path} not found (shared/data/ must sit next to the repo)")
    return path


@functools.lru_cache(maxsize=None)
def keras_load(name: str) -> np.ndarray:
    """What keras.datasets.mnist does: gunzip, then frombuffer after the 8- or 16-byte header."""
    offset, shape, _ = FILES[name]
    with gzip.open(path_of(name), "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset).reshape(shape)


def assert_bit_identical(result: np.ndarray, expected: np.ndarray) -> None:
    assert result.dtype == expected.dtype and result.shape == expected.shape
    word = {2: np.uint16, 4: np.uint32, 8: np.uint64}[result.dtype.itemsize]
    assert np.array_equal(result.view(word), expected.view(word))


@pytest.mark.parametrize("name", FILES)
def test_decoded_file_matches_published_sha256(name):
    _, _, digest = FILES[name]
    with gzip.open(path_of(name), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == digest


@pytest.mark.parametrize("name", FILES)
def test_equals_keras_code_path(name):
    result = fastidx.read_idx(path_of(name))
    expected = keras_load(name)
    assert result.dtype == np.uint8 and result.shape == expected.shape
    assert result.flags.c_contiguous and result.flags.writeable
    assert result.ctypes.data % 64 == 0
    assert np.array_equal(result, expected)
    # and re-encoding gives back the official file, byte for byte
    assert hashlib.sha256(fastidx.write_idx(None, result)).hexdigest() == FILES[name][2]


@pytest.mark.parametrize("name", FILES)
def test_header(name):
    header = fastidx.read_header(path_of(name))
    assert header.dtype == np.uint8
    assert header.shape == FILES[name][1]
    assert header.nbytes == FILES[name][0]


def test_labels_are_digits():
    for name in ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        labels = fastidx.read_idx(path_of(name))
        assert labels.min() == 0 and labels.max() == 9
        counts = np.bincount(labels)
        assert counts.size == 10 and counts.min() > 800 and counts.sum() == FILES[name][1][0]


@pytest.mark.parametrize("name", CANONICAL_FILES)
def test_official_gzip_files(name):
    # The official .gz files carry an FNAME field in their gzip header.
    path = CANONICAL / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    result = fastidx.read_idx(path)
    assert hashlib.sha256(fastidx.write_idx(None, result)).hexdigest() == CANONICAL_FILES[name]


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("dt", [np.float32, np.float16, np.float64], ids=lambda t: t.__name__)
def test_normalize_is_bit_identical(name, dt):
    x = keras_load(name)
    d = np.dtype(dt)
    result = fastidx.read_idx(path_of(name), dtype=dt, normalize=True)
    assert_bit_identical(result, x.astype(d) / d.type(255))
    if dt is np.float32:  # the default float dtype and the documented idiom
        assert_bit_identical(fastidx.read_idx(path_of(name), normalize=True),
                             x.astype("float32") / 255)


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("dt", [np.float32, np.float16, np.float64], ids=lambda t: t.__name__)
def test_mean_std_is_bit_identical(name, dt):
    x = keras_load(name)
    d = np.dtype(dt)
    result = fastidx.read_idx(path_of(name), dtype=dt, normalize=True, mean=0.1307, std=0.3081)
    assert_bit_identical(result, (x.astype(d) / d.type(255) - 0.1307) / 0.3081)


def test_layouts_on_real_images():
    x = keras_load("t10k-images-idx3-ubyte.gz")
    path = path_of("t10k-images-idx3-ubyte.gz")
    assert np.array_equal(fastidx.read_idx(path, layout="NHWC"), x[..., None])
    assert np.array_equal(fastidx.read_idx(path, layout="NCHW"), x[:, None])
    flat = fastidx.read_idx(path, layout="flat", normalize=True)
    assert_bit_identical(flat, (x.astype(np.float32) / np.float32(255)).reshape(10000, 784))


MEMORY_PROBE = """
    import sys, tracemalloc
    import numpy as np
    import fastidx
    read_idx = fastidx.read_idx  # import the codec (lazy in fastidx) before memory is traced
    path = sys.argv[1]
    results = []
    for kwargs in ({{}}, {{"normalize": True}}, {{"normalize": True, "mean": 0.1307, "std": 0.3081}},
                   {{"dtype": np.float64, "normalize": True}}):
        tracemalloc.start()
        a = read_idx(path, **kwargs)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(a.nbytes, peak, kwargs)
        del a
"""


def test_one_pass_without_full_size_intermediate():
    """Peak traced memory of read_idx(train_images, normalize=True) is the output plus a few
    buffers: a full-size uint8 intermediate would add 47 MB."""
    path = path_of("train-images-idx3-ubyte.gz")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEMORY_PROBE.format()), str(path)],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, OPENBLAS_NUM_THREADS="1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4
    for line in lines:
        nbytes, peak, kwargs = line.split(" ", 2)
        nbytes, peak = int(nbytes), int(peak)
        assert nbytes >= 47_040_000
        assert peak < nbytes + (2 << 20), (
            f"{kwargs}: peak {peak} bytes for a {nbytes}-byte output (+{peak - nbytes})")
