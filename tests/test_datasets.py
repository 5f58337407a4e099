"""The Keras-compatible loaders: same arrays as the Keras code path, options equal their NumPy
idioms, file spellings, Keras .npz archives, mismatched files, EMNIST orientation."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import fastidx
from fastidx.datasets import emnist, fashion_mnist, mnist

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
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
