"""read_idx / write_idx against the independent reference reader and writer (tests/reference.py).

Every IDX dtype, 1-D to 5-D shapes (zero-size and one-element included), every kind of source,
raw and gzip, and the gzip details (multi-member streams, padding, optional header fields, damage).
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastidx
import reference as ref

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

SHAPES = [
    (1,), (0,), (7,), (2, 3), (0, 5), (5, 0), (1, 1), (1, 1, 1), (3, 0, 2), (2, 3, 4),
    (2, 3, 4, 5), (2, 1, 3, 1, 2), (1, 1, 1, 1, 1), (4, 28, 28),
]


def sample(dtype, shape, seed=0) -> np.ndarray:
    """Values that cover the dtype's range; floats include NaN, +-inf, -0.0 and subnormals."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    if dtype.kind == "f":
        values = rng.standard_normal(n).astype(dtype) * dtype.type(1000)
        special = np.array(
            [np.nan, np.inf, -np.inf, -0.0, np.finfo(dtype).tiny / 2, np.finfo(dtype).max],
            dtype=dtype,
        )
        values[: min(n, special.size)] = special[: min(n, special.size)]
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, n, endpoint=True, dtype=dtype)
    return values.reshape(shape)


def check_result(result: np.ndarray, expected: np.ndarray, *, allocated: bool = True) -> None:
    """The output contract of read_idx: native order, writable, C-contiguous, exact, aligned."""
    assert isinstance(result, np.ndarray)
    assert result.dtype.isnative, result.dtype
    assert result.dtype == expected.dtype.newbyteorder("=")
    assert result.shape == expected.shape
    assert result.flags.writeable
    assert result.flags.c_contiguous
    assert result.tobytes() == np.ascontiguousarray(expected).astype(result.dtype).tobytes()
    if allocated and result.size:  # an empty array has no memory to align
        assert result.ctypes.data % 64 == 0, f"address {result.ctypes.data:#x} not 64-byte aligned"


def encode(array: np.ndarray, gz: bool) -> bytes:
    raw = ref.write(array)
    return ref.gzip_member(raw) if gz else raw


# ---------------------------------------------------------------------------------------------
# read_idx vs the reference reader


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("kind", ref.SOURCE_KINDS)
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=str)
def test_every_dtype_from_every_source(dtype, kind, gz, tmp_path):
    expected = sample(dtype, (3, 4, 5))
    data = encode(expected, gz)
    with ref.open_source(kind, data, tmp_path) as (source, _):
        result = fastidx.read_idx(source)
    check_result(result, expected)
    assert ref.same(result, ref.read(data))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=str)
def test_shapes(dtype, shape, gz):
    expected = sample(dtype, shape, seed=len(shape))
    result = fastidx.read_idx(encode(expected, gz))
    check_result(result, expected)


@pytest.mark.parametrize("kind", ["file", "bytesio", "nonseekable", "pipe", "midfile"])
def test_large_gzip_streams_fed_in_many_chunks(kind, tmp_path):
    # Incompressible data, so that the compressed input spans several of the reader's 1 MiB chunks.
    expected = np.random.default_rng(7).integers(0, 256, (3, 700, 1000), dtype=np.uint8)
    data = ref.gzip_member(ref.write(expected), level=1)
    assert len(data) > 2_000_000
    with ref.open_source(kind, data, tmp_path) as (source, _):
        check_result(fastidx.read_idx(source), expected)


def test_file_object_mid_file_reads_from_current_position(tmp_path):
    expected = sample(np.int16, (5, 6))
    for gz in (False, True):
        with ref.open_source("midfile", encode(expected, gz), tmp_path) as (f, _):
            start = f.tell()
            assert start > 0
            check_result(fastidx.read_idx(f), expected)


@SETTINGS
@given(
    array=hnp.arrays(
        dtype=st.sampled_from(ref.DTYPES),
        shape=hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=6),
    ),
    kind=st.sampled_from(ref.SOURCE_KINDS),
    gz=st.booleans(),
)
def test_matches_reference_hypothesis(array, kind, gz, tmp_path_factory):
    data = encode(array, gz)
    with ref.open_source(kind, data, tmp_path_factory.getbasetemp()) as (source, _):
        result = fastidx.read_idx(source)
    check_result(result, array)
    # NaNs compare equal only by bytes or with equal_nan; check both views of equality.
    assert np.array_equal(result, ref.read(data), equal_nan=result.dtype.kind == "f")


