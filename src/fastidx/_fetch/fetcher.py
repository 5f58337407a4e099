"""The slow path of :func:`fastidx._fetch.fetch`: verify what the manifest cannot vouch for, repair
or set aside damaged copies, reuse other tools' copies, download the rest, extract EMNIST's files.
Imported only when a warm fetch is not possible."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path

from .. import registry
from .._errors import CacheDirError, ChecksumError, DatasetNotFoundError, DownloadError, warn_cache
from .._paths import ENV_HOME, writable_dir
from . import elsewhere
from .manifest import lock_path
from .plan import Local, action
from .settings import (
    ENV_LOCK_TIMEOUT,
    ENV_MIRROR,
    ENV_TIMEOUT,
    LOCK_NOTICE_AFTER,
    LOCK_TIMEOUT,
    download_limits,
    env_seconds,
    is_file_url,
)
from .inventory import decoded_limit, partials

log = logging.getLogger("fastidx._fetch")


class Fetcher:
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
                (self.dir / spec.archive.name).is_file() or bool(elsewhere.candidates(spec, spec.archive.name, self.manifest))
            )
            if spec.archive is not None and not local_zip:
                names = [spec.archive.name]
            if self.offline and not local_zip and not any(is_file_url(b) for b in self.bases):
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
        for candidate in elsewhere.candidates(self.spec, file.name, self.manifest):
            if self._check(candidate, file, role):
                return candidate
        return None

    def _check(self, path: Path, file: registry.FileSpec, role: str | None) -> bool:
        """Manifest says unchanged since verified, or verify now (and remember)."""
        if self.manifest.vouches(path, file):
            return True
        from .verify import mismatch, verify

        verdict = verify(path, file, decoded_limit(self.spec, role))
        if verdict.ok:
            self.manifest.record(path, sha256=verdict.sha256, content_sha256=verdict.content_sha256,
                                 verified_ns=verdict.read_ns)
        else:
            log.info("%s is not %s: %s", path, file.name, mismatch(file, verdict))
        return verdict.ok

    def _can_refetch(self) -> bool:
        return not self.offline or any(is_file_url(b) for b in self.bases)

    def _repair(self, target: Path, file: registry.FileSpec, role: str | None) -> None:
        """Deal with a cached file that fails its hash (under its lock: someone may be replacing it):
        delete it to fetch it again, or, when it cannot be fetched again, move it aside."""
        from .verify import mismatch, verify

        if not os.access(target.parent, os.W_OK):
            # A read-only cache: leave it; downloading a good copy will report the directory.
            return
        with self._locked(target, f"checking {target.name}"):
            if not target.is_file():
                return
            self.manifest.reload()
            verdict = verify(target, file, decoded_limit(self.spec, role))
            if verdict.ok:
                self.manifest.record(target, sha256=verdict.sha256, content_sha256=verdict.content_sha256,
                                     verified_ns=verdict.read_ns)
                return
            self.manifest.forget(target)
            if action(Local.DAMAGED, can_download=self._can_refetch()) == "repair":
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
        path = elsewhere.keras_npz(self.spec, self.manifest)
        if path is None or not self._check(path, self.spec.keras_npz, None):
            return None
        return path

    # -- downloading

    def _session_for_download(self):
        if self._session is None:
            from .transport import Session

            todo = sum(f.size or 0 for f in self.spec.files.values())
            if self.spec.archive is not None:
                todo = self.spec.archive.size or 0
            self._session = Session(download_limits(todo), self.progress)
        return self._session

    def _urls(self, file: registry.FileSpec) -> list[str]:
        urls = [f"{base}/{self.spec.dir_name}/{file.name}" for base in self.bases] + list(file.urls)
        urls = list(dict.fromkeys(urls))
        if self.offline:
            urls = [u for u in urls if is_file_url(u)]
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
        from . import transport as _transport

        session = self._session_for_download()
        remove_partials(target)
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
            from .transport import host_of

            session.say(("mirror", host), f"{host}: {problem}; trying {host_of(rest[0])}")

    def _download_from(self, session, url: str, file, target: Path, role) -> bool | str:
        """One mirror: True when ``target`` now holds the verified file, else why it was refused.
        A file pieced together from resumed requests that fails verification is fetched once more
        from byte 0: a mirror whose Range answers are wrong still gets to deliver the file whole."""
        from . import transport as _transport
        from .._atomic import new_temp
        from .verify import mismatch, verify

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
                verdict = verify(tmp, file, decoded_limit(self.spec, role))
                if verdict.ok:
                    os.replace(tmp, target)
                    self.manifest.record(
                        target, sha256=verdict.sha256, content_sha256=verdict.content_sha256, url=url,
                        verified_ns=verdict.read_ns,
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
        for candidate in elsewhere.candidates(self.spec, archive.name, self.manifest):
            if self._check(candidate, archive, None):
                return candidate
        return zip_target if self._download(archive, zip_target, None) else None

    def _extract(self, zip_path: Path, file: registry.FileSpec, role: str) -> Path:
        from .archive import extract
        from .verify import mismatch, verify

        target = self.dir / file.name
        remove_partials(target)
        tmp, digest = extract(zip_path, file.name, target)
        try:
            if file.sha256 is not None or file.content_sha256 is not None:
                verdict = verify(tmp, file, decoded_limit(self.spec, role))
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
        from .._lock import FileLock

        lock = FileLock(lock_path(target))
        try:
            if not lock.acquire(timeout=LOCK_NOTICE_AFTER):
                message = f"fastidx: waiting for another process {what} (lock {lock_path(target)})"
                log.info(message)
                print(message, file=sys.stderr, flush=True)
                limit = env_seconds(ENV_LOCK_TIMEOUT, LOCK_TIMEOUT, allow_zero=True)
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


def _host(url: str) -> str:
    if not url:
        return ""
    from .transport import host_of

    return host_of(url)


def remove_partials(target: Path) -> None:
    """Temporary files of ``target`` left by a killed process. Caller holds the lock."""
    for leftover in partials(target):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _activity(target: Path):
    """Changes while the process holding ``target``'s lock is making progress."""
    state = []
    for path in [target, *partials(target)]:
        with contextlib.suppress(OSError):
            st = path.stat()
            state.append((path.name, st.st_size, st.st_mtime_ns))
    return sorted(state)
