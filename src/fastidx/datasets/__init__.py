"""Keras-compatible dataset loaders.

``fastidx.datasets.mnist.load_data()`` returns what ``keras.datasets.mnist.load_data()`` returns,
bit for bit; ``fashion_mnist`` and ``kmnist`` likewise, and ``emnist.<split>`` (``byclass``,
``bymerge``, ``balanced``, ``letters``, ``digits``, ``mnist``) for the six EMNIST splits.
"""

from pathlib import Path

from . import emnist, fashion_mnist, kmnist, mnist
from ._loader import Dataset


def get(name: str) -> Dataset:
    """The loaders of a registry dataset by name, e.g. ``get("emnist_letters").load_data()``."""
    from .. import registry

    registry.get(name)  # ValueError naming the known datasets
    return Dataset(name)


__all__ = ["SAMPLE_DIR", "Dataset", "emnist", "fashion_mnist", "get", "kmnist", "mnist"]

#: The MNIST sample shipped inside the package (1,000 train and 200 test images), for offline demos:
#: ``mnist.load_data(path=SAMPLE_DIR)``.
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "mnist-sample"
