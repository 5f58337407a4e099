"""Source identity: the SHA-256 of a source file, remembered per path while the file is unchanged.

``<decoded>/sources/<key>.json`` (the stat index) maps a path and its ``stat`` (device, inode,
size, mtime, ctime) to the digest; a record is trusted only for a file last modified
:data:`RACY_NS` before it was hashed.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from .format import parse_json

#: A stat index record is trusted only for files last modified this long before they were hashed:
#: a rewrite within the file system's timestamp granularity could otherwise go unseen.
RACY_NS = 2_000_000_000


def stat_of(st) -> list[int]:
    """What changes when a file is rewritten: device, inode, size, mtime and ctime."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def stat_identity(path) -> list[int]:
    return stat_of(os.stat(path))


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
            and known["hashed_ns"] - max(ident[3], ident[4]) > RACY_NS
        ):
            return known["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def known_digest(path, directory: Path) -> tuple[str | None, list[int]]:
    """``(SHA-256 or None, identity)``: the digest the stat index holds for ``path`` if the file is
    unchanged since it was hashed (one ``stat`` and one small read, nothing written)."""
    ident = stat_identity(path)
    name, record = record_path(path, directory)
    return read_record(record, name, ident), ident


def source_digest(path: Path, directory: Path) -> tuple[str, list[int]]:
    """SHA-256 of ``path``'s bytes and the file's identity (:func:`stat_identity`) when it was
    taken; a stat index in ``directory/sources`` avoids re-hashing an unchanged file."""
    digest, ident = known_digest(path, directory)
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
