"""fastidx: fast, safe, memory-frugal IDX dataset loading with a tf.keras.datasets-compatible API.

>>> import fastidx
>>> (x_train, y_train), (x_test, y_test) = fastidx.datasets.mnist.load_data()  # doctest: +SKIP
"""

from ._errors import (
    CacheDirError,
    CacheWarning,
    ChecksumError,
    DatasetNotFoundError,
    DownloadError,
    FastIDXError,
    GzipError,
    IDXError,
    IDXHeaderError,
    IDXTrailingDataError,
    IDXTruncatedError,
)
from ._idx import read_header, read_idx, write_idx

__version__ = "0.1.0"

__all__ = [
    "CacheDirError",
    "CacheWarning",
    "ChecksumError",
    "DatasetNotFoundError",
    "DownloadError",
    "FastIDXError",
    "GzipError",
    "IDXError",
    "IDXHeaderError",
    "IDXTrailingDataError",
    "IDXTruncatedError",
    "__version__",
    "datasets",
    "read_header",
    "read_idx",
    "write_idx",
]


def __getattr__(name):
    # ``fastidx.datasets`` is imported on first use so that ``import fastidx`` stays light.
    if name == "datasets":
        import importlib

        return importlib.import_module(".datasets", __name__)
    raise AttributeError(f"module 'fastidx' has no attribute {name!r}")