@SETTINGS
@given(
    array=hnp.arrays(
        dtype=st.sampled_from(ref.DTYPES),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    ),
    gz=st.booleans(),
)
def test_read_header_matches_reference(array, gz):
    data = encode(array, gz)
    header = fastidx.read_header(data)
    dtype, shape, nbytes = ref.parse_header(ref.decompress(data))
    assert header.dtype == dtype.newbyteorder("=")
    assert header.shape == shape
    assert header.nbytes == nbytes


# ---------------------------------------------------------------------------------------------
# write_idx vs the reference writer

writable_arrays = hnp.arrays(
    dtype=st.sampled_from(ref.DTYPES).flatmap(
        lambda dt: st.sampled_from([dt, dt.newbyteorder(">"), dt.newbyteorder("<")])
    ),
    shape=hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=6),
)


@SETTINGS
@given(array=writable_arrays, transpose=st.booleans())
def test_write_matches_reference_writer(array, transpose):
    if transpose:
        array = array.T  # a non-C-contiguous view
    blob = fastidx.write_idx(None, array)
    assert isinstance(blob, bytes)
    assert blob == ref.write(array)
    compressed = fastidx.write_idx(None, array, compress=True)
    assert compressed[:2] == b"\x1f\x8b"
    assert gzip.decompress(compressed) == blob
    assert ref.same(fastidx.read_idx(blob), ref.read(blob))


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=str)
def test_write_byte_order_of_input_does_not_matter(dtype, order):
    native = sample(dtype, (4, 5))
    swapped = native.astype(native.dtype.newbyteorder(order))
    assert fastidx.write_idx(None, swapped) == fastidx.write_idx(None, native) == ref.write(native)
    check_result(fastidx.read_idx(fastidx.write_idx(None, swapped)), native)


def test_write_known_bytes():
    blob = fastidx.write_idx(None, np.array([[1, -2]], dtype=np.int32))
    assert blob.hex() == "00000c02" "00000001" "00000002" "00000001" "fffffffe"
    blob = fastidx.write_idx(None, np.array([1.5], dtype=np.float64))
    assert blob == b"\x00\x00\x0e\x01\x00\x00\x00\x01" + bytes.fromhex("3ff8000000000000")


@pytest.mark.parametrize(
    "name, compress, expect_gzip",
    [
        ("a.idx", None, False),
        ("a.idx.gz", None, True),
        ("a.idx.gz", False, False),
        ("a.idx", True, True),
        ("a.gz", True, True),
    ],
)
@pytest.mark.parametrize("as_path", [str, Path])
def test_write_to_path(tmp_path, name, compress, expect_gzip, as_path):
    array = sample(np.float32, (3, 2, 2))
    dest = as_path(tmp_path / name)
    assert fastidx.write_idx(dest, array, compress=compress) is None
    data = (tmp_path / name).read_bytes()
    assert (data[:2] == b"\x1f\x8b") is expect_gzip
    assert ref.decompress(data) == ref.write(array)
    # gzip or not is decided by magic bytes, whatever the name says
    check_result(fastidx.read_idx(dest), array)
    assert [p.name for p in tmp_path.iterdir()] == [name], "temporary files left behind"


def test_write_to_file_object_appends_at_position():
    array = sample(np.int8, (9,))
    f = io.BytesIO()
    f.write(b"head")
    fastidx.write_idx(f, array)
    assert f.getvalue() == b"head" + ref.write(array)
    f = io.BytesIO()
    fastidx.write_idx(f, array, compress=True)
    assert gzip.decompress(f.getvalue()) == ref.write(array)


