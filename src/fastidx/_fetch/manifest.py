"""``<cache root>/fetch-manifest.json``: the files fetch() verified, recognised again by one ``stat``.

Each entry records what the file's hash was checked against and the file's identity when it was
checked: size, ``mtime_ns``, inode and ``ctime_ns``. A file whose ``stat`` still shows all four is
trusted without hashing; any change (a rewrite, a copy over it, ``touch``, a new inode) makes it be
verified again. Reading the manifest takes no lock and writes nothing; writes (after a download or
the first sight of a file) merge under a lock, so concurrent processes never lose each other's
entries. A manifest that cannot be read, has the wrong shape or is nested too deeply for the JSON
parser is ignored: it costs one re-hash of each file, then it is written afresh.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path



def _log(message: str, *args) -> None:
    """``logging`` is imported only when there is something to say (a warm load has nothing)."""
    import logging

    logging.getLogger("fastidx._fetch").info(message, *args)

MANIFEST_NAME = "fetch-manifest.json"
_VERSION = 1


def identity(st: os.stat_result) -> dict:
    """The facts of a ``stat`` that change when a file's bytes may have changed."""
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "ctime_ns": st.st_ctime_ns}


def lock_path(target: Path) -> Path:
    """The lock file that guards ``target`` (and its temporary files)."""
    from .._cluster import node_local  # never on NFS & co: locks there cannot be trusted

    return node_local(target.parent, "its download locks") / f".{target.name}.lock"


class Manifest:
    """The manifest of one cache root: read once, vouched from, changed in memory, saved on demand."""

    def __init__(self, root: Path):
        self.root = root
        self.path = root / MANIFEST_NAME
        self.files = self._read()
        self._changes: dict[str, dict | None] = {}

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: hostile nesting
            _log("ignoring unreadable %s: %s", self.path, type(exc).__name__)
            return {}
        if not isinstance(data, dict) or data.get("version") != _VERSION or not isinstance(data.get("files"), dict):
            _log("ignoring %s: not a fastidx manifest", self.path)
            return {}
        return {k: v for k, v in data["files"].items() if isinstance(k, str) and isinstance(v, dict)}

    def reload(self) -> None:
        """Read the file again (another process may have written it), keeping this one's changes."""
        self.files = self._read()
        self._apply(self.files)

    def _apply(self, files: dict) -> None:
        for key, entry in self._changes.items():
            if entry is None:
                files.pop(key, None)
            else:
                files[key] = entry

    def key(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def entry(self, path: Path) -> dict | None:
        return self.files.get(self.key(path))

    def vouches(self, path: Path, spec, archive_sha256: str | None = None) -> bool:
        """True if ``path`` is, by one ``stat``, the very file that was verified as ``spec``."""
        entry = self.files.get(self.key(path))
        if entry is None:
            return False
        try:
            st = os.stat(path)
        except OSError:
            return False
        if any(entry.get(k) != v for k, v in identity(st).items()):
            return False
        if spec.sha256 is not None and entry.get("sha256") == spec.sha256:
            return True
        if spec.content_sha256 is not None and entry.get("content_sha256") == spec.content_sha256:
            return True
        return (
            spec.sha256 is None
            and spec.content_sha256 is None
            and archive_sha256 is not None
            and entry.get("archive_sha256") == archive_sha256
        )

    def record(self, path: Path, **facts) -> None:
        """Remember that ``path``, as it is now, was verified (``facts``: hashes, URL...)."""
        entry = identity(os.stat(path))
        entry.update({k: v for k, v in facts.items() if v is not None})
        entry["verified_at"] = int(time.time())
        self.files[self.key(path)] = self._changes[self.key(path)] = entry

    def forget(self, path: Path) -> None:
        key = self.key(path)
        self.files.pop(key, None)
        self._changes[key] = None

    @property
    def changed(self) -> bool:
        return bool(self._changes)

    def save(self) -> None:
        """Merge this call's changes into the file; best effort (a failure costs a re-hash later)."""
        if not self._changes:
            return
        from .._atomic import atomic_write
        from .._lock import held

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with held(lock_path(self.path), timeout=10):
                files = self._read()
                self._apply(files)
                with atomic_write(self.path, "w") as out:
                    json.dump({"version": _VERSION, "files": files}, out, indent=1, sort_keys=True)
        except OSError as exc:  # LockTimeout and CacheDirError are OSErrors too
            if os.path.islink(lock_path(self.path)):
                raise  # a planted symlink: the user must hear of it (CacheDirError naming it)
            _log("could not update %s: %s", self.path, exc)
            return
        self._changes.clear()
