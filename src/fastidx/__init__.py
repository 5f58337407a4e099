"""fastidx: fast, safe, memory-frugal IDX dataset loading with a tf.keras.datasets-compatible API.

>>> import fastidx
>>> (x_train, y_train), (x_test, y_test) = fastidx.datasets.mnist.load_data()  # doctest: +SKIP
"""

from ._errors import (
    CacheDirError,
    CacheWarning,
    ChecksumError,
    ClusterWarning,
    DatasetNotFoundError,
    DownloadError,
    FastIDXError,
    GzipError,
    IDXError,
    IDXHeaderError,
    IDXTrailingDataError,
    IDXTruncatedError,
    MemoryLimitError,
)

__version__ = "0.1.0"

__all__ = [
    "CacheDirError",
    "CacheWarning",
    "ChecksumError",
    "ClusterWarning",
    "DatasetNotFoundError",
    "DownloadError",
    "FastIDXError",
    "GzipError",
    "IDXError",
    "IDXHeaderError",
    "IDXReader",
    "IDXTrailingDataError",
    "IDXTruncatedError",
    "MemoryLimitError",
    "__version__",
    "cache",
    "datasets",
    "read_header",
    "read_idx",
    "write_idx",
]


def __getattr__(name):
    # The IDX codec, ``fastidx.datasets`` and ``fastidx.cache`` are imported on first use so that
    # ``import fastidx`` (and ``import fastidx.datasets``) stays light.
    if name in ("IDXReader", "read_header", "read_idx", "write_idx"):
        from . import _idx

        return getattr(_idx, name)
    if name in ("datasets", "cache"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fastidx' has no attribute {name!r}")
