"""Getting a dataset's files onto the local disk, verified: cache, reuse, mirrors, locks.

:func:`fetch` returns ``{role: path}`` of verified gz IDX files, downloading only what is missing;
:func:`discard` is how a loader reports a returned file that does not parse; :func:`status` and
:func:`remove` report on and delete a dataset's downloaded files.

Where files live
    ``<cache root>/<dataset>/<official file name>``, the cache root being ``cache_dir=``, else
    ``$FASTIDX_HOME``, else the platform's user cache directory. EMNIST's ``gzip.zip`` lives in
    ``<cache root>/emnist/`` and the gz files of each split are extracted next to it.
    ``<cache root>/fetch-manifest.json`` (:mod:`.manifest`) remembers every verified file
    with its ``stat`` identity, so a warm fetch costs one ``stat`` per file: no hashing, no lock, no
    write, no network, and none of the download machinery is even imported.

What counts as genuine (:mod:`.verify`)
    The SHA-256 of the file equals the official compressed file's, or the SHA-256 of its decoded
    content, as fastidx's own decoder reads it, equals the official content's: a mirror that
    re-compressed the same data is accepted, a file the loader would refuse is not. Anything else
    is deleted and refused with :class:`~fastidx.ChecksumError`. A cached file that fails its hash
    is deleted with a :class:`~fastidx._errors.CacheWarning` and fetched again; offline, it is moved
    aside to ``<name>.damaged`` instead, and the warning says what to do.

Files reused from other tools (:mod:`.elsewhere`; never copied, the verified path is returned)
    * Keras: ``$KERAS_HOME/datasets`` (default ``~/.keras/datasets``): Fashion-MNIST's
      ``fashion-mnist/*.gz``, and MNIST's ``mnist.npz``, returned as ``{"npz": path}`` only when the
      four IDX files are not otherwise available locally.
    * torchvision: ``<root>/MNIST/raw/``, ``FashionMNIST/raw/``, ``KMNIST/raw/`` and
      ``EMNIST/raw/gzip.zip``, where ``<root>`` comes from ``$FASTIDX_TORCHVISION_ROOT``.
    A copy that a loader could not parse is left in place and not offered again until it changes.

The modules
    This package's ``__init__`` is the warm path and all that a warm load imports; the rest is
    imported when needed: :mod:`.fetcher` (verify, repair, download: the slow path), :mod:`.plan`
    (the use / download / repair decision, no I/O), :mod:`.settings` (variables and mirror syntax),
    :mod:`.manifest`, :mod:`.verify`, :mod:`.transport`, :mod:`.archive`, :mod:`.elsewhere`,
    :mod:`.inventory` (:func:`status` and :func:`remove`).

Downloading (:mod:`.transport`)
    Mirrors are tried in order: ``mirrors=``, then ``$FASTIDX_MIRROR``, then the registry's URLs. A
    mirror is an ``http://``, ``https://`` or ``file://`` base URL or a local directory; a string
    may hold several separated by whitespace or commas (see :func:`mirror_bases`). A file is fetched
    from ``{base}/{dataset}/{file name}`` (EMNIST: ``{base}/emnist/gzip.zip``). Bodies stream into
    a uniquely named temporary file beside the target, which is verified, synced and renamed into
    place; every error path (Ctrl-C included) removes it. Every wait is bounded:

    * ``$FASTIDX_TIMEOUT``: the whole download of one fetch — every file, mirror, retry and back-off
      (default: 600 s, or the time to download the missing files at 250 kB/s when that is longer);
    * ``$FASTIDX_STALL_TIMEOUT`` (default 15 s): the longest wait for a mirror's answer or for data.
      A mirror that does not answer in time, refuses connections or does not resolve is left for
      the next one and skipped for the rest of the fetch; a body slower than ``$FASTIDX_MIN_RATE``
      bytes/s (default 1024) over that period is resumed once, then left for the next mirror;
    * 5xx answers, resets and short bodies are retried with exponential back-off and jitter (base
      ``$FASTIDX_RETRY_BASE`` s, default 0.5), ``Retry-After`` honoured up to 10 s (beyond: the next
      mirror), resuming with ``Range`` requests. A resumed file that fails verification is fetched
      once more from byte 0 before the mirror is refused.

    The first time a mirror is left for the next one, and when a download is slow, one line on
    stderr says so. A progress line is written to stderr when it is a terminal (``progress=``).
    When files cannot be had, one exception lists them all, the reason per mirror and the fixes.

Several processes
    One lock file per file (``.<file name>.lock`` beside it, :mod:`fastidx._lock`: never followed
    if it is a symlink): one process downloads, the others wait (saying once what they wait for)
    and then use its file. A waiter gives up with :class:`~fastidx.DownloadError` only when the
    holder shows no progress for ``$FASTIDX_LOCK_TIMEOUT`` seconds (default 600).

Offline
    ``$FASTIDX_OFFLINE=1`` or ``offline=True``: no network access (``file://`` mirrors still work); a
    missing file raises :class:`~fastidx.DatasetNotFoundError` saying what to put where.

Every environment variable is read when :func:`fetch` is called, never at import.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import registry
from .._errors import warn_cache
from .._paths import cache_root
from .manifest import MANIFEST_NAME, Manifest, lock_path
from .settings import (
    ENV_LOCK_TIMEOUT,
    ENV_MIN_RATE,
    ENV_MIRROR,
    ENV_OFFLINE,
    ENV_RETRY_BASE,
    ENV_STALL_TIMEOUT,
    ENV_TIMEOUT,
    ENV_TORCHVISION_ROOT,
    env_flag,
    mirror_bases,
    stderr_is_tty,
)

__all__ = ["fetch", "discard", "status", "remove", "FileStatus", "mirror_bases", "lock_path", "MANIFEST_NAME"]
__all__ += [
    "ENV_LOCK_TIMEOUT", "ENV_MIN_RATE", "ENV_MIRROR", "ENV_OFFLINE", "ENV_RETRY_BASE", "ENV_STALL_TIMEOUT",
    "ENV_TIMEOUT", "ENV_TORCHVISION_ROOT",
]

_env_flag = env_flag  # the command line's name for it


def fetch(dataset, *, cache_dir=None, mirrors=None, progress=None, offline=None) -> dict[str, Path]:
    """Verified local copies of a dataset's four gz IDX files, downloading what is missing.

    Parameters
    ----------
    dataset : str or fastidx.registry.DatasetSpec
        A registry name (``"mnist"``, ``"emnist_letters"``, ...), or a spec for a dataset of one's own.
    cache_dir : str or os.PathLike, optional
        The cache root; default ``$FASTIDX_HOME``, else the user cache directory.
    mirrors : str, os.PathLike or list of them, optional
        Mirrors tried before ``$FASTIDX_MIRROR`` and the built-in ones: base URLs (``http(s)://``
        or ``file://``) or local directories; files are looked up as ``{base}/{dataset}/{file}``.
        See :func:`mirror_bases` for the separators.
    progress : bool, optional
        Show a progress line on stderr; default: when stderr is a terminal.
    offline : bool, optional
        Never use the network; default ``$FASTIDX_OFFLINE``.

    Returns
    -------
    dict of str to pathlib.Path
        ``{"train_images": ..., "train_labels": ..., "test_images": ..., "test_labels": ...}``, or
        ``{"npz": path}`` when the only local copy of MNIST is a verified Keras ``mnist.npz``.

    Raises
    ------
    ChecksumError
        A mirror sent bytes that are not the official file (they were deleted).
    DownloadError
        No mirror could deliver some file; the message lists every missing file. Its ``missing``
        attribute is the list of their names, ``details`` the full reason per URL.
    DatasetNotFoundError
        Offline, and a file is not available locally.
    CacheDirError
        The cache directory cannot be created or written.
    ValueError
        A mirror or a setting (``FASTIDX_TIMEOUT``...) is malformed; the message names it.

    Examples
    --------
    >>> files = fetch("mnist")  # doctest: +SKIP
    >>> files["train_images"].name  # doctest: +SKIP
    'train-images-idx3-ubyte.gz'
    """
    spec = dataset if isinstance(dataset, registry.DatasetSpec) else registry.get(dataset)
    bases = mirror_bases(mirrors)
    root = Path(os.path.abspath(cache_root(cache_dir)))
    manifest = Manifest(root)
    warm = _warm(spec, root, manifest)
    if warm is not None:
        return warm
    offline, offline_how = _offline(offline)
    progress = stderr_is_tty() if progress is None else progress
    from .fetcher import Fetcher

    return Fetcher(spec, root, manifest, bases, offline, offline_how, bool(progress)).run()


def _offline(offline) -> tuple[bool, str]:
    """``offline=`` (default ``$FASTIDX_OFFLINE``), and how it was set, for messages."""
    if offline is None:
        return env_flag(ENV_OFFLINE), f"{ENV_OFFLINE}={os.environ.get(ENV_OFFLINE)}"
    return bool(offline), f"offline={bool(offline)}"


def _warm(spec, root: Path, manifest: Manifest) -> dict[str, Path] | None:
    """The four files when the manifest vouches for each of them as they are now (one stat each)."""
    directory = root / spec.dir_name
    archive_sha = spec.archive.sha256 if spec.archive is not None else None
    found = {}
    for role in registry.ROLES:
        file = spec.files[role]
        path = directory / file.name
        if not manifest.vouches(path, file, archive_sha):
            return None
        found[role] = path
    return found


def discard(path, cache_dir=None) -> None:
    """Forget a file :func:`fetch` returned that turned out not to parse, so it is fetched again.

    A file in the fastidx cache is deleted and dropped from the manifest; a file that belongs to
    another tool (Keras, torchvision) is left in place and not offered again until it changes.
    Either way a :class:`~fastidx._errors.CacheWarning` names it. ``cache_dir`` is the one the
    file was fetched with.

    Examples
    --------
    >>> files = fetch("mnist")  # doctest: +SKIP
    >>> discard(files["train_labels"])  # doctest: +SKIP
    """
    path = Path(os.path.abspath(path))
    root = Path(os.path.abspath(cache_root(cache_dir)))
    manifest = Manifest(root)
    if not _inside(path, root) and manifest.entry(path) is not None:
        from .elsewhere import distrust

        distrust(path, manifest)
        manifest.save()
        warn_cache(
            f"{path} could not be parsed; fastidx will not use this copy (it belongs to another tool "
            f"and was left in place) and will download its own"
        )
        return
    if not _inside(path, root):
        # Fetched into another cache root: <root>/<dataset>/<name>, recorded in that root's manifest.
        manifest = Manifest(path.parent.parent)
        if manifest.entry(path) is None:
            warn_cache(f"{path} could not be parsed; it is not a file of the fastidx cache, so it was left in place")
            return
    manifest.forget(path)
    manifest.save()
    try:
        path.unlink(missing_ok=True)
        done = "deleted it; it will be downloaded again"
    except OSError as exc:
        done = f"could not delete it ({exc.strerror or exc})"
    warn_cache(f"{path} could not be parsed; {done}")


def status(dataset, cache_dir=None, *, verify: bool = False):
    """What a dataset's files look like in the cache, without repairing or downloading anything.

    Read-only: no network, no lock, nothing written. Returns a list of
    :class:`~fastidx._fetch.inventory.FileStatus` (``role``, ``name``, ``path``, ``state``,
    ``size``), the four files in role order then EMNIST's archive; ``state`` is ``"verified"``
    (unchanged since it was verified), ``"unverified"`` (present but changed or never checked:
    the next load hashes it), ``"damaged"`` (fails its hash; only with ``verify=True``, which hashes
    the unverified files now) or ``"missing"``. Details: :func:`fastidx._fetch.inventory.status`.

    >>> import tempfile
    >>> [s.state for s in status("mnist", cache_dir=tempfile.mkdtemp())]
    ['missing', 'missing', 'missing', 'missing']
    """
    from .inventory import status as report

    return report(dataset, cache_dir, verify=verify)


def remove(dataset, cache_dir=None):
    """Delete a dataset's downloaded files from the fastidx cache; returns the paths deleted.

    Only names fastidx creates in ``<cache root>/<dataset>/`` (the official file names,
    ``<name>.damaged``, temporary files of interrupted downloads); symlinks are deleted as links;
    other tools' files and lock files are never touched; each file is deleted under its lock.
    EMNIST's shared ``gzip.zip`` goes with the last split. Details:
    :func:`fastidx._fetch.inventory.remove`.

    >>> import tempfile
    >>> remove("mnist", cache_dir=tempfile.mkdtemp())
    []
    """
    from .inventory import remove as delete

    return delete(dataset, cache_dir)


def __getattr__(name):
    if name == "FileStatus":
        from .inventory import FileStatus

        return FileStatus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _keras_datasets() -> Path:
    from .elsewhere import keras_datasets

    return keras_datasets()


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True
