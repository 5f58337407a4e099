"""MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 grayscale, 10 classes.

MNIST by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, licensed CC BY-SA 3.0.

>>> from fastidx.datasets import mnist
>>> (x_train, y_train), (x_test, y_test) = mnist.load_data()  # doctest: +SKIP
>>> x_train.shape, x_train.dtype, y_train.shape                # doctest: +SKIP
((60000, 28, 28), dtype('uint8'), (60000,))

With the default options the arrays are exactly those of ``keras.datasets.mnist.load_data()``
(except that they are writable). ``load_data(normalize=True)`` gives float32 images in [0, 1],
decoded and scaled in one pass; see :meth:`fastidx.datasets.Dataset.load` for every option.
"""

from ._loader import Dataset

_dataset = Dataset("mnist")
load_data = _dataset.load_data
load = _dataset.load
iter_batches = _dataset.iter_batches
class_names = _dataset.class_names
