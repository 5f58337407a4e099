"""Keras-compatible dataset loaders.

``fastidx.datasets.mnist.load_data()`` returns what ``keras.datasets.mnist.load_data()`` returns,
bit for bit; ``fashion_mnist`` and ``kmnist`` likewise, and ``emnist.<split>`` (``byclass``,
``bymerge``, ``balanced``, ``letters``, ``digits``, ``mnist``) for the six EMNIST splits.

Importing this package is cheap: the registry, decoder, cache and downloader are imported by the
first load that needs them.
"""

from . import emnist, fashion_mnist, kmnist, mnist
from ._loader import Dataset


def get(name: str) -> Dataset:
    """The loaders of a registry dataset by name, e.g. ``get("emnist_letters").load_data()``."""
    from .. import registry

    registry.get(name)  # ValueError naming the known datasets
    return Dataset(name)


__all__ = ["SAMPLE_DIR", "Dataset", "emnist", "fashion_mnist", "get", "kmnist", "mnist"]


def __getattr__(name):
    if name == "SAMPLE_DIR":
        #: The MNIST sample shipped inside the package (1,000 train and 200 test images), for
        #: offline demos: ``mnist.load_data(path=SAMPLE_DIR)``.
        from pathlib import Path

        return Path(__file__).resolve().parent.parent / "data" / "mnist-sample"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
