"""Fashion-MNIST: 60,000 training and 10,000 test images of Zalando articles, 28x28, 10 classes.

Fashion-MNIST by Zalando Research, MIT licence. A drop-in replacement for MNIST.

>>> from fastidx.datasets import fashion_mnist
>>> fashion_mnist.class_names[9]
'Ankle boot'
>>> x, y = fashion_mnist.load("test[:100]", normalize=True)  # doctest: +SKIP

``load_data()`` takes every option of ``mnist.load_data()``, where Keras's takes none; with the
defaults it returns the arrays of ``keras.datasets.fashion_mnist.load_data()``, writable where
Keras's are read-only (the README's "Keras compatibility" has the rest).
"""

from ._loader import Dataset
from ._public import functions

__all__ = ["class_names", "iter_batches", "load", "load_data"]

_dataset = Dataset("fashion_mnist")

# What the docstrings of load_data, load and iter_batches say (templates in _public.py).
load_data, load, iter_batches = functions(_dataset, __name__, {
    "title": "Fashion-MNIST",
    "keras": "fashion_mnist",
    "summary": """60,000 28x28 grayscale images of 10 fashion categories, and a test set of 10,000
    images; a drop-in replacement for MNIST.""",
    "classes": """The classes (``class_names[y]``):

    - 0: T-shirt/top
    - 1: Trouser
    - 2: Pullover
    - 3: Dress
    - 4: Coat
    - 5: Sandal
    - 6: Shirt
    - 7: Sneaker
    - 8: Bag
    - 9: Ankle boot""",
    "licence": """The copyright for Fashion-MNIST is held by Zalando SE. Fashion-MNIST is licensed
    under the MIT licence (https://github.com/zalandoresearch/fashion-mnist/blob/master/LICENSE).""",
    "licence_line": "Fashion-MNIST, MIT (Zalando SE)",
})

def __getattr__(name):
    # The registry is read on first use, so that importing this module stays cheap.
    if name == "class_names":
        return _dataset.class_names
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
