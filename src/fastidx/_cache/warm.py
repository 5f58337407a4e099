"""The warm record of a default ``mmap=True`` load: what it maps, vouched for by ``stat`` alone.

After a default ``load_data(mmap=True)`` (no ``path=``) that found everything in place, fastidx
writes ``<decoded>/warm/<dataset>.<raw>.<conv>.txt``: for each of the four source files its path and
``stat`` identity (device, inode, size, mtime, ctime), and for each uncompressed cache file
(:mod:`.raw`) its path, identity, data offset, dtype and shape. It is written only when every fact
in it was checked by the full path a moment before: the fetch manifest vouched for the sources
by ``stat``, the stat index knew their SHA-256 (outside the window where a same-tick rewrite could
go unseen), and each raw file's stamp equalled its ``stat``.

The next such load reads this one small text file, ``stat``s the four sources, opens and
``fstat``s the four raw files and maps them: nothing else is imported, read or written (no JSON,
no registry, no hashing, no lock). Any difference (a file rewritten, copied over, touched,
removed; another fastidx version; another registry) sends the load down the full path, which checks
everything and writes the record again. The record is a cache of those checks, never a source of
truth: deleting it costs one full-path load.
"""

from __future__ import annotations

import mmap as _mmap
import os
import sys

import numpy as np

_MAGIC = "fastidx-warm 1"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _ident(st) -> str:
    return f"{st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"


def _stamp() -> str:
    """This fastidx and its registry: a record made by another version is not trusted."""
    import fastidx

    registry = os.path.join(os.path.dirname(fastidx.__file__), "registry.py")
    try:
        st = os.stat(registry)
        known = f"{st.st_size} {st.st_mtime_ns}"
    except OSError:
        known = "-"
    return f"{fastidx.__version__} {known}"


def root_of(cache_dir) -> str | None:
    """The cache root as an absolute path, when it is found without resolving anything (else None:
    the full path resolves it)."""
    text = os.environ.get("FASTIDX_HOME") if cache_dir is None else os.fspath(cache_dir)
    if not text:
        return None
    text = os.path.expanduser(os.fsdecode(text))
    return os.path.normpath(text) if os.path.isabs(text) else None


def record_name(dataset: str, raw: bool, key: str) -> str:
    return f"{dataset}.{int(bool(raw))}.{key}.txt"


def lookup(dataset: str, cache_dir, raw: bool, conv, select):
    """``((x_train, y_train), (x_test, y_test))`` mapped as the warm record says, or None."""
    root = root_of(cache_dir)
    if root is None:
        return None
    path = os.path.join(root, "decoded", "warm", record_name(dataset, raw, conv.key))
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return None
    try:
        text = os.read(fd, 1 << 16).decode("utf-8", "replace")
    finally:
        os.close(fd)
    lines = text.split("\n")
    if len(lines) != 10 or lines[0] != f"{_MAGIC}\t{_stamp()}\t{root}" or lines[9] != "":
        return None
    arrays = []
    try:
        for line in lines[1:5]:
            kind, file, ident = line.split("\t")
            if kind != "source" or _ident(os.stat(file)) != ident:
                return None
        for line in lines[5:9]:
            array = _map(line.split("\t"))
            if array is None:
                return None
            arrays.append(array)
    except (OSError, ValueError, TypeError):
        return None
    writer = sys.modules.get(f"{__package__}.writer")
    if writer is not None:
        writer.report_failures()  # what this process's background writers could not write
    return tuple(_split(y, x, conv, select) for y, x in (arrays[0:2], arrays[2:4]))


def _map(fields: list[str]):
    """The raw file a record line names, mapped copy-on-write, if it is the file recorded."""
    kind, file, ident, offset, dtype, shape = fields
    if kind != "raw":
        return None
    shape = tuple(int(n) for n in shape.split(",") if n)
    dtype = np.dtype(dtype)
    fd = os.open(file, os.O_RDONLY | _NOFOLLOW)
    try:
        st = os.fstat(fd)
        if _ident(st) != ident:
            return None
        count = int(np.prod(shape, dtype=np.int64)) if shape else 0
        if count == 0:
            return np.empty(shape, dtype)
        buffer = _mmap.mmap(fd, st.st_size, access=_mmap.ACCESS_COPY)
    finally:
        os.close(fd)
    return np.frombuffer(buffer, dtype, count, int(offset)).reshape(shape)


def _split(y, x, conv, select):
    """Rows ``select(n)`` of one split's mapped labels and images, images in ``conv``'s layout."""
    start, stop = select(x.shape[0])
    x = x[start:stop]
    return x.reshape(conv.shape(x.shape)), y[start:stop]


def remember(dataset, cache_dir, raw: bool, conv, files: dict) -> None:
    """Write the warm record of a default ``mmap=True`` load that just returned ``files``'
    arrays, if every fact it would hold checks out now (best effort: it only saves time)."""
    import contextlib

    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        root = root_of(cache_dir)
        if root is None:
            return
        lines = _record_lines(dataset, root, raw, conv, files)
        if lines is None:
            return
        from .._atomic import atomic_write
        from .layout import own_dir

        directory = own_dir(own_dir(_decoded(root)) / "warm")
        with atomic_write(directory / record_name(dataset.name, raw, conv.key), sync=False) as f:
            f.write("".join(line + "\n" for line in lines).encode())


def _decoded(root: str):
    from pathlib import Path

    return Path(root) / "decoded"


def _record_lines(dataset, root: str, raw: bool, conv, files: dict) -> list[str] | None:
    """The record's lines, or None when some fact does not check out (or the decoded cache is
    not ``<root>/decoded``, e.g. moved off a network file system)."""
    from pathlib import Path

    from .. import _fetch
    from .._fetch.manifest import Manifest
    from . import identity
    from .format import KIND_RAW, open_header, raw_name
    from .layout import decoded_dir
    from .identity import stat_of
    from .raw import read_stamp

    decoded = _decoded(root)
    if decoded_dir(cache_dir=root) != decoded:
        return None
    if _fetch._warm(dataset.spec, Path(root), Manifest(Path(root))) != files:
        return None
    variant = "upright" if dataset.spec.transposed and not raw else "stored"
    roles = (("train_labels", "native", "stored"), ("train_images", conv.key, variant),
             ("test_labels", "native", "stored"), ("test_images", conv.key, variant))
    lines = [f"{_MAGIC}\t{_stamp()}\t{root}"]
    lines += [f"source\t{os.path.abspath(files[role])}\t{_ident(os.stat(files[role]))}"
              for role in ("train_labels", "train_images", "test_labels", "test_images")]
    for role, key, kind in roles:
        digest, _ = identity.known_digest(files[role], decoded, Path(root))
        if digest is None:
            return None
        path = decoded / raw_name(digest, kind, key)
        opened = open_header(path, KIND_RAW, digest, kind)
        if opened is None:
            return None
        fd, header = opened
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if read_stamp(path) != stat_of(st) or header.meta.get("conversion") != key:
            return None
        shape = ",".join(str(n) for n in header.shape)
        lines.append(f"raw\t{path}\t{_ident(st)}\t{header.data_offset}\t"
                     f"{header.meta['array_dtype']}\t{shape}")
    return lines
