"""Images whose rows say which row they are, for tests of order, slices, shards and batches."""

from __future__ import annotations

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
