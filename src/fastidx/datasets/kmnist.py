"""Kuzushiji-MNIST: 70,000 28x28 images of 10 cursive Japanese hiragana characters.

KMNIST by the ROIS-DS Center for Open Data in the Humanities (Clanuwat et al., 2018),
CC BY-SA 4.0. Keras has no loader for it; the API is the same as ``mnist``'s.

>>> from fastidx.datasets import kmnist
>>> (x_train, y_train), (x_test, y_test) = kmnist.load_data()  # doctest: +SKIP
>>> x_train.shape, x_train.dtype, y_train.shape                # doctest: +SKIP
((60000, 28, 28), dtype('uint8'), (60000,))

With the default options the arrays are exactly the uint8 contents of the KMNIST release's
MNIST-format files. Every option is described in each function's docstring.
"""

from ._docs import documented
from ._loader import Dataset

__all__ = ["class_names", "iter_batches", "load", "load_data"]

_dataset = Dataset("kmnist")


@documented
def load_data(path=None, *, dtype=None, normalize=False, mean=None, std=None, layout=None,
              one_hot=False, cache=True, cache_dir=None, mmap=False, max_memory=None,
              mirrors=None, progress=None, shard=None):
    """Load the Kuzushiji-MNIST dataset: ``(x_train, y_train), (x_test, y_test)``.

    60,000 28x28 grayscale training images of 10 hiragana characters in cursive (kuzushiji)
    style, and a test set of 10,000 images (Clanuwat et al., "Deep Learning for Classical
    Japanese Literature", 2018).

    With the default options:

    - ``x_train``: uint8 array of shape (60000, 28, 28), grayscale pixels 0-255;
    - ``y_train``: uint8 array of shape (60000,), labels 0-9;
    - ``x_test``: uint8 array of shape (10000, 28, 28);
    - ``y_test``: uint8 array of shape (10000,).

    The classes (``class_names[y]``):

    - 0: お (o)
    - 1: き (ki)
    - 2: す (su)
    - 3: つ (tsu)
    - 4: な (na)
    - 5: は (ha)
    - 6: ま (ma)
    - 7: や (ya)
    - 8: れ (re)
    - 9: を (wo)

    Returns
    -------
    ((numpy.ndarray, numpy.ndarray), (numpy.ndarray, numpy.ndarray))
        ``(x_train, y_train), (x_test, y_test)``.

    Examples
    --------
    >>> from fastidx.datasets import kmnist
    >>> (x_train, y_train), (x_test, y_test) = kmnist.load_data()  # doctest: +SKIP
    >>> assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)  # doctest: +SKIP
    >>> (x, y), _ = kmnist.load_data(normalize=True, layout="NHWC")  # doctest: +SKIP
    >>> x.shape, x.dtype                                          # doctest: +SKIP
    ((60000, 28, 28, 1), dtype('float32'))

    License
    -------
    KMNIST by the ROIS-DS Center for Open Data in the Humanities, "KMNIST Dataset"
    (created from the Kuzushiji dataset of the National Institute of Japanese Literature),
    licensed CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/).
    """
    return _dataset.load_data(**locals())


@documented
def load(split, path=None, *, dtype=None, normalize=False, mean=None, std=None, layout=None,
         one_hot=False, cache=True, cache_dir=None, mmap=False, max_memory=None, mirrors=None,
         progress=None, shard=None):
    """One split of the Kuzushiji-MNIST dataset, or a slice of it: ``(x, y)``.

    ``load("train")`` is ``(x_train, y_train)`` of :func:`load_data`: uint8 (60000, 28, 28) images
    and uint8 (60000,) labels 0-9; ``load("test")`` has 10,000 rows. A slice such as
    ``"train[:10%]"`` decodes only the rows it needs.
    Licence: KMNIST, CC BY-SA 4.0 (ROIS-DS CODH).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Images and labels.

    Examples
    --------
    >>> from fastidx.datasets import kmnist
    >>> x, y = kmnist.load("train[:6000]", normalize=True)  # doctest: +SKIP
    >>> x.shape, x.dtype, y.shape                          # doctest: +SKIP
    ((6000, 28, 28), dtype('float32'), (6000,))
    """
    return _dataset.load(**locals())


@documented
def iter_batches(split, batch_size, *, shuffle=False, seed=None, drop_remainder=False, shard=None,
                 epoch=None, path=None, dtype=None, normalize=False, mean=None, std=None,
                 layout=None, one_hot=False, cache=True, cache_dir=None, max_memory=None,
                 mirrors=None, progress=None):
    """Yield ``(x, y)`` batches of one Kuzushiji-MNIST split (or slice), never holding it all.

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
    >>> from fastidx.datasets import kmnist
    >>> for x, y in kmnist.iter_batches("train", 256, shuffle=True, seed=0):  # doctest: +SKIP
    ...     pass
    """
    return _dataset.iter_batches(**locals())


def __getattr__(name):
    # The registry is read on first use, so that importing this module stays cheap.
    if name == "class_names":
        return _dataset.class_names
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
