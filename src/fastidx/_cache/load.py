"""The one entry point of the loaders: rows of an IDX file, from the cache or straight from it."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

from .._memlimit import check_budget
from .stream import Output, stream_source

if TYPE_CHECKING:
    from pathlib import Path


class Place:
    """How one call uses the cache: ``cache``, ``cache_dir``, ``mmap`` and the dataset's name
    (recorded in the entries it writes)."""

    __slots__ = ("cache", "cache_dir", "mmap", "dataset")

    def __init__(self, cache=True, cache_dir=None, mmap=False, dataset=None):
        self.cache, self.cache_dir, self.mmap, self.dataset = cache, cache_dir, mmap, dataset


def load_array(path: Path, select, *, place: Place | None = None, conv=None, upright=False,
               max_memory=None, what="the array"):
    """Rows ``select(n)`` of the IDX file at ``path``, converted by ``conv`` (a
    :class:`~fastidx._conversion.Conversion`, validated by the caller; default: none); returns
    ``(array, n)``.

    ``select(n)`` maps the number of stored rows to ``(start, stop)``. With ``place.cache`` the rows
    come from (and on a first load, go to) the decoded-array cache; ``place.mmap`` maps an
    uncompressed cache file copy-on-write instead of filling new memory.
    """
    if conv is None:
        from .._conversion import Conversion

        conv = Conversion()
    place = place or Place()
    total = {}

    def make_output(shape, stored):
        target = conv.target(stored)
        start, stop = select(shape[0])
        final = conv.shape((stop - start,) + tuple(shape[1:]))
        check_budget(math.prod(final) * target.itemsize, max_memory, what)
        total["n"] = shape[0]
        return Output(shape, stored, start, stop, conv)

    if place.mmap and not place.cache:
        raise ValueError("mmap=True maps a file of the cache: it needs cache=True")
    if not place.cache:
        return stream_source(path, upright=upright, make_output=make_output).array, total["n"]
    from .source import Source

    writer = sys.modules.get(f"{__package__}.writer")  # none ran in this process if not imported
    if writer is not None:
        writer.report_failures()
    source = Source(path, upright=upright, cache_dir=place.cache_dir, dataset=place.dataset)
    if place.mmap:
        mapped = _mapped(source, conv, select)
        if mapped is not None:
            return mapped
    return source.load(make_output).array, total["n"]


def _mapped(source, conv, select):
    """``(array, n)`` mapped from the raw file of ``conv`` (built if needed), or None when the
    cache cannot be used."""
    from .raw import map_raw

    def convert(stored):
        return conv.target(stored), conv.table(stored)

    options = {"dtype": None if conv.dtype is None else conv.dtype.name,
               "normalize": conv.normalize, "mean": conv.mean, "std": conv.std}
    opened = source.ensure_raw(conv.key, convert, options)
    if opened is None:
        return None
    array = map_raw(*opened)
    n = array.shape[0]
    start, stop = select(n)
    array = array[start:stop]
    return array.reshape(conv.shape(array.shape)), n
