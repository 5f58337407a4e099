"""Images whose rows say which row they are, for tests of order, slices, shards and batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def numbered_images(n: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    """``n`` random uint8 images of ``shape``; row ``i``'s first two pixels spell ``i`` in base 256."""
    x = np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)
    x[:, 0, 0] = np.arange(n) // 256
    x[:, 0, 1] = np.arange(n) % 256
    return x


def row_ids(x) -> np.ndarray:
    """The row numbers spelled by images from numbered_images (uint8, or floats scaled to [0, 1])."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        x = np.rint(x * 255).astype(np.int64)
    flat = x.reshape(len(x), -1)
    return flat[:, 0].astype(np.int64) * 256 + flat[:, 1]


def write_mnist_files(directory: Path, x: np.ndarray, test_rows: int) -> np.ndarray:
    """``x`` as the train images of MNIST's four gz files in ``directory`` (its first ``test_rows``
    rows as the test split), labelled ``row % 10``; returns the labels."""
    import fastidx

    y = (np.arange(x.shape[0]) % 10).astype(np.uint8)
    fastidx.write_idx(directory / "train-images-idx3-ubyte.gz", x)
    fastidx.write_idx(directory / "train-labels-idx1-ubyte.gz", y)
    fastidx.write_idx(directory / "t10k-images-idx3-ubyte.gz", x[:test_rows])
    fastidx.write_idx(directory / "t10k-labels-idx1-ubyte.gz", y[:test_rows])
    return y
