"""Where fastidx keeps its files: the cache directory."""

from __future__ import annotations

import os
from pathlib import Path

from ._errors import CacheDirError

ENV_HOME = "FASTIDX_HOME"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``cache_dir`` if given, else ``$FASTIDX_HOME``, else the platform's user
    cache directory (``~/.cache/fastidx`` on Linux). Read at call time, never at import."""
    from ._cluster import default_home, resolve  # relative paths: once, against a stable dir

    if cache_dir is not None:
        return resolve(Path(cache_dir).expanduser())
    env = os.environ.get(ENV_HOME)
    if env:
        return resolve(Path(env).expanduser())
    import platformdirs

    return default_home(Path(platformdirs.user_cache_dir("fastidx", appauthor=False)), ENV_HOME)


def writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and check that files can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheDirError(
            f"cannot create the fastidx cache directory {path}: {exc.strerror or exc}; "
            f"choose another with cache_dir= (--cache-dir on the command line) or the "
            f"{ENV_HOME} environment variable"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise CacheDirError(
            f"the fastidx cache directory {path} is not writable; "
            f"choose another with cache_dir= (--cache-dir on the command line) or the "
            f"{ENV_HOME} environment variable"
        )
    return path
