"""SHA-256 without importing :mod:`hashlib` (which initialises OpenSSL: a few ms of a warm load)."""

_new = None  # the constructor, found on first use


def sha256(data: bytes = b""):
    """A SHA-256 object, from CPython's built-in SHA-2 module when there is one."""
    global _new
    if _new is None:
        try:
            from _sha2 import sha256 as new  # CPython 3.12+
        except ImportError:
            try:
                from _sha256 import sha256 as new  # CPython 3.11
            except ImportError:  # pragma: no cover - a build without them
                from hashlib import sha256 as new
        _new = new
    return _new(data)
