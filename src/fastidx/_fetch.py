"""Getting a dataset's files onto the local disk, verified: cache, reuse, mirrors, locks.

:func:`fetch` returns ``{role: path}`` of verified gz IDX files, downloading only what is missing;
:func:`discard` is how a loader reports a returned file that does not parse; :func:`status` and
:func:`remove` report on and delete a dataset's downloaded files.

Where files live
    ``<cache root>/<dataset>/<official file name>``, the cache root being ``cache_dir=``, else
    ``$FASTIDX_HOME``, else the platform's user cache directory. EMNIST's ``gzip.zip`` lives in
    ``<cache root>/emnist/`` and the gz files of each split are extracted next to it.
    ``<cache root>/fetch-manifest.json`` (:mod:`fastidx._manifest`) remembers every verified file
    with its ``stat`` identity, so a warm fetch costs one ``stat`` per file: no hashing, no lock, no
    write, no network, and none of the download machinery is even imported.

What counts as genuine (:mod:`fastidx._verify`)
    The SHA-256 of the file equals the official compressed file's, or the SHA-256 of its decoded
    content, as fastidx's own decoder reads it, equals the official content's: a mirror that
    re-compressed the same data is accepted, a file the loader would refuse is not. Anything else
    is deleted and refused with :class:`~fastidx.ChecksumError`. A cached file that fails its hash
    is deleted with a :class:`~fastidx._errors.CacheWarning` and fetched again; offline, it is moved
    aside to ``<name>.damaged`` instead, and the warning says what to do.

Files reused from other tools (never copied; the verified path is returned)
    * Keras: ``$KERAS_HOME/datasets`` (default ``~/.keras/datasets``): Fashion-MNIST's
      ``fashion-mnist/*.gz``, and MNIST's ``mnist.npz``, returned as ``{"npz": path}`` only when the
      four IDX files are not otherwise available locally.
    * torchvision: ``<root>/MNIST/raw/``, ``FashionMNIST/raw/``, ``KMNIST/raw/`` and
      ``EMNIST/raw/gzip.zip``, where ``<root>`` comes from ``$FASTIDX_TORCHVISION_ROOT``.

Downloading (:mod:`fastidx._transport`)
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

import contextlib
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import registry
from ._errors import CacheDirError, ChecksumError, DatasetNotFoundError, DownloadError, warn_cache
from ._manifest import MANIFEST_NAME, Manifest, lock_path
from ._paths import ENV_HOME, cache_root, writable_dir

__all__ = ["fetch", "discard", "status", "remove", "FileStatus"]

log = logging.getLogger(__name__)

ENV_MIRROR = "FASTIDX_MIRROR"
ENV_OFFLINE = "FASTIDX_OFFLINE"
ENV_TORCHVISION_ROOT = "FASTIDX_TORCHVISION_ROOT"
ENV_RETRY_BASE = "FASTIDX_RETRY_BASE"
ENV_TIMEOUT = "FASTIDX_TIMEOUT"
ENV_STALL_TIMEOUT = "FASTIDX_STALL_TIMEOUT"
ENV_MIN_RATE = "FASTIDX_MIN_RATE"
ENV_LOCK_TIMEOUT = "FASTIDX_LOCK_TIMEOUT"

#: Defaults of the settings the environment variables above override.
RETRY_BASE = 0.5
TIMEOUT = 600.0
TIMEOUT_RATE = 250e3  # bytes/s: a larger download gets a proportionally longer default deadline
STALL_TIMEOUT = 15.0
MIN_RATE = 1024.0
LOCK_TIMEOUT = 600.0
#: Waiting this long for another process's lock is reported on stderr.
LOCK_NOTICE_AFTER = 1.0

# Paths handed out by fetch() in this process: path -> (cache root, reused from another tool?).
_ISSUED: dict[str, tuple[str, bool]] = {}
# Files of other tools that a loader could not parse: not offered again by this process.
_DISTRUSTED: set[str] = set()


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
        return _issue(warm, root)
    if offline is None:
        offline = _env_flag(ENV_OFFLINE)
        offline_how = f"{ENV_OFFLINE}={os.environ.get(ENV_OFFLINE)}"
    else:
        offline_how = f"offline={bool(offline)}"
    if progress is None:
        progress = _stderr_is_tty()
    fetcher = _Fetcher(spec, root, manifest, bases, bool(offline), offline_how, bool(progress))
    return _issue(fetcher.run(), root)


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


def _issue(files: dict[str, Path], root: Path) -> dict[str, Path]:
    for path in files.values():
        _ISSUED[str(path)] = (str(root), not _inside(path, root))
    return files


def discard(path) -> None:
    """Forget a file :func:`fetch` returned that turned out not to parse, so it is fetched again.

    A file in the fastidx cache is deleted and dropped from the manifest; a file that belongs to
    another tool (Keras, torchvision) is left in place but not offered again by this process. Either
    way a :class:`~fastidx._errors.CacheWarning` names it.

    Examples
    --------
    >>> files = fetch("mnist")  # doctest: +SKIP
    >>> discard(files["train_labels"])  # doctest: +SKIP
    """
    path = Path(os.path.abspath(path))
    root, external = _ISSUED.pop(str(path), (None, False))
    if root is None:
        # Another process fetched it: a cache file is <root>/<dataset>/<name> and in root's manifest.
        guess = Manifest(path.parent.parent)
        if guess.entry(path) is not None:
            root = str(guess.root)
    if root is None:
        warn_cache(f"{path} could not be parsed; it is not a file of the fastidx cache, so it was left in place")
        return
    manifest = Manifest(Path(root))
    manifest.forget(path)
    manifest.save()
    if external:
        _DISTRUSTED.add(str(path))
        warn_cache(
            f"{path} could not be parsed; fastidx will not use this copy (it belongs to another tool "
            f"and was left in place) and will download its own"
        )
        return
    try:
        path.unlink(missing_ok=True)
        done = "deleted it; it will be downloaded again"
    except OSError as exc:
        done = f"could not delete it ({exc.strerror or exc})"
    warn_cache(f"{path} could not be parsed; {done}")


# --- status and removal -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FileStatus:
    """One file of a dataset, as :func:`status` finds it.

    Attributes
    ----------
    role : str
        ``"train_images"``, ``"train_labels"``, ``"test_images"``, ``"test_labels"``, or
        ``"archive"`` (EMNIST's ``gzip.zip``, which the four files come out of).
    name : str
        The official file name.
    path : pathlib.Path
        Where the file is (a Keras or torchvision copy when that is what a load would use), else
        where fastidx would put it.
    state : str
        ``"verified"``: unchanged since it was verified (the manifest's record matches its stat);
        ``"unverified"``: present, but changed or never checked since (the next load hashes it, and
        replaces it if it is damaged); ``"damaged"``: present and failing its hash (only with
        ``verify=True``); ``"missing"``.
    size : int or None
        Its size in bytes when present.
    """

    role: str
    name: str
    path: Path
    state: str
    size: int | None


def status(dataset, cache_dir=None, *, verify: bool = False) -> list[FileStatus]:
    """What a dataset's files look like in the cache, without repairing or downloading anything.

    Read-only: no network, no lock, nothing written (not even the manifest). With ``verify=True``
    a file the manifest does not vouch for is hashed now and reported ``"verified"`` or
    ``"damaged"``; otherwise it is ``"unverified"``.

    Parameters
    ----------
    dataset : str or fastidx.registry.DatasetSpec
    cache_dir : str or os.PathLike, optional
        The cache root; default ``$FASTIDX_HOME``, else the user cache directory.
    verify : bool
        Hash files that are not known to be unchanged.

    Returns
    -------
    list of FileStatus
        The four files in role order, then EMNIST's archive.

    Examples
    --------
    >>> import tempfile
    >>> [(s.name, s.state) for s in status("mnist", cache_dir=tempfile.mkdtemp())][:1]
    [('train-images-idx3-ubyte.gz', 'missing')]
    """
    spec = dataset if isinstance(dataset, registry.DatasetSpec) else registry.get(dataset)
    root = Path(os.path.abspath(cache_root(cache_dir)))
    manifest = Manifest(root)
    directory = root / spec.dir_name
    archive_sha = spec.archive.sha256 if spec.archive is not None else None
    wanted = [(role, spec.files[role], archive_sha) for role in registry.ROLES]
    if spec.archive is not None:
        wanted.append(("archive", spec.archive, None))
    report = []
    for role, file, via in wanted:
        own = directory / file.name
        candidates = [own] + ([] if via else _elsewhere(spec, file.name))
        report.append(_file_status(role, file, candidates, manifest, via, verify, spec))
    return report


def _file_status(role, file, candidates, manifest, via, verify, spec) -> FileStatus:
    first = None
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if manifest.vouches(path, file, via):
            return FileStatus(role, file.name, path, "verified", st.st_size)
        if verify and (file.sha256 or file.content_sha256):
            from ._verify import verify as check

            state = "verified" if check(path, file, _decoded_limit(spec, role)).ok else "damaged"
            if state == "verified" or first is None:
                first = FileStatus(role, file.name, path, state, st.st_size)
            if state == "verified":
                return first
        elif first is None:
            first = FileStatus(role, file.name, path, "unverified", st.st_size)
    return first or FileStatus(role, file.name, candidates[0], "missing", None)


def remove(dataset, cache_dir=None) -> list[Path]:
    """Delete a dataset's downloaded files from the fastidx cache; returns what was deleted.

    Only names fastidx itself creates in ``<cache root>/<dataset>/`` are deleted: the official file
    names, ``<name>.damaged`` files set aside offline and temporary files of interrupted downloads.
    A symlink is deleted as a link, never followed; files of Keras or torchvision are never touched;
    lock files stay (a process may hold them). Each file is deleted under its lock, so a concurrent
    download finishes first. For an EMNIST split the shared ``gzip.zip`` goes with the last split
    whose files are in the cache. The decoded-array cache is :mod:`fastidx.cache`'s business.

    Examples
    --------
    >>> import tempfile
    >>> remove("mnist", cache_dir=tempfile.mkdtemp())
    []
    """
    from ._lock import held

    spec = dataset if isinstance(dataset, registry.DatasetSpec) else registry.get(dataset)
    root = Path(os.path.abspath(cache_root(cache_dir)))
    directory = root / spec.dir_name
    if directory.is_symlink() or not directory.is_dir():
        return []
    names = [spec.files[role].name for role in registry.ROLES]
    if spec.archive is not None and not _other_splits_present(spec, directory):
        names.append(spec.archive.name)
    manifest = Manifest(root)
    removed = []
    limit = _env_seconds(ENV_LOCK_TIMEOUT, LOCK_TIMEOUT, allow_zero=True)
    for name in names:
        target = directory / name
        with held(lock_path(target), timeout=limit):
            for path in [target, target.with_name(name + ".damaged"), *_partials(target)]:
                with contextlib.suppress(FileNotFoundError):
                    if not os.path.isdir(path) or os.path.islink(path):
                        os.unlink(path)
                        removed.append(path)
            manifest.forget(target)
    manifest.save()
    return removed


def _other_splits_present(spec, directory: Path) -> bool:
    mine = {f.name for f in spec.files.values()}
    for other in registry.DATASETS.values():
        if other.archive is spec.archive or other.archive == spec.archive:
            if any((directory / f.name).exists() for f in other.files.values() if f.name not in mine):
                return True
    return False


# --- settings -------------------------------------------------------------------------------------


def _env_flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return value not in {"", "0", "false", "no", "off"}


def _env_seconds(name: str, default: float, *, allow_zero: bool = False) -> float:
    """A finite number from the environment: ``> 0`` (``>= 0`` with ``allow_zero``), else ValueError."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r} (unset it for the default)")
    return number


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def mirror_bases(mirrors=None) -> list[str]:
    """The mirrors to try before the registry's: ``mirrors`` then ``$FASTIDX_MIRROR``, as base URLs.

    One rule for ``mirrors=``, ``$FASTIDX_MIRROR`` and the command line's ``--mirror``: a mirror is
    an ``http://``, ``https://`` or ``file://`` base URL, or a local directory (an existing one,
    absolute or relative), which becomes its ``file://`` URL. A string may hold several mirrors
    separated by whitespace or commas (a comma inside a URL must be written ``%2C``); a string
    that names an existing directory is one mirror even if it contains spaces. Each item of a
    list is one mirror. Duplicates are dropped, order is kept.

    >>> mirror_bases("http://a.example/data, https://b.example/")  # doctest: +SKIP
    ['http://a.example/data', 'https://b.example']
    """
    items: list[tuple[str, str]] = []  # (mirror, where it came from)
    if mirrors is not None:
        if isinstance(mirrors, (str, os.PathLike)):
            items.extend((m, "mirrors=") for m in _split_mirrors(os.fspath(mirrors)))
        else:
            items.extend((os.fspath(m), "mirrors=") for m in mirrors)
    items.extend((m, ENV_MIRROR) for m in _split_mirrors(os.environ.get(ENV_MIRROR, "")))
    bases = [_as_base_url(m, where) for m, where in items]
    return list(dict.fromkeys(bases))


def _split_mirrors(text: str) -> list[str]:
    if text.strip() and os.path.isdir(text):
        return [text]
    return text.replace(",", " ").split()


def _as_base_url(mirror: str, where: str) -> str:
    import urllib.parse

    scheme = urllib.parse.urlsplit(mirror).scheme.lower()
    if scheme in {"http", "https", "file"}:
        return mirror.rstrip("/")
    if os.path.isdir(mirror):
        return Path(mirror).resolve().as_uri()
    raise ValueError(
        f"mirror {mirror!r} (from {where}) is not an http://, https:// or file:// URL nor an existing "
        f"directory; separate several mirrors with spaces or commas"
    )


def _is_file_url(url: str) -> bool:
    return url[:5].lower() == "file:"


def _decoded_limit(spec, role: str | None) -> int:
    try:
        return spec.decoded_size(role)
    except (AttributeError, KeyError, ValueError, TypeError):
        return 8 << 30


# --- the slow path: verify, repair, download ---------------------------------------------------------


class _Fetcher:
    """One call of :func:`fetch` that the manifest could not answer alone."""

    def __init__(self, spec, root, manifest, bases, offline, offline_how, progress):
        self.spec = spec
        self.root = root
        self.dir = root / spec.dir_name
        self.manifest = manifest
        self.bases = bases
        self.offline = offline
        self.offline_how = offline_how
        self.progress = progress
        self._session = None  # a _transport.Session, made when the first download starts
        self.failures: dict[str, list[tuple[str, str]]] = {}  # file name -> [(url, problem)]
        self.refused: dict[str, list[tuple[str, str]]] = {}  # file name -> [(url, mismatch)]

    def run(self) -> dict[str, Path]:
        spec = self.spec
        found: dict[str, Path] = {}
        for role, file in spec.files.items():
            path = self._local(role, file)
            if path is not None:
                found[role] = path
        missing = [role for role in spec.files if role not in found]
        if missing and spec.keras_npz is not None:
            npz = self._keras_npz()
            if npz is not None:
                self.manifest.save()
                return {"npz": npz}
        if missing:
            names = [spec.files[role].name for role in missing]
            local_zip = spec.archive is not None and (
                (self.dir / spec.archive.name).is_file() or bool(_elsewhere(spec, spec.archive.name))
            )
            if spec.archive is not None and not local_zip:
                names = [spec.archive.name]
            if self.offline and not local_zip and not any(_is_file_url(b) for b in self.bases):
                raise self._not_found(names)
            writable_dir(self.root)
            writable_dir(self.dir)
            if spec.archive is not None:
                found.update(self._from_archive(missing))
            else:
                for role in missing:
                    path = self._obtain(role)
                    if path is not None:
                        found[role] = path
        self.manifest.save()
        if len(found) < len(registry.ROLES):
            raise self._failure([role for role in registry.ROLES if role not in found])
        return {role: found[role] for role in registry.ROLES}

    def _local(self, role: str, file: registry.FileSpec) -> Path | None:
        """A verified local copy: in the cache, else in another tool's cache."""
        target = self.dir / file.name
        if self.spec.archive is not None and file.sha256 is None and file.content_sha256 is None:
            # No hash of its own: trusted as extracted from the verified archive, else extracted again.
            if target.is_file():
                if self.manifest.vouches(target, file, self.spec.archive.sha256):
                    return target
                if self.manifest.entry(target) is not None:
                    warn_cache(f"cached file {target} changed since it was extracted; extracting it again")
            return None
        if target.is_file():
            if self._check(target, file, role):
                return target
            self._repair(target, file, role)
        for candidate in _elsewhere(self.spec, file.name):
            if self._check(candidate, file, role):
                return candidate
        return None

    def _check(self, path: Path, file: registry.FileSpec, role: str | None) -> bool:
        """Manifest says unchanged since verified, or verify now (and remember)."""
        if self.manifest.vouches(path, file):
            return True
        from ._verify import mismatch, verify

        verdict = verify(path, file, _decoded_limit(self.spec, role))
        if verdict.ok:
            self.manifest.record(path, sha256=verdict.sha256, content_sha256=verdict.content_sha256)
        else:
            log.info("%s is not %s: %s", path, file.name, mismatch(file, verdict))
        return verdict.ok

    def _can_refetch(self) -> bool:
        return not self.offline or any(_is_file_url(b) for b in self.bases)

    def _repair(self, target: Path, file: registry.FileSpec, role: str | None) -> None:
        """Deal with a cached file that fails its hash (under its lock: someone may be replacing it):
        delete it to fetch it again, or, when it cannot be fetched again, move it aside."""
        from ._verify import mismatch, verify

        if not os.access(target.parent, os.W_OK):
            # A read-only cache: leave it; downloading a good copy will report the directory.
            return
        with self._locked(target, f"checking {target.name}"):
            if not target.is_file():
                return
            self.manifest.reload()
            verdict = verify(target, file, _decoded_limit(self.spec, role))
            if verdict.ok:
                self.manifest.record(target, sha256=verdict.sha256, content_sha256=verdict.content_sha256)
                return
            self.manifest.forget(target)
            if self._can_refetch():
                target.unlink()
                done = "deleted it, it will be fetched again"
            else:
                aside = target.with_name(target.name + ".damaged")
                os.replace(target, aside)  # renames a symlink itself, never what it points to
                done = (
                    f"offline mode is on ({self.offline_how}), so it was moved to {aside.name}; put the "
                    f"official file at {target}, or turn offline mode off to download it again"
                )
            self.manifest.save()
        warn_cache(f"cached file {target} is damaged ({mismatch(file, verdict)}); {done}")

    def _keras_npz(self) -> Path | None:
        npz = self.spec.keras_npz
        path = Path(os.path.abspath(_keras_datasets() / npz.name))
        if str(path) in _DISTRUSTED or not path.is_file() or not self._check(path, npz, None):
            return None
        _ISSUED[str(path)] = (str(self.root), True)
        return path

    # -- downloading

    def _session_for_download(self):
        if self._session is None:
            from . import _transport

            stall = _env_seconds(ENV_STALL_TIMEOUT, STALL_TIMEOUT)
            min_rate = _env_seconds(ENV_MIN_RATE, MIN_RATE, allow_zero=True)
            retry_base = _env_seconds(ENV_RETRY_BASE, RETRY_BASE, allow_zero=True)
            todo = sum(f.size or 0 for f in self.spec.files.values())
            if self.spec.archive is not None:
                todo = self.spec.archive.size or 0
            total = _env_seconds(ENV_TIMEOUT, max(TIMEOUT, todo / TIMEOUT_RATE))
            limits = _transport.Limits(time.monotonic() + total, total, stall, min_rate, retry_base)
            self._session = _transport.Session(limits, self.progress)
        return self._session

    def _urls(self, file: registry.FileSpec) -> list[str]:
        urls = [f"{base}/{self.spec.dir_name}/{file.name}" for base in self.bases] + list(file.urls)
        urls = list(dict.fromkeys(urls))
        if self.offline:
            urls = [u for u in urls if _is_file_url(u)]
        return urls

    def _obtain(self, role: str) -> Path | None:
        """Download one file into the cache, unless another process did it while we waited."""
        file = self.spec.files[role]
        target = self.dir / file.name
        with self._locked(target, f"downloading {self.spec.dir_name}/{file.name}"):
            self.manifest.reload()
            if target.is_file() and self._check(target, file, role):
                return target
            return target if self._download(file, target, role) else None

    def _download(self, file: registry.FileSpec, target: Path, role: str | None) -> bool:
        """Try each mirror until one delivers the official file to ``target``. Caller holds the lock.
        On failure, the reasons are in ``self.failures`` / ``self.refused``."""
        from . import _transport

        session = self._session_for_download()
        _remove_partials(target)
        if target.is_file():  # failed verification: we replace it
            target.unlink()
            self.manifest.forget(target)
        urls = self._urls(file)
        failures = self.failures.setdefault(file.name, [])
        refused = self.refused.setdefault(file.name, [])
        for i, url in enumerate(urls):
            host = _transport.host_of(url)
            if host in session.dead:
                failures.append((url, session.dead[host]))
                continue
            try:
                verdict = self._download_from(session, url, file, target, role)
            except _transport.MirrorFailed as exc:
                failures.append((url, str(exc)))
                log.info("could not download %s: %s", url, exc)
                if exc.dead:
                    session.dead[host] = str(exc)
                self._say_next(session, host, str(exc), urls[i + 1 :])
                continue
            except _transport.OutOfTime:
                failures.append((url, f"{ENV_TIMEOUT} ({session.limits.total:g} s) ran out"))
                return False
            if verdict is not True:
                refused.append((url, verdict))
                self._say_next(session, host, "sent a file that is not the official one", urls[i + 1 :])
                continue
            return True
        if not urls:
            failures.append(("", "no URL to download it from"))
        return False

    def _say_next(self, session, host: str, problem: str, rest: list[str]) -> None:
        if rest:
            from ._transport import host_of

            session.say(("mirror", host), f"{host}: {problem}; trying {host_of(rest[0])}")

    def _download_from(self, session, url: str, file, target: Path, role) -> bool | str:
        """One mirror: True when ``target`` now holds the verified file, else why it was refused.
        A file pieced together from resumed requests that fails verification is fetched once more
        from byte 0: a mirror whose Range answers are wrong still gets to deliver the file whole."""
        from . import _transport
        from ._atomic import new_temp
        from ._verify import mismatch, verify

        resume = True
        while True:
            fd, tmp = new_temp(target, ".part")
            try:
                with open(fd, "r+b") as out:
                    log.info("downloading %s", url)
                    try:
                        resumed = session.transfer(url, out, file, resume=resume)
                        out.flush()
                        os.fsync(out.fileno())
                    except _transport.WriteFailed as exc:
                        raise self._cannot_write(target, exc.error) from exc.error
                    except OSError as exc:
                        raise self._cannot_write(target, exc) from exc
                verdict = verify(tmp, file, _decoded_limit(self.spec, role))
                if verdict.ok:
                    os.replace(tmp, target)
                    self.manifest.record(
                        target, sha256=verdict.sha256, content_sha256=verdict.content_sha256, url=url
                    )
                    self.manifest.save()
                    return True
            finally:
                tmp.unlink(missing_ok=True)
            log.info("refused %s: %s", url, mismatch(file, verdict))
            if not (resumed and resume):
                return mismatch(file, verdict)
            log.info("%s was resumed and is not the official file: fetching it again from byte 0", url)
            resume = False

    def _cannot_write(self, target: Path, error: OSError) -> CacheDirError:
        return CacheDirError(
            f"cannot write {target.name} in the fastidx cache directory {target.parent}: "
            f"{error.strerror or error}; free some space, or choose another directory with "
            f"cache_dir= or the {ENV_HOME} environment variable"
        )

    # -- what went wrong, in one line

    def _failure(self, roles: list[str]) -> DownloadError:
        """One exception for everything that could not be had: every missing file, the reason per
        mirror, and the fixes."""
        spec = self.spec
        names = [spec.files[role].name for role in roles]
        keys = names + ([spec.archive.name] if spec.archive is not None else [])
        details = [f"{url or n}: {why}" for n in keys for url, why in self.failures.get(n, []) + self.refused.get(n, [])]
        for line in details:
            log.info("%s", line)
        per_host: dict[str, str] = {}
        for n in keys:
            for url, why in self.failures.get(n, []):
                per_host.setdefault(_host(url) or "no mirror", why)
        refused = [(n, url, why) for n in keys for url, why in self.refused.get(n, [])]
        fix = (
            f"Fix: a mirror that has {spec.dir_name}/<file> (mirrors=, --mirror or {ENV_MIRROR}), "
            f"or the files in {self.dir}, or load_data(path=<directory with the files>)."
        )
        if refused:
            name, url, why = refused[0]
            more = f" (and {len(refused) - 1} more refused)" if len(refused) > 1 else ""
            error = ChecksumError(
                f"{spec.name}: refused {name} from {url}: not the official file ({why}); the bytes "
                f"were deleted{more}. {fix}"
            )
        elif self.offline:
            error = self._not_found(names)
        else:
            reasons = "; ".join(f"{host}: {why}" for host, why in per_host.items())
            plural = "file" if len(names) == 1 else "files"
            error = DownloadError(
                f"{spec.name}: could not download {len(names)} {plural} ({', '.join(names)}): {reasons}. {fix}"
            )
        error.missing = names
        error.details = details
        return error

    def _not_found(self, names: list[str]) -> DatasetNotFoundError:
        spec = self.spec
        listed = ", ".join(names)
        if spec.archive is not None and names == [spec.archive.name]:
            listed += f" (the archive {', '.join(f.name for f in spec.files.values())} come out of)"
        plural = "file is" if len(names) == 1 else "files are"
        error = DatasetNotFoundError(
            f"{spec.name}: {len(names)} {plural} not available locally and offline mode is on "
            f"({self.offline_how}): {listed}. Fix: put them in {self.dir}, or set {ENV_MIRROR} to "
            f"a mirror that has {spec.dir_name}/<file> (a directory or file:// mirror works offline), "
            f"or load_data(path=<directory with the files>), or turn offline mode off."
        )
        error.missing = names
        return error

    # -- EMNIST: files inside an archive

    def _from_archive(self, roles) -> dict[str, Path]:
        archive = self.spec.archive
        zip_target = self.dir / archive.name
        result = {}
        with self._locked(zip_target, f"fetching {self.spec.dir_name}/{archive.name}"):
            self.manifest.reload()
            todo = []
            for role in roles:
                target = self.dir / self.spec.files[role].name
                if self.manifest.vouches(target, self.spec.files[role], archive.sha256):
                    result[role] = target
                else:
                    todo.append(role)
            if todo:
                zip_path = self._archive_copy(zip_target)
                if zip_path is not None:
                    for role in todo:
                        result[role] = self._extract(zip_path, self.spec.files[role], role)
        return result

    def _archive_copy(self, zip_target: Path) -> Path | None:
        """A verified ``gzip.zip``: cached, torchvision's, or downloaded. Caller holds its lock."""
        archive = self.spec.archive
        if zip_target.is_file():
            if self._check(zip_target, archive, None):
                return zip_target
            zip_target.unlink()
            self.manifest.forget(zip_target)
            warn_cache(f"cached file {zip_target} is damaged (it does not match the official archive); "
                       f"deleted it, it will be fetched again")
        for candidate in _elsewhere(self.spec, archive.name):
            if self._check(candidate, archive, None):
                return candidate
        return zip_target if self._download(archive, zip_target, None) else None

    def _extract(self, zip_path: Path, file: registry.FileSpec, role: str) -> Path:
        from ._archive import extract
        from ._verify import mismatch, verify

        target = self.dir / file.name
        _remove_partials(target)
        tmp, digest = extract(zip_path, file.name, target)
        try:
            if file.sha256 is not None or file.content_sha256 is not None:
                verdict = verify(tmp, file, _decoded_limit(self.spec, role))
                if not verdict.ok:
                    raise ChecksumError(
                        f"{file.name} from {zip_path}: {mismatch(file, verdict)}; the bad bytes were deleted"
                    )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        self.manifest.record(target, sha256=digest, archive_sha256=self.spec.archive.sha256, archive=zip_path.name)
        self.manifest.save()
        return target

    # -- locking

    @contextlib.contextmanager
    def _locked(self, target: Path, what: str):
        """Hold ``target``'s lock; say once what we wait for, give up if its holder stalls."""
        from ._lock import FileLock

        lock = FileLock(lock_path(target))
        try:
            if not lock.acquire(timeout=LOCK_NOTICE_AFTER):
                message = f"fastidx: waiting for another process {what} (lock {lock_path(target)})"
                log.info(message)
                print(message, file=sys.stderr, flush=True)
                limit = _env_seconds(ENV_LOCK_TIMEOUT, LOCK_TIMEOUT, allow_zero=True)
                seen, since = _activity(target), time.monotonic()
                while not lock.acquire(timeout=min(1.0, max(limit, 0.05))):
                    now = _activity(target)
                    if now != seen:
                        seen, since = now, time.monotonic()
                    elif time.monotonic() - since > limit:
                        raise DownloadError(
                            f"gave up waiting for {lock_path(target)}: the process holding it made no "
                            f"progress {what} for {limit:g} s ({ENV_LOCK_TIMEOUT})"
                        )
            yield
        finally:
            lock.release()


# --- helpers --------------------------------------------------------------------------------------

# dataset directory -> (its Keras subdirectory, its torchvision directory)
_OTHER_TOOLS = {
    "mnist": (None, "MNIST"),
    "fashion_mnist": ("fashion-mnist", "FashionMNIST"),
    "kmnist": (None, "KMNIST"),
    "emnist": (None, "EMNIST"),
}


def _elsewhere(spec, name: str) -> list[Path]:
    """Where Keras and torchvision would keep this file (existing files only)."""
    places = []
    keras_sub, torch_sub = _OTHER_TOOLS.get(spec.dir_name, (None, None))
    if keras_sub:
        places.append(_keras_datasets() / keras_sub / name)
    torch_root = os.environ.get(ENV_TORCHVISION_ROOT)
    if torch_sub and torch_root:
        places.append(Path(torch_root).expanduser() / torch_sub / "raw" / name)
    places = [Path(os.path.abspath(place)) for place in places]
    return [place for place in places if place.is_file() and str(place) not in _DISTRUSTED]


def _keras_datasets() -> Path:
    home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return Path(home).expanduser() / "datasets"


def _host(url: str) -> str:
    if not url:
        return ""
    from ._transport import host_of

    return host_of(url)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _partials(target: Path) -> list[Path]:
    return list(target.parent.glob(f".{target.name}.*.part"))


def _remove_partials(target: Path) -> None:
    """Temporary files of ``target`` left by a killed process. Caller holds the lock."""
    for leftover in _partials(target):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _activity(target: Path):
    """Changes while the process holding ``target``'s lock is making progress."""
    state = []
    for path in [target, *_partials(target)]:
        with contextlib.suppress(OSError):
            st = path.stat()
            state.append((path.name, st.st_size, st.st_mtime_ns))
    return sorted(state)
