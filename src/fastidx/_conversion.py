"""How stored values become the arrays a caller asked for: one frozen, validated object.

``Conversion(dtype, normalize, mean, std, layout)`` checks the options once, when it is made, and is
then carried by the decoder (:mod:`fastidx._idx`), the cache (:mod:`fastidx._cache`) and the loaders
(:mod:`fastidx.datasets`). Each asks it the one question it has:

- :meth:`Conversion.target` — the output dtype for data stored as a given dtype;
- :meth:`Conversion.table` — the 256 values a stored uint8 maps to (``None``: nothing to map);
- :meth:`Conversion.shape` — a stored shape in the requested layout;
- :attr:`Conversion.key` — the conversion's name in the cache (``"native"`` or a hash).

``mean`` and ``std`` standardize on the [0, 1] scale, with or without ``normalize`` (torchvision's
``Normalize`` after ``ToTensor``): ``table[v]`` is exactly the NumPy expression
``(np.uint8(v).astype(dtype) / dtype(255) - mean) / std`` evaluated in ``dtype``, so mapping through
it is bit-identical to running that expression over a whole array.

>>> c = Conversion(normalize=True, layout="flat")
>>> c.target(np.dtype(np.uint8)), c.shape((10, 28, 28))
(dtype('float32'), (10, 784))
>>> float(c.table(np.dtype(np.uint8))[255])
1.0
>>> Conversion(std=0)
Traceback (most recent call last):
...
ValueError: std must be a positive number (nonzero in float32), not 0
"""

from __future__ import annotations

import math
import numbers
import numpy as np

#: The layouts of (N, H, W) image data: as stored, (N, H, W, 1), (N, 1, H, W), (N, H*W).
LAYOUTS = (None, "NHWC", "NCHW", "flat")
_ITEMSIZES = (1, 2, 4, 8)  # what the native loops can write


