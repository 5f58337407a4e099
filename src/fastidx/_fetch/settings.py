"""What the environment and the arguments say: variables, their defaults, and the mirror syntax.

Every variable is read when :func:`fastidx._fetch.fetch` runs, never at import; the download limits
only when a download starts (so a warm load never fails on a setting it does not need).
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

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


def env_flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return value not in {"", "0", "false", "no", "off"}


def env_seconds(name: str, default: float, *, allow_zero: bool = False) -> float:
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


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def download_limits(todo_bytes: int):
    """The :class:`~fastidx._fetch.transport.Limits` of a fetch that has ``todo_bytes`` to download."""
    from .transport import Limits

    stall = env_seconds(ENV_STALL_TIMEOUT, STALL_TIMEOUT)
    min_rate = env_seconds(ENV_MIN_RATE, MIN_RATE, allow_zero=True)
    retry_base = env_seconds(ENV_RETRY_BASE, RETRY_BASE, allow_zero=True)
    total = env_seconds(ENV_TIMEOUT, max(TIMEOUT, todo_bytes / TIMEOUT_RATE))
    return Limits(time.monotonic() + total, total, stall, min_rate, retry_base)


def mirror_bases(mirrors=None) -> list[str]:
    """The mirrors to try before the registry's: ``mirrors`` then ``$FASTIDX_MIRROR``, as base URLs.

    One rule for ``mirrors=``, ``$FASTIDX_MIRROR`` and the command line's ``--mirror``: a mirror is
    an ``http://``, ``https://`` or ``file://`` base URL, or a local directory (an existing one,
    absolute or relative), which becomes its ``file://`` URL. A string may hold several mirrors
    separated by whitespace or commas (a comma inside a URL must be written ``%2C``); a string
    that names an existing directory is one mirror even if it contains spaces. Each item of a
    list is one mirror. Duplicates are dropped, order is kept.

    Raises
    ------
    ValueError
        For anything else, naming the mirror and where it came from.

    Examples
    --------
    >>> import os; os.environ.pop("FASTIDX_MIRROR", None) and None
    >>> mirror_bases("http://a.example/data, https://b.example/")
    ['http://a.example/data', 'https://b.example']
    """
    items: list[tuple[str, str]] = []  # (mirror, where it came from)
    if mirrors is not None:
        if isinstance(mirrors, (str, os.PathLike)):
            items.extend((m, "mirrors=") for m in _split(os.fspath(mirrors)))
        else:
            items.extend((os.fspath(m), "mirrors=") for m in mirrors)
    items.extend((m, ENV_MIRROR) for m in _split(os.environ.get(ENV_MIRROR, "")))
    return list(dict.fromkeys(_as_base_url(m, where) for m, where in items))


def _local(text: str) -> Path:
    # A relative directory is resolved against a stable directory (Tune chdirs every trial).
    from .._cluster import resolve

    return resolve(Path(text))


def _split(text: str) -> list[str]:
    if text.strip() and _local(text).is_dir():
        return [text]
    return text.replace(",", " ").split()


def _as_base_url(mirror: str, where: str) -> str:
    import urllib.parse

    scheme = urllib.parse.urlsplit(mirror).scheme.lower()
    if scheme in {"http", "https", "file"}:
        return mirror.rstrip("/")
    if _local(mirror).is_dir():
        return _local(mirror).resolve().as_uri()
    raise ValueError(
        f"mirror {mirror!r} (from {where}) is not an http://, https:// or file:// URL nor an existing "
        f"directory; separate several mirrors with spaces or commas"
    )


def is_file_url(url: str) -> bool:
    return url[:5].lower() == "file:"
