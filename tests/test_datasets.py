"""The Keras-compatible loaders: same arrays as the Keras code path, options equal their NumPy
idioms, file spellings, Keras .npz archives, mismatched files, EMNIST orientation."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import fastidx
from fastidx.datasets import emnist, fashion_mnist, kmnist, mnist
from shared_data import MNIST_DIR

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def keras_load(directory):
    """What ``keras.datasets.mnist.load_data`` does with the four gz files."""
    def read(name, offset):
        with gzip.open(directory / name, "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)

    x_train = read(FILES["train_images"], 16).reshape(-1, 28, 28)
    x_test = read(FILES["test_images"], 16).reshape(-1, 28, 28)
    return (x_train, read(FILES["train_labels"], 8)), (x_test, read(FILES["test_labels"], 8))


def same(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.fixture(scope="module")
def keras_mnist():
    if not (MNIST_DIR / FILES["train_images"]).is_file():
        pytest.skip(f"real MNIST files not found in {MNIST_DIR}")
    return keras_load(MNIST_DIR)


@pytest.mark.parametrize("how", [dict(cache=False), dict(), dict(mmap=True)],
                         ids=["uncached", "cached", "mmap"])
def test_real_mnist_equals_the_keras_code_path(mnist_dir, keras_mnist, tmp_path, how):
    cache_dir = tmp_path / "c"
    for _ in range(1 if how.get("cache") is False else 2):  # building the cache, then from it
        (x, y), (xt, yt) = mnist.load_data(mnist_dir, cache_dir=cache_dir, **how)
        (kx, ky), (kxt, kyt) = keras_mnist
        assert x.shape == (60000, 28, 28) and y.shape == (60000,)
        assert all(same(a, b) for a, b in ((x, kx), (y, ky), (xt, kxt), (yt, kyt)))


@pytest.mark.parametrize("options, idiom", [
    (dict(normalize=True), lambda x: x.astype("float32") / 255),
    (dict(normalize=True, dtype="float64"), lambda x: x.astype("float64") / 255),
    (dict(normalize=True, mean=0.1307, std=0.3081),
     lambda x: (x.astype("float32") / np.float32(255) - np.float32(0.1307)) / np.float32(0.3081)),
    (dict(dtype="float32"), lambda x: x.astype("float32")),
    (dict(layout="NHWC"), lambda x: x.reshape(-1, 28, 28, 1)),
    (dict(layout="NCHW", normalize=True), lambda x: (x.astype("float32") / 255)[:, None]),
    (dict(layout="flat"), lambda x: x.reshape(len(x), 784)),
], ids=["normalize", "float64", "mean-std", "float32", "NHWC", "NCHW", "flat"])
def test_options_equal_their_numpy_idioms_on_real_mnist(mnist_dir, keras_mnist, tmp_path, options,
                                                        idiom):
    _, (kxt, kyt) = keras_mnist
    for how in (dict(cache=False), dict(cache_dir=tmp_path / "c")):
        x, y = mnist.load("test", mnist_dir, **options, **how)
        assert same(x, idiom(kxt))
        assert same(y, kyt)


def test_one_hot_is_keras_to_categorical(mnist_dir, keras_mnist, tmp_path):
    _, (_, kyt) = keras_mnist
    _, y = mnist.load("test", mnist_dir, one_hot=True, cache_dir=tmp_path / "c")
    assert same(y, np.eye(10, dtype="float32")[kyt])


def _write(directory, names, n_train=20, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for role, array in arrays.items():
        fastidx.write_idx(directory / names[role], array)
    return arrays


@pytest.mark.parametrize("spelling", [
    lambda name: name,                                                     # official .gz
    lambda name: name[:-3],                                                # gunzipped
    lambda name: name[:-3].replace("-idx", ".idx"),                        # train-images.idx3-ubyte
    lambda name: name.replace("-idx", ".idx"),                             # ... and gzipped
], ids=["gz", "plain", "dotted", "dotted-gz"])
def test_file_spellings(tmp_path, spelling):
    names = {role: spelling(name) for role, name in FILES.items()}
    arrays = _write(tmp_path / "d", names)
    for how in (dict(cache=False), dict(cache_dir=tmp_path / "c")):
        (x, y), (xt, yt) = mnist.load_data(tmp_path / "d", **how)
        assert same(x, arrays["train_images"]) and same(yt, arrays["test_labels"])
        assert same(y, arrays["train_labels"]) and same(xt, arrays["test_images"])


def test_keras_npz(tmp_path):
    arrays = _write(tmp_path / "unused", FILES)
    npz = tmp_path / "mnist.npz"
    np.savez_compressed(npz, x_train=arrays["train_images"], y_train=arrays["train_labels"],
                        x_test=arrays["test_images"], y_test=arrays["test_labels"])
    (x, y), (xt, yt) = mnist.load_data(npz)
    assert same(x, arrays["train_images"]) and same(y, arrays["train_labels"])
    assert same(xt, arrays["test_images"]) and same(yt, arrays["test_labels"])
    x, y = mnist.load("train[5:-5]", npz, normalize=True, layout="flat", one_hot=True)
    assert same(x, (arrays["train_images"][5:-5].astype("float32") / 255).reshape(10, 784))
    assert same(y, np.eye(10, dtype="float32")[arrays["train_labels"][5:-5]])
    batches = list(mnist.iter_batches("train", 8, path=npz, shuffle=True, seed=4))
    assert [len(b[0]) for b in batches] == [8, 8, 4]
    order = np.random.default_rng(4).permutation(20)
    assert same(np.concatenate([b[0] for b in batches]), arrays["train_images"][order])
    with pytest.raises(fastidx.IDXError, match="not a Keras-format"):
        np.savez(tmp_path / "other.npz", a=np.zeros(3))
        mnist.load_data(tmp_path / "other.npz")


@pytest.mark.parametrize("how", [dict(cache=False), dict(), dict(mmap=True)],
                         ids=["uncached", "cached", "mmap"])
def test_count_mismatch_names_both_files(tmp_path, how):
    arrays = _write(tmp_path / "d", FILES)
    fastidx.write_idx(tmp_path / "d" / FILES["train_labels"], arrays["train_labels"][:-1])
    with pytest.raises(fastidx.IDXError) as info:
        mnist.load("train", tmp_path / "d", cache_dir=tmp_path / "c", **how)
    message = str(info.value)
    assert FILES["train_images"] in message and FILES["train_labels"] in message
    assert "20 images" in message and "19 labels" in message
    with pytest.raises(fastidx.IDXError, match="19 labels"):
        mnist.iter_batches("train", 4, path=tmp_path / "d", cache_dir=tmp_path / "c",
                           cache=how.get("cache", True))


def test_missing_files_are_named(tmp_path):
    _write(tmp_path / "d", FILES)
    (tmp_path / "d" / FILES["test_labels"]).unlink()
    with pytest.raises(fastidx.DatasetNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        mnist.load_data(tmp_path / "d")


@pytest.mark.parametrize("how", [dict(cache=False), dict(), dict(mmap=True)],
                         ids=["uncached", "cached", "mmap"])
def test_emnist_is_upright_unless_raw(tmp_path, how):
    names = {role: f"emnist-balanced-{role.replace('_', '-')}-idx{3 if 'images' in role else 1}-ubyte.gz"
             for role in FILES}
    arrays = _write(tmp_path / "e", names)
    cache_dir = tmp_path / "c"
    (x, y), (xt, yt) = emnist.balanced.load_data(path=tmp_path / "e", cache_dir=cache_dir, **how)
    assert same(x, arrays["train_images"].transpose(0, 2, 1).copy())
    assert same(xt, arrays["test_images"].transpose(0, 2, 1).copy())
    assert same(y, arrays["train_labels"]) and same(yt, arrays["test_labels"])
    (x, _), (xt, _) = emnist.balanced.load_data(path=tmp_path / "e", cache_dir=cache_dir, raw=True,
                                                **how)
    assert same(x, arrays["train_images"]) and same(xt, arrays["test_images"])
    x, _ = emnist.balanced.load("train[3:9]", tmp_path / "e", cache_dir=cache_dir, layout="NHWC",
                                normalize=True, **how)
    want = arrays["train_images"][3:9].transpose(0, 2, 1)[..., None].astype("float32") / 255
    assert same(x, want)


def test_fashion_mnist_loads_the_same_way(tmp_path):
    arrays = _write(tmp_path / "f", FILES, seed=9)
    (x, y), _ = fashion_mnist.load_data(tmp_path / "f", cache_dir=tmp_path / "c")
    assert same(x, arrays["train_images"]) and same(y, arrays["train_labels"])
    assert fashion_mnist.class_names[0] == "T-shirt/top"


# ---------------------------------------------------------------------------------------------
# mean/std always apply to the [0, 1] scale (issue 11, item 6)

HOW = [dict(cache=False), dict(), dict(mmap=True)]
HOW_IDS = ["uncached", "cached", "mmap"]


@pytest.mark.parametrize("how", HOW, ids=HOW_IDS)
def test_mean_std_apply_to_the_unit_scale_with_or_without_normalize(tmp_path, how):
    arrays = _write(tmp_path / "d", FILES)
    x8 = arrays["train_images"]
    cache_dir = tmp_path / "c"
    f32, f64 = np.float32, np.float64
    cases = [
        (dict(mean=0.1307, std=0.3081), (x8.astype(f32) / f32(255) - f32(0.1307)) / f32(0.3081)),
        (dict(normalize=True, mean=0.1307, std=0.3081),
         (x8.astype(f32) / f32(255) - f32(0.1307)) / f32(0.3081)),
        (dict(mean=0.5), x8.astype(f32) / f32(255) - f32(0.5)),
        (dict(std=0.25, dtype="float64"), x8.astype(f64) / f64(255) / f64(0.25)),
        (dict(normalize=True), x8.astype(f32) / f32(255)),
    ]
    for _ in range(2):  # the second round reads what the first one cached, under its own key
        for options, want in cases:
            x, _ = mnist.load("train", tmp_path / "d", cache_dir=cache_dir, **options, **how)
            assert same(x, want), options
    x, _ = mnist.load("train", tmp_path / "d", cache_dir=cache_dir, mean=0.1307, std=0.3081, **how)
    assert float(np.abs(x).max()) < 3  # not the 827 of (x - mean) / std


@pytest.mark.parametrize("bad", [dict(std=0), dict(std=-0.0), dict(std=-1.0), dict(std=float("nan")),
                                 dict(std=float("inf")), dict(mean=float("nan")), dict(mean="x"),
                                 dict(std=1e-9, dtype="float16")],
                         ids=["0", "-0", "negative", "nan", "inf", "nan-mean", "str-mean",
                              "0-in-float16"])
def test_bad_std_or_mean_is_refused_before_reading(tmp_path, bad):
    directory = tmp_path / "d"
    _write(directory, FILES)
    for f in directory.iterdir():  # nothing is read: even damaged files give the option's error
        f.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="mnist: (std|mean)"):
        mnist.load("train", directory, **bad)
    with pytest.raises(ValueError, match="mnist: (std|mean)"):
        mnist.load_data(directory, **bad)
    with pytest.raises(ValueError, match="mnist: (std|mean)"):
        mnist.iter_batches("train", 4, path=directory, **bad)


# ---------------------------------------------------------------------------------------------
# one_hot=True checks the labels (item 7)

def _with_labels(directory, labels):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
    fastidx.write_idx(directory / FILES["train_images"], x)
    fastidx.write_idx(directory / FILES["train_labels"], np.asarray(labels))
    return x


@pytest.mark.parametrize("labels, match", [
    (np.array([0, 3, 10], np.uint8), "label 10"),
    (np.array([0, -1, 2], np.int8), "label -1"),
    (np.array([0, 50000, 2], np.int32), "label 50000"),
    (np.array([0.0, 1.0, 2.0], np.float32), "float32 labels"),
], ids=["10", "-1", "50000", "float"])
@pytest.mark.parametrize("how", HOW, ids=HOW_IDS)
def test_one_hot_refuses_labels_outside_the_classes(tmp_path, labels, match, how):
    directory = tmp_path / "d"
    directory.mkdir()
    _with_labels(directory, labels)
    with pytest.raises(ValueError, match=match) as info:
        mnist.load("train", directory, one_hot=True, cache_dir=tmp_path / "c", **how)
    assert FILES["train_labels"] in str(info.value) and "mnist" in str(info.value)
    batches = dict(cache=how.get("cache", True), cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match=match):
        mnist.iter_batches("train", 2, path=directory, one_hot=True, **batches)
    # Without one_hot the labels are returned as stored.
    _, y = mnist.load("train", directory, cache_dir=tmp_path / "c", **how)
    assert same(y, labels)


def test_one_hot_from_an_npz_is_checked_too(tmp_path):
    npz = tmp_path / "bad.npz"
    np.savez(npz, x_train=np.zeros((3, 28, 28), np.uint8), y_train=np.array([1, 12, 3], np.uint8),
             x_test=np.zeros((0, 28, 28), np.uint8), y_test=np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match=r"bad.npz\[y_train\] holds label 12"):
        mnist.load("train", npz, one_hot=True)
    with pytest.raises(ValueError, match="label 12"):
        list(mnist.iter_batches("train", 2, path=npz, one_hot=True))
    with pytest.raises(ValueError, match="label 12"):
        fastidx.datasets.Dataset("mnist").one_hot(np.array([12]))


def test_one_hot_rows_equal_to_categorical_within_the_memory_budget(tmp_path):
    directory = tmp_path / "d"
    directory.mkdir()
    labels = np.arange(300, dtype=np.uint8) % 10
    _with_labels(directory, labels)
    fastidx.write_idx(directory / FILES["test_images"], np.zeros((1, 28, 28), np.uint8))
    fastidx.write_idx(directory / FILES["test_labels"], np.zeros(1, np.uint8))
    x, y = mnist.load("train", directory, one_hot=True, cache=False)
    assert same(y, np.eye(10, dtype=np.float32)[labels])
    hot = 300 * 10 * 4
    with pytest.raises(fastidx.MemoryLimitError, match="one-hot"):
        mnist.load("train", directory, one_hot=True, cache=False, max_memory=hot)
    x, y = mnist.load("train", directory, one_hot=True, cache=False,
                      max_memory=x.nbytes + y.nbytes + labels.nbytes)
    assert y.shape == (300, 10)


# ---------------------------------------------------------------------------------------------
# path=dir: roles and counts from the headers, before decoding (item 8); a split needs only its
# own two files (item 22)

def _truncate_payload(path):
    """Keep the header, cut the payload: decoding it would fail, reading the header does not."""
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2], mtime=0))


@pytest.mark.parametrize("how", HOW, ids=HOW_IDS)
def test_count_mismatch_is_found_from_the_headers_before_decoding(tmp_path, how):
    arrays = _write(tmp_path / "d", FILES)
    fastidx.write_idx(tmp_path / "d" / FILES["train_labels"], arrays["train_labels"][:-1])
    _truncate_payload(tmp_path / "d" / FILES["train_images"])
    with pytest.raises(fastidx.IDXError, match="20 images but .* holds 19 labels"):
        mnist.load("train", tmp_path / "d", cache_dir=tmp_path / "c", **how)
    with pytest.raises(fastidx.IDXError, match="20 images but .* holds 19 labels"):
        mnist.iter_batches("train", 4, path=tmp_path / "d", cache_dir=tmp_path / "c")


@pytest.mark.parametrize("how", HOW, ids=HOW_IDS)
def test_swapped_image_and_label_files_are_refused(tmp_path, how):
    swapped = dict(FILES, train_images=FILES["train_labels"], train_labels=FILES["train_images"])
    _write(tmp_path / "d", swapped)
    _truncate_payload(tmp_path / "d" / FILES["train_labels"])  # the images, under the labels' name
    with pytest.raises(fastidx.IDXError, match="swapped") as info:
        mnist.load("train", tmp_path / "d", cache_dir=tmp_path / "c", **how)
    assert FILES["train_images"] in str(info.value) and FILES["train_labels"] in str(info.value)
    with pytest.raises(fastidx.IDXError, match="swapped"):
        mnist.load_data(tmp_path / "d", cache_dir=tmp_path / "c", **how)


def test_two_dimensional_labels_are_refused(tmp_path):
    arrays = _write(tmp_path / "d", FILES)
    fastidx.write_idx(tmp_path / "d" / FILES["test_labels"], np.zeros((5, 2), np.uint8))
    with pytest.raises(fastidx.IDXError, match=r"one label per image .* shape \(5, 2\)") as info:
        mnist.load("test", tmp_path / "d", cache=False)
    assert FILES["test_images"] in str(info.value)
    with pytest.raises(fastidx.IDXError, match="one label per image"):
        mnist.load_data(tmp_path / "d", cache=False)
    x, y = mnist.load("train", tmp_path / "d", cache=False)  # the train pair is fine
    assert same(x, arrays["train_images"])


def test_a_split_needs_only_its_own_files(tmp_path):
    arrays = _write(tmp_path / "d", FILES)
    for role in ("test_images", "test_labels"):
        (tmp_path / "d" / FILES[role]).unlink()
    for how in (dict(cache=False), dict(cache_dir=tmp_path / "c")):
        x, y = mnist.load("train", tmp_path / "d", **how)
        assert same(x, arrays["train_images"]) and same(y, arrays["train_labels"])
    assert sum(len(x) for x, _ in mnist.iter_batches("train", 8, path=tmp_path / "d")) == 20
    with pytest.raises(fastidx.DatasetNotFoundError) as info:
        mnist.load("test", tmp_path / "d")
    assert FILES["test_images"] in str(info.value) and FILES["test_labels"] in str(info.value)
    with pytest.raises(fastidx.DatasetNotFoundError, match=FILES["test_labels"]):
        mnist.load_data(tmp_path / "d")


# ---------------------------------------------------------------------------------------------
# .npz sources: max_memory before inflating, only the needed rows inflated (item 14)

def _big_npz(path, n=20000):
    """An .npz whose x_train inflates to n * 784 bytes (15.7 MB for 20,000) from a tiny file."""
    x = np.zeros((n, 28, 28), np.uint8)
    x[:, 0, 0] = np.arange(n) % 251
    np.savez_compressed(path, x_train=x, y_train=(np.arange(n) % 10).astype(np.uint8),
                        x_test=x[:5], y_test=np.zeros(5, np.uint8))
    return x


def test_npz_max_memory_is_checked_before_inflating(tmp_path):
    import tracemalloc

    npz = tmp_path / "big.npz"
    _big_npz(npz)
    tracemalloc.start()
    try:
        with pytest.raises(fastidx.MemoryLimitError, match="max_memory=1,000,000"):
            mnist.load("train", npz, max_memory=1_000_000)
        with pytest.raises(fastidx.MemoryLimitError):
            mnist.load_data(npz, max_memory=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000  # nothing near the 15.7 MB of the member was inflated


def test_npz_slices_inflate_only_their_rows(tmp_path):
    import tracemalloc

    npz = tmp_path / "big.npz"
    x = _big_npz(npz)
    tracemalloc.start()
    try:
        got, y = mnist.load("train[-100:]", npz, normalize=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert same(got, x[-100:].astype(np.float32) / np.float32(255))
    assert same(y, (np.arange(20000) % 10).astype(np.uint8)[-100:])
    assert peak < 8_000_000  # a few 1 MiB read buffers, not the 15.7 MB member
    got, _ = mnist.load("train", npz, max_memory=x.nbytes + 20000)
    assert same(got, x)


def test_npz_member_that_lies_about_its_size_is_refused(tmp_path):
    import zipfile

    npz = tmp_path / "lying.npz"
    member = np.lib.format
    with zipfile.ZipFile(npz, "w") as archive:
        for key, array in (("x_train", np.zeros((4, 28, 28), np.uint8)),
                           ("y_train", np.zeros(4, np.uint8))):
            with archive.open(f"{key}.npy", "w") as f:
                member.write_array(f, array)
        with archive.open("x_test.npy", "w") as f:  # declares 10**6 images, holds 1
            member.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False,
                                              "shape": (10**6, 28, 28)})
            f.write(bytes(784))
        with archive.open("y_test.npy", "w") as f:
            member.write_array(f, np.zeros(10**6, np.uint8))
    x, _ = mnist.load("train", npz)
    assert x.shape == (4, 28, 28)
    with pytest.raises(fastidx.IDXError, match=r"x_test.npy declares 1000000x28x28 uint8"):
        mnist.load("test", npz)


def test_emnist_zero_row_file_with_huge_rows(tmp_path):
    import struct

    names = {role: f"emnist-balanced-{role.replace('_', '-')}-idx{3 if 'images' in role else 1}-ubyte"
             for role in FILES}
    directory = tmp_path / "e"
    directory.mkdir()
    (directory / names["train_images"]).write_bytes(struct.pack(">HBB3I", 0, 8, 3, 0, 2**31, 2**31))
    fastidx.write_idx(directory / names["train_labels"], np.zeros(0, np.uint8))
    fastidx.write_idx(directory / names["test_images"], np.zeros((1, 28, 28), np.uint8))
    fastidx.write_idx(directory / names["test_labels"], np.zeros(1, np.uint8))
    for how in (dict(cache=False), dict(cache_dir=tmp_path / "c"), dict(cache_dir=tmp_path / "c",
                                                                           mmap=True)):
        for raw in (False, True):
            x, y = emnist.balanced.load("train", directory, raw=raw, **how)
            assert x.shape == (0, 2**31, 2**31) and y.shape == (0,)
    for shuffle in (False, True):
        for cache in (False, True):
            assert list(emnist.balanced.iter_batches("train", 4, path=directory, shuffle=shuffle,
                                                     cache=cache, cache_dir=tmp_path / "c")) == []


# ---------------------------------------------------------------------------------------------
# Keras's own calls (item 9) and real signatures (item 10)

def test_keras_path_mnist_npz_means_the_keras_cache_file(mnist_dir, keras_mnist, tmp_path,
                                                         monkeypatch):
    """``mnist.load_data(path="mnist.npz")`` is Keras's default call: a file name in Keras's cache
    (``$KERAS_HOME/datasets``), holding the pinned MNIST; never a file of the current directory."""
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((1, 28, 28), np.uint8),
             y_train=np.zeros(1, np.uint8), x_test=np.zeros((1, 28, 28), np.uint8),
             y_test=np.zeros(1, np.uint8))  # in the current directory: not what Keras reads
    mirror = mnist_dir.parent.as_uri()  # serves <base>/mnist/<file name>, offline
    for call in (lambda: mnist.load_data(path="mnist.npz", mirrors=mirror),
                 lambda: mnist.load_data("mnist.npz", mirrors=mirror, progress=False)):
        (x, y), (xt, yt) = call()
        (kx, ky), (kxt, kyt) = keras_mnist
        assert all(same(a, b) for a, b in ((x, kx), (y, ky), (xt, kxt), (yt, kyt)))


def test_keras_path_other_name_is_used_only_when_it_is_the_pinned_archive(
        mnist_dir, keras_mnist, tmp_path, monkeypatch):
    import dataclasses
    import hashlib
    import os

    from fastidx import registry

    (kx, ky), (kxt, kyt) = keras_mnist
    keras_datasets = Path(os.environ["KERAS_HOME"]) / "datasets"
    keras_datasets.mkdir(parents=True)
    mine = keras_datasets / "my-mnist.npz"
    np.savez(mine, x_train=kx[:7], y_train=ky[:7], x_test=kxt[:3], y_test=kyt[:3])
    mirror = mnist_dir.parent.as_uri()
    # Not the archive Keras pins: Keras would download over it; fastidx leaves it and says so.
    with pytest.warns(fastidx.CacheWarning, match="my-mnist.npz is not the mnist.npz Keras pins"):
        (x, _), _ = mnist.load_data(path="my-mnist.npz", mirrors=mirror)
    assert same(x, kx)
    assert mine.is_file()
    # The pinned archive (its hash made the pin here) is what that call loads.
    spec = registry.DATASETS["mnist"]
    pin = hashlib.sha256(mine.read_bytes()).hexdigest()
    monkeypatch.setitem(registry.DATASETS, "mnist",
                        dataclasses.replace(spec, keras_npz=dataclasses.replace(spec.keras_npz,
                                                                                sha256=pin)))
    (x, y), (xt, yt) = mnist.load_data(path="my-mnist.npz", mirrors="file:///nonexistent")
    assert same(x, kx[:7]) and same(yt, kyt[:3])


def test_a_path_with_a_directory_part_is_the_callers_file(tmp_path, monkeypatch):
    arrays = _write(tmp_path / "unused", FILES)
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "mnist.npz", x_train=arrays["train_images"], y_train=arrays["train_labels"],
             x_test=arrays["test_images"], y_test=arrays["test_labels"])
    (x, _), _ = mnist.load_data("./mnist.npz")
    assert same(x, arrays["train_images"])
    (x, _), _ = fashion_mnist.load_data("mnist.npz")  # Keras has no path= there: a plain path
    assert same(x, arrays["train_images"])


PUBLIC = [(module, name) for module in (mnist, fashion_mnist, kmnist)
          for name in ("load_data", "load", "iter_batches")]


@pytest.mark.parametrize("module, name", PUBLIC, ids=[f"{m.__name__.split('.')[-1]}.{n}"
                                                      for m, n in PUBLIC])
def test_public_loaders_have_real_signatures_and_docstrings(module, name):
    import inspect

    func = getattr(module, name)
    signature = inspect.signature(func)
    kinds = {p.kind for p in signature.parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds
    method = inspect.signature(getattr(fastidx.datasets.Dataset, name))
    expected = [p for p in method.parameters.values() if p.name not in ("self", "raw")]
    assert list(signature.parameters.values()) == expected
    doc = inspect.getdoc(func)
    for param in signature.parameters:
        assert f"\n{param} : " in doc, param
    assert "(60000, 28, 28)" in doc and "uint8" in doc and "Examples" in doc
    spec = module._dataset.spec
    if name == "load_data":
        digits = spec.class_names == tuple(str(d) for d in range(10))
        assert "digits 0-9" in doc if digits else all(c in doc for c in spec.class_names)
        assert "licen" in doc.lower() and module.class_names == spec.class_names
    with pytest.raises(TypeError, match=rf"^{name}\(\) got an unexpected keyword argument 'colour'"):
        func("train", 4, colour=1) if name == "iter_batches" else func(colour=1)


@pytest.mark.parametrize("split", emnist.SPLITS)
def test_emnist_functions_are_the_splits_own(split):
    """Each EMNIST split's functions are named for it (an unknown keyword's TypeError says
    ``letters.load_data()``, not ``Dataset.load_data()``), with the signature of Dataset's
    methods, ``raw`` included, and docstrings giving the split's own shapes and classes."""
    import inspect

    dataset = getattr(emnist, split)
    assert isinstance(dataset, fastidx.datasets.Dataset) and dataset.name == f"emnist_{split}"
    for name in ("load_data", "load", "iter_batches"):
        func = getattr(dataset, name)
        method = inspect.signature(getattr(fastidx.datasets.Dataset, name))
        expected = [p for p in method.parameters.values() if p.name != "self"]
        assert list(inspect.signature(func).parameters.values()) == expected
        doc = inspect.getdoc(func)
        assert f"EMNIST {split}" in doc and "\nraw : " in doc and f"emnist.{split}.{name}(" in doc
        with pytest.raises(TypeError, match=rf"^{split}\.{name}\(\) got an unexpected keyword "
                                            rf"argument 'colour'"):
            func("train", 4, colour=1) if name == "iter_batches" else func(colour=1)
    rows = dataset.spec.splits
    doc = inspect.getdoc(dataset.load_data)
    assert f"({rows['train']}, 28, 28)" in doc and f"({rows['test']}, 28, 28)" in doc


