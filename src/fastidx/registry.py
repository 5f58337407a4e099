"""What fastidx knows about each dataset: files, official hashes, mirrors, classes and sizes.

Every file carries the SHA-256 of the official compressed file and, where known, the SHA-256 of its
decoded (gunzipped) IDX bytes. :mod:`fastidx._fetch` accepts a file when either hash matches, so a
mirror that re-compressed the same content is still accepted, and refuses anything else.

EMNIST is distributed by NIST as a single ``gzip.zip`` holding the gz IDX files of all six splits
(members such as ``gzip/emnist-balanced-train-images-idx3-ubyte.gz``); its specs carry that archive
in :attr:`DatasetSpec.archive`, and their member files have no hashes of their own: they are trusted
because they come out of the verified archive. EMNIST images are stored transposed.

Labels and class names
----------------------
``class_names[y]`` is the name of label ``y`` for every dataset. EMNIST ``letters`` is the one
dataset whose labels do not start at 0: they run from 1 (a/A) to 26 (z/Z), exactly as NIST ships
them, so its ``class_names`` has a placeholder ``"N/A"`` at index 0 (the torchvision convention),
``first_label == 1`` and ``num_classes == 26``.

>>> spec = get("mnist")
>>> spec.splits["train"], spec.image_shape, spec.class_names[7]
(60000, (28, 28), '7')
>>> get("emnist_letters").class_names[1], get("emnist_letters").num_classes
('a', 26)
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

__all__ = ["FileSpec", "DatasetSpec", "DATASETS", "ROLES", "get"]

#: The four files of every dataset, by role.
ROLES = ("train_images", "train_labels", "test_images", "test_labels")

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class FileSpec:
    """One downloadable file.

    Attributes
    ----------
    name : str
        Official file name, e.g. ``"train-images-idx3-ubyte.gz"``.
    size : int or None
        Size in bytes of the official compressed file.
    sha256 : str or None
        SHA-256 (lowercase hex) of the official compressed file.
    content_sha256 : str or None
        SHA-256 of the decoded (gunzipped) IDX bytes, where known.
    urls : tuple of str
        Full URLs, in mirror order. Empty for files that come out of an archive.
    """

    name: str
    size: int | None
    sha256: str | None
    content_sha256: str | None
    urls: tuple[str, ...]

    def __post_init__(self):
        if not self.name or "/" in self.name or "\\" in self.name or self.name in {".", ".."}:
            raise ValueError(f"FileSpec.name must be a plain file name, got {self.name!r}")
        for attr in ("sha256", "content_sha256"):
            value = getattr(self, attr)
            if value is not None and not _HEX64.match(value):
                raise ValueError(f"{self.name}: {attr} must be 64 lowercase hex digits, got {value!r}")
        if self.size is not None and self.size < 0:
            raise ValueError(f"{self.name}: size must be >= 0, got {self.size}")
        if isinstance(self.urls, str):
            raise TypeError(f"{self.name}: urls must be a tuple of URLs, not a string")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: its four files, classes and sizes.

    Attributes
    ----------
    name : str
        ``"mnist"``, ``"fashion_mnist"``, ``"kmnist"``, ``"emnist_byclass"``, ...
    files : dict of str to FileSpec
        By role: ``"train_images"``, ``"train_labels"``, ``"test_images"``, ``"test_labels"``.
    class_names : tuple of str
        ``class_names[y]`` names label ``y`` (see the module docstring for EMNIST letters).
    splits : dict of str to int
        Number of examples per split, ``{"train": 60000, "test": 10000}``.
    image_shape : tuple of int
        ``(rows, cols)`` of one image.
    transposed : bool
        True when images are stored transposed (EMNIST).
    archive : FileSpec or None
        The archive the files come out of (EMNIST's ``gzip.zip``); None otherwise.
    first_label : int
        The smallest label value (1 for EMNIST letters, else 0).
    subdir : str or None
        Directory under the cache root and under a mirror base URL; defaults to ``name``. All EMNIST
        splits share ``"emnist"``, where ``gzip.zip`` lives.
    keras_npz : FileSpec or None
        Keras's ``mnist.npz`` (MNIST only): reused when it is the only local copy.
    """

    name: str
    files: dict[str, FileSpec]
    class_names: tuple[str, ...]
    splits: dict[str, int]
    image_shape: tuple[int, int]
    transposed: bool
    archive: FileSpec | None
    first_label: int = 0
    subdir: str | None = None
    keras_npz: FileSpec | None = field(default=None, repr=False)

    def __post_init__(self):
        if set(self.files) != set(ROLES):
            raise ValueError(f"{self.name}: files must have exactly the roles {ROLES}, got {sorted(self.files)}")

    @property
    def dir_name(self) -> str:
        """Directory of this dataset's files under the cache root and under a mirror base URL."""
        return self.subdir or self.name

    @property
    def num_classes(self) -> int:
        """Number of distinct labels (26 for EMNIST letters, whose ``class_names[0]`` is a placeholder)."""
        return len(self.class_names) - self.first_label

    def decoded_size(self, role: str) -> int:
        """Size in bytes of the decoded IDX file for ``role``.

        >>> get("mnist").decoded_size("train_images")
        47040016
        """
        split, kind = role.split("_")
        n = self.splits[split]
        if kind == "images":
            rows, cols = self.image_shape
            return 16 + n * rows * cols
        return 8 + n


