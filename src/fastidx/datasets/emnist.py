"""EMNIST: handwritten characters in the MNIST format, in six splits.

EMNIST by Gregory Cohen, Saeed Afshar, Jonathan Tapson and André van Schaik (2017), converted from
NIST Special Database 19. NIST publishes the data with no copyright restriction in the United
States (as a U.S. Government work); cite Cohen et al., "EMNIST: an extension of MNIST to
handwritten letters", 2017. Keras has no loader for it; each split has ``mnist``'s API::

    from fastidx.datasets import emnist
    (x_train, y_train), (x_test, y_test) = emnist.balanced.load_data()
    x, y = emnist.letters.load("train[:10%]", normalize=True)
    emnist.letters.class_names[y[0]]

Every split holds 28x28 uint8 images (``x``: ``(N, 28, 28)``) and uint8 labels (``y``: ``(N,)``):

==========  ===========  ==========  =========================================================
split       train rows   test rows   classes (``class_names``)
==========  ===========  ==========  =========================================================
byclass     697,932      116,323     62: digits 0-9, A-Z, a-z
bymerge     697,932      116,323     47: digits, A-Z, and a b d e f g h n q r t (others merged)
balanced    112,800      18,800      47: as bymerge, the same number of images per class
letters     124,800      20,800      26: labels 1 (a/A) to 26 (z/Z); ``class_names[0]`` is "N/A"
digits      240,000      40,000      10: digits 0-9
mnist       60,000       10,000      10: digits 0-9 (MNIST's size)
==========  ===========  ==========  =========================================================

NIST stores the images transposed; fastidx returns them upright like every other dataset, and
``raw=True`` keeps them as stored. The files come from NIST's single ``gzip.zip`` (562 MB, all six
splits), downloaded once and verified by its SHA-256.

Each split is a :class:`fastidx.datasets.Dataset` whose ``load_data``, ``load`` and
``iter_batches`` take the parameters of ``mnist``'s functions plus ``raw``.
"""

from ._loader import Dataset

__all__ = ["SPLITS", "balanced", "byclass", "bymerge", "digits", "letters", "mnist"]

byclass = Dataset("emnist_byclass")
bymerge = Dataset("emnist_bymerge")
balanced = Dataset("emnist_balanced")
letters = Dataset("emnist_letters")
digits = Dataset("emnist_digits")
mnist = Dataset("emnist_mnist")

SPLITS = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")
