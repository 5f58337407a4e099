"""What each contender does for each benchmark case: shared by ``compare.py``'s child processes
(``_worker.py``) and by the pytest-benchmark suite (``test_loads.py``).

Every case returns the arrays a user ends up holding, in a fixed order (``x_train, y_train, x_test,
y_test`` for whole-dataset loads, ``x, y`` for the 10% subset), or, for ``iter_batches``, hands each
``(x, y)`` batch to ``on_batch`` as it is produced. Nothing here times or checks anything: the callers
do, so the code that is verified is exactly the code that is timed.

Contenders
----------
fastidx       ``fastidx.datasets.mnist`` over the directory of gz files.
tf.keras      ``tf.keras.datasets.fashion_mnist.load_data()`` reading the MNIST gz files from a
              temporary ``KERAS_HOME`` (Keras's Fashion-MNIST loader is its IDX loader: it checks no
              hash, so pointed at the MNIST files it is Keras's own gz->array path on the same bytes).
tf.keras-npz  ``tf.keras.datasets.mnist.load_data()``: Keras's MNIST loader reads ``mnist.npz``.
              Keras pins that file's SHA-256 (731c5ac6...); the npz here is built from the same
              arrays with ``np.savez_compressed``, so its hash differs. Keras's ``validate_file`` still
              runs and hashes the whole file on every load (that cost is real and kept); only its
              verdict is ignored.
numpy+gzip    The Keras code path written by hand: ``gzip.open(f).read()`` + ``np.frombuffer``.
floor         No input at all: ``np.empty`` of every output array of the case (same shapes and
              dtypes) and ``.fill()`` with a constant, i.e. faulting in and writing every output byte
              once. No real loader can do less for an in-memory result.
torchvision   ``torchvision.datasets.MNIST(root, download=False)`` over the same files gunzipped
              (torchvision reads uncompressed IDX); labels cast from int64 to uint8, images from the
              ``uint8`` tensor via ``.numpy()``.

The first three cases are the headline: the default call, ``load_data()`` with no ``path=``, as users
write it (fastidx reads ``$FASTIDX_HOME/mnist/``, Keras ``$KERAS_HOME/datasets/``). ``first_load``:
the files are there and verified, fastidx's decoded-array cache is empty; ``warm_load`` and
``warm_mmap`` (``mmap=True``): the cache is full. The ``path=`` cases follow.

For ``first_load``, the ``warm_*``, ``cached_*`` and ``mmap_uint8`` cases, the contenders other than
fastidx have no cache of decoded arrays: they run their normal load, which is exactly what a user's
first or repeated load costs them.
For ``subset_10pct`` they do the full load and slice, as users do; for ``iter_batches`` they convert the
whole training set to float32 and slice batches of views.
"""

from __future__ import annotations

import os

#: The call users make, timed first: ``mnist.load_data()`` with no ``path=``, the files in
#: ``$FASTIDX_HOME/mnist/`` (as ``fastidx download mnist`` leaves them). ``first_load``: the
#: decoded-array cache is empty (emptied before each run); ``warm_load`` / ``warm_mmap``: it is full.
DEFAULT_CALL_CASES = ("first_load", "warm_load", "warm_mmap")
CASES = (
    *DEFAULT_CALL_CASES,
    "cold_uint8",
    "cold_float32",
    "cached_uint8",
    "cached_float32",
    "mmap_uint8",
    "subset_10pct",
    "iter_batches",
)
TOOLS = ("fastidx", "tf.keras", "tf.keras-npz", "numpy+gzip", "floor", "torchvision")
#: Contenders whose arrays are checked against the reference (numpy+gzip); the floor reads nothing.
VERIFIED_TOOLS = ("fastidx", "tf.keras", "tf.keras-npz", "torchvision")
REFERENCE_TOOL = "numpy+gzip"
#: fastidx cases that read the decoded-array cache: the cache is warmed before they are timed.
CACHED_CASES = ("warm_load", "warm_mmap", "cached_uint8", "cached_float32", "mmap_uint8", "subset_10pct",
                "iter_batches")
FLOAT_CASES = ("cold_float32", "cached_float32", "iter_batches")

BATCH = 1000
SUBSET_PERCENT = 10
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


class Unsupported(Exception):
    """The contender (or this version of it) does not offer the case; the message says why."""


def subset_count(n_train: int) -> int:
    """Images in ``train[:10%]``: TFDS rounds a percent boundary to the nearest example."""
    return int(round(n_train * SUBSET_PERCENT / 100))


