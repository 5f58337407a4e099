"""The decoded-array cache: parse an IDX file once, load it again at the cost of writing the output.

Layout under ``cache_root(cache_dir) / "decoded"``::

    <sha256>.<variant>.fidx          decoded rows as independent zstd frames (always written)
    <sha256>.<variant>.<conv>.raw    the rows uncompressed, for ``mmap=True`` and shuffling
    sources/<key>.json               stat index: path, (dev, inode, size, mtime, ctime) -> sha256
    stamps/<raw name>.json           the stat of each raw file when it was written
    warm/<dataset>.<conv>.txt        what a warm ``mmap=True`` load maps, vouched by stats alone
    locks/<entry>.lock               one builder at a time per entry, across processes

``<sha256>`` is the SHA-256 of the source file's bytes, so an entry never outlives a change of its
source: a rewritten file hashes differently and gets a new entry. ``<variant>`` is ``stored`` (rows
as the file stores them) or ``upright`` (EMNIST images transposed back). ``<conv>`` is ``native``
for the stored values, else ``x`` and a hash of the conversion options (dtype, normalize, mean, std).

Every file starts with a 32-byte fixed header and JSON metadata (:mod:`.format`). Frames entries
(:mod:`.frames`) hold the rows as independent zstd frames; raw files (:mod:`.raw`) hold them
uncompressed, for ``mmap=True`` and shuffling, and are memory-mapped copy-on-write.

Files are written to a unique temporary name and renamed into place; a lock file serialises the
builders of one entry, so concurrent processes build it once and nobody ever reads a torn file.
An entry that fails any check is rebuilt from its source with a :class:`fastidx.CacheWarning`.

The modules, one concern each (importing this package imports none of them):

- :mod:`.format` — header and metadata of every cache file;
- :mod:`.layout` — where the decoded cache is, directory safety, leftovers of killed builders;
- :mod:`.identity` — the stat index: a source's SHA-256 without re-hashing an unchanged file;
- :mod:`.raw` — uncompressed files, their stamps, memory maps (all a warm ``mmap=True`` load needs);
- :mod:`.warm` — the record that lets a warm default ``mmap=True`` load skip everything else;
- :mod:`.frames` — reading zstd frames entries, in parallel threads;
- :mod:`.stream` — decoding a source once into an output array and/or a writer;
- :mod:`.writer` — the background writer of frames entries, and its failures;
- :mod:`.source` — one source file's entries, built once across threads and processes;
- :mod:`.load` — :func:`load_array`, the loaders' entry point;
- :mod:`.tree` — the directories as :mod:`fastidx.cache` manages them (no symlink followed).

Batching lives in :mod:`fastidx.datasets._batches`; the memory budget of a call in
:mod:`fastidx._memlimit`; size budget and pruning in :mod:`fastidx.cache`.
"""

from __future__ import annotations

import importlib

# Names other modules and tests reach as ``_cache.<name>``, and the module defining each.
_WHERE = {
    "format": ("FORMAT_VERSION", "MAGIC", "KIND_FRAMES", "KIND_RAW", "VARIANTS", "CorruptEntry",
               "Header", "FRAME_BYTES", "rows_per_frame", "entry_name", "raw_name", "parse_json",
               "encode_header", "read_header", "open_header"),
    "layout": ("decoded_dir", "own_dir", "reclaim_temps"),
    "identity": ("known_digest", "source_digest", "hash_and_record", "remember_digest"),
    "raw": ("RAW_PIECE_BYTES", "stamp_raw", "check_raw", "payload_problem", "write_raw", "map_raw"),
    "frames": ("Frames", "verify_file", "_threads"),
    "stream": ("Output", "allocate", "stream_source"),
    "writer": ("wait_for_writers", "report_failures", "enforce_budget", "LEVEL"),
    "source": ("Source",),
    "load": ("load_array", "Place"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name):
    if name in _WHERE or name == "warm":
        return importlib.import_module(f"{__name__}.{name}")
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
