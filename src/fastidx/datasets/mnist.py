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

from ._docs import documented
from ._loader import Dataset

__all__ = ["class_names", "iter_batches", "load", "load_data"]

_dataset = Dataset("mnist")


@documented
def load_data(path=None, *, dtype=None, normalize=False, mean=None, std=None, layout=None,
              one_hot=False, cache=True, cache_dir=None, mmap=False, max_memory=None,
              mirrors=None, progress=None, shard=None):
    """Load the MNIST dataset: ``(x_train, y_train), (x_test, y_test)``.

    60,000 28x28 grayscale images of the 10 handwritten digits, and a test set of 10,000
    images, as Yann LeCun's MNIST page describes them.

    With the default options, as ``keras.datasets.mnist.load_data()`` returns them:

    - ``x_train``: uint8 array of shape (60000, 28, 28), grayscale pixels 0-255;
    - ``y_train``: uint8 array of shape (60000,), labels 0-9;
    - ``x_test``: uint8 array of shape (10000, 28, 28);
    - ``y_test``: uint8 array of shape (10000,).

    The classes are the digits 0-9: ``class_names[y] == str(y)``.

    Returns
    -------
    ((numpy.ndarray, numpy.ndarray), (numpy.ndarray, numpy.ndarray))
        ``(x_train, y_train), (x_test, y_test)``.

    Examples
    --------
    >>> from fastidx.datasets import mnist
    >>> (x_train, y_train), (x_test, y_test) = mnist.load_data()  # doctest: +SKIP
    >>> assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)  # doctest: +SKIP
    >>> (x, y), _ = mnist.load_data(normalize=True, layout="NHWC")  # doctest: +SKIP
    >>> x.shape, x.dtype                                          # doctest: +SKIP
    ((60000, 28, 28, 1), dtype('float32'))

    License
    -------
    Yann LeCun and Corinna Cortes hold the copyright of MNIST, a derivative work of the
    original NIST datasets; MNIST is available under the terms of the Creative Commons
    Attribution-Share Alike 3.0 licence (https://creativecommons.org/licenses/by-sa/3.0/).
    """
    return _dataset.load_data(**locals())


@documented
def load(split, path=None, *, dtype=None, normalize=False, mean=None, std=None, layout=None,
         one_hot=False, cache=True, cache_dir=None, mmap=False, max_memory=None, mirrors=None,
         progress=None, shard=None):
    """One split of the MNIST dataset, or a slice of it: ``(x, y)``.

    ``load("train")`` is ``(x_train, y_train)`` of :func:`load_data`: uint8 (60000, 28, 28) images
    and uint8 (60000,) labels 0-9; ``load("test")`` has 10,000 rows. A slice such as
    ``"train[:10%]"`` decodes only the rows it needs.
    Licence: MNIST, CC BY-SA 3.0 (Yann LeCun and Corinna Cortes).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Images and labels.

    Examples
    --------
    >>> from fastidx.datasets import mnist
    >>> x, y = mnist.load("train[:6000]", normalize=True)  # doctest: +SKIP
    >>> x.shape, x.dtype, y.shape                          # doctest: +SKIP
    ((6000, 28, 28), dtype('float32'), (6000,))
    """
    return _dataset.load(**locals())


@documented
def iter_batches(split, batch_size, *, shuffle=False, seed=None, drop_remainder=False, shard=None,
                 epoch=None, path=None, dtype=None, normalize=False, mean=None, std=None,
                 layout=None, one_hot=False, cache=True, cache_dir=None, max_memory=None,
                 mirrors=None, progress=None):
    """Yield ``(x, y)`` batches of one MNIST split (or slice), never holding it all.

    Each batch is a new array of at most ``batch_size`` rows of the split's images (uint8 rows of
    the (60000, 28, 28) training or (10000, 28, 28) test array by default) and labels (uint8, 0-9),
    converted as :func:`load` converts them; in between, at most one zstd frame (about 1 MiB of
    decoded rows) is held.

    Yields
    ------
    (numpy.ndarray, numpy.ndarray)
        A batch of images and their labels.

    Examples
    --------
    >>> from fastidx.datasets import mnist
    >>> for x, y in mnist.iter_batches("train", 256, shuffle=True, seed=0):  # doctest: +SKIP
    ...     pass
    """
    return _dataset.iter_batches(**locals())


def __getattr__(name):
    # The registry is read on first use, so that importing this module stays cheap.
    if name == "class_names":
        return _dataset.class_names
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
