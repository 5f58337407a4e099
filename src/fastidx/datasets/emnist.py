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
``iter_batches`` are functions of their own (``emnist.letters.load_data``: real signatures, the
split's docstrings) taking the parameters of ``mnist``'s functions plus ``raw``.
"""

from typing import TYPE_CHECKING

from ._loader import Dataset
from ._public import functions

__all__ = ["SPLITS", "balanced", "byclass", "bymerge", "digits", "letters", "mnist"]

SPLITS = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")

# What each split's classes are, in words (their names: ``class_names``).
_CLASSES = {
    "byclass": "62 classes: digits 0-9, A-Z, a-z",
    "bymerge": "47 classes: digits, A-Z, and a b d e f g h n q r t (the other lowercase letters "
               "merged with their capitals)",
    "balanced": "47 classes, as bymerge, the same number of images each",
    "letters": 'labels 1 (a/A) to 26 (z/Z); ``class_names[0]`` is "N/A"',
    "digits": "the digits 0-9",
    "mnist": "the digits 0-9, in MNIST's sizes",
}


def _split(split: str) -> Dataset:
    """The split's :class:`Dataset`, with ``load_data``, ``load`` and ``iter_batches`` functions
    of its own, named ``<split>.load_data`` ...: an unknown keyword's ``TypeError`` names the
    EMNIST function (not ``Dataset.load_data``), and the docstrings give the split's shapes."""
    dataset = Dataset(f"emnist_{split}")
    spec = dataset.spec
    train, test = spec.splits["train"], spec.splits["test"]
    labels = f"{spec.first_label}-{len(spec.class_names) - 1}"
    dataset.load_data, dataset.load, dataset.iter_batches = functions(dataset, __name__, {
        "title": f"EMNIST {split}", "call": f"emnist.{split}", "train": train, "test": test,
        "labels": labels, "images": "upright (``raw=True``: as NIST stores them)",
        "summary": f"The {split} split of EMNIST: {train:,} 28x28 grayscale training images of "
                   f"handwritten\n    characters and a test set of {test:,} (Cohen et al., 2017).",
        "classes": f"The classes (``class_names[y]``): {_CLASSES[split]}.",
        "licence": _LICENCE, "licence_line": "EMNIST, NIST Special Database 19 (no copyright in the US)",
    }, prefix=f"{split}.", raw=True)
    return dataset


_LICENCE = """EMNIST (Cohen, Afshar, Tapson and van Schaik, "EMNIST: an extension of MNIST to
    handwritten letters", 2017) is converted from NIST Special Database 19, which NIST publishes
    with no copyright restriction in the United States (a U.S. Government work)."""

if TYPE_CHECKING:  # made on first use (see __getattr__); declared here for type checkers
    byclass: Dataset
    bymerge: Dataset
    balanced: Dataset
    letters: Dataset
    digits: Dataset
    mnist: Dataset


def __getattr__(name):
    # Each split's functions are built on first use, so that importing this module stays cheap.
    if name in SPLITS:
        dataset = globals().setdefault(name, _split(name))
        return dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *SPLITS})
