"""Writing IDX files: :func:`write_idx`, gzip by name, renamed into place whole."""

from __future__ import annotations

import io
import os

import numpy as np

from .header import encode_header


def write_idx(dest, array, *, compress: bool | None = None, compresslevel: int = 6):
    """Write ``array`` as an IDX file.

    Parameters
    ----------
    dest : str, os.PathLike, binary file object or None
        Where to write. ``None`` returns the encoded bytes. Files are written to a temporary name
        and renamed into place, so a reader never sees a half-written file.
    array : array_like
        uint8, int8, int16, int32, float32 or float64 data with 1 to 32 dimensions (each < 2**32).
    compress : bool, optional
        gzip the output. Default: when ``dest`` is a name ending in ``.gz``.
    compresslevel : int
        gzip level, 1 (fastest) to 9 (smallest). The default 6 is gzip(1)'s: on MNIST level 9
        saves 2% of the size for 14 times the time.

    Returns
    -------
    bytes or None
        The encoded file when ``dest`` is None.

    Examples
    --------
    >>> import fastidx, numpy as np
    >>> blob = fastidx.write_idx(None, np.array([1, 2, 3], dtype=np.int16))
    >>> blob.hex()
    '00000b0100000003000100020003'
    """
    array = np.asarray(array)
    header, native = encode_header(array)
    if not 0 <= compresslevel <= 9:
        raise ValueError(f"compresslevel must be 0 to 9, not {compresslevel}")
    is_path = isinstance(dest, (str, os.PathLike))
    if compress is None:
        compress = is_path and os.fspath(dest).endswith(".gz")
    payload = memoryview(np.ascontiguousarray(array, dtype=native.newbyteorder(">")).reshape(-1).view(np.uint8))
    level = compresslevel if compress else None
    if dest is None:
        buffer = io.BytesIO()
        _emit(buffer, header, payload, level)
        return buffer.getvalue()
    if is_path:
        from .._atomic import atomic_write

        with atomic_write(dest) as f:
            _emit(f, header, payload, level)
        return None
    _emit(dest, header, payload, level)
    return None


def _emit(f, header: bytes, payload: memoryview, compresslevel: int | None) -> None:
    """Write ``header`` and ``payload`` to the binary file ``f``, gzipped unless ``compresslevel``
    is None (``mtime=0``: the same array always gives the same bytes)."""
    if compresslevel is None:
        f.write(header)
        f.write(payload)
        return
    import gzip  # only for writing: a load does not import it

    with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, compresslevel=compresslevel) as gz:
        gz.write(header)
        gz.write(payload)
