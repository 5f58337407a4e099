"""Source identity: the SHA-256 of a source file, remembered per path while the file is unchanged.

``<decoded>/sources/<key>.json`` (the stat index) maps a path and its ``stat`` (device, inode,
size, mtime, ctime) to the digest; a record is trusted only for a file last changed a while
before it was hashed (:func:`racy_window`). When the stat index does not know a file, the fetch
manifest of the cache root may: a file verified at download or first sight is not hashed again.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from .format import parse_json

#: A stat record is trusted only for files last changed this long before they were hashed: a
#: rewrite within the file system's timestamp granularity could otherwise go unseen. This is the
#: bound for file systems that keep whole seconds or coarser (FAT's 2 s mtime, ext3, HFS+).
RACY_NS = 2_000_000_000
#: The bound for file systems with sub-millisecond timestamps (ext4, XFS, Btrfs, tmpfs, overlayfs):
#: Linux advances them with its clock tick, 10 ms at most (HZ=100), so 10 ticks.
RACY_FINE_NS = 100_000_000

_HEX = frozenset("0123456789abcdef")


def stat_of(st) -> list[int]:
    """What changes when a file is rewritten: device, inode, size, mtime and ctime."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def stat_identity(path) -> list[int]:
    return stat_of(os.stat(path))


def racy_window(ident: list[int]) -> int:
    """How long after its last change (``ident``'s mtime and ctime) a file must have been hashed
    for a stat record of it to be trusted: :data:`RACY_FINE_NS` when both timestamps carry
    sub-millisecond digits (a file system that keeps them), else :data:`RACY_NS`. A fine file
    system shows whole milliseconds in both by chance once in 10^12 files: then the longer bound."""
    fine = ident[3] % 1_000_000 and ident[4] % 1_000_000
    return min(RACY_NS, RACY_FINE_NS) if fine else RACY_NS


def trusted(hashed_ns: int, ident: list[int]) -> bool:
    """Whether a digest taken at ``hashed_ns`` of the file as it is now (``ident``) can be trusted."""
    return hashed_ns - max(ident[3], ident[4]) > racy_window(ident)


def path_key(path) -> tuple[str, str]:
    """``(absolute path, key)``: the key names the path's record and its build lock."""
    name = os.path.abspath(path)
    from .._sha import sha256

    return name, sha256(os.fsencode(name)).hexdigest()[:32]


def record_path(path, directory: Path) -> tuple[str, Path]:
    name, key = path_key(path)
    return name, directory / "sources" / f"{key}.json"


def read_record(record, name: str, ident: list[int]) -> str | None:
    """The digest a stat index record holds for ``name`` as it is now (``ident``), else None."""
    try:
        with open(record, "rb") as f:
            known = parse_json(f.read())
        if (
            known["path"] == name
            and known["stat"] == ident
            and trusted(known["hashed_ns"], ident)
        ):
            return known["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def known_digest(path, directory: Path, root: Path | None = None) -> tuple[str | None, list[int]]:
    """``(SHA-256 or None, identity)``: the digest the stat index holds for ``path`` if the file is
    unchanged since it was hashed (one ``stat`` and one small read, nothing written), else the
    one the fetch manifest of the cache root ``root`` holds (:func:`manifest_digest`)."""
    ident = stat_identity(path)
    name, record = record_path(path, directory)
    digest = read_record(record, name, ident)
    if digest is None and root is not None:
        digest = manifest_digest(path, root, ident)
    return digest, ident


def manifest_digest(path, root: Path, ident: list[int]) -> str | None:
    """The SHA-256 the fetch manifest of the cache root ``root`` holds for ``path`` as it is now
    (``ident``), taken when the file was verified at download or first sight; None when the
    manifest does not know the file, it has changed since, or the digest is not trusted
    (:func:`trusted`). Read only, through the fetcher's own :class:`~fastidx._fetch.manifest.Manifest`
    (a sideways import: the loads that get here have imported ``_fetch`` already, or the registry)."""
    from .._fetch.manifest import Manifest

    entry = Manifest(Path(os.path.abspath(root))).entry(Path(os.path.abspath(path)))
    if entry is None:
        return None
    facts = tuple(entry.get(k) for k in ("ino", "size", "mtime_ns", "ctime_ns"))
    digest, verified_ns = entry.get("sha256"), entry.get("verified_ns")
    if facts != (ident[1], ident[2], ident[3], ident[4]) or not isinstance(verified_ns, int):
        return None
    if not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= _HEX):
        return None
    return digest if trusted(verified_ns, ident) else None


def source_digest(path: Path, directory: Path, root: Path | None = None) -> tuple[str, list[int]]:
    """SHA-256 of ``path``'s bytes and the file's identity (:func:`stat_identity`) when it was
    taken; a stat index in ``directory/sources`` (or the fetch manifest of ``root``) avoids
    re-hashing an unchanged file."""
    digest, ident = known_digest(path, directory, root)
    if digest is None:
        digest = hash_and_record(path, directory, ident)
    return digest, ident


def hash_and_record(path: Path, directory: Path, ident: list[int]) -> str:
    """Hash ``path`` and remember the digest for the identity ``ident`` in the stat index."""
    import hashlib

    hashed_ns = time.time_ns()
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    remember_digest(path, directory, ident, digest, hashed_ns)
    return digest


def remember_digest(path: Path, directory: Path, ident: list[int], digest: str,
                    hashed_ns: int) -> None:
    """Record in the stat index that ``path`` with identity ``ident`` had ``digest`` at
    ``hashed_ns`` (best effort: the index only saves hashing)."""
    from .._atomic import atomic_write
    from .layout import own_dir

    name, record = record_path(path, directory)
    with contextlib.suppress(OSError):  # CacheDirError included
        own_dir(record.parent)
        with atomic_write(record, sync=False) as f:
            f.write(json.dumps({"path": name, "stat": ident, "hashed_ns": hashed_ns,
                                "sha256": digest}).encode())
