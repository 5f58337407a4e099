"""Kuzushiji-MNIST: 70,000 28x28 images of 10 cursive Japanese hiragana characters.

KMNIST by the ROIS-DS Center for Open Data in the Humanities (Clanuwat et al., 2018),
CC BY-SA 4.0. Keras has no loader for it; the API is the same as ``mnist``'s.

>>> from fastidx.datasets import kmnist
>>> kmnist.class_names[0]
'お'
>>> for x, y in kmnist.iter_batches("train", 512, shuffle=True, seed=0):  # doctest: +SKIP
...     pass

With the default options the arrays are exactly the uint8 contents of the KMNIST release's
MNIST-format files. Every option is described in each function's docstring.
"""

from ._loader import Dataset
from ._public import functions

__all__ = ["class_names", "iter_batches", "load", "load_data"]

_dataset = Dataset("kmnist")

# What the docstrings of load_data, load and iter_batches say (templates in _public.py).
load_data, load, iter_batches = functions(_dataset, __name__, {
    "title": "Kuzushiji-MNIST",
    "summary": """60,000 28x28 grayscale training images of 10 hiragana characters in cursive
    (kuzushiji) style, and a test set of 10,000 images (Clanuwat et al., "Deep Learning for
    Classical Japanese Literature", 2018).""",
    "classes": """The classes (``class_names[y]``):

    - 0: お (o)
    - 1: き (ki)
    - 2: す (su)
    - 3: つ (tsu)
    - 4: な (na)
    - 5: は (ha)
    - 6: ま (ma)
    - 7: や (ya)
    - 8: れ (re)
    - 9: を (wo)""",
    "licence": """KMNIST by the ROIS-DS Center for Open Data in the Humanities, "KMNIST Dataset"
    (created from the Kuzushiji dataset of the National Institute of Japanese Literature),
    licensed CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/).""",
    "licence_line": "KMNIST, CC BY-SA 4.0 (ROIS-DS CODH)",
})

def __getattr__(name):
    # The registry is read on first use, so that importing this module stays cheap.
    if name == "class_names":
        return _dataset.class_names
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