class Conversion:
    """The conversion and layout options of a load, validated when the object is made.

    Parameters
    ----------
    dtype : dtype, optional
        Output dtype; default the stored one, or float32 when ``normalize``, ``mean`` or ``std``
        is given. Native byte order only.
    normalize : bool
        Scale uint8 data to [0, 1]: ``x.astype(dtype) / dtype(255)``.
    mean, std : real number, optional
        ``(x.astype(dtype) / dtype(255) - mean) / std`` in ``dtype``; both finite and ``std``
        positive, also once converted to ``dtype`` (a float16 ``std`` of 1e-8 is 0).
    layout : {None, "NHWC", "NCHW", "flat"}
        For (N, H, W) data: as stored, (N, H, W, 1), (N, 1, H, W) or (N, H*W).

    Raises
    ------
    ValueError
        For options that make no sense whatever the data (a ``TypeError`` for a dtype NumPy does
        not know). Options that clash with the stored data raise from :meth:`target` and
        :meth:`shape`.
    """

    # The fields, in this order, are the loose ``dtype, normalize, mean, std, layout`` keyword
    # arguments of read_idx() and the loaders: ``Conversion(**options)`` makes one from them.

    # Frozen like a frozen dataclass, without importing dataclasses (a warm load's cost).
    __slots__ = ("dtype", "normalize", "mean", "std", "layout")

    def __init__(self, dtype: np.dtype | None = None, normalize: bool = False,
                 mean: numbers.Real | None = None, std: numbers.Real | None = None,
                 layout: str | None = None):
        for name, value in zip(self.__slots__, (dtype, normalize, mean, std, layout)):
            object.__setattr__(self, name, value)
        self._validate()

    def __setattr__(self, name, value):
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    __delattr__ = __setattr__

    def _fields(self) -> tuple:
        return (self.dtype, self.normalize, self.mean, self.std, self.layout)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self):
        return hash(self._fields())

    def __reduce__(self):
        return Conversion, self._fields()

    def __repr__(self):
        return (f"Conversion(dtype={self.dtype!r}, normalize={self.normalize!r}, mean={self.mean!r}, "
                f"std={self.std!r}, layout={self.layout!r})")

    def _validate(self):
        dtype = None if self.dtype is None else np.dtype(self.dtype)
        if dtype is not None and dtype.byteorder not in "=|" and dtype.itemsize > 1 \
                and dtype.newbyteorder("=") != dtype:
            raise ValueError(f"dtype {self.dtype!r}: fastidx returns native byte order only")
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "normalize", bool(self.normalize))
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {self.layout!r}")
        if self.scaled:
            if dtype is not None and dtype.kind not in "fc":
                raise ValueError(
                    f"normalize/mean/std produce fractions: ask for a float dtype, not {dtype.name}"
                )
            self._check_standardization(dtype or np.dtype(np.float32))

    def _check_standardization(self, target: np.dtype) -> None:
        for name, value in (("mean", self.mean), ("std", self.std)):
            if value is None:
                continue
            if not isinstance(value, numbers.Real):
                raise ValueError(f"{name} must be a real number, not {value!r}")
            with np.errstate(all="ignore"):
                converted = target.type(value)
                finite = math.isfinite(float(value)) and bool(np.isfinite(converted))
            if not finite:
                raise ValueError(f"{name} must be finite in {target.name}, not {value!r}")
            if name == "std" and not (float(value) > 0 and converted != 0):
                raise ValueError(
                    f"std must be a positive number (nonzero in {target.name}), not {value!r}"
                )

    def options(self) -> dict:
        """The loose keyword arguments this conversion was made from (``dtype`` normalized)."""
        return dict(dtype=self.dtype, normalize=self.normalize, mean=self.mean, std=self.std,
                    layout=self.layout)

    @property
    def scaled(self) -> bool:
        """Whether values are divided by 255 (``normalize``, ``mean`` or ``std`` given)."""
        return self.normalize or self.mean is not None or self.std is not None

    def target(self, stored: np.dtype) -> np.dtype:
        """The output dtype for data stored as ``stored`` (``ValueError`` if they clash)."""
        stored = np.dtype(stored)
        if self.scaled and stored != np.uint8:
            raise ValueError(f"normalize/mean/std apply to uint8 data; this file stores {stored.name}")
        target = self.dtype or (np.dtype(np.float32) if self.scaled else stored)
        if target.itemsize not in _ITEMSIZES or target.kind not in "biufc" or target.hasobject:
            raise ValueError(f"cannot decode IDX data into dtype {target}")
        return target

    def table(self, stored: np.dtype) -> np.ndarray | None:
        """The 256 values a stored uint8 maps to, or ``None`` when values are kept as stored
        (non-uint8 data is cast, not mapped)."""
        target = self.target(stored)
        if np.dtype(stored) != np.uint8 or (target == np.uint8 and not self.scaled):
            return None
        values = np.arange(256, dtype=np.uint8).astype(target)
        # All 256 values are computed, most of which the data may never contain: an overflow for
        # one of them (float16 / a tiny std) is no news about the caller's data: NumPy stays quiet.
        with np.errstate(all="ignore"):
            if self.scaled:
                values = values / target.type(255)
            if self.mean is not None:
                values = values - target.type(self.mean)
            if self.std is not None:
                values = values / target.type(self.std)
        return np.ascontiguousarray(values, dtype=target)

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A stored ``(N, H, W)`` shape in the requested layout."""
        shape = tuple(shape)
        if self.layout is None:
            return shape
        if len(shape) != 3:
            raise ValueError(
                f"layout={self.layout!r} applies to (N, H, W) image data; this array has shape "
                f"{shape}"
            )
        n, h, w = shape
        return {"NHWC": (n, h, w, 1), "NCHW": (n, 1, h, w), "flat": (n, h * w)}[self.layout]

    @property
    def key(self) -> str:
        """The conversion's name in the cache: ``native`` for the stored values, else a hash of
        what is computed (the layout is a view, not part of it)."""
        if self.dtype is None and not self.scaled:
            return "native"
        name = None if self.dtype is None else self.dtype.str
        # Keyed by the scaling actually applied: mean/std without normalize share the entry of
        # normalize=True, and entries made when they skipped the scaling are never found again.
        blob = _json_list([name, self.scaled, repr(self.mean), repr(self.std)])
        from ._sha import sha256

        return "x" + sha256(blob.encode()).hexdigest()[:16]


# The key is computed on the warm path of every ``normalize=True`` load, where importing hashlib
# (it initialises OpenSSL) and json cost a fresh trial process about 4 ms, most of its call: the
# same digest and the same text are made without them.


def _json_list(items: list) -> str:
    """``json.dumps(items)`` for None, bools and printable ASCII strings without quotes or
    backslashes (all a key holds in practice); anything else through json itself."""
    out = []
    for v in items:
        if v is None or isinstance(v, bool):
            out.append({None: "null", True: "true", False: "false"}[v])
        elif isinstance(v, str) and v.isascii() and v.isprintable() and not {'"', "\\"} & set(v):
            out.append(f'"{v}"')
        else:
            import json

            return json.dumps(items)
    return "[" + ", ".join(out) + "]"