def _files(names, hashes, urls_for):
    return {
        role: FileSpec(name, size, sha, content, urls_for(name))
        for role, name, (size, sha, content) in zip(ROLES, names, hashes)
    }


def _mnist_format(name: str, hashes, mirrors, class_names, keras_npz=None) -> DatasetSpec:
    """A dataset published the way MNIST is: the four standard file names under each mirror,
    60,000 train and 10,000 test 28x28 images stored upright, no archive."""
    return DatasetSpec(name=name, files=_files(_STANDARD_NAMES, hashes, _under(mirrors)),
                       class_names=class_names, splits={"train": 60000, "test": 10000},
                       image_shape=_SHAPE, transposed=False, archive=None, keras_npz=keras_npz)


_STANDARD_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_DIGITS = tuple(string.digits)
_SHAPE = (28, 28)

_MNIST_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
)
_KMNIST_MIRRORS = ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",)
_EMNIST_URLS = (
    "https://www.itl.nist.gov/iaui/vip/cs_links/EMNIST/gzip.zip",
    "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",
)


def _under(bases):
    return lambda name: tuple(base + name for base in bases)


MNIST = _mnist_format(
    "mnist",
    [
        (
            9912422,
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        (
            28881,
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        (
            1648877,
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        (
            4542,
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    ],
    _MNIST_MIRRORS,
    class_names=_DIGITS,
    keras_npz=FileSpec(
        "mnist.npz",
        11490434,
        "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
        None,
        ("https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",),
    ),
)

FASHION_MNIST = _mnist_format(
    "fashion_mnist",
    [
        (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", None),
        (
            29515,
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", None),
        (
            5148,
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    ],
    _FASHION_MIRRORS,
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)

KMNIST = _mnist_format(
    "kmnist",
    [
        (18165135, "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4", None),
        (29497, "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17", None),
        (3041136, "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5", None),
        (5120, "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c", None),
    ],
    _KMNIST_MIRRORS,
    class_names=("お", "き", "す", "つ", "な", "は", "ま", "や", "れ", "を"),
)

#: EMNIST's ``gzip.zip``: one archive for all six splits.
EMNIST_ARCHIVE = FileSpec(
    "gzip.zip",
    561753746,
    "fb9bb67e33772a9cc0b895e4ecf36d2cf35be8b709693c3564cea2a019fcda8e",
    None,
    _EMNIST_URLS,
)

#: Lowercase letters that EMNIST's balanced and bymerge splits keep apart from their capital.
_UNMERGED_LOWER = tuple("abdefghnqrt")
_EMNIST_CLASSES = {
    "byclass": _DIGITS + tuple(string.ascii_uppercase) + tuple(string.ascii_lowercase),
    "bymerge": _DIGITS + tuple(string.ascii_uppercase) + _UNMERGED_LOWER,
    "balanced": _DIGITS + tuple(string.ascii_uppercase) + _UNMERGED_LOWER,
    # Labels 1..26; each class merges a capital and a small letter.
    "letters": ("N/A",) + tuple(string.ascii_lowercase),
    "digits": _DIGITS,
    "mnist": _DIGITS,
}
_EMNIST_SPLITS = {
    "byclass": (697932, 116323),
    "bymerge": (697932, 116323),
    "balanced": (112800, 18800),
    "letters": (124800, 20800),
    "digits": (240000, 40000),
    "mnist": (60000, 10000),
}


def _emnist(split: str) -> DatasetSpec:
    names = [
        f"emnist-{split}-{part}-{kind}-idx{ndim}-ubyte.gz"
        for part in ("train", "test")
        for kind, ndim in (("images", 3), ("labels", 1))
    ]
    train, test = _EMNIST_SPLITS[split]
    return DatasetSpec(
        name=f"emnist_{split}",
        files={role: FileSpec(name, None, None, None, ()) for role, name in zip(ROLES, names)},
        class_names=_EMNIST_CLASSES[split],
        splits={"train": train, "test": test},
        image_shape=_SHAPE,
        transposed=True,
        archive=EMNIST_ARCHIVE,
        first_label=1 if split == "letters" else 0,
        subdir="emnist",
    )


#: Every dataset fastidx knows, by name.
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (MNIST, FASHION_MNIST, KMNIST, *(_emnist(split) for split in _EMNIST_SPLITS))
}


def get(name: str) -> DatasetSpec:
    """The spec of dataset ``name`` (case and ``-``/``_`` insensitive).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.

    Examples
    --------
    >>> get("Fashion-MNIST").name
    'fashion_mnist'
    >>> len(get("emnist_balanced").class_names)
    47
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, not {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    try:
        return DATASETS[key]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}") from None
