"""Getting a dataset's files onto the local disk, verified: cache, reuse, mirrors, locks.

:func:`fetch` returns ``{role: path}`` of verified gz IDX files, downloading only what is missing;
:func:`discard` is how a loader reports a returned file that does not parse.

Where files live
    ``<cache root>/<dataset>/<official file name>``, the cache root being ``cache_dir=``, else
    ``$FASTIDX_HOME``, else the platform's user cache directory. EMNIST's ``gzip.zip`` lives in
    ``<cache root>/emnist/`` and the gz files of each split are extracted next to it (the archive is
    kept: it holds all six splits). ``<cache root>/fetch-manifest.json`` remembers the size,
    ``mtime_ns`` and hash of every verified file, so a warm fetch makes no network call and hashes
    nothing; a missing or corrupt manifest only costs one re-hash.

What counts as genuine
    The SHA-256 of the file equals the official compressed file's, or the SHA-256 of its decoded
    (gunzipped) content equals the official content's: a mirror that re-compressed the same data is
    accepted. Anything else is deleted and refused with :class:`~fastidx.ChecksumError`. A cached file
    that fails its hash is deleted with a :class:`~fastidx._errors.CacheWarning` and fetched again.

Files reused from other tools (never copied; the verified path is returned)
    * Keras: ``$KERAS_HOME/datasets`` (default ``~/.keras/datasets``): Fashion-MNIST's
      ``fashion-mnist/*.gz``, and MNIST's ``mnist.npz``, returned as ``{"npz": path}`` only when the
      four IDX files are not otherwise available locally.
    * torchvision: ``<root>/MNIST/raw/``, ``FashionMNIST/raw/``, ``KMNIST/raw/`` and
      ``EMNIST/raw/gzip.zip``, where ``<root>`` comes from ``$FASTIDX_TORCHVISION_ROOT`` (an
      environment variable rather than an argument, so that every ``load_data`` call sees it).

Downloading
    Mirrors are tried in order: ``mirrors=`` (a base URL or a list of them), then ``$FASTIDX_MIRROR``
    (whitespace-separated base URLs), then the registry's URLs. A file is fetched from
    ``{base}/{dataset}/{file name}`` (EMNIST: ``{base}/emnist/gzip.zip``); bases may be ``http://``,
    ``https://`` or ``file://``. Bodies stream into a uniquely named temporary file in the target
    directory, which is verified, synced and renamed into place; every error path (Ctrl-C included)
    removes it. 5xx answers, timeouts, resets and short bodies are retried with exponential back-off
    and jitter (base ``$FASTIDX_RETRY_BASE`` seconds, default 0.5), resuming with an HTTP ``Range``
    request (a server that ignores it is handled by starting again). ``$FASTIDX_TIMEOUT`` (default
    30 s) bounds connecting and every read. Proxies come from the standard environment variables.
    A progress line is written to stderr when it is a terminal (``progress=False`` turns it off,
    ``progress=True`` forces it).

Several processes
    One lock file per file (``.<file name>.lock`` beside it, see :mod:`fastidx._lock`): one process downloads, the
    others wait (logging once what they wait for) and then use its file. The lock is an OS lock the
    kernel drops when its holder dies, so a killed process never blocks the others; a waiter gives up
    with :class:`~fastidx.DownloadError` only when the holder shows no progress for
    ``$FASTIDX_LOCK_TIMEOUT`` seconds (default 600).

Offline
    ``$FASTIDX_OFFLINE=1`` or ``offline=True``: no network access (``file://`` mirrors still work); a
    missing file raises :class:`~fastidx.DatasetNotFoundError` saying what to put where.

Every environment variable is read when :func:`fetch` is called, never at import.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import http.client
import json
import logging
import os
import random
import re
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from . import registry
from ._atomic import atomic_write, new_temp
from ._errors import (
    CacheDirError,
    ChecksumError,
    DatasetNotFoundError,
    DownloadError,
    warn_cache,
)
from ._lock import FileLock, held
from ._paths import ENV_HOME, cache_root, writable_dir

__all__ = ["fetch", "discard"]

log = logging.getLogger(__name__)

ENV_MIRROR = "FASTIDX_MIRROR"
ENV_OFFLINE = "FASTIDX_OFFLINE"
ENV_TORCHVISION_ROOT = "FASTIDX_TORCHVISION_ROOT"
ENV_RETRY_BASE = "FASTIDX_RETRY_BASE"
ENV_TIMEOUT = "FASTIDX_TIMEOUT"
ENV_LOCK_TIMEOUT = "FASTIDX_LOCK_TIMEOUT"

#: Defaults of the settings the environment variables above override.
RETRY_BASE = 0.5
TIMEOUT = 30.0
LOCK_TIMEOUT = 600.0
#: Longest single back-off sleep, and the cap on a server's ``Retry-After``.
MAX_BACKOFF = 30.0
#: Failed attempts in a row (without new bytes) after which a mirror is abandoned.
MAX_FAILURES = 5
#: Attempts on one URL in all, however much each one progresses.
MAX_ATTEMPTS = 50
#: Waiting this long for another process's lock is reported on stderr.
LOCK_NOTICE_AFTER = 1.0

MANIFEST_NAME = "fetch-manifest.json"
_CHUNK = 1 << 18
_USER_AGENT = "fastidx (Python urllib)"
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504, 507, 520, 521, 522, 523, 524})
_PERMANENT_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH})

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
    mirrors : str or list of str, optional
        Base URLs (``http(s)://`` or ``file://``) tried before ``$FASTIDX_MIRROR`` and the built-in
        mirrors; files are looked up as ``{base}/{dataset}/{file name}``.
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
        Every mirror that answered sent bytes that are not the official file (they were deleted).
    DownloadError
        No mirror could deliver a file.
    DatasetNotFoundError
        Offline, and a file is not available locally.
    CacheDirError
        The cache directory cannot be created or written.

    Examples
    --------
    >>> files = fetch("mnist")  # doctest: +SKIP
    >>> files["train_images"].name  # doctest: +SKIP
    'train-images-idx3-ubyte.gz'
    >>> fetch("mnist", offline=True, cache_dir="/nonexistent")  # doctest: +SKIP
    Traceback (most recent call last):
    DatasetNotFoundError: mnist: 4 files are not available locally and offline mode is on ...
    """
    spec = dataset if isinstance(dataset, registry.DatasetSpec) else registry.get(dataset)
    if offline is None:
        offline = _env_flag(ENV_OFFLINE)
        offline_how = f"{ENV_OFFLINE}={os.environ.get(ENV_OFFLINE)}"
    else:
        offline_how = f"offline={bool(offline)}"
    root = Path(os.path.abspath(cache_root(cache_dir)))
    if progress is None:
        progress = _stderr_is_tty()
    return _Fetcher(spec, root, _mirror_bases(mirrors), bool(offline), offline_how, bool(progress)).run()


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
        guess = _Manifest(path.parent.parent)
        if guess.key(path) in guess.files:
            root = str(guess.root)
    if root is None:
        warn_cache(f"{path} could not be parsed; it is not a file of the fastidx cache, so it was left in place")
        return
    manifest = _Manifest(Path(root))
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


