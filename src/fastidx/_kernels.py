"""fastidx's hot loops, chosen once at import: the compiled :mod:`fastidx._native` when it was built,
else the pure-Python :mod:`fastidx._pure` (zlib + NumPy), which gives the same results more slowly.

``FASTIDX_PURE=1`` forces the pure-Python path (for testing it, or to silence the warning where the
extension is missing on purpose). Without it, a missing extension is reported once, when fastidx is
imported, by a :class:`~fastidx._errors.PurePythonWarning` naming the slower path.
"""

import os
import warnings

from ._errors import PurePythonWarning

ENV_PURE = "FASTIDX_PURE"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in {"", "0", "false", "no", "off"}


if _env_true(ENV_PURE):
    from ._pure import ZLIB_VERSION, InflateError, Inflater, byteswap, lut_map, prefault

    IMPLEMENTATION = "pure"
else:
    try:
        from ._native import ZLIB_VERSION, InflateError, Inflater, byteswap, lut_map, prefault

        IMPLEMENTATION = "native"
    except ImportError as exc:
        from ._pure import ZLIB_VERSION, InflateError, Inflater, byteswap, lut_map, prefault

        IMPLEMENTATION = "pure"
        warnings.warn(
            f"fastidx's compiled extension fastidx._native is not available ({exc}); using the "
            f"pure-Python fallback fastidx._pure (zlib + NumPy), which returns the same arrays but "
            f"loads gzip files more slowly. Reinstall fastidx with a C compiler to get the fast "
            f"path, or set {ENV_PURE}=1 to choose the fallback and silence this warning.",
            PurePythonWarning,
            stacklevel=2,
        )

__all__ = [
    "IMPLEMENTATION",
    "ZLIB_VERSION",
    "InflateError",
    "Inflater",
    "byteswap",
    "lut_map",
    "prefault",
]
