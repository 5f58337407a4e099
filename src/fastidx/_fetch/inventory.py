"""Read-only reports on a dataset's downloaded files, and their removal (what the CLI shows and
deletes). Neither downloads anything; :func:`status` writes nothing at all."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from .. import registry
from .._paths import cache_root
from .elsewhere import candidates
from .manifest import Manifest, lock_path
from .settings import ENV_LOCK_TIMEOUT, LOCK_TIMEOUT, env_seconds


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
        places = [own] + ([] if via else candidates(spec, file.name, manifest))
        report.append(_file_status(role, file, places, manifest, via, verify, spec))
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
            from .verify import verify as check

            state = "verified" if check(path, file, decoded_limit(spec, role)).ok else "damaged"
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
    from .._lock import held

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
    limit = env_seconds(ENV_LOCK_TIMEOUT, LOCK_TIMEOUT, allow_zero=True)
    for name in names:
        target = directory / name
        with held(lock_path(target), timeout=limit):
            for path in [target, target.with_name(name + ".damaged"), *partials(target)]:
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


def decoded_limit(spec, role: str | None) -> int:
    """The most bytes ``role``'s file may decode to (no gzip bomb), or 8 GiB when unknown."""
    try:
        return spec.decoded_size(role)
    except (AttributeError, KeyError, ValueError, TypeError):
        return 8 << 30


def partials(target: Path) -> list[Path]:
    """Temporary files of ``target`` (``.<name>.<random>.part``)."""
    return list(target.parent.glob(f".{target.name}.*.part"))
