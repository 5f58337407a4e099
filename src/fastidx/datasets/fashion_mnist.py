"""Fashion-MNIST: 60,000 training and 10,000 test images of Zalando articles, 28x28, 10 classes.

Fashion-MNIST by Zalando Research, MIT licence.

>>> from fastidx.datasets import fashion_mnist
>>> (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()  # doctest: +SKIP
>>> fashion_mnist.class_names[y_train[0]]                              # doctest: +SKIP
'Ankle boot'

With the default options the arrays are exactly those of ``keras.datasets.fashion_mnist.load_data()``.
"""

from ._loader import Dataset

_dataset = Dataset("fashion_mnist")
load_data = _dataset.load_data
load = _dataset.load
iter_batches = _dataset.iter_batches
class_names = _dataset.class_names
