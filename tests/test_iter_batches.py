"""iter_batches: every row once per pass, in order or in a reproducible global shuffle."""

from __future__ import annotations

import numpy as np
import pytest

import fastidx
from fastidx import _cache
from fastidx.cache import MemoryLimitError
from fastidx.datasets import emnist, kmnist, mnist
from numbered import numbered_images, row_ids, write_mnist_files

N = 257  # rows: batch sizes rarely divide it


def _images(n):
    return numbered_images(n, (6, 4), seed=5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    directory = tmp_path_factory.mktemp("batches")
    x = _images(N)
    y = write_mnist_files(directory, x, 30)
    return directory, x, y


@pytest.fixture(autouse=True)
def small_frames(monkeypatch):
    monkeypatch.setattr(_cache.format, "FRAME_BYTES", 24 * 9)  # 9 rows per frame


HOW = [dict(cache=False), dict()]


@pytest.mark.parametrize("how", HOW, ids=["uncached", "cached"])
@pytest.mark.parametrize("batch_size", [1, 8, 9, 50, 257, 1000])
def test_in_order_batches_concatenate_to_the_split(dataset, tmp_path, how, batch_size):
    directory, x, y = dataset
    batches = list(mnist.iter_batches("train", batch_size, path=directory,
                                      cache_dir=tmp_path / "c", **how))
    assert [len(b[0]) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    assert np.array_equal(np.concatenate([b[0] for b in batches]), x)
    assert np.array_equal(np.concatenate([b[1] for b in batches]), y)


@pytest.mark.parametrize("how", HOW, ids=["uncached", "cached"])
def test_options_and_slices_match_load(dataset, tmp_path, how):
    directory, _, _ = dataset
    options = dict(normalize=True, mean=0.5, std=0.25, layout="NCHW", one_hot=True)
    x, y = mnist.load("train[10%:-17]", directory, cache=False, **options)
    batches = list(mnist.iter_batches("train[10%:-17]", 32, path=directory,
                                      cache_dir=tmp_path / "c", **options, **how))
    got_x = np.concatenate([b[0] for b in batches])
    got_y = np.concatenate([b[1] for b in batches])
    assert got_x.dtype == x.dtype and got_x.tobytes() == x.tobytes() and got_x.shape == x.shape
    assert got_y.dtype == np.float32 and np.array_equal(got_y, y)


@pytest.mark.parametrize("how", HOW, ids=["uncached", "cached"])
def test_shuffle_covers_every_row_once_reproducibly(dataset, tmp_path, how):
    directory, x, y = dataset

    def epoch(seed, spec="train", **extra):
        ids, labels = [], []
        for xb, yb in mnist.iter_batches(spec, 40, shuffle=True, seed=seed, path=directory,
                                         cache_dir=tmp_path / "c", **how, **extra):
            ids.append(row_ids(xb))
            labels.append(yb)
        return np.concatenate(ids), np.concatenate(labels)

    order, labels = epoch(1)
    assert sorted(order.tolist()) == list(range(N))
    assert not np.array_equal(order, np.arange(N))
    assert np.array_equal(labels, y[order])  # images and labels stay paired
    assert np.array_equal(epoch(1)[0], order)
    assert np.array_equal(order, np.random.default_rng(1).permutation(N))  # the documented order
    assert not np.array_equal(epoch(2)[0], order)
    normalized, _ = epoch(1, normalize=True)
    assert np.array_equal(normalized, order)
    part, _ = epoch(3, "train[100:200]")
    assert sorted(part.tolist()) == list(range(100, 200))


@pytest.mark.parametrize("shuffle", [False, True])
def test_drop_remainder(dataset, tmp_path, shuffle):
    directory, _, _ = dataset
    sizes = [len(xb) for xb, _ in mnist.iter_batches("train", 100, shuffle=shuffle, seed=0,
                                                     drop_remainder=True, path=directory,
                                                     cache_dir=tmp_path / "c")]
    assert sizes == [100, 100]
    sizes = [len(xb) for xb, _ in mnist.iter_batches("train", 100, shuffle=shuffle, seed=0,
                                                     path=directory, cache_dir=tmp_path / "c")]
    assert sizes == [100, 100, 57]
    assert list(mnist.iter_batches("train[:50]", 100, drop_remainder=True, shuffle=shuffle,
                                   path=directory, cache_dir=tmp_path / "c")) == []
    assert list(mnist.iter_batches("train[50:50]", 10, shuffle=shuffle, path=directory,
                                   cache_dir=tmp_path / "c")) == []


def test_batches_are_independent_arrays(dataset, tmp_path):
    directory, x, _ = dataset
    batches = list(mnist.iter_batches("train", 16, path=directory, cache_dir=tmp_path / "c"))
    batches[0][0][...] = 0
    assert np.array_equal(batches[1][0], x[16:32])


def test_max_memory_guard(dataset, tmp_path):
    directory, _, _ = dataset
    with pytest.raises(MemoryLimitError, match="max_memory"):
        mnist.iter_batches("train", 64, path=directory, normalize=True, max_memory=64 * 24 * 4,
                           cache_dir=tmp_path / "c")
    batches = mnist.iter_batches("train", 64, path=directory, normalize=True,
                                 max_memory=64 * 24 * 4 + 64 + N + 9 * 24, cache_dir=tmp_path / "c")
    assert sum(len(xb) for xb, _ in batches) == N


def test_arguments_are_checked_at_the_call(dataset):
    directory, _, _ = dataset
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(ValueError, match="batch_size"):
            mnist.iter_batches("train", bad, path=directory)
    with pytest.raises(ValueError, match="bad split"):
        mnist.iter_batches("train[::2]", 8, path=directory)
    with pytest.raises(ValueError, match="layout"):
        mnist.iter_batches("train", 8, path=directory, layout="HWC")


def test_every_dataset_module_has_iter_batches():
    from fastidx.datasets import fashion_mnist

    for module in (mnist, fashion_mnist, kmnist):
        assert callable(module.iter_batches) and callable(module.load)
    assert callable(emnist.letters.iter_batches)


def test_emnist_batches_are_upright(tmp_path):
    x = _images(40).transpose(0, 2, 1).copy()  # as NIST stores them
    y = np.arange(40, dtype=np.uint8) % 26 + 1
    for split in ("train", "test"):
        fastidx.write_idx(tmp_path / f"emnist-letters-{split}-images-idx3-ubyte.gz", x)
        fastidx.write_idx(tmp_path / f"emnist-letters-{split}-labels-idx1-ubyte.gz", y)
    for how in HOW:
        for shuffle in (False, True):
            batches = list(emnist.letters.iter_batches("test", 7, shuffle=shuffle, path=tmp_path,
                                                       cache_dir=tmp_path / "c", **how))
            got = np.concatenate([b[0] for b in batches])
            assert sorted(row_ids(got).tolist()) == list(range(40))
            order = row_ids(got)
            assert np.array_equal(got, x.transpose(0, 2, 1)[order])
            raw = np.concatenate([b[0] for b in emnist.letters.iter_batches(
                "test", 7, raw=True, path=tmp_path, cache_dir=tmp_path / "c", **how)])
            assert np.array_equal(raw, x)
