"""read_idx's options: round trips, fused uint8 conversions (bit-identical to NumPy), layouts, out=."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastidx
import reference as ref

SETTINGS = settings(max_examples=60, deadline=None)
FLOATS = (np.float16, np.float32, np.float64)
UINT_OF = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def bits(a: np.ndarray) -> np.ndarray:
    """The raw bit patterns of a float array, so that NaN payloads and -0.0 count."""
    return a.view(UINT_OF[a.dtype.itemsize])


def assert_bit_identical(result: np.ndarray, expected: np.ndarray) -> None:
    assert result.dtype == expected.dtype
    assert result.shape == expected.shape
    assert np.array_equal(bits(result), bits(expected)), (
        f"{np.count_nonzero(bits(result) != bits(expected))} values differ"
    )


def images(shape=(5, 7, 9), seed=0) -> np.ndarray:
    """uint8 images that contain every value 0..255 at least once when large enough."""
    x = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    flat = x.reshape(-1)
    flat[: min(256, flat.size)] = np.arange(min(256, flat.size), dtype=np.uint8)
    return x


def blob(array, gz=False) -> bytes:
    return fastidx.write_idx(None, array, compress=gz)


# ---------------------------------------------------------------------------------------------
# Round trips

roundtrip_arrays = hnp.arrays(
    dtype=st.sampled_from(ref.DTYPES).flatmap(
        lambda dt: st.sampled_from([dt, dt.newbyteorder(">")])
    ),
    shape=hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=5),
)


@SETTINGS
@given(array=roundtrip_arrays, gz=st.booleans(), where=st.sampled_from(["bytes", "path", "file"]))
def test_write_read_round_trip(array, gz, where, tmp_path_factory):
    if where == "bytes":
        result = fastidx.read_idx(fastidx.write_idx(None, array, compress=gz))
    elif where == "path":
        path = tmp_path_factory.getbasetemp() / ("rt.idx.gz" if gz else "rt.idx")
        fastidx.write_idx(path, array)
        result = fastidx.read_idx(path)
    else:
        f = io.BytesIO()
        fastidx.write_idx(f, array, compress=gz)
        f.seek(0)
        result = fastidx.read_idx(f)
    expected = array.astype(array.dtype.newbyteorder("="))
    assert ref.same(result, expected)
    assert result.dtype.isnative


def test_result_owns_its_memory():
    source = bytearray(blob(np.arange(10, dtype=np.uint8)))
    result = fastidx.read_idx(source)
    source[-1] = 99
    assert result[-1] == 9
    result[0] = 42  # writable, and writing to it does not touch the source
    assert source[8] == 0


def test_caller_file_object_is_left_open_and_path_file_is_closed(tmp_path):
    path = tmp_path / "a.idx"
    path.write_bytes(blob(np.arange(3, dtype=np.uint8)))
    with open(path, "rb") as f:
        fastidx.read_idx(f)
        assert not f.closed
    fastidx.read_idx(path)  # an unclosed file would surface as a ResourceWarning -> error


# ---------------------------------------------------------------------------------------------
# Conversions of uint8 data: bit-identical to the NumPy expression


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dt", FLOATS, ids=lambda t: np.dtype(t).name)
def test_normalize_is_bit_identical(dt, gz):
    x = images()
    result = fastidx.read_idx(blob(x, gz), dtype=dt, normalize=True)
    assert_bit_identical(result, x.astype(dt) / np.dtype(dt).type(255))
    assert result.ctypes.data % 64 == 0


def test_normalize_defaults_to_float32():
    x = images()
    result = fastidx.read_idx(blob(x), normalize=True)
    assert_bit_identical(result, x.astype(np.float32) / np.float32(255))
    result = fastidx.read_idx(blob(x), mean=0.5, std=2.0)  # mean/std imply the [0, 1] scale
    assert_bit_identical(result, (x.astype(np.float32) / np.float32(255) - 0.5) / 2.0)


@pytest.mark.parametrize("dt", FLOATS, ids=lambda t: np.dtype(t).name)
def test_mnist_mean_std_is_bit_identical(dt):
    x = images()
    d = np.dtype(dt)
    result = fastidx.read_idx(blob(x), dtype=dt, normalize=True, mean=0.1307, std=0.3081)
    assert_bit_identical(result, (x.astype(d) / d.type(255) - 0.1307) / 0.3081)
    result = fastidx.read_idx(blob(x), dtype=dt, mean=0.1307, std=0.3081)  # normalize implied
    assert_bit_identical(result, (x.astype(d) / d.type(255) - 0.1307) / 0.3081)
    result = fastidx.read_idx(blob(x), dtype=dt, normalize=True, mean=0.5)
    assert_bit_identical(result, x.astype(d) / d.type(255) - 0.5)
    result = fastidx.read_idx(blob(x), dtype=dt, std=3.0)
    assert_bit_identical(result, x.astype(d) / d.type(255) / 3.0)


@SETTINGS
@given(
    dt=st.sampled_from(FLOATS),
    normalize=st.booleans(),
    mean=st.none() | st.floats(-1e4, 1e4, allow_nan=False),
    std=st.none() | st.floats(1e-4, 1e4).map(float),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=20),
)
def test_conversion_hypothesis(dt, normalize, mean, std, shape):
    x = images(shape)
    d = np.dtype(dt)
    with np.errstate(all="ignore"):  # float16 may overflow; both sides must agree even then
        expected = x.astype(d)
        if normalize or mean is not None or std is not None:  # mean/std imply the [0, 1] scale
            expected = expected / d.type(255)
        if mean is not None:
            expected = expected - mean
        if std is not None:
            expected = expected / std
        result = fastidx.read_idx(blob(x), dtype=dt, normalize=normalize, mean=mean, std=std)
    assert_bit_identical(result, expected)


@pytest.mark.parametrize("std", [0.0, -0.0, -0.3, float("nan"), float("inf"), 1e-9])
def test_std_that_is_not_positive_and_finite_is_refused(std):
    # 1e-9 is 0 in float16: refused there, accepted in float32.
    dtype = np.float16 if std == 1e-9 else np.float32
    with pytest.raises(ValueError, match="std"):
        fastidx.read_idx(blob(images((30,))), dtype=dtype, normalize=True, mean=0.2, std=std)
    with pytest.raises(ValueError, match="mean"):
        fastidx.read_idx(blob(images((30,))), mean=float("nan"))


def test_no_spurious_floating_point_warnings():
    x = np.array([0, 1, 2], dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = x.astype(np.float16) / np.float16(255) / 0.001  # silent: fits in float16
        result = fastidx.read_idx(blob(x), dtype=np.float16, std=0.001)
    assert_bit_identical(result, expected)


@pytest.mark.parametrize(
    "dt", [np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint32, np.uint64, np.float16,
           np.float32, np.float64, np.complex64, np.bool_, np.uint8],
    ids=lambda t: np.dtype(t).name,
)
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_uint8_to_other_dtype_equals_astype(dt, gz):
    x = images()
    result = fastidx.read_idx(blob(x, gz), dtype=dt)
    expected = x.astype(dt)
    assert result.dtype == expected.dtype
    assert result.tobytes() == expected.tobytes()
    assert result.flags.c_contiguous and result.flags.writeable
    assert result.ctypes.data % 64 == 0


@pytest.mark.parametrize(
    "stored, target",
    [(np.int16, np.float32), (np.int32, np.float64), (np.int8, np.int16), (np.float64, np.float32),
     (np.float32, np.float64), (np.int16, np.int16), (np.int32, np.int8)],
    ids=str,
)
def test_other_dtype_conversions_equal_astype(stored, target):
    x = np.random.default_rng(2).integers(-100, 100, (4, 5, 6)).astype(stored)
    result = fastidx.read_idx(blob(x, gz=True), dtype=target)
    expected = x.astype(target)
    assert result.dtype == expected.dtype and result.tobytes() == expected.tobytes()
    assert result.flags.c_contiguous and result.flags.writeable


@pytest.mark.parametrize("stored, target", [(np.int16, np.float32), (np.int32, np.float64)])
def test_other_dtype_conversions_are_aligned(stored, target):
    misaligned = 0
    for n in range(1, 40):  # several sizes, so that a lucky malloc address does not hide it
        result = fastidx.read_idx(blob(np.arange(n, dtype=stored)), dtype=target)
        misaligned += result.ctypes.data % 64 != 0
    assert misaligned == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dtype": np.int32, "normalize": True}, "float dtype"),
        ({"dtype": np.uint8, "mean": 0.5}, "float dtype"),
        ({"dtype": np.int16, "std": 2.0}, "float dtype"),
        ({"dtype": ">f4"}, "byte order"),
        ({"dtype": ">f4", "normalize": True}, "byte order"),
        ({"dtype": np.complex128}, "dtype"),
        ({"dtype": "U1"}, "dtype"),
        ({"dtype": "M8[s]"}, "dtype"),
        ({"dtype": object}, "dtype"),
    ],
    ids=str,
)
def test_invalid_conversion_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastidx.read_idx(blob(images()), **kwargs)


@pytest.mark.parametrize("stored", [np.float32, np.int16, np.int8, np.float64])
@pytest.mark.parametrize(
    "kwargs", [{"normalize": True}, {"mean": 0.1}, {"std": 0.3}, {"dtype": np.float32,
                                                                   "normalize": True}], ids=str,
)
def test_normalize_needs_uint8_data(stored, kwargs):
    with pytest.raises(ValueError, match="uint8"):
        fastidx.read_idx(blob(np.ones((2, 2), dtype=stored)), **kwargs)


# ---------------------------------------------------------------------------------------------
# Layouts


@pytest.mark.parametrize(
    "layout, shape",
    [(None, (5, 7, 9)), ("NHWC", (5, 7, 9, 1)), ("NCHW", (5, 1, 7, 9)), ("flat", (5, 63))],
)
@pytest.mark.parametrize("kwargs", [{}, {"normalize": True}, {"dtype": np.float64}], ids=str)
def test_layouts(layout, shape, kwargs):
    x = images((5, 7, 9))
    result = fastidx.read_idx(blob(x), layout=layout, **kwargs)
    plain = fastidx.read_idx(blob(x), **kwargs)
    assert result.shape == shape
    assert result.flags.c_contiguous and result.flags.writeable
    assert result.ctypes.data % 64 == 0
    assert np.array_equal(result, plain.reshape(shape))
    # every image is intact in its new layout
    assert np.array_equal(result[3].reshape(7, 9), plain[3])


def test_layout_on_int16_images():
    x = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4) * -7
    assert np.array_equal(fastidx.read_idx(blob(x), layout="NCHW"), x[:, None])
    assert np.array_equal(fastidx.read_idx(blob(x), layout="flat"), x.reshape(2, 12))


@pytest.mark.parametrize("shape", [(10,), (2, 5), (1, 2, 3, 4)], ids=str)
@pytest.mark.parametrize("layout", ["NHWC", "NCHW", "flat"])
def test_layout_needs_three_dimensions(shape, layout):
    with pytest.raises(ValueError, match="layout"):
        fastidx.read_idx(blob(np.zeros(shape, np.uint8)), layout=layout)


@pytest.mark.parametrize("layout", ["nhwc", "CHW", "", "NHW", 3])
def test_bad_layout_name(layout):
    with pytest.raises(ValueError, match="layout must be one of"):
        fastidx.read_idx(blob(images()), layout=layout)


# ---------------------------------------------------------------------------------------------
# out=


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize(
    "kwargs, make_expected",
    [
        ({}, lambda x: x),
        ({"normalize": True}, lambda x: x.astype(np.float32) / np.float32(255)),
        ({"dtype": np.float64, "normalize": True, "mean": 0.1307, "std": 0.3081},
         lambda x: (x.astype(np.float64) / np.float64(255) - 0.1307) / 0.3081),
        ({"dtype": np.int32}, lambda x: x.astype(np.int32)),
        ({"layout": "NCHW", "normalize": True},
         lambda x: (x.astype(np.float32) / np.float32(255))[:, None]),
        ({"layout": "flat"}, lambda x: x.reshape(len(x), -1)),
    ],
    ids=["plain", "normalize", "mean-std-f64", "int32", "NCHW", "flat"],
)
def test_out_receives_the_data(kwargs, make_expected, gz):
    x = images()
    expected = make_expected(x)
    out = np.full(expected.shape, 7, dtype=expected.dtype)
    result = fastidx.read_idx(blob(x, gz), out=out, **kwargs)
    assert result is out
    assert out.tobytes() == expected.tobytes()


@pytest.mark.parametrize("stored", [np.int16, np.float64, np.int32])
def test_out_for_multibyte_data(stored):
    x = (np.arange(60).reshape(3, 4, 5) * -3).astype(stored)
    out = np.empty(x.shape, stored)
    assert fastidx.read_idx(blob(x, gz=True), out=out) is out
    assert np.array_equal(out, x)
    out32 = np.empty(x.shape, np.float32)
    assert fastidx.read_idx(blob(x), out=out32, dtype=np.float32) is out32
    assert np.array_equal(out32, x.astype(np.float32))


def test_out_inside_a_bigger_buffer_leaves_the_rest_alone():
    x = images((2, 3, 4))
    backing = np.full(100, 0xAA, np.uint8)
    out = backing[10:34].reshape(2, 3, 4)
    fastidx.read_idx(blob(x), out=out)
    assert np.array_equal(out, x)
    assert (backing[:10] == 0xAA).all() and (backing[34:] == 0xAA).all()


def _readonly(shape, dtype):
    a = np.empty(shape, dtype)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize(
    "make_out, kwargs, match",
    [
        (lambda: np.empty((5, 7, 8), np.uint8), {}, "shape"),
        (lambda: np.empty((5, 63), np.uint8), {}, "shape"),
        (lambda: np.empty((5, 7, 9), np.uint8), {"layout": "NHWC"}, "shape"),
        (lambda: np.empty((5, 7, 9), np.int8), {}, "dtype"),
        (lambda: np.empty((5, 7, 9), np.float64), {"normalize": True}, "dtype"),
        (lambda: np.empty((5, 7, 9), ">f4"), {"normalize": True}, "dtype"),
        (lambda: np.empty((5, 7, 18), np.uint8)[:, :, ::2], {}, "C-contiguous"),
        (lambda: np.empty((5, 7, 9), np.uint8, order="F"), {}, "C-contiguous"),
        (lambda: _readonly((5, 7, 9), np.uint8), {}, "read-only"),
        (lambda: _readonly((5, 7, 9), np.float32), {"normalize": True}, "read-only"),
    ],
    ids=["shape", "flat-shape", "layout-shape", "dtype", "float64-vs-float32", "big-endian",
         "strided", "fortran", "read-only", "read-only-normalize"],
)
def test_out_is_checked(make_out, kwargs, match):
    out = make_out()
    before = out.tobytes()
    with pytest.raises(ValueError, match=match):
        fastidx.read_idx(blob(images((5, 7, 9))), out=out, **kwargs)
    assert out.tobytes() == before, "a refused out= array was written to"


def test_out_must_be_an_array():
    with pytest.raises(TypeError):
        fastidx.read_idx(blob(images((2, 2, 2))), out=bytearray(8))


# ---------------------------------------------------------------------------------------------
# Threads: the native loops release the GIL, so concurrent reads must not interfere


def test_concurrent_reads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    x = images((64, 28, 28), seed=9)
    path = tmp_path / "x.idx.gz"
    fastidx.write_idx(path, x)
    raw = blob(x)
    jobs = [
        (path, {"normalize": True}, x.astype(np.float32) / np.float32(255)),
        (path, {}, x),
        (raw, {"dtype": np.float64, "mean": 0.5, "std": 2.0},
         (x.astype(np.float64) / 255 - 0.5) / 2.0),
        (raw, {"layout": "NCHW"}, x[:, None]),
    ] * 8
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda job: fastidx.read_idx(job[0], **job[1]), jobs))
    for (_, _, expected), result in zip(jobs, results):
        assert result.dtype == expected.dtype and result.tobytes() == expected.tobytes()


def test_write_idx_compresslevel_trades_size_for_speed_and_round_trips():
    x = np.tile(np.arange(256, dtype=np.uint8), 400).reshape(100, 32, 32)
    fast = fastidx.write_idx(None, x, compress=True, compresslevel=1)
    small = fastidx.write_idx(None, x, compress=True, compresslevel=9)
    assert len(small) < len(fast)
    for blob_ in (fast, small):
        assert np.array_equal(fastidx.read_idx(blob_), x)
    with pytest.raises(ValueError, match="compresslevel"):
        fastidx.write_idx(None, x, compress=True, compresslevel=10)
