"""Kuzushiji-MNIST: 70,000 28x28 images of 10 cursive Japanese hiragana characters.

KMNIST by the ROIS-DS Center for Open Data in the Humanities (Clanuwat et al., 2018), CC BY-SA 4.0.

>>> from fastidx.datasets import kmnist
>>> (x_train, y_train), (x_test, y_test) = kmnist.load_data()  # doctest: +SKIP
"""

from ._loader import Dataset

_dataset = Dataset("kmnist")
load_data = _dataset.load_data
load = _dataset.load
iter_batches = _dataset.iter_batches
class_names = _dataset.class_names
