"""What every dataset module shares: finding a dataset's files, decoding them, Keras-shaped results.

Each public module (``mnist``, ``fashion_mnist``, ...) is a :class:`Dataset` bound to one entry of
:mod:`fastidx.registry`; this is where the options of ``load_data`` are interpreted once for all.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .. import _idx, registry
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
        mirrors=None,
        progress=None,
    ):
        """``(x, y)`` of one split (``"train"`` or ``"test"``)."""
        if split not in SPLITS:
            raise ValueError(f"{self.name}: split must be one of {sorted(SPLITS)}, not {split!r}")
        options = dict(dtype=dtype, normalize=normalize, mean=mean, std=std, layout=layout)
        files = self.files(path, cache_dir=cache_dir, mirrors=mirrors, progress=progress)
        images_role, labels_role = SPLITS[split]
        if "npz" in files:
            x, y = self._from_npz(files["npz"], images_role, labels_role)
            if self.spec.transposed and not raw and x.ndim == 3:
                self._upright(x)
            x = _idx.convert_uint8(x, **options)
        else:
            if path is None:
                def refetch():
                    return self.files(cache_dir=cache_dir, mirrors=mirrors, progress=progress)
            else:
                refetch = None
            x = self._read(files[images_role], refetch, raw=raw, **options)
            y = self._read(files[labels_role], refetch)
            if x.shape[0] != y.shape[0]:
                raise IDXError(
                    str(files[images_role]),
                    f"holds {x.shape[0]} images but {files[labels_role]} holds {y.shape[0]} labels",
                )
        if one_hot:
            y = self.one_hot(y)
        return x, y

    def load_data(self, path=None, **options):
        """``((x_train, y_train), (x_test, y_test))``, as ``keras.datasets`` returns them."""
        return self.load("train", path, **options), self.load("test", path, **options)

    def one_hot(self, labels: np.ndarray) -> np.ndarray:
        """float32 one-hot rows, as ``keras.utils.to_categorical`` makes them."""
        classes = len(self.class_names)
        if labels.size and int(labels.max()) >= classes:
            classes = int(labels.max()) + 1
        return np.eye(classes, dtype=np.float32)[labels]

    def _read(self, file: Path, refetch, *, raw=False, **options) -> np.ndarray:
        """Decode one file; ``refetch`` (or None) gets a fresh copy of a downloaded file."""
        upright = self.spec.transposed and not raw
        decode = {**options, "layout": None} if upright else options
        try:
            array = _idx.read_idx(file, **decode)
        except IDXError:
            if refetch is None:
                raise
            # A downloaded file that verified once and no longer parses was damaged on disk:
            # forget it and fetch it again, once.
            from .. import _fetch

            _fetch.discard(file)
            file = next(p for p in refetch().values() if p.name == file.name)
            array = _idx.read_idx(file, **decode)
        if upright and array.ndim == 3:
            self._upright(array)
            array = array.reshape(_idx.layout_shape(array.shape, options.get("layout")))
        return array

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
