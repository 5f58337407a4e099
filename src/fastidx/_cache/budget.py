"""The decoded cache's size budget: how it is set and read (:func:`fastidx.cache.max_size`)."""

from __future__ import annotations

import os
import re

import numpy as np

from .format import parse_json
from .layout import decoded_dir

ENV_MAX_SIZE = "FASTIDX_CACHE_MAX_SIZE"
#: The size budget when neither ``max_size=``, ``$FASTIDX_CACHE_MAX_SIZE`` nor the cache
#: directory's own setting (:func:`fastidx.cache.set_max_size`) says otherwise.
DEFAULT_MAX_SIZE = 2 << 30
SETTINGS = "settings.json"

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def parse_size(value) -> int | None:
    """Bytes from ``value``: an int, or a string like ``"500MB"``, ``"2GiB"``, ``"1.5g"``;
    ``None``, ``"none"`` or ``"unlimited"`` mean no limit. Raises ValueError otherwise."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a cache size cannot be negative: {value}")
        return int(value)
    text = str(value).strip().lower().replace("_", "").replace(" ", "")
    if text in ("none", "unlimited"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]*)", text)
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(f"not a size: {value!r} (examples: 2000000000, 500MB, 2GiB, unlimited)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def max_size(cache_dir=None) -> int | None:
    """The cache's size budget in bytes (None: unlimited): ``$FASTIDX_CACHE_MAX_SIZE`` if set,
    else the cache directory's own setting (:func:`fastidx.cache.set_max_size`), else
    :data:`DEFAULT_MAX_SIZE`."""
    env = os.environ.get(ENV_MAX_SIZE, "").strip()
    if env:
        try:
            return parse_size(env)
        except ValueError as exc:
            raise ValueError(f"{ENV_MAX_SIZE}: {exc}") from None
    path = decoded_dir(cache_dir) / SETTINGS
    try:
        return parse_size(parse_json(path.read_bytes())["max_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_MAX_SIZE

