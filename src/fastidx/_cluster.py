"""Where the cache is when fastidx runs on many machines: stable paths, node-local locks.

- A relative cache or dataset path is resolved against a stable directory: Ray Tune's
  ``TUNE_ORIG_WORKING_DIR`` (the working directory before Tune moved the trial into its own), else
  in a Ray worker the working directory of its first resolution. Tune ``chdir``s every trial, so
  resolving against the current directory would give each trial its own cache and download.
- In a Ray worker without ``FASTIDX_HOME`` the default cache directory is used and reported once
  (:class:`fastidx.ClusterWarning`): workers get the raylet's environment, not the driver's.
- Locks and the decoded cache never live on a network file system (NFS, CIFS/SMB, Lustre, GPFS,
  CephFS, ...; found in ``/proc/self/mounts``), where file locks cannot be trusted: they move to
  node-local storage (``$TMPDIR/fastidx-<uid>/``) with a one-line warning. Verified dataset files
  may stay on the shared directory: every node still checks their hashes.

fastidx never imports Ray: a process is a Ray worker only if Ray is already imported and says so.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from ._errors import CacheDirError, ClusterWarning

#: File system types (``/proc/self/mounts``) whose locks and consistency fastidx does not trust.
NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "ncpfs", "afs", "coda", "9p",
    "ceph", "glusterfs", "fuse.glusterfs", "lustre", "gpfs", "beegfs", "fuse.sshfs", "sshfs",
    "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "fuse.juicefs", "fuse.cephfs", "ocfs2", "gfs2",
    "pvfs2", "orangefs", "panfs", "davfs", "fuse.davfs2", "fuse.blobfuse", "wekafs", "quobyte",
})
MOUNTS = "/proc/self/mounts"

_resolved: dict[str, Path] = {}
_fs: dict[tuple[str, str], str | None] = {}
_warned: set[str] = set()


def in_ray_worker() -> bool:
    """True in a Ray worker process (a task, an actor, a Tune trial); False on a driver."""
    ray = sys.modules.get("ray")
    if ray is None:
        return False
    try:
        worker = ray._private.worker
        return bool(ray.is_initialized()) and worker.global_worker.mode == worker.WORKER_MODE
    except Exception:
        return False


def resolve(path: Path) -> Path:
    """``path`` made absolute against a stable directory: Tune's ``TUNE_ORIG_WORKING_DIR`` when
    set; in another Ray worker, the working directory of the first resolution (the same answer for
    the whole process); elsewhere the working directory, as Python resolves it."""
    if path.is_absolute():
        return path
    orig = os.environ.get("TUNE_ORIG_WORKING_DIR")
    if orig and os.path.isabs(orig):
        return Path(orig) / path
    if not in_ray_worker():
        return Path.cwd() / path
    return _resolved.setdefault(os.fspath(path), Path.cwd() / path)


def warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, ClusterWarning, stacklevel=3)


def default_home(path: Path, variable: str) -> Path:
    """The default cache directory ``path``, reported once when this process is a Ray worker."""
    if in_ray_worker():
        warn_once("home", (
            f"fastidx: {variable} is not set in this Ray worker, so this node caches in {path}; "
            f"pass it with ray.init(runtime_env=fastidx.ray.runtime_env())"
        ))
    return path


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def fs_type(path, mounts: str | None = None) -> str | None:
    """The file system type of the mount holding ``path`` (its nearest existing ancestor)."""
    mounts = mounts or MOUNTS
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    real = os.path.realpath(path)
    key = (real, mounts)
    if key in _fs:
        return _fs[key]
    best, kind = -1, None
    try:
        with open(mounts, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = _unescape(fields[1])
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= best:  # later mounts of a point hide earlier ones
                    best, kind = len(point), fields[2]
    except OSError:
        kind = None
    _fs[key] = kind
    return kind


def is_network(path, mounts: str | None = None) -> bool:
    return fs_type(path, mounts) in NETWORK_FS


def local_root() -> Path:
    """Node-local storage for what must not live on a network file system: a private directory
    of this user in the temporary directory, refused if it is a symlink or someone else's."""
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else 0
    root = Path(tempfile.gettempdir()) / f"fastidx-{uid}"
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise CacheDirError(f"cannot create the node-local fastidx directory {root}: {exc}") from exc
    st = os.lstat(root)
    import stat

    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != uid):
        raise CacheDirError(
            f"{root} is not a directory of this user (a symlink or someone else's): fastidx will "
            f"not keep its node-local cache there; set TMPDIR to another directory"
        )
    return root


def node_local(directory: Path, what: str, mounts: str | None = None) -> Path:
    """``directory``, or a node-local stand-in (same for every process of this node) when
    ``directory`` is on a network file system."""
    kind = fs_type(directory, mounts)
    if kind not in NETWORK_FS:
        return directory
    import hashlib

    tag = hashlib.sha256(os.fsencode(os.path.abspath(directory))).hexdigest()[:16]
    local = local_root() / tag / directory.name
    local.mkdir(parents=True, exist_ok=True)
    warn_once(f"{what}:{directory}", (
        f"fastidx: {directory} is on a network file system ({kind}), where file locks cannot be "
        f"trusted; fastidx keeps {what} in {local} on this node"
    ))
    return local