# ---------------------------------------------------------------------------------------------
# Imports (timed separately by the worker).


def import_tool(tool: str):
    """Import what ``tool`` needs and return it (a module or a tuple of them)."""
    if tool == "fastidx":
        from fastidx.datasets import mnist

        return mnist
    if tool in ("tf.keras", "tf.keras-npz"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        datasets = tf.keras.datasets  # lazily loaded: touch it so its import is counted here
        return tf, datasets
    if tool == "numpy+gzip":
        import gzip

        return gzip
    if tool == "floor":
        return None
    if tool == "torchvision":
        import torchvision.datasets

        return torchvision.datasets
    raise ValueError(f"unknown tool {tool!r}")


# ---------------------------------------------------------------------------------------------
# The cases.


def _to_float32(x):
    return x.astype("float32") / 255


def _batches_of(x, y, on_batch):
    for start in range(0, x.shape[0], BATCH):
        on_batch(x[start : start + BATCH], y[start : start + BATCH])


def _finish(case, train, test, on_batch):
    """Turn a full load ``(x_train, y_train), (x_test, y_test)`` of uint8 arrays into ``case``'s
    result, the way a user of a loader without these features does it."""
    (x_train, y_train), (x_test, y_test) = train, test
    if case in ("cold_uint8", "cached_uint8", "mmap_uint8", *DEFAULT_CALL_CASES):
        return [x_train, y_train, x_test, y_test]
    if case in ("cold_float32", "cached_float32"):
        return [_to_float32(x_train), y_train, _to_float32(x_test), y_test]
    if case == "subset_10pct":
        n = subset_count(x_train.shape[0])
        return [x_train[:n], y_train[:n]]
    if case == "iter_batches":
        _batches_of(_to_float32(x_train), y_train, on_batch)
        return []
    raise ValueError(f"unknown case {case!r}")


def fastidx_case(mnist, case: str, ctx: dict, on_batch=None, *, threads=None):
    """fastidx: every option is passed by name; a missing feature raises :class:`Unsupported`."""
    path = ctx["data_dir"]
    cached = {"cache": True, "cache_dir": ctx["cache_dir"]}
    extra = {} if threads is None else {ctx["threads_param"]: threads}
    try:
        if case in ("first_load", "warm_load"):  # the default call: what users write
            train, test = mnist.load_data(**extra)
            return [*train, *test]
        if case == "warm_mmap":
            train, test = mnist.load_data(mmap=True, **extra)
            return [*train, *test]
        if case == "cold_uint8":
            train, test = mnist.load_data(path=path, cache=False, **extra)
            return [*train, *test]
        if case == "cold_float32":
            train, test = mnist.load_data(path=path, cache=False, normalize=True, **extra)
            return [*train, *test]
        if case == "cached_uint8":
            train, test = mnist.load_data(path=path, **cached, **extra)
            return [*train, *test]
        if case == "cached_float32":
            train, test = mnist.load_data(path=path, normalize=True, **cached, **extra)
            return [*train, *test]
        if case == "mmap_uint8":
            train, test = mnist.load_data(path=path, mmap=True, **cached, **extra)
            return [*train, *test]
        if case == "subset_10pct":
            x, y = mnist.load(f"train[:{SUBSET_PERCENT}%]", path=path, **cached, **extra)
            return [x, y]
        if case == "scale_cold":
            return list(mnist.load("train", path=path, cache=False, **extra))
        if case == "scale_cached":
            return list(mnist.load("train", path=path, **cached, **extra))
        if case == "iter_batches":
            if not hasattr(mnist, "iter_batches"):
                raise Unsupported("fastidx.datasets.mnist has no iter_batches()")
            for x, y in mnist.iter_batches(
                "train", BATCH, shuffle=False, path=path, normalize=True, **cached, **extra
            ):
                on_batch(x, y)
            return []
    except TypeError as exc:
        # An option this fastidx does not know (mmap=, a thread count...).
        if "unexpected keyword argument" in str(exc) or "positional argument" in str(exc):
            raise Unsupported(f"{type(exc).__name__}: {exc}") from None
        raise
    except AttributeError as exc:
        raise Unsupported(f"{type(exc).__name__}: {exc}") from None
    except ValueError as exc:
        # load("train[:10%]") before TFDS-style slices existed: "split must be one of ...".
        if case == "subset_10pct" and "split" in str(exc):
            raise Unsupported(f"load() does not take TFDS-style slices: {exc}") from None
        raise
    raise ValueError(f"unknown case {case!r}")


def keras_case(mods, case: str, ctx: dict, on_batch=None):
    """``tf.keras.datasets.fashion_mnist.load_data()`` over the MNIST gz files in ``KERAS_HOME``."""
    _, datasets = mods
    train, test = datasets.fashion_mnist.load_data()
    return _finish(case, train, test, on_batch)


def _bypass_keras_npz_hash():
    """Keras pins the SHA-256 of the official mnist.npz; ours holds the same arrays in other bytes.
    Keep the hashing (its cost is part of every Keras load) and ignore only the verdict."""
    from keras.src.utils import file_utils

    if getattr(file_utils.validate_file, "_fastidx_bench", False):
        return
    original = file_utils.validate_file

    def validate_file(fpath, file_hash, algorithm="auto", chunk_size=65535):
        original(fpath, file_hash, algorithm=algorithm, chunk_size=chunk_size)
        return True

    validate_file._fastidx_bench = True
    file_utils.validate_file = validate_file


def keras_npz_case(mods, case: str, ctx: dict, on_batch=None):
    """``tf.keras.datasets.mnist.load_data()`` over an npz of the same arrays (hash verdict bypassed)."""
    _, datasets = mods
    _bypass_keras_npz_hash()
    train, test = datasets.mnist.load_data()
    return _finish(case, train, test, on_batch)


def _images(flat, n):
    # The files here are square images; recover the side from the payload size.
    side = int(round((flat.size // max(n, 1)) ** 0.5))
    return flat.reshape(n, side, side)


def numpy_gzip_case(gzip, case: str, ctx: dict, on_batch=None):
    import numpy as np

    data_dir = ctx["data_dir"]

    def read(name, offset):
        with gzip.open(os.path.join(data_dir, FILES[name]), "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)

    def split(which):
        y = read(f"{which}_labels", 8)
        return _images(read(f"{which}_images", 16), len(y)), y

    if case == "scale_cold":
        return list(split("train"))
    if case in ("subset_10pct", "iter_batches"):
        # A hand-written loader reads only the training files it needs.
        x, y = split("train")
        if case == "subset_10pct":
            n = subset_count(x.shape[0])
            return [x[:n], y[:n]]
        _batches_of(_to_float32(x), y, on_batch)
        return []
    return _finish(case, split("train"), split("test"), on_batch)


def torchvision_case(tvd, case: str, ctx: dict, on_batch=None):
    def split(train):
        ds = tvd.MNIST(ctx["torchvision_root"], train=train, download=False)
        return ds.data.numpy(), ds.targets.numpy().astype("uint8")

    if case in ("subset_10pct", "iter_batches"):
        x, y = split(True)
        if case == "subset_10pct":
            n = subset_count(x.shape[0])
            return [x[:n], y[:n]]
        _batches_of(_to_float32(x), y, on_batch)
        return []
    return _finish(case, split(True), split(False), on_batch)


def floor_case(_, case: str, ctx: dict, on_batch=None):
    """Allocate every output array of ``case`` and write each byte once; read no input."""
    import numpy as np

    def made(shape, dtype):
        a = np.empty(shape, dtype)
        a.fill(1)
        return a

    n_train, n_test, hw = ctx["n_train"], ctx["n_test"], tuple(ctx["image_shape"])
    if case == "iter_batches":
        for start in range(0, n_train, BATCH):
            n = min(BATCH, n_train - start)
            on_batch(made((n, *hw), np.float32), made((n,), np.uint8))
        return []
    if case == "subset_10pct":
        n = subset_count(n_train)
        return [made((n, *hw), np.uint8), made((n,), np.uint8)]
    dtype = np.float32 if case in FLOAT_CASES else np.uint8
    return [
        made((n_train, *hw), dtype),
        made((n_train,), np.uint8),
        made((n_test, *hw), dtype),
        made((n_test,), np.uint8),
    ]


RUNNERS = {
    "fastidx": fastidx_case,
    "tf.keras": keras_case,
    "tf.keras-npz": keras_npz_case,
    "numpy+gzip": numpy_gzip_case,
    "floor": floor_case,
    "torchvision": torchvision_case,
}


def run(tool: str, mods, case: str, ctx: dict, on_batch=None, **kwargs):
    """Run ``case`` with ``tool`` (already imported as ``mods``); see the module docstring."""
    if on_batch is None:
        def on_batch(x, y):
            pass
    return RUNNERS[tool](mods, case, ctx, on_batch, **kwargs)