def lock_path(target: Path) -> Path:
    """The lock file that guards ``target`` (and its temporary files)."""
    return target.with_name(f".{target.name}.lock")


# --- settings -------------------------------------------------------------------------------------


def _env_flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return value not in {"", "0", "false", "no", "off"}


def _env_seconds(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if not seconds >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return seconds


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _mirror_bases(mirrors) -> list[str]:
    """``mirrors=`` then ``$FASTIDX_MIRROR``, validated, duplicates dropped."""
    bases: list[str] = []
    if mirrors is not None:
        if isinstance(mirrors, (str, os.PathLike)):
            mirrors = [mirrors]
        bases.extend(os.fspath(m) for m in mirrors)
    bases.extend(os.environ.get(ENV_MIRROR, "").split())
    for base in bases:
        if urllib.parse.urlsplit(base).scheme.lower() not in {"http", "https", "file"}:
            raise ValueError(
                f"mirror {base!r} is not an http://, https:// or file:// URL "
                f"(for a local directory use file:///path/to/mirror)"
            )
    return list(dict.fromkeys(base.rstrip("/") for base in bases))


def _is_file_url(url: str) -> bool:
    return url[:5].lower() == "file:"


# --- verification ---------------------------------------------------------------------------------


@dataclass
class _Verdict:
    ok: bool
    size: int
    sha256: str
    content_sha256: str | None = None
    how: str = ""
    problem: str = ""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _gunzip_sha256(path: Path, limit: int) -> tuple[str | None, str]:
    """SHA-256 of the decoded content, streaming; stops past ``limit`` bytes (no gzip bomb)."""
    digest = hashlib.sha256()
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    return None, f"it decodes to more than {limit} bytes"
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        return None, f"it is not a valid gzip file ({exc})"
    return digest.hexdigest(), ""


def _verify(path: Path, spec: registry.FileSpec, decoded_limit: int) -> _Verdict:
    """Whether ``path`` is the official file: by its own hash, else by its decoded content's."""
    size = path.stat().st_size
    sha = _sha256_file(path)
    verdict = _Verdict(False, size, sha)
    if spec.sha256 is None and spec.content_sha256 is None:
        verdict.ok, verdict.how = True, "unverified (no hash known)"
        return verdict
    if spec.sha256 is not None and sha == spec.sha256:
        verdict.ok, verdict.how = True, "sha256"
        return verdict
    if spec.content_sha256 is not None:
        content, problem = _gunzip_sha256(path, decoded_limit)
        verdict.content_sha256 = content
        if content == spec.content_sha256:
            verdict.ok, verdict.how = True, "content_sha256"
            return verdict
        verdict.problem = problem or f"its decoded content has SHA-256 {content}"
    return verdict


def _expectation(spec: registry.FileSpec) -> str:
    parts = []
    if spec.sha256:
        parts.append(f"SHA-256 {spec.sha256}" + (f" ({spec.size} bytes)" if spec.size is not None else ""))
    if spec.content_sha256:
        parts.append(f"decoded content SHA-256 {spec.content_sha256}")
    return " or ".join(parts)


def _mismatch(spec: registry.FileSpec, verdict: _Verdict) -> str:
    text = f"expected {_expectation(spec)}, got SHA-256 {verdict.sha256} ({verdict.size} bytes)"
    return text + (f"; {verdict.problem}" if verdict.problem else "")


# --- the manifest ---------------------------------------------------------------------------------


class _Manifest:
    """``fetch-manifest.json``: what was verified, so that unchanged files are trusted unhashed.

    Written atomically under its own lock, re-read before each write so that concurrent writers
    merge; unreadable content is ignored (the files are simply verified again).
    """

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
        except (OSError, ValueError) as exc:
            log.info("ignoring unreadable %s: %s", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("files"), dict):
            log.info("ignoring %s: not a fastidx manifest", self.path)
            return {}
        return {k: v for k, v in data["files"].items() if isinstance(v, dict)}

    def reload(self) -> None:
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

    def vouches(self, path: Path, spec: registry.FileSpec, archive_sha256: str | None = None) -> bool:
        """True if ``path`` is unchanged since it was verified as ``spec``."""
        entry = self.files.get(self.key(path))
        if entry is None:
            return False
        try:
            st = path.stat()
        except OSError:
            return False
        if entry.get("size") != st.st_size or entry.get("mtime_ns") != st.st_mtime_ns:
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

    def has_stale_entry(self, path: Path) -> bool:
        return self.key(path) in self.files

    def record(self, path: Path, **facts) -> None:
        st = path.stat()
        entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        entry.update({k: v for k, v in facts.items() if v is not None})
        entry["verified_at"] = int(time.time())
        self.files[self.key(path)] = self._changes[self.key(path)] = entry

    def forget(self, path: Path) -> None:
        key = self.key(path)
        self.files.pop(key, None)
        self._changes[key] = None

    def save(self) -> None:
        """Merge this fetch's changes into the file; best effort (a failure costs a re-hash later)."""
        if not self._changes:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with held(lock_path(self.path), timeout=10):
                files = self._read()
                self._apply(files)
                with atomic_write(self.path, "w") as out:
                    json.dump({"version": 1, "files": files}, out, indent=1, sort_keys=True)
        except OSError as exc:  # LockTimeout and CacheDirError are OSErrors
            log.info("could not update %s: %s", self.path, exc)
            return
        self._changes.clear()


# --- progress -------------------------------------------------------------------------------------


class _Progress:
    """A one-line progress display on stderr, redrawn at most 5 times a second."""

    def __init__(self, label: str, total: int | None, enabled: bool, done: int = 0):
        self.label, self.total, self.enabled, self.done = label, total, enabled, done
        self._last = 0.0
        self._start = time.monotonic()
        self._drawn = False

    def update(self, n: int) -> None:
        self.done += n
        if self.enabled and time.monotonic() - self._last >= 0.2:
            self._draw()

    def _draw(self) -> None:
        self._last = time.monotonic()
        mb = self.done / 1e6
        rate = mb / max(self._last - self._start, 1e-6)
        if self.total:
            text = f"{self.label}: {mb:.1f}/{self.total / 1e6:.1f} MB {100 * self.done / self.total:3.0f}%"
        else:
            text = f"{self.label}: {mb:.1f} MB"
        sys.stderr.write(f"\r{text} {rate:.1f} MB/s ")
        sys.stderr.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled:
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()


# --- transfers ------------------------------------------------------------------------------------


class _Retry(Exception):
    """A transient failure: try the same URL again after a back-off."""

    def __init__(self, message: str, *, retry_after: float = 0.0, progressed: bool = False, validator=None):
        super().__init__(message)
        self.retry_after = retry_after
        self.progressed = progressed  # new bytes arrived before the failure
        self.validator = validator  # ETag or Last-Modified of the body being resumed


class _MirrorFailed(Exception):
    """This URL cannot deliver the file: go to the next mirror."""


class _WriteFailed(Exception):
    """Writing the local copy failed (disk full...): no mirror can help."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


def _classify(exc: BaseException) -> Exception:
    """Turn a network error into :class:`_Retry` or :class:`_MirrorFailed`."""
    if isinstance(exc, http.client.HTTPException):  # IncompleteRead, BadStatusLine...
        return _Retry(f"{type(exc).__name__}: {exc}")
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, str):
        return _MirrorFailed(reason)
    if isinstance(reason, (socket.gaierror, ssl.SSLCertVerificationError)):
        return _MirrorFailed(str(reason))
    if isinstance(reason, OSError) and reason.errno in _PERMANENT_ERRNOS:
        return _MirrorFailed(str(reason))
    if isinstance(reason, TimeoutError):
        return _Retry(f"timed out ({reason})")
    return _Retry(f"{type(reason).__name__}: {reason}")


def _retry_after(headers) -> float:
    try:
        return min(float(headers.get("Retry-After", "0")), MAX_BACKOFF)
    except (TypeError, ValueError):
        return 0.0


def _copy(src, out, cap: int, progress: _Progress) -> None:
    while chunk := src.read(_CHUNK):
        try:
            out.write(chunk)
        except OSError as exc:
            raise _WriteFailed(exc) from exc
        progress.update(len(chunk))
        if out.tell() > cap:
            raise _MirrorFailed(f"sent more than {cap} bytes, far more than the file's size")


def _size_cap(spec: registry.FileSpec) -> int:
    # A re-compressed copy may be somewhat larger than the official file, never twice as large.
    return max(2 * spec.size, spec.size + (16 << 20)) if spec.size else 8 << 30


class _Fetcher:
    """One call of :func:`fetch`."""

    def __init__(self, spec, root, bases, offline, offline_how, progress):
        self.spec = spec
        self.root = root
        self.dir = root / spec.dir_name
        self.bases = bases
        self.offline = offline
        self.offline_how = offline_how
        self.progress = progress
        self.manifest = _Manifest(root)
        self._opener = None

    # -- the plan

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
            if spec.archive is not None:
                local_zip = (self.dir / spec.archive.name).is_file() or self._elsewhere(spec.archive.name)
                if not local_zip:
                    names = [spec.archive.name]
            else:
                local_zip = False
            if self.offline and not local_zip and not any(_is_file_url(b) for b in self.bases):
                raise self._not_found(names)
            writable_dir(self.root)
            writable_dir(self.dir)
            if spec.archive is not None:
                found.update(self._from_archive(missing))
            else:
                for role in missing:
                    found[role] = self._obtain(role)
        self.manifest.save()
        for role, path in found.items():
            _ISSUED[str(path)] = (str(self.root), not _inside(path, self.root))
        return {role: found[role] for role in registry.ROLES}

    def _local(self, role: str, file: registry.FileSpec) -> Path | None:
        """A verified local copy: in the cache, else in another tool's cache."""
        target = self.dir / file.name
        if self.spec.archive is not None and file.sha256 is None and file.content_sha256 is None:
            # No hash of its own: trusted as extracted from the verified archive, else extracted again.
            if target.is_file():
                if self.manifest.vouches(target, file, self.spec.archive.sha256):
                    return target
                if self.manifest.has_stale_entry(target):
                    warn_cache(f"cached file {target} changed since it was extracted; extracting it again")
            return None
        if target.is_file():
            if self._check(target, file, role):
                return target
            self._repair(target, file, role)
        for candidate in self._elsewhere(file.name):
            if self._check(candidate, file, role):
                return candidate
        return None

    def _check(self, path: Path, file: registry.FileSpec, role: str | None) -> bool:
        """Manifest says unchanged since verified, or verify now (and remember)."""
        if self.manifest.vouches(path, file):
            return True
        verdict = _verify(path, file, self._decoded_limit(role))
        if verdict.ok:
            self.manifest.record(path, sha256=verdict.sha256, content_sha256=verdict.content_sha256)
        else:
            log.info("%s is not %s: %s", path, file.name, _mismatch(file, verdict))
        return verdict.ok

    def _repair(self, target: Path, file: registry.FileSpec, role: str | None) -> None:
        """Delete a cached file that fails its hash (under its lock: someone may be replacing it)."""
        if not os.access(target.parent, os.W_OK):
            # A read-only cache: leave it; downloading a good copy will report the directory.
            return
        with self._locked(target, f"checking {target.name}"):
            if not target.is_file():
                return
            self.manifest.reload()
            verdict = _verify(target, file, self._decoded_limit(role))
            if verdict.ok:
                self.manifest.record(target, sha256=verdict.sha256, content_sha256=verdict.content_sha256)
                return
            target.unlink()
            self.manifest.forget(target)
            self.manifest.save()
        warn_cache(
            f"cached file {target} is damaged ({_mismatch(file, verdict)}); deleted it, "
            f"it will be fetched again"
        )

    def _decoded_limit(self, role: str | None) -> int:
        try:
            return self.spec.decoded_size(role)
        except (AttributeError, KeyError, ValueError, TypeError):
            return 8 << 30

    def _elsewhere(self, name: str) -> list[Path]:
        """Where Keras and torchvision would keep this file."""
        places = []
        keras_sub, torch_sub = _OTHER_TOOLS.get(self.spec.dir_name, (None, None))
        if keras_sub:
            places.append(_keras_datasets() / keras_sub / name)
        torch_root = os.environ.get(ENV_TORCHVISION_ROOT)
        if torch_sub and torch_root:
            places.append(Path(torch_root).expanduser() / torch_sub / "raw" / name)
        places = [Path(os.path.abspath(place)) for place in places]
        return [place for place in places if place.is_file() and str(place) not in _DISTRUSTED]

    def _keras_npz(self) -> Path | None:
        npz = self.spec.keras_npz
        path = Path(os.path.abspath(_keras_datasets() / npz.name))
        if str(path) in _DISTRUSTED or not path.is_file() or not self._check(path, npz, None):
            return None
        _ISSUED[str(path)] = (str(self.root), True)
        return path

    def _not_found(self, names: list[str]) -> DatasetNotFoundError:
        spec = self.spec
        listed = ", ".join(names)
        if spec.archive is not None and names == [spec.archive.name]:
            listed += f" (the archive {', '.join(f.name for f in spec.files.values())} come out of)"
        plural = "file is" if len(names) == 1 else "files are"
        return DatasetNotFoundError(
            f"{spec.name}: {len(names)} {plural} not available locally and offline mode is on "
            f"({self.offline_how}): {listed}. Put the official file(s) in {self.dir}, or set "
            f"{ENV_MIRROR} to a mirror that has {spec.dir_name}/<file name> (a file:// mirror works "
            f"offline), or turn offline mode off to download them."
        )

    # -- downloading one file

    def _urls(self, file: registry.FileSpec) -> list[str]:
        urls = [f"{base}/{self.spec.dir_name}/{file.name}" for base in self.bases] + list(file.urls)
        urls = list(dict.fromkeys(urls))
        if self.offline:
            urls = [u for u in urls if _is_file_url(u)]
        return urls

    def _obtain(self, role: str) -> Path:
        """Download one file into the cache, unless another process did it while we waited."""
        file = self.spec.files[role]
        target = self.dir / file.name
        with self._locked(target, f"downloading {self.spec.dir_name}/{file.name}"):
            self.manifest.reload()
            if target.is_file() and self._check(target, file, role):
                return target
            self._download(file, target, role)
        return target

    def _download(self, file: registry.FileSpec, target: Path, role: str | None) -> None:
        """Try each mirror until one delivers the official file to ``target``. Caller holds the lock."""
        _remove_partials(target)
        if target.is_file():  # failed verification: we replace it
            target.unlink()
            self.manifest.forget(target)
        urls = self._urls(file)
        failures: list[str] = []
        refused: list[str] = []
        for url in urls:
            fd, tmp = new_temp(target, ".part")
            try:
                with open(fd, "r+b") as out:
                    log.info("downloading %s", url)
                    try:
                        self._transfer(url, out, file)
                        out.flush()
                        os.fsync(out.fileno())
                    except _MirrorFailed as exc:
                        failures.append(f"{url}: {exc}")
                        log.warning("could not download %s: %s", url, exc)
                        continue
                    except (_WriteFailed, OSError) as exc:
                        error = exc.error if isinstance(exc, _WriteFailed) else exc
                        raise CacheDirError(
                            f"cannot write {target.name} in the fastidx cache directory {target.parent}: "
                            f"{error.strerror or error}; free some space, or choose another directory with "
                            f"cache_dir= or the {ENV_HOME} environment variable"
                        ) from error
                verdict = _verify(tmp, file, self._decoded_limit(role))
                if not verdict.ok:
                    refused.append(f"{url}: {_mismatch(file, verdict)}")
                    log.warning("refused %s: %s", url, _mismatch(file, verdict))
                    continue
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            self.manifest.record(
                target, sha256=verdict.sha256, content_sha256=verdict.content_sha256, url=url
            )
            self.manifest.save()
            return
        self._give_up(file, target, urls, failures, refused)

    def _give_up(self, file, target, urls, failures, refused):
        if refused:
            others = f" Other mirrors: {'; '.join(failures)}." if failures else ""
            raise ChecksumError(
                f"{file.name}: refused what the mirrors sent, which is not the official file "
                f"(the bad bytes were deleted): {'; '.join(refused)}.{others}"
            )
        if self.offline:
            error = self._not_found([file.name])
            raise DatasetNotFoundError(f"{error} The file:// mirrors failed: {'; '.join(failures) or 'none'}.")
        if not urls:
            raise DownloadError(f"{file.name}: no URL to download it from; put it in {target.parent}")
        raise DownloadError(
            f"{file.name}: could not download it from any mirror: {'; '.join(failures)}. Set "
            f"{ENV_MIRROR} to a mirror that has {self.spec.dir_name}/{file.name}, or put the file "
            f"in {target.parent}."
        )

    def _transfer(self, url: str, out, file: registry.FileSpec) -> None:
        """Write the body at ``url`` into ``out``, retrying and resuming; raises _MirrorFailed."""
        if _is_file_url(url):
            return self._transfer_file(url, out, file)
        base = _env_seconds(ENV_RETRY_BASE, RETRY_BASE)
        timeout = _env_seconds(ENV_TIMEOUT, TIMEOUT) or None
        failures = attempts = 0
        validator = None
        while True:
            attempts += 1
            try:
                self._attempt(url, out, file, timeout, validator)
                return
            except _Retry as problem:
                validator = problem.validator or validator
                # Failures in a row count; an attempt that brought new bytes starts the count again.
                failures = 1 if problem.progressed else failures + 1
                if failures >= MAX_FAILURES or attempts >= MAX_ATTEMPTS:
                    raise _MirrorFailed(f"gave up after {attempts} attempts; last: {problem}") from None
                delay = min(MAX_BACKOFF, base * 2 ** (failures - 1))
                delay = max(delay / 2 + random.uniform(0, delay / 2), problem.retry_after)
                log.info("%s: %s; retrying in %.2f s", url, problem, delay)
                time.sleep(delay)

    def _attempt(self, url: str, out, file: registry.FileSpec, timeout, validator) -> None:
        """One request for the bytes ``out`` lacks (a Range request when it has some)."""
        offset = out.seek(0, os.SEEK_END)
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
            if validator:  # resume only if the file is still the same one
                request.add_header("If-Range", validator)
        try:
            response = self._open(request, timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code == 416 and offset:
                    out.seek(0)
                    out.truncate()
                    raise _Retry("the server refused to resume (416); starting again") from None
                if exc.code in _RETRY_STATUS:
                    raise _Retry(f"HTTP {exc.code} {exc.reason}", retry_after=_retry_after(exc.headers)) from None
                raise _MirrorFailed(f"HTTP {exc.code} {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _classify(exc) from None
        with response:
            start = 0
            if response.status == 206 and offset:
                match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                start = int(match.group(1)) if match else -1
                if start != offset:
                    out.seek(0)
                    out.truncate()
                    raise _Retry(f"the server resumed at byte {start}, not {offset}; starting again")
            elif response.status == 200:
                if offset:
                    log.info("%s ignored the Range request; starting again", url)
                    out.seek(0)
                    out.truncate()
                validator = _validator(response.headers)
            else:
                raise _MirrorFailed(f"unexpected HTTP status {response.status}")
            length = _int_or_none(response.headers.get("Content-Length"))
            end = start + length if length is not None else None
            cap = _size_cap(file)
            if end is not None and end > cap:
                raise _MirrorFailed(f"announced {end} bytes, far more than the file's size")
            bar = _Progress(file.name, end or file.size, self.progress, start)
            try:
                _copy(response, out, cap, bar)
            except (OSError, http.client.HTTPException) as exc:
                problem = _classify(exc)
                if isinstance(problem, _Retry):
                    problem.progressed, problem.validator = bar.done > start, validator
                raise problem from None
            finally:
                bar.close()
            if end is not None and out.tell() < end:
                raise _Retry(f"connection closed after {out.tell()} of {end} bytes", progressed=bar.done > start,
                             validator=validator)

    def _transfer_file(self, url: str, out, file: registry.FileSpec) -> None:
        path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
        out.seek(0)
        out.truncate()
        try:
            with open(path, "rb") as src:
                bar = _Progress(file.name, os.fstat(src.fileno()).st_size, self.progress)
                try:
                    _copy(src, out, _size_cap(file), bar)
                finally:
                    bar.close()
        except OSError as exc:
            raise _MirrorFailed(f"{exc.strerror or exc}") from None

    def _open(self, request, timeout):
        if self._opener is None:
            # Built per fetch so that proxy environment variables are read now, not at first use.
            self._opener = urllib.request.build_opener()
        return self._opener.open(request, timeout=timeout)

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
                for role in todo:
                    result[role] = self._extract(zip_path, self.spec.files[role], role)
        return result

    def _archive_copy(self, zip_target: Path) -> Path:
        """A verified ``gzip.zip``: cached, torchvision's, or downloaded. Caller holds its lock."""
        archive = self.spec.archive
        if zip_target.is_file():
            if self._check(zip_target, archive, None):
                return zip_target
            verdict_text = "it does not match the official archive"
            zip_target.unlink()
            self.manifest.forget(zip_target)
            warn_cache(f"cached file {zip_target} is damaged ({verdict_text}); deleted it, it will be fetched again")
        for candidate in self._elsewhere(archive.name):
            if self._check(candidate, archive, None):
                return candidate
        self._download(archive, zip_target, None)
        return zip_target

    def _extract(self, zip_path: Path, file: registry.FileSpec, role: str) -> Path:
        target = self.dir / file.name
        _remove_partials(target)
        try:
            with zipfile.ZipFile(zip_path) as archive:
                member = next(
                    (i for i in archive.infolist() if i.filename == file.name or i.filename.endswith("/" + file.name)),
                    None,
                )
                if member is None:
                    raise DatasetNotFoundError(f"{zip_path} has no member {file.name}")
                fd, tmp = new_temp(target, ".part")
                try:
                    digest = hashlib.sha256()
                    with open(fd, "wb") as out, archive.open(member) as src:
                        written = 0
                        while chunk := src.read(1 << 20):
                            written += len(chunk)
                            if written > member.file_size:  # the CRC check would come too late
                                raise zipfile.BadZipFile(f"{member.filename} is larger than declared")
                            digest.update(chunk)
                            out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                    if file.sha256 is not None or file.content_sha256 is not None:
                        verdict = _verify(tmp, file, self._decoded_limit(role))
                        if not verdict.ok:
                            raise ChecksumError(
                                f"{file.name} from {zip_path}: {_mismatch(file, verdict)}; the bad bytes were deleted"
                            )
                    os.replace(tmp, target)
                finally:
                    tmp.unlink(missing_ok=True)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ChecksumError(f"{zip_path} is damaged ({exc}); could not extract {file.name}") from exc
        self.manifest.record(
            target, sha256=digest.hexdigest(), archive_sha256=self.spec.archive.sha256, archive=zip_path.name
        )
        self.manifest.save()
        return target

    # -- locking

    @contextlib.contextmanager
    def _locked(self, target: Path, what: str):
        """Hold ``target``'s lock; say once what we wait for, give up if its holder stalls."""
        lock = FileLock(lock_path(target))
        try:
            if not lock.acquire(timeout=LOCK_NOTICE_AFTER):
                message = f"fastidx: waiting for another process {what} (lock {lock_path(target)})"
                log.info(message)
                print(message, file=sys.stderr, flush=True)
                limit = _env_seconds(ENV_LOCK_TIMEOUT, LOCK_TIMEOUT)
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


def _keras_datasets() -> Path:
    home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return Path(home).expanduser() / "datasets"


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _remove_partials(target: Path) -> None:
    """Temporary files of ``target`` left by a killed process. Caller holds the lock."""
    for leftover in target.parent.glob(f".{target.name}.*.part"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _activity(target: Path):
    """Changes while the process holding ``target``'s lock is making progress."""
    state = []
    for path in [target, *target.parent.glob(f".{target.name}.*.part")]:
        with contextlib.suppress(OSError):
            st = path.stat()
            state.append((path.name, st.st_size, st.st_mtime_ns))
    return sorted(state)


def _validator(headers) -> str | None:
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _int_or_none(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None
