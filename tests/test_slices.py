"""TFDS-style split slices: ``load("train[a:b]")`` equals NumPy slicing of the whole split."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastidx
from fastidx import _cache
from fastidx.datasets import mnist
from fastidx.datasets._loader import parse_split

N_TRAIN, N_TEST = 97, 23  # odd sizes: percent rounding matters
ROWS_PER_FRAME = 10


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    rng = np.random.default_rng(11)
    directory = tmp_path_factory.mktemp("slices")
    arrays = {
        "train": (rng.integers(0, 256, (N_TRAIN, 4, 3), dtype=np.uint8),
                  rng.integers(0, 10, N_TRAIN, dtype=np.uint8)),
        "test": (rng.integers(0, 256, (N_TEST, 4, 3), dtype=np.uint8),
                 rng.integers(0, 10, N_TEST, dtype=np.uint8)),
    }
    fastidx.write_idx(directory / "train-images-idx3-ubyte.gz", arrays["train"][0])
    fastidx.write_idx(directory / "train-labels-idx1-ubyte.gz", arrays["train"][1])
    fastidx.write_idx(directory / "t10k-images-idx3-ubyte", arrays["test"][0])  # not gzipped
    fastidx.write_idx(directory / "t10k-labels-idx1-ubyte", arrays["test"][1])
    return directory, arrays


@pytest.fixture(autouse=True)
def small_frames(monkeypatch):
    monkeypatch.setattr(_cache.format, "FRAME_BYTES", ROWS_PER_FRAME * 12)


def absolute(bound, n):
    """The documented rule: rows as given, percentages rounded to the closest row (ties to even)."""
    if bound is None:
        return None
    value, pct = bound
    return round(Fraction(value * n, 100)) if pct else value


def spell(bound):
    if bound is None:
        return ""
    value, pct = bound
    return f"{value}{'%' if pct else ''}"


bounds = st.one_of(
    st.none(),
    st.tuples(st.integers(-130, 130), st.just(False)),
    st.tuples(st.integers(-100, 100), st.just(True)),
)
HOW = [dict(cache=False), dict(), dict(mmap=True)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(split=st.sampled_from(["train", "test"]), start=bounds, stop=bounds,
       how=st.sampled_from(range(len(HOW))), normalize=st.booleans())
def test_slices_equal_numpy_slicing(dataset, tmp_path, split, start, stop, how, normalize):
    directory, arrays = dataset
    x_all, y_all = arrays[split]
    n = len(y_all)
    spec = f"{split}[{spell(start)}:{spell(stop)}]"
    x, y = mnist.load(spec, directory, cache_dir=tmp_path / "c", normalize=normalize, **HOW[how])
    rows = slice(absolute(start, n), absolute(stop, n))
    want = x_all[rows].astype(np.float32) / np.float32(255) if normalize else x_all[rows]
    assert x.shape == want.shape and x.dtype == want.dtype
    assert x.tobytes() == want.tobytes()
    assert np.array_equal(y, y_all[rows])


@pytest.mark.parametrize("spec, n, rows", [
    ("train[:10%]", 60000, (0, 6000)),
    ("train[10%:20%]", 60000, (6000, 12000)),
    ("test[-1000:]", 10000, (9000, 10000)),
    ("train[:6000]", 60000, (0, 6000)),
    ("train[-10%:]", 97, (87, 97)),      # 9.7 rounds to 10
    ("train[:50%]", 97, (0, 48)),        # 48.5: ties go to even
    ("train[:50%]", 99, (0, 50)),        # 49.5: ties go to even
    ("train[ 5 : -5 ]", 20, (5, 15)),
    ("train[:]", 7, (0, 7)),
    ("train", 7, (0, 7)),
    ("train[8:3]", 10, (8, 8)),          # empty, as in NumPy
    ("train[-200:500]", 10, (0, 10)),    # clamped, as in NumPy
    ("train[100%:]", 10, (10, 10)),
    ("train[-100%:]", 10, (0, 10)),
])
def test_documented_examples(spec, n, rows):
    name, select = parse_split(spec)
    assert name == spec.split("[")[0].strip()
    assert select(n) == rows


@pytest.mark.parametrize("spec", [
    "", "valid", "TRAIN", "train[", "train]", "train[5]", "train[1:2:3]", "train[a:]",
    "train[1.5:]", "train[:101%]", "train[-101%:]", "train[10%%:]", "train[:5]+test", "train [:5]x",
    "train[5%:10]%",
])
def test_bad_split_strings_are_refused_clearly(dataset, spec):
    directory, _ = dataset
    with pytest.raises(ValueError, match=r"bad split .*expected 'train' or 'test'|percentages run"):
        mnist.load(spec, directory, cache=False)


def test_a_split_must_be_a_string(dataset):
    with pytest.raises(TypeError):
        mnist.load(slice(0, 5), dataset[0], cache=False)


def test_a_slice_decodes_only_the_frames_it_needs(dataset, tmp_path, monkeypatch):
    directory, arrays = dataset
    mnist.load("train", directory, cache_dir=tmp_path / "c")  # builds the entry
    decoded = []
    original = _cache.Frames.decode

    def counting(self, i, dst=None):
        decoded.append((self.header.row_bytes, i))
        return original(self, i, dst)

    monkeypatch.setattr(_cache.Frames, "decode", counting)
    x, _ = mnist.load("train[25:41]", directory, cache_dir=tmp_path / "c")
    assert np.array_equal(x, arrays["train"][0][25:41])
    assert sorted(i for row_bytes, i in decoded if row_bytes == 12) == [2, 3, 4]  # rows 20-49
