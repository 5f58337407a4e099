"""Files that come out of an archive: EMNIST's ``gzip.zip`` (imported only when extracting)."""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from pathlib import Path

from .._atomic import new_temp
from .._errors import ChecksumError, DatasetNotFoundError


def extract(zip_path: Path, name: str, target: Path) -> tuple[Path, str]:
    """Write member ``name`` (or ``*/name``) of ``zip_path`` to a new temporary file beside
    ``target``; returns ``(temporary path, SHA-256)``. The caller renames or removes it."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            member = next(
                (i for i in archive.infolist() if i.filename == name or i.filename.endswith("/" + name)),
                None,
            )
            if member is None:
                raise DatasetNotFoundError(f"{zip_path} has no member {name}")
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
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ChecksumError(f"{zip_path} is damaged ({exc}); could not extract {name}") from exc
    return tmp, digest.hexdigest()
