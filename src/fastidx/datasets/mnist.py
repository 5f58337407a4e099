"""MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 grayscale, 10 classes.

MNIST by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, CC BY-SA 3.0.

>>> from fastidx.datasets import mnist
>>> (x_train, y_train), (x_test, y_test) = mnist.load_data()  # doctest: +SKIP
>>> x_train.shape, x_train.dtype, y_train.shape                # doctest: +SKIP
((60000, 28, 28), dtype('uint8'), (60000,))

With the default options the arrays are exactly those of ``keras.datasets.mnist.load_data()``
(except that they are writable). Every option is described in each function's docstring; the
README's "Keras compatibility" section lists the remaining differences from Keras.
"""

from ._loader import Dataset
from ._public import functions

__all__ = ["class_names", "iter_batches", "load", "load_data"]

_dataset = Dataset("mnist")

# What the docstrings of load_data, load and iter_batches say (templates in _public.py).
load_data, load, iter_batches = functions(_dataset, __name__, {
    "title": "MNIST",
    "keras": "mnist",
    "summary": """60,000 28x28 grayscale images of the 10 handwritten digits, and a test set of
    10,000 images, as Yann LeCun's MNIST page describes them.""",
    "classes": "The classes are the digits 0-9: ``class_names[y] == str(y)``.",
    "licence": """Yann LeCun and Corinna Cortes hold the copyright of MNIST, a derivative work of
    the original NIST datasets; MNIST is available under the terms of the Creative Commons
    Attribution-Share Alike 3.0 licence (https://creativecommons.org/licenses/by-sa/3.0/).""",
    "licence_line": "MNIST, CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)",
})

def __getattr__(name):
    # The registry is read on first use, so that importing this module stays cheap.
    if name == "class_names":
        return _dataset.class_names
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
