"""The Conversion object: validated once when made, the one place the conversion is decided."""

import dataclasses

import numpy as np
import pytest

from fastidx._conversion import Conversion


def test_a_conversion_is_frozen_and_validated_when_made():
    c = Conversion("float64", normalize=1, mean=0.5, std=0.25, layout="NCHW")
    assert c.dtype == np.dtype(np.float64) and c.normalize is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.std = 0
    assert hash(c) == hash(Conversion(np.float64, True, 0.5, 0.25, "NCHW"))
    for bad in (dict(std=0), dict(std=-1.0), dict(std=float("nan")), dict(mean=float("inf")),
                dict(mean="0.5"), dict(std=1e-9, dtype=np.float16), dict(layout="HWC"),
                dict(normalize=True, dtype=np.int16), dict(dtype=">f4")):
        with pytest.raises(ValueError):
            Conversion(**bad)


def test_the_table_is_the_numpy_expression_on_the_unit_scale():
    v = np.arange(256, dtype=np.uint8)
    for dtype in (np.float16, np.float32, np.float64):
        d = np.dtype(dtype)
        for options in (dict(normalize=True), dict(mean=0.1307, std=0.3081), dict(std=2.0),
                        dict(normalize=True, mean=0.5)):
            scaled = v.astype(d) / d.type(255)
            with np.errstate(all="ignore"):
                want = (scaled - options.get("mean", 0)) / options.get("std", 1) \
                    if "mean" in options or "std" in options else scaled
            got = Conversion(dtype, **options).table(np.uint8)
            assert got.dtype == d and got.tobytes() == want.astype(d).tobytes(), options
    assert Conversion().table(np.uint8) is None
    assert Conversion(np.int16).table(np.uint8).tolist() == list(range(256))
    assert Conversion(np.float32).table(np.int16) is None  # cast, not mapped


def test_target_shape_and_cache_key():
    c = Conversion(mean=0.1307, std=0.3081, layout="flat")
    assert c.target(np.uint8) == np.float32 and c.shape((7, 28, 28)) == (7, 784)
    with pytest.raises(ValueError, match="uint8 data"):
        c.target(np.int16)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        c.shape((7,))
    assert Conversion(layout="NHWC").key == "native"  # a layout is a view of the same values
    # mean/std without normalize compute what normalize=True with them computes: one entry.
    assert c.key == Conversion(normalize=True, mean=0.1307, std=0.3081).key != Conversion().key
    assert len({Conversion(normalize=True).key, Conversion(std=0.5).key,
                Conversion(np.float64, True).key, Conversion(np.int16).key}) == 4
