"""Copies of a dataset's files that other tools already downloaded: used in place, never copied.

* Keras: ``$KERAS_HOME/datasets`` (default ``~/.keras/datasets``): Fashion-MNIST's
  ``fashion-mnist/*.gz`` and MNIST's ``mnist.npz``.
* torchvision: ``<root>/MNIST/raw/``, ``FashionMNIST/raw/``, ``KMNIST/raw/`` and
  ``EMNIST/raw/gzip.zip``, ``<root>`` being ``$FASTIDX_TORCHVISION_ROOT``.

A copy a loader could not parse is marked ``distrusted`` in the manifest with its stat identity
(see :func:`distrust`): it is left in place (it is not fastidx's to delete) and not offered again
until it changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from .settings import ENV_TORCHVISION_ROOT

# dataset directory -> (its Keras subdirectory, its torchvision directory)
_OTHER_TOOLS = {
    "mnist": (None, "MNIST"),
    "fashion_mnist": ("fashion-mnist", "FashionMNIST"),
    "kmnist": (None, "KMNIST"),
    "emnist": (None, "EMNIST"),
}


def keras_datasets() -> Path:
    """Keras's download directory: ``$KERAS_HOME/datasets``, default ``~/.keras/datasets``."""
    from .._cluster import resolve  # relative: against a stable directory (Tune chdirs trials)

    home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return resolve(Path(home).expanduser()) / "datasets"


def candidates(spec, name: str, manifest) -> list[Path]:
    """Existing, not distrusted copies of file ``name`` of ``spec`` kept by Keras or torchvision."""
    places = []
    keras_sub, torch_sub = _OTHER_TOOLS.get(spec.dir_name, (None, None))
    if keras_sub:
        places.append(keras_datasets() / keras_sub / name)
    torch_root = os.environ.get(ENV_TORCHVISION_ROOT)
    if torch_sub and torch_root:
        from .._cluster import resolve

        places.append(resolve(Path(torch_root).expanduser()) / torch_sub / "raw" / name)
    places = [Path(os.path.abspath(place)) for place in places]
    return [place for place in places if place.is_file() and not distrusted(place, manifest)]


def keras_npz(spec, manifest) -> Path | None:
    """Keras's ``mnist.npz`` when it exists and is not distrusted (the caller verifies it)."""
    path = Path(os.path.abspath(keras_datasets() / spec.keras_npz.name))
    if not path.is_file() or distrusted(path, manifest):
        return None
    return path


def distrusted(path: Path, manifest) -> bool:
    from .manifest import identity

    entry = manifest.entry(path)
    if not entry or not entry.get("distrusted"):
        return False
    try:
        now = identity(os.stat(path))
    except OSError:
        return False
    return all(entry.get(k) == v for k, v in now.items())


def distrust(path: Path, manifest) -> None:
    """Remember (until the file changes) that ``path`` could not be parsed."""
    manifest.forget(path)
    manifest.record(path, distrusted=True)
