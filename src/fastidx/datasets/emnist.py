"""EMNIST: handwritten characters in the MNIST format, in six splits.

EMNIST by Cohen, Afshar, Tapson and van Schaik (NIST Special Database 19 converted), 2017.
The splits are attributes of this module, each with the same loaders as ``mnist``::

    from fastidx.datasets import emnist
    (x_train, y_train), (x_test, y_test) = emnist.balanced.load_data()

NIST stores the images transposed; fastidx returns them upright like every other dataset, and
``raw=True`` keeps them as stored.
"""

from ._loader import Dataset

byclass = Dataset("emnist_byclass")
bymerge = Dataset("emnist_bymerge")
balanced = Dataset("emnist_balanced")
letters = Dataset("emnist_letters")
digits = Dataset("emnist_digits")
mnist = Dataset("emnist_mnist")

SPLITS = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")
