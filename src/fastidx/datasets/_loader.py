"""What every dataset module shares: finding a dataset's files, decoding them, Keras-shaped results.

Each public module (``mnist``, ``fashion_mnist``, ...) is a :class:`Dataset` bound to one entry of
:mod:`fastidx.registry`; this is where the options of ``load_data`` are interpreted once for all.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np

from .. import _cache, _idx, registry
from . import _shard
from .._errors import DatasetNotFoundError, IDXError

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
SPLITS = {"train": ("train_images", "train_labels"), "test": ("test_images", "test_labels")}
NPZ_KEYS = {"train_images": "x_train", "train_labels": "y_train",
            "test_images": "x_test", "test_labels": "y_test"}


def spellings(official: str) -> list[str]:
    """File names a dataset file may have on disk, best first.

    ``train-images-idx3-ubyte.gz`` may also be stored gunzipped and with the ``.idx3-ubyte``
    spelling that some mirrors and archives use (``train-images.idx3-ubyte``).
    """
    stem = official[:-3] if official.endswith(".gz") else official
    dotted = re.sub(r"-(idx\d-ubyte)$", r".\1", stem)
    names = [stem + ".gz", stem, dotted, dotted + ".gz"]
    return list(dict.fromkeys(names))


def find_in_directory(directory: Path, spec: registry.DatasetSpec) -> dict[str, Path]:
    """The dataset's four files in ``directory`` (any spelling), or an error naming what is missing."""
    found, missing = {}, []
    for role in ROLES:
        official = spec.files[role].name
        for candidate in spellings(official):
            if (directory / candidate).is_file():
                found[role] = directory / candidate
                break
        else:
            missing.append(official)
    if missing:
        raise DatasetNotFoundError(
            f"{spec.name}: {directory} lacks {', '.join(missing)} "
            f"(gzipped or not; '-idx' or '.idx' spellings are both accepted)"
        )
    return found


_BOUND = r"\s*([+-]?\d+)\s*(%?)\s*"
_SPLIT = re.compile(rf"\s*(\w+)\s*(?:\[(?:{_BOUND})?:(?:{_BOUND})?\]\s*)?")
_SPLIT_HELP = (
    "'train' or 'test', optionally sliced like 'train[:6000]', 'train[10%:20%]' or 'test[-1000:]' "
    "(integer row numbers or whole percentages from -100% to 100%)"
)


def parse_split(split, dataset: str = "dataset"):
    """``(split name, select)`` where ``select(n)`` gives the ``(start, stop)`` rows of a slice.

    >>> name, select = parse_split("train[10%:-1000]")
    >>> name, select(60000)
    ('train', (6000, 59000))
    """
    if not isinstance(split, str):
        raise TypeError(f"{dataset}: split must be a string such as 'train', not {split!r}")
    match = _SPLIT.fullmatch(split)
    if match is None or match.group(1) not in SPLITS:
        raise ValueError(f"{dataset}: bad split {split!r}: expected {_SPLIT_HELP}")
    name, a, a_pct, b, b_pct = match.groups()
    bounds = []
    for value, pct in ((a, a_pct), (b, b_pct)):
        if value is None:
            bounds.append(None)
            continue
        value = int(value)
        if pct and not -100 <= value <= 100:
            raise ValueError(
                f"{dataset}: bad split {split!r}: percentages run from -100% to 100%, not {value}%"
            )
        bounds.append((value, bool(pct)))

    def select(n: int) -> tuple[int, int]:
        def absolute(bound):
            if bound is None:
                return None
            value, pct = bound
            # round(Fraction) is exact and rounds ties to even, like TFDS's round(pct * n / 100).
            return round(Fraction(value * n, 100)) if pct else value

        start, stop, _ = slice(absolute(bounds[0]), absolute(bounds[1])).indices(n)
        return start, max(start, stop)

    return name, select


def _one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[labels]


def _npz_batches(x, y, batch_size, permute, drop_remainder, one_hot, options):
    n = x.shape[0]
    order = permute(n) if permute is not None else None
    n = n if order is None else order.shape[0]
    for b in range(0, n, batch_size):
        if drop_remainder and b + batch_size > n:
            return
        rows = slice(b, b + batch_size) if order is None else order[b : b + batch_size]
        xb = _idx.convert_uint8(np.ascontiguousarray(x[rows]), **options)
        yb = y[rows]
        yield xb, (one_hot(yb) if one_hot is not None else yb)


