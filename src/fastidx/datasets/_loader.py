"""What every dataset module shares: finding a dataset's files, decoding them, Keras-shaped results.

Each public module (``mnist``, ``fashion_mnist``, ...) is a :class:`Dataset` bound to one entry of
:mod:`fastidx.registry`; this is where the options of ``load_data`` are interpreted once for all.

Importing this module costs next to nothing: the registry, the decoder, the cache and the
downloader are imported by the first call that needs them.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import numpy as np

from .._errors import CacheWarning, DatasetNotFoundError, IDXError, one_warning_per_call
from ._docs import documented
from ._splits import SPLITS, parse_split  # noqa: F401 (parse_split: also reached from here)

if TYPE_CHECKING:
    from pathlib import Path

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
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


def find_in_directory(directory: Path, spec, roles=ROLES) -> dict[str, Path]:
    """The files of ``roles`` (default: all four) in ``directory`` (any spelling), or an error
    naming every one that is missing."""
    found, missing = {}, []
    for role in roles:
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


def check_pair(images: str, x_shape, labels: str, y_shape) -> None:
    """Refuse, from their shapes alone, an image/label pair that cannot belong together:
    swapped files, labels that are not one value per image, counts that differ."""
    x_shape, y_shape = tuple(x_shape), tuple(y_shape)
    if len(x_shape) == 1 and len(y_shape) >= 2:
        raise IDXError(
            images,
            f"holds a 1-D array {x_shape} and {labels} holds {y_shape}: the image and label files "
            f"look swapped",
        )
    if len(y_shape) != 1:
        raise IDXError(
            labels,
            f"should hold one label per image (a 1-D array) but holds shape {y_shape}; "
            f"the images are {images}",
        )
    if len(x_shape) < 2:
        raise IDXError(
            images, f"should hold images (2 or more dimensions) but holds shape {x_shape}; "
                    f"the labels are {labels}",
        )
    if x_shape[0] != y_shape[0]:
        raise IDXError(images, f"holds {x_shape[0]} images but {labels} holds {y_shape[0]} labels")


def one_hot_rows(labels: np.ndarray, classes: int) -> np.ndarray:
    """float32 one-hot rows of checked labels: one ``(N, classes)`` array and nothing bigger."""
    out = np.zeros((labels.shape[0], classes), np.float32)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


def _checked_conversion(dataset: str, dtype, normalize, mean, std, layout):
    """The load's :class:`~fastidx._conversion.Conversion`, checked once before any file is read
    (against uint8, what dataset images are)."""
    from .._conversion import Conversion

    try:
        conversion = Conversion(dtype, normalize, mean, std, layout)
        conversion.target(np.dtype(np.uint8))
        conversion.shape((0, 1, 1))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{dataset}: {exc}") from None
    return conversion


def memory_budget(max_memory):
    """``max_memory=`` checked where a call starts (:func:`fastidx._memlimit.memory_budget`)."""
    from .._memlimit import memory_budget as check

    return check(max_memory)


def check_budget(nbytes, max_memory, what):
    from .._memlimit import check_budget as check

    check(nbytes, max_memory, what)


class _How:
    """How a load call treats each split: the conversion, ``one_hot``, ``raw`` and the cache."""

    __slots__ = ("conversion", "one_hot", "raw", "place")

    def __init__(self, conversion, one_hot, raw, place):
        self.conversion, self.one_hot, self.raw, self.place = conversion, one_hot, raw, place


def _place(cache, cache_dir, mmap, dataset):
    from .._cache.load import Place

    return Place(cache, cache_dir, mmap, dataset)


class Dataset:
    """The loaders of one registry dataset.

    ``fastidx.datasets.mnist.load_data`` and the other public functions call these methods; the
    EMNIST splits (``emnist.balanced`` ...) are instances. The parameters are documented once, on
    :meth:`load`.
    """

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<fastidx dataset {self.name!r}>"

    @property
    def spec(self):
        """The :class:`fastidx.registry.DatasetSpec` of this dataset."""
        from .. import registry

        return registry.get(self.name)

    @property
    def class_names(self) -> tuple[str, ...]:
        """``class_names[y]`` is the name of label ``y``."""
        return self.spec.class_names

    # -- where the files are

    def files(self, path=None, *, roles=ROLES, cache_dir=None, mirrors=None,
              progress=None, offline=None) -> dict[str, Path]:
        """Where the data comes from: ``{role: path}`` of IDX files (``roles`` of them when ``path``
        is a directory), or ``{"npz": path}``. ``offline=True``: the downloaded copy only, never
        the network (default: ``$FASTIDX_OFFLINE``)."""
        if path is None:
            return self._fetch(cache_dir, mirrors, progress, offline)
        from pathlib import Path

        text = os.fsdecode(os.fspath(path))
        if self.spec.keras_npz is not None and _is_bare_npz_name(text):
            return self._keras_cache_file(text, cache_dir, mirrors, progress)
        from .._cluster import resolve  # against a stable directory (Tune chdirs trials)

        path = resolve(Path(text).expanduser())
        if path.is_dir():
            found = find_in_directory(path, self.spec, roles)
            self._check_headers(found)
            return found
        if path.suffix == ".npz" and path.is_file():
            return {"npz": path}
        if not path.exists():
            raise DatasetNotFoundError(f"{self.name}: {path} does not exist")
        raise ValueError(
            f"{self.name}: path must be a directory holding the IDX files or a Keras-format .npz "
            f"file, not {path}"
        )

    def _fetch(self, cache_dir, mirrors, progress, offline=None) -> dict[str, Path]:
        from .. import _fetch

        return _fetch.fetch(self.name, cache_dir=cache_dir, mirrors=mirrors, progress=progress,
                            offline=offline)

    def _keras_cache_file(self, name: str, cache_dir, mirrors, progress) -> dict[str, Path]:
        """What Keras's ``load_data(path=name)`` means: the pinned archive, kept as ``name`` in
        Keras's cache directory (downloaded there when missing or when its hash is wrong).

        fastidx writes nothing outside its own cache: the Keras file is used when it is the
        pinned one, else the dataset comes from fastidx's own files (the same arrays).
        """
        pinned = self.spec.keras_npz
        if name == pinned.name:
            # The fetcher already looks there (hash-checked, remembered in its manifest).
            return self._fetch(cache_dir, mirrors, progress)
        from .. import _fetch

        candidate = _fetch._keras_datasets() / name
        if candidate.is_file():
            import hashlib

            with open(candidate, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            if digest == pinned.sha256:
                return {"npz": candidate}
            import warnings

            warnings.warn(
                f"{candidate} is not the {pinned.name} Keras pins (sha256 {digest}, expected "
                f"{pinned.sha256}); Keras would download it again, fastidx leaves it alone and "
                f"loads {self.name} from its own cache",
                CacheWarning,
                stacklevel=_caller_stacklevel(),
            )
        return self._fetch(cache_dir, mirrors, progress)

    def _check_headers(self, found: dict[str, Path]) -> None:
        """Roles and counts of a directory's files, from their headers, before decoding anything."""
        from .. import _idx

        for images_role, labels_role in SPLITS.values():
            if images_role in found and labels_role in found:
                images, labels = found[images_role], found[labels_role]
                check_pair(str(images), _idx.read_header(images).shape,
                           str(labels), _idx.read_header(labels).shape)

    # -- loading

    @one_warning_per_call
    @documented
    def load_data(self, path=None, *, dtype=None, normalize=False, mean=None, std=None,
                  layout=None, one_hot=False, raw=False, cache=True, cache_dir=None, mmap=False,
                  max_memory=None, mirrors=None, progress=None, shard=None):
        """``((x_train, y_train), (x_test, y_test))``, as ``keras.datasets`` returns them.

        ``max_memory`` bounds both splits together.

        Returns
        -------
        ((numpy.ndarray, numpy.ndarray), (numpy.ndarray, numpy.ndarray))
            ``(x_train, y_train), (x_test, y_test)``.
        """
        from . import _shard

        conversion = _checked_conversion(self.name, dtype, normalize, mean, std, layout)
        budget = memory_budget(max_memory)  # checked before any file is looked at
        everything = _shard.narrow(lambda n: (0, n), _shard.check(shard, self.name))
        warm = path is None and mmap and cache and not one_hot
        if warm:  # maps what the warm record names, if all of it is as recorded (_cache.warm)
            from .._cache import warm as record

            found = record.lookup(self.name, cache_dir, raw, conversion, everything)
            if found is not None:
                return found
        how = _How(conversion, one_hot, raw, _place(cache, cache_dir, mmap, self.name))
        files = self.files(path, cache_dir=cache_dir, mirrors=mirrors, progress=progress)
        refetch = self._refetcher(path, files, cache_dir, mirrors, progress)
        train = self._load("train", everything, files, refetch, how, budget)
        if budget is not None and not mmap:
            budget = budget.after(sum(a.nbytes for a in train))
        test = self._load("test", everything, files, refetch, how, budget)
        if warm and "npz" not in files:
            record.remember(self, cache_dir, raw, conversion, files)
        return train, test

    @one_warning_per_call
    @documented
    def load(self, split, path=None, *, dtype=None, normalize=False, mean=None, std=None,
             layout=None, one_hot=False, raw=False, cache=True, cache_dir=None, mmap=False,
             max_memory=None, mirrors=None, progress=None, shard=None):
        """``(x, y)`` of one split, or of a slice of it.

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
        from . import _shard

        name, select = parse_split(split, self.name)
        select = _shard.narrow(select, _shard.check(shard, self.name))
        conversion = _checked_conversion(self.name, dtype, normalize, mean, std, layout)
        how = _How(conversion, one_hot, raw, _place(cache, cache_dir, mmap, self.name))
        budget = memory_budget(max_memory)
        files = self.files(path, roles=SPLITS[name], cache_dir=cache_dir, mirrors=mirrors,
                           progress=progress)
        refetch = self._refetcher(path, files, cache_dir, mirrors, progress)
        return self._load(name, select, files, refetch, how, budget)

    def _refetcher(self, path, files, cache_dir, mirrors, progress):
        """How to get fresh copies of downloaded files (None for the caller's own files)."""
        if "npz" in files:
            return None
        if path is not None and not (self.spec.keras_npz is not None
                                     and _is_bare_npz_name(os.fsdecode(os.fspath(path)))):
            return None
        return lambda: self._fetch(cache_dir, mirrors, progress)

    def _load(self, name, select, files, refetch, how: _How, max_memory):
        images_role, labels_role = SPLITS[name]
        if "npz" in files:
            return self._load_npz(files["npz"], name, select, raw=how.raw, one_hot=how.one_hot,
                                  max_memory=max_memory, conversion=how.conversion)
        # Labels first: they are small, and their size tells what the images may take.
        y, ny = self._array(files[labels_role], refetch, select, how.place, max_memory=max_memory,
                            what=f"{self.name} {name!r} labels")
        budget = None if max_memory is None or how.place.mmap else max_memory.after(y.nbytes)
        if how.one_hot:
            self._check_labels(y, files[labels_role])
            hot = y.shape[0] * len(self.class_names) * 4
            check_budget(hot + y.nbytes, max_memory, f"{self.name} {name!r} one-hot labels")
            budget = None if budget is None else budget.after(hot)
        x, nx = self._array(files[images_role], refetch, select, how.place,
                            upright=self.spec.transposed and not how.raw, max_memory=budget,
                            what=f"{self.name} {name!r} images", conv=how.conversion)
        if nx != ny:
            raise IDXError(
                str(files[images_role]), f"holds {nx} images but {files[labels_role]} holds {ny} labels"
            )
        if how.one_hot:
            y = one_hot_rows(y, len(self.class_names))
        return x, y

    @one_warning_per_call
    @documented
    def iter_batches(self, split, batch_size, *, shuffle=False, seed=None, drop_remainder=False,
                     shard=None, epoch=None, path=None, dtype=None, normalize=False, mean=None, std=None, layout=None,
                     one_hot=False, raw=False, cache=True, cache_dir=None, max_memory=None,
                     mirrors=None, progress=None):
        """Yield ``(x, y)`` batches of a split (or slice) without ever holding all of it.

        Each batch is a new array; in between, at most one zstd frame (about 1 MiB of decoded
        rows) is held.

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
        from . import _batches, _shard

        name, select = parse_split(split, self.name)
        shard = _shard.check(shard, self.name)
        permute = None
        if shuffle:
            permute = _shard.permuter(_shard.seed_of(seed, epoch, shard, self.name), shard)
        else:
            _shard.seed_of(0, epoch, None, self.name)  # a bad epoch fails even in order
            select = _shard.narrow(select, shard)
        conversion = _checked_conversion(self.name, dtype, normalize, mean, std, layout)
        max_memory = memory_budget(max_memory)
        files = self.files(path, roles=SPLITS[name], cache_dir=cache_dir, mirrors=mirrors,
                           progress=progress)
        images_role, labels_role = SPLITS[name]
        classes = len(self.class_names)
        hot = (lambda labels: one_hot_rows(labels, classes)) if one_hot else None
        batching = _batches.Batching(int(batch_size), shuffle, seed, permute, drop_remainder)
        if "npz" in files:
            x, y = self._load_npz(files["npz"], name, select, raw=raw, one_hot=False,
                                  max_memory=max_memory)
            if one_hot:
                self._check_labels(y, files["npz"])
            return _batches.npz_batches(x, y, batching, hot, conversion)
        from .._cache.load import Place, load_array

        place = Place(cache, cache_dir, False, self.name)
        y, ny = load_array(files[labels_role], select, place=place)
        if one_hot:
            self._check_labels(y, files[labels_role])
        labels = _batches.Labels(y, ny, str(files[labels_role]), hot,
                                 4 * classes if one_hot else y.itemsize)
        return _batches.iter_batches(
            files[images_role], labels, batching, select=select, place=place, conv=conversion,
            upright=self.spec.transposed and not raw, max_memory=max_memory,
        )

    def one_hot(self, labels: np.ndarray) -> np.ndarray:
        """float32 one-hot rows, as ``keras.utils.to_categorical`` makes them (labels checked)."""
        labels = np.asarray(labels)
        self._check_labels(labels, "the labels")
        return one_hot_rows(labels, len(self.class_names))

    def _check_labels(self, labels: np.ndarray, source) -> None:
        """One-hot rows need integer labels in ``range(classes)``; anything else is refused."""
        classes = len(self.class_names)
        if labels.dtype.kind not in "iu":
            raise ValueError(
                f"{self.name}: {source} holds {labels.dtype} labels; one_hot=True needs integer "
                f"class numbers from 0 to {classes - 1}"
            )
        if labels.ndim != 1:
            raise ValueError(f"{self.name}: {source} holds labels of shape {labels.shape}, not 1-D")
        if labels.size:
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= classes:
                raise ValueError(
                    f"{self.name}: {source} holds label {low if low < 0 else high}; one_hot=True "
                    f"needs labels from 0 to {classes - 1} ({classes} classes)"
                )

    def _array(self, file: Path, refetch, select, place, **options):
        """``(array, rows in the file)`` of one file; ``refetch`` (or None) gets a fresh copy of a
        downloaded file."""
        from .._cache.load import load_array

        try:
            return load_array(file, select, place=place, **options)
        except IDXError:
            if refetch is None:
                raise
            # A downloaded file that verified once and no longer parses was damaged on disk:
            # forget it and fetch it again, once.
            from .. import _fetch

            _fetch.discard(file, cache_dir=place.cache_dir)
            file = next(p for p in refetch().values() if p.name == file.name)
            return load_array(file, select, place=place, **options)

    # -- Keras-format .npz archives

    def _load_npz(self, file: Path, split: str, select, *, raw, one_hot, max_memory,
                  conversion=None):
        """Rows ``select(n)`` of an ``.npz``'s ``x_<split>`` and ``y_<split>``, converted.

        Each member's npy header (and the archive's record of its size) is read first, so a
        mismatch or a load over ``max_memory`` is refused before anything is inflated; then only
        the selected rows are inflated into their arrays.
        """
        import zipfile
        import zlib

        from .. import _idx
        from ._npz import NpyMember, bytes_needed, upright

        keys = (f"x_{split}", f"y_{split}")
        try:
            with zipfile.ZipFile(file) as archive:
                members = [NpyMember(archive, key, file) for key in keys]
                xm, ym = members
                check_pair(f"{file}[{xm.key}]", xm.shape, f"{file}[{ym.key}]", ym.shape)
                start, stop = select(xm.shape[0])
                hot = len(self.class_names) * 4 if one_hot else 0
                need = bytes_needed(xm, ym, stop - start, conversion, hot)
                check_budget(need, max_memory, f"{self.name} arrays from {file.name}")
                y = ym.read(start, stop)
                if one_hot:
                    self._check_labels(y, f"{file}[{ym.key}]")
                x = xm.read(start, stop)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError,
                RuntimeError) as exc:  # damaged, truncated, encrypted or exotic archives
            raise IDXError(str(file), f"cannot be read as an .npz archive: {exc}") from None
        if self.spec.transposed and not raw and x.ndim == 3:
            upright(x)
        if conversion is not None:
            x = _idx.convert_uint8(x, conversion)
        return x, (one_hot_rows(y, len(self.class_names)) if one_hot else y)


def _is_bare_npz_name(text: str) -> bool:
    """A file name with no directory part, ending in ``.npz`` (Keras's ``path="mnist.npz"``)."""
    return (text.endswith(".npz") and os.path.basename(text) == text
            and not (os.altsep and os.altsep in text))


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside fastidx."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("fastidx."):
        frame, level = frame.f_back, level + 1
    return level
