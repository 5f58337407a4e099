"""Sharding: every row of a split in exactly one rank's shard, per epoch, for any (index, count)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastidx
from fastidx import _cache
from fastidx.datasets import _shard, mnist
from numbered import numbered_images, row_ids, write_mnist_files

N = 103  # rows: prime, so no count above 1 divides it


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    directory = tmp_path_factory.mktemp("shards")
    x = numbered_images(N, (4, 3), seed=3)
    y = write_mnist_files(directory, x, 17)
    npz = directory / "mnist.npz"
    np.savez(npz, x_train=x, y_train=y, x_test=x[:17], y_test=y[:17])
    return directory, x, y


@pytest.fixture(autouse=True)
def small_frames(monkeypatch):
    monkeypatch.setattr(_cache.format, "FRAME_BYTES", 12 * 5)  # 5 rows per frame


def _exactly_once(parts, n):
    rows = np.concatenate(parts) if parts else np.empty(0, np.int64)
    assert np.array_equal(np.sort(rows), np.arange(n))


# ---- the pure rules, for any size -----------------------------------------------------------


@given(st.integers(0, 5000), st.integers(1, 64), st.integers(0, 100))
def test_blocks_partition_any_range(n, count, start):
    blocks = [_shard.block(start, start + n, (i, count)) for i in range(count)]
    assert blocks[0][0] == start and blocks[-1][1] == start + n
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    sizes = [b - a for a, b in blocks]
    assert max(sizes) - min(sizes) <= 1


@given(st.integers(0, 3000), st.integers(1, 40), st.integers(0, 2**32), st.integers(0, 50))
def test_strides_of_one_permutation_partition_every_epoch(n, count, seed, epoch):
    s = _shard.seed_of(seed, epoch, (0, count))
    parts = [_shard.permuter(s, (i, count))(n) for i in range(count)]
    _exactly_once(parts, n)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # DistributedSampler's rule: rank i takes perm[i::count] of one permutation seeded seed+epoch.
    perm = np.random.default_rng(seed + epoch).permutation(n)
    assert all(np.array_equal(p, perm[i::count]) for i, p in enumerate(parts))


@pytest.mark.parametrize("bad", [(2, 2), (-1, 2), (0, 0), (1,), (0, 1, 2), 3, "0/2", (0.0, 2),
                                 (True, 2), (0, None)])
def test_bad_shards_are_value_errors(dataset, bad):
    directory, _, _ = dataset
    with pytest.raises(ValueError, match="shard"):
        mnist.load("train", path=directory, shard=bad)
    with pytest.raises(ValueError, match="shard"):
        mnist.iter_batches("train", 10, path=directory, shard=bad)


def test_sharded_shuffle_needs_a_seed_and_epoch_a_non_negative_int(dataset):
    directory, _, _ = dataset
    with pytest.raises(ValueError, match="seed"):
        mnist.iter_batches("train", 10, path=directory, shuffle=True, shard=(0, 2))
    with pytest.raises(ValueError, match="seed"):
        mnist.iter_batches("train", 10, path=directory, shuffle=True, epoch=1)
    with pytest.raises(ValueError, match="epoch"):
        mnist.iter_batches("train", 10, path=directory, shuffle=True, seed=0, epoch=-1)


# ---- through the loaders ----------------------------------------------------------------------

HOW = {"cached": dict(), "uncached": dict(cache=False), "mmap": dict(mmap=True)}


@pytest.mark.parametrize("how", HOW.values(), ids=HOW.keys())
@pytest.mark.parametrize("count", [1, 2, 3, 7, 103, 150])
def test_load_shards_are_disjoint_contiguous_and_complete(dataset, tmp_path, how, count):
    directory, x, y = dataset
    parts = [mnist.load("train", path=directory, cache_dir=tmp_path, shard=(i, count), **how)
             for i in range(count)]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), x)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), y)


def test_load_shards_a_slice_and_an_npz(dataset, tmp_path):
    directory, x, y = dataset
    for path in (directory, directory / "mnist.npz"):
        parts = [mnist.load("train[10%:-20]", path=path, cache_dir=tmp_path, shard=(i, 4),
                            normalize=True) for i in range(4)]
        got = np.concatenate([row_ids(p[0]) for p in parts])
        assert np.array_equal(got, np.arange(10, N - 20))
        assert np.array_equal(np.concatenate([p[1] for p in parts]), y[10 : N - 20])


def test_load_data_shards_both_splits(dataset, tmp_path):
    directory, x, _ = dataset
    (a, _), (b, _) = mnist.load_data(path=directory, cache_dir=tmp_path, shard=(1, 2))
    assert np.array_equal(a, x[51:]) and np.array_equal(b, x[8:17])


def test_a_rank_decodes_only_its_frames(dataset, tmp_path, monkeypatch):
    directory, x, _ = dataset
    mnist.load("train", path=directory, cache_dir=tmp_path)  # build the cache
    decoded = []
    real = _cache.Frames.decode

    def counting(self, i, dst=None):
        if len(self.header.shape) == 3:  # the images (labels are a frame or two anyway)
            decoded.append(i)
        return real(self, i, dst)

    monkeypatch.setattr(_cache.Frames, "decode", counting)
    got, _ = mnist.load("train", path=directory, cache_dir=tmp_path, shard=(2, 4))
    assert np.array_equal(got, x[51:77])
    assert sorted(i for i in decoded) == list(range(51 // 5, 76 // 5 + 1))


def _batches(directory, tmp_path, count, batch_size, **options):
    return [list(mnist.iter_batches("train", batch_size, path=directory, cache_dir=tmp_path,
                                    shard=(i, count), **options)) for i in range(count)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(1, 12), batch_size=st.integers(1, 40), seed=st.integers(0, 2**20),
       epoch=st.integers(0, 5), source=st.sampled_from(["cached", "uncached", "npz"]))
def test_shuffled_shards_hold_every_row_once_per_epoch(dataset, tmp_path_factory, count,
                                                       batch_size, seed, epoch, source):
    directory, _, y = dataset
    path = directory / "mnist.npz" if source == "npz" else directory
    options = dict(cache=False) if source == "uncached" else {}
    cache = tmp_path_factory.getbasetemp() / "shard-cache"
    shards = _batches(path, cache, count, batch_size, shuffle=True, seed=seed, epoch=epoch,
                      normalize=True, **options)
    ids = [np.concatenate([row_ids(b[0]) for b in s]) if s else np.empty(0, np.int64)
           for s in shards]
    _exactly_once(ids, N)
    perm = np.random.default_rng(seed + epoch).permutation(N)
    for i, got in enumerate(ids):
        assert np.array_equal(got, perm[i::count])
        labels = np.concatenate([b[1] for b in shards[i]]) if shards[i] else np.empty(0)
        assert np.array_equal(labels, y[got])
    assert all(len(b[0]) == batch_size for s in shards for b in s[:-1])


@pytest.mark.parametrize("source", ["cached", "uncached", "npz"])
@pytest.mark.parametrize("count", [2, 5, 103, 104])
def test_in_order_shards_are_the_load_blocks(dataset, tmp_path, source, count):
    directory, x, _ = dataset
    path = directory / "mnist.npz" if source == "npz" else directory
    options = dict(cache=False) if source == "uncached" else {}
    shards = _batches(path, tmp_path, count, 8, **options)
    for i, s in enumerate(shards):
        a, b = _shard.block(0, N, (i, count))
        got = np.concatenate([b_[0] for b_ in s]) if s else x[:0]
        assert np.array_equal(got, x[a:b])


def test_epochs_differ_and_repeat(dataset, tmp_path):
    directory, _, _ = dataset

    def order(epoch):
        return np.concatenate([row_ids(b[0]) for b in mnist.iter_batches(
            "train", 16, path=directory, cache_dir=tmp_path, shuffle=True, seed=7, epoch=epoch,
            shard=(1, 3))])

    assert np.array_equal(order(0), order(0))
    assert not np.array_equal(order(0), order(1))


def test_unsharded_shuffle_is_unchanged(dataset, tmp_path):
    directory, _, _ = dataset
    got = np.concatenate([row_ids(b[0]) for b in mnist.iter_batches(
        "train", 16, path=directory, cache_dir=tmp_path, shuffle=True, seed=7)])
    assert np.array_equal(got, np.random.default_rng(7).permutation(N))


@pytest.mark.parametrize("source", ["cached", "uncached", "npz"])
@pytest.mark.parametrize("count", [2, 7, 103, 104, 150])
@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffled", "in-order"])
def test_uneven_and_oversized_world_sizes_give_every_row_once_per_epoch(
        dataset, tmp_path, source, count, shuffle):
    # 103 rows, a prime: no count above 1 divides it; 104 and 150 ranks leave some ranks empty.
    directory, _, y = dataset
    path = directory / "mnist.npz" if source == "npz" else directory
    options = dict(cache=False) if source == "uncached" else {}
    for split, first, stop in (("train", 0, N), ("train[10%:-20]", 10, N - 20)):
        for epoch in (0, 1):
            shards = [list(mnist.iter_batches(
                split, 9, path=path, cache_dir=tmp_path, shard=(i, count), shuffle=shuffle,
                seed=5 if shuffle else None, epoch=epoch if shuffle else None, **options))
                for i in range(count)]
            ids = [np.concatenate([row_ids(b[0]) for b in s]) if s else np.empty(0, np.int64)
                   for s in shards]
            got = np.sort(np.concatenate(ids))
            assert np.array_equal(got, np.arange(first, stop)), (split, epoch)
            sizes = [len(i) for i in ids]
            assert max(sizes) - min(sizes) <= 1
            if count > stop - first:
                assert sizes.count(0) == count - (stop - first)
            for i, s in enumerate(shards):  # labels travel with their rows
                labels = np.concatenate([b[1] for b in s]) if s else np.empty(0, np.uint8)
                assert np.array_equal(labels, y[ids[i]])