class Dataset:
    """The loaders of one registry dataset; the public modules expose its bound methods."""

    def __init__(self, name: str):
        self.name = name

    @property
    def spec(self) -> registry.DatasetSpec:
        return registry.get(self.name)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    def files(self, path=None, *, cache_dir=None, mirrors=None, progress=None) -> dict[str, Path]:
        """Where the data comes from: ``{role: path}`` of IDX files, or ``{"npz": path}``."""
        if path is None:
            from .. import _fetch

            return _fetch.fetch(self.name, cache_dir=cache_dir, mirrors=mirrors, progress=progress)
        path = Path(os.fspath(path)).expanduser()
        if path.is_dir():
            return find_in_directory(path, self.spec)
        if path.suffix == ".npz" and path.is_file():
            return {"npz": path}
        if not path.exists():
            raise DatasetNotFoundError(f"{self.name}: {path} does not exist")
        raise ValueError(
            f"{self.name}: path must be a directory holding the IDX files or a Keras-format .npz "
            f"file, not {path}"
        )

    def load(
        self,
        split: str,
        path=None,
        *,
        dtype=None,
        normalize=False,
        mean=None,
        std=None,
        layout=None,
        one_hot=False,
        raw=False,
        cache=True,
        cache_dir=None,
        mmap=False,
        max_memory=None,
        mirrors=None,
        progress=None,
        shard=None,
    ):
        """``(x, y)`` of one split, or of a slice of it.

        Parameters
        ----------
        split : str
            ``"train"`` or ``"test"``, optionally sliced TFDS-style: ``"train[:6000]"``,
            ``"train[10%:20%]"``, ``"test[-1000:]"``. Bounds are row numbers (negative ones count
            from the end) or whole percentages from -100 to 100; a percentage ``p`` of ``n`` rows is
            row ``round(p * n / 100)`` (exact arithmetic, ties to even: TFDS's ``closest``
            rounding), then Python slice rules apply. Only the needed frames of the cache are
            decoded.
        path : str or os.PathLike, optional
            A directory holding the four IDX files (gzipped or not, ``-idx`` or ``.idx``
            spellings) or a Keras-format ``.npz`` file. Default: the downloaded copy.
        dtype, normalize, mean, std, layout
            As for :func:`fastidx.read_idx`; they apply to the images.
        one_hot : bool
            Labels as float32 one-hot rows (``np.eye(classes, dtype="float32")[y]``).
        raw : bool
            EMNIST only: keep the images transposed, as NIST stores them.
        cache : bool
            Keep the decoded arrays in the cache directory (zstd-compressed) after the first load,
            so that later loads skip parsing; an entry is keyed by its source file's SHA-256.
        cache_dir : str or os.PathLike, optional
            Cache directory (default: ``$FASTIDX_HOME`` or the user cache directory).
        mmap : bool
            Return copy-on-write memory maps of uncompressed cache files (written on first use):
            a load costs well under a millisecond and processes share one physical copy; writes to
            the arrays stay private. Needs ``cache=True``; ``.npz`` sources are loaded normally.
        max_memory : int, optional
            Refuse, with :class:`fastidx.cache.MemoryLimitError` (a ``MemoryError`` and a
            ``ValueError``) raised before allocating, a load whose arrays would take more bytes.
            Memory maps cost no private memory and are not counted.
        shard : (int, int), optional
            ``(index, count)``, e.g. ``(rank, world_size)``: only the ``index``-th of ``count``
            contiguous blocks of the split's rows (sizes differing by at most one), decoding only
            those; the ``count`` shards together hold every row exactly once.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            Images and labels.

        Examples
        --------
        >>> from fastidx.datasets import mnist, SAMPLE_DIR
        >>> x, y = mnist.load("train[:10%]", path=SAMPLE_DIR, normalize=True, cache=False)
        >>> x.shape, x.dtype, y.shape
        ((100, 28, 28), dtype('float32'), (100,))
        """
        name, select = parse_split(split, self.name)
        select = _shard.narrow(select, _shard.check(shard, self.name))
        files = self.files(path, cache_dir=cache_dir, mirrors=mirrors, progress=progress)
        images_role, labels_role = SPLITS[name]
        options = dict(dtype=dtype, normalize=normalize, mean=mean, std=std, layout=layout)
        if "npz" in files:
            return self._load_npz(files["npz"], images_role, labels_role, select, raw=raw,
                                  one_hot=one_hot, max_memory=max_memory, **options)
        refetch = None
        if path is None:
            def refetch():
                return self.files(cache_dir=cache_dir, mirrors=mirrors, progress=progress)
        common = dict(select=select, cache=cache, cache_dir=cache_dir, mmap=mmap,
                      dataset=self.name)
        # Labels first: they are small, and their size tells what the images may take.
        y, ny = self._array(files[labels_role], refetch, max_memory=max_memory,
                            what=f"{self.name} {split!r} labels", **common)
        budget = None if max_memory is None or mmap else max_memory - y.nbytes
        if one_hot:
            hot = y.shape[0] * self._classes(y) * 4
            _cache.check_budget(hot + y.nbytes, max_memory, f"{self.name} {split!r} one-hot labels")
            budget = None if budget is None else budget - hot
        x, nx = self._array(files[images_role], refetch, upright=self.spec.transposed and not raw,
                            max_memory=budget, what=f"{self.name} {split!r} images",
                            **common, **options)
        if nx != ny:
            raise IDXError(
                str(files[images_role]), f"holds {nx} images but {files[labels_role]} holds {ny} labels"
            )
        if one_hot:
            y = self.one_hot(y)
        return x, y

    def load_data(self, path=None, *, max_memory=None, **options):
        """``((x_train, y_train), (x_test, y_test))``, as ``keras.datasets`` returns them.

        Takes the options of :meth:`load`; ``max_memory`` bounds both splits together.
        """
        train = self.load("train", path, max_memory=max_memory, **options)
        if max_memory is not None and not options.get("mmap"):
            max_memory -= sum(a.nbytes for a in train)
        return train, self.load("test", path, max_memory=max_memory, **options)

    def iter_batches(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle=False,
        seed=None,
        drop_remainder=False,
        shard=None,
        epoch=None,
        path=None,
        dtype=None,
        normalize=False,
        mean=None,
        std=None,
        layout=None,
        one_hot=False,
        raw=False,
        cache=True,
        cache_dir=None,
        max_memory=None,
        mirrors=None,
        progress=None,
    ):
        """Yield ``(x, y)`` batches of a split (or slice) without ever holding all of it.

        Each batch is a new array; in between, at most one zstd frame (about 1 MiB of decoded
        rows) is held. ``shuffle=True`` visits the rows in the order of one global permutation,
        ``numpy.random.default_rng(seed).permutation(rows)``, gathering each batch's rows from the
        uncompressed cache file (written on first use; a temporary file when ``cache=False``),
        so every row comes exactly once per pass and a seed always gives the same order.
        ``drop_remainder=True`` drops a last batch smaller than ``batch_size``. The other options
        are those of :meth:`load`; ``max_memory`` bounds one batch plus the working buffers.

        ``shard=(index, count)`` (e.g. ``(rank, world_size)``) yields only one rank's rows: in
        order, the ``index``-th contiguous block (as :meth:`load`); shuffled, the stride
        ``perm[index::count]`` of the permutation every rank draws alike (as
        ``torch.utils.data.DistributedSampler``, without padding), which needs a ``seed``. With
        ``epoch=e`` the permutation is seeded by ``seed + e``: a new order each epoch, the same on
        every rank. Each epoch the ``count`` shards together hold every row exactly once.

        Examples
        --------
        >>> from fastidx.datasets import mnist, SAMPLE_DIR
        >>> batches = mnist.iter_batches("train", 256, path=SAMPLE_DIR, cache=False)
        >>> [x.shape[0] for x, y in batches]
        [256, 256, 256, 232]
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        name, select = parse_split(split, self.name)
        shard = _shard.check(shard, self.name)
        permute = None
        if shuffle:
            permute = _shard.permuter(_shard.seed_of(seed, epoch, shard, self.name), shard)
        else:
            _shard.seed_of(0, epoch, None, self.name)  # a bad epoch fails even in order
            select = _shard.narrow(select, shard)
        _idx.layout_shape((0, 1, 1), layout)  # a bad layout fails now, not at the first batch
        files = self.files(path, cache_dir=cache_dir, mirrors=mirrors, progress=progress)
        images_role, labels_role = SPLITS[name]
        options = dict(dtype=dtype, normalize=normalize, mean=mean, std=std, layout=layout)
        if "npz" in files:
            x, y = self._load_npz(files["npz"], images_role, labels_role, select, raw=raw,
                                  one_hot=False, max_memory=max_memory)
            return _npz_batches(x, y, int(batch_size), permute, drop_remainder,
                                self.one_hot if one_hot else None, options)
        y, ny = _cache.load_array(files[labels_role], select=select, cache=cache,
                                  cache_dir=cache_dir, dataset=self.name)
        classes = self._classes(y) if one_hot else None
        return _cache.iter_batches(
            files[images_role], y, ny, int(batch_size), select=select, shuffle=shuffle, seed=seed,
            permute=permute,
            drop_remainder=drop_remainder, upright=self.spec.transposed and not raw, cache=cache,
            cache_dir=cache_dir, max_memory=max_memory, dataset=self.name,
            one_hot=(lambda labels: _one_hot(labels, classes)) if one_hot else None,
            label_row_bytes=4 * classes if one_hot else y.itemsize,
            labels_name=str(files[labels_role]), **options,
        )

    def one_hot(self, labels: np.ndarray) -> np.ndarray:
        """float32 one-hot rows, as ``keras.utils.to_categorical`` makes them."""
        return _one_hot(labels, self._classes(labels))

    def _array(self, file: Path, refetch, **options):
        """``(array, rows in the file)`` of one file; ``refetch`` (or None) gets a fresh copy of a
        downloaded file."""
        try:
            return _cache.load_array(file, **options)
        except IDXError:
            if refetch is None:
                raise
            # A downloaded file that verified once and no longer parses was damaged on disk:
            # forget it and fetch it again, once.
            from .. import _fetch

            _fetch.discard(file)
            file = next(p for p in refetch().values() if p.name == file.name)
            return _cache.load_array(file, **options)

    def _classes(self, labels: np.ndarray) -> int:
        classes = len(self.class_names)
        if labels.size and int(labels.max()) >= classes:
            classes = int(labels.max()) + 1
        return classes

    def _load_npz(self, file, images_role, labels_role, select, *, raw, one_hot, max_memory,
                  **options):
        x, y = self._from_npz(file, images_role, labels_role)
        if x.shape[0] != y.shape[0]:
            raise IDXError(str(file), f"holds {x.shape[0]} images but {y.shape[0]} labels")
        start, stop = select(x.shape[0])
        x, y = x[start:stop], y[start:stop]
        target, _ = _cache.conversion(x.dtype, options.get("dtype"), options.get("normalize"),
                                      options.get("mean"), options.get("std"))
        hot = y.shape[0] * self._classes(y) * 4 if one_hot else 0
        _cache.check_budget(x.size * target.itemsize + y.nbytes + hot, max_memory,
                            f"{self.name} arrays from {file.name}")
        x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
        if self.spec.transposed and not raw and x.ndim == 3:
            self._upright(x)
        x = _idx.convert_uint8(x, **options)
        return x, (self.one_hot(y) if one_hot else y)

    @staticmethod
    def _upright(x: np.ndarray) -> np.ndarray:
        """EMNIST stores every image transposed; put them upright in place, a block at a time."""
        block = 4096
        for start in range(0, x.shape[0], block):
            part = x[start : start + block]
            part[...] = part.transpose(0, 2, 1).copy()
        return x

    def _from_npz(self, file: Path, images_role: str, labels_role: str):
        try:
            with np.load(file, allow_pickle=False) as npz:
                return npz[NPZ_KEYS[images_role]], npz[NPZ_KEYS[labels_role]]
        except KeyError as exc:
            raise IDXError(str(file), f"is not a Keras-format dataset archive: no {exc}") from None
        except (OSError, ValueError) as exc:
            raise IDXError(str(file), f"cannot be read as an .npz archive: {exc}") from None