def test_write_gzip_is_reproducible(tmp_path):
    array = sample(np.uint8, (10, 10))
    fastidx.write_idx(tmp_path / "a.gz", array)
    fastidx.write_idx(tmp_path / "b.gz", array)
    a, b = (tmp_path / "a.gz").read_bytes(), (tmp_path / "b.gz").read_bytes()
    assert a == b == fastidx.write_idx(None, array, compress=True)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(3, dtype=bool),
        np.zeros(3, dtype=np.int64),
        np.zeros(3, dtype=np.uint16),
        np.zeros(3, dtype=np.uint32),
        np.zeros(3, dtype=np.uint64),
        np.zeros(3, dtype=np.float16),
        np.zeros(3, dtype=np.complex64),
        np.zeros(3, dtype=np.complex128),
        np.array([1, "a"], dtype=object),
        np.zeros(3, dtype="S1"),
        np.zeros(3, dtype="M8[s]"),
    ],
    ids=lambda a: str(a.dtype),
)
def test_write_refuses_unsupported_dtypes(array, tmp_path):
    with pytest.raises(ValueError, match="IDX cannot store dtype"):
        fastidx.write_idx(None, array)
    with pytest.raises(ValueError):
        fastidx.write_idx(tmp_path / "x.idx", array)
    assert not list(tmp_path.iterdir()), "a refused write left a file behind"


@pytest.mark.parametrize(
    "array, match",
    [
        (np.uint8(3), "dimensions"),
        (np.zeros((1,) * 33, dtype=np.uint8), "dimensions"),
        (np.empty((0, 2**32), dtype=np.uint8), "2\\*\\*32"),
    ],
    ids=["0-d", "33-d", "dim-2**32"],
)
def test_write_refuses_unrepresentable_shapes(array, match):
    with pytest.raises(ValueError, match=match):
        fastidx.write_idx(None, array)


# ---------------------------------------------------------------------------------------------
# gzip specifics

PAYLOAD = sample(np.int16, (3, 10, 11), seed=3)
RAW = ref.write(PAYLOAD)  # 8 + 4*3 bytes of header, then 660 bytes


@pytest.mark.parametrize(
    "cuts",
    [(1,), (2,), (4,), (6,), (15,), (16,), (17,), (300,), (2, 9), (3, 16, 400), (16, 17, 18)],
    ids=str,
)
def test_multi_member_gzip(cuts):
    data = ref.gzip_members(RAW, cuts)
    assert data.count(b"\x1f\x8b\x08") >= len(cuts) + 1
    assert gzip.decompress(data) == RAW
    check_result(fastidx.read_idx(data), PAYLOAD)


@SETTINGS
@given(cuts=st.lists(st.integers(0, len(RAW)), max_size=4), empty_members=st.integers(0, 2))
def test_multi_member_gzip_hypothesis(cuts, empty_members):
    data = ref.gzip_members(RAW, cuts) + ref.gzip_member(b"") * empty_members
    check_result(fastidx.read_idx(data), PAYLOAD)


def test_stored_deflate_blocks_and_empty_members():
    data = ref.gzip_member(b"") + ref.gzip_stored(RAW[:5]) + ref.gzip_stored(RAW[5:])
    check_result(fastidx.read_idx(data), PAYLOAD)


@pytest.mark.parametrize(
    "fields",
    [
        {"name": b"train-images-idx3-ubyte"},
        {"comment": b"a comment"},
        {"extra": b"\x01\x02\x03\x04"},
        {"header_crc": True},
        {"extra": b"", "name": b"n", "comment": b"c", "header_crc": True},
    ],
    ids=["FNAME", "FCOMMENT", "FEXTRA", "FHCRC", "all"],
)
def test_gzip_optional_header_fields(fields):
    data = ref.gzip_member_with_fields(RAW, **fields)
    assert gzip.decompress(data) == RAW
    check_result(fastidx.read_idx(data), PAYLOAD)


@pytest.mark.parametrize("padding", [1, 2, 7, 512, 70_000])
def test_zero_padding_after_gzip_is_accepted(padding):
    data = ref.gzip_member(RAW) + bytes(padding)
    assert gzip.decompress(data) == RAW  # Python's gzip accepts it: so must we
    check_result(fastidx.read_idx(data), PAYLOAD)


def test_zero_padding_between_members_is_accepted():
    data = ref.gzip_member(RAW[:100]) + bytes(3) + ref.gzip_member(RAW[100:]) + bytes(2)
    assert gzip.decompress(data) == RAW
    check_result(fastidx.read_idx(data), PAYLOAD)