def test_module_docstrings_state_the_dataset():
    assert "CC BY-SA 3.0" in mnist.__doc__ and "(60000, 28, 28)" in mnist.__doc__
    assert "MIT" in fashion_mnist.__doc__
    assert "CC BY-SA 4.0" in kmnist.__doc__
    for split in emnist.SPLITS:
        assert f"\n{split} " in emnist.__doc__
    assert "Cohen" in emnist.__doc__


def test_import_fastidx_datasets_imports_nothing_heavy():
    """Issue 10: ``import fastidx.datasets`` costs next to nothing over ``import numpy``; the codec,
    registry, cache, downloader (zstandard, filelock, json, hashlib, pathlib ...) wait for a load."""
    import subprocess
    import sys

    code = (
        "import numpy, sys\n"
        "before = set(sys.modules)\n"
        "import fastidx.datasets\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    new = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.split())
    allowed = {"__future__", "fastidx", "fastidx._errors", "fastidx.datasets",
               "fastidx.datasets._loader", "fastidx.datasets._docs", "fastidx.datasets._splits",
               "fastidx.datasets._public", "fastidx.datasets.emnist",
               "fastidx.datasets.fashion_mnist", "fastidx.datasets.kmnist", "fastidx.datasets.mnist"}
    assert new <= allowed, sorted(new - allowed)
    # ... and every public name still works.
    from fastidx import read_header, read_idx, write_idx  # noqa: F401

    assert fastidx.datasets.SAMPLE_DIR.is_dir() and mnist.class_names[3] == "3"
    assert callable(fastidx.read_idx) and fastidx.cache.__name__ == "fastidx.cache"
