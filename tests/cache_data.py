"""Small random IDX datasets for the cache tests, written once here for every test module."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import fastidx

NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def write_dataset(directory: Path, shape, n_train: int, n_test: int, seed=0, names=None) -> dict:
    """Four gz IDX files of random pixels and labels in ``directory`` (official names unless
    ``names``); returns the arrays written, keyed by role and by file name."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    names = names or NAMES
    for role, array in list(arrays.items()):
        fastidx.write_idx(directory / names[role], array)
        arrays[names[role]] = array
    return arrays