@pytest.mark.parametrize(
    "junk", [b"junk", b"\x00\x00junk", b"\x01", b"\xff" * 100, b"\x00\x1f"], ids=repr
)
def test_junk_after_gzip_is_refused(junk):
    data = ref.gzip_member(RAW) + junk
    with pytest.raises(ref.Refused):
        ref.read(data)  # Python's gzip refuses it too
    with pytest.raises(fastidx.GzipError, match="<bytes>"):
        fastidx.read_idx(data)


@pytest.mark.parametrize("member", [0, 1, 2])
def test_bad_crc_is_refused(member):
    parts = [ref.gzip_member(p) for p in (RAW[:10], RAW[10:300], RAW[300:])]
    parts[member] = ref.corrupt_crc(parts[member])
    data = b"".join(parts)
    with pytest.raises(fastidx.GzipError, match="CRC"):
        fastidx.read_idx(data)


@pytest.mark.parametrize("member", [0, 2])
def test_bad_isize_is_refused(member):
    parts = [ref.gzip_member(p) for p in (RAW[:10], RAW[10:300], RAW[300:])]
    parts[member] = ref.corrupt_isize(parts[member])
    with pytest.raises(fastidx.GzipError, match="ISIZE|length"):
        fastidx.read_idx(b"".join(parts))


@pytest.mark.parametrize("level", [0, 1, 9])
def test_truncated_gzip_at_every_cut_is_refused(level):
    data = ref.gzip_member(RAW, level=level)
    for cut in range(len(data)):
        with pytest.raises(fastidx.IDXError) as info:
            fastidx.read_idx(data[:cut])
        if cut >= 10:  # past the gzip header: a gzip or truncation problem, never a header fluke
            assert isinstance(info.value, (fastidx.GzipError, fastidx.IDXTruncatedError)), (
                cut, info.value)


def test_truncated_multi_member_gzip_is_refused():
    data = ref.gzip_members(RAW, (16, 200))
    for cut in range(1, len(data)):
        with pytest.raises(fastidx.IDXError):
            fastidx.read_idx(data[:cut])


def test_truncated_large_gzip_from_file_is_refused(tmp_path):
    # Compressed input bigger than one read chunk, cut at chunk boundaries and in between.
    array = np.random.default_rng(1).integers(0, 256, (2, 1100, 1000), dtype=np.uint8)
    data = ref.gzip_member(ref.write(array), level=1)
    for cut in (1 << 20, (1 << 20) + 1, (1 << 21) - 1, len(data) - 9, len(data) - 1):
        path = tmp_path / "cut.gz"
        path.write_bytes(data[:cut])
        with pytest.raises((fastidx.GzipError, fastidx.IDXTruncatedError), match=str(path)):
            fastidx.read_idx(path)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("name", ["data.idx", "data.idx.gz", "data.gz", "data"])
def test_gzip_detected_by_magic_not_name(tmp_path, name, gz):
    path = tmp_path / name
    path.write_bytes(encode(PAYLOAD, gz))
    check_result(fastidx.read_idx(path), PAYLOAD)
    check_result(fastidx.read_idx(os.fspath(path)), PAYLOAD)
    with open(path, "rb") as f:
        check_result(fastidx.read_idx(f), PAYLOAD)


# ---------------------------------------------------------------------------------------------
# More kinds of sources


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_other_buffers_and_file_types(gz, tmp_path):
    import array
    import mmap
    import tempfile

    data = encode(PAYLOAD, gz)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    check_result(fastidx.read_idx(np.frombuffer(data, np.uint8)), PAYLOAD)
    check_result(fastidx.read_idx(array.array("B", data)), PAYLOAD)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        check_result(fastidx.read_idx(m), PAYLOAD)
    with open(path, "rb", buffering=0) as f:  # raw FileIO: short reads are legal
        check_result(fastidx.read_idx(f), PAYLOAD)
    with tempfile.SpooledTemporaryFile() as f:
        f.write(data)
        f.seek(0)
        check_result(fastidx.read_idx(f), PAYLOAD)
    with gzip.GzipFile(fileobj=io.BytesIO(ref.gzip_member(data))) as f:  # a decompressing reader
        check_result(fastidx.read_idx(f), PAYLOAD)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_pipe_positioned_mid_stream(gz):
    prefix = b"a 20-byte preamble.."
    with ref.Pipe(prefix + encode(PAYLOAD, gz)) as f:
        assert f.read(len(prefix)) == prefix
        check_result(fastidx.read_idx(f), PAYLOAD)
