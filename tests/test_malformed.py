"""Malformed inputs: the committed corpus (tests/corpus/) and generated cases.

Every malformed input must raise ``fastidx.IDXError`` (the specific subclass where one fits), never
another exception, with a message that names the source and states the fact that failed. Lying
headers must be refused before anything large is allocated.
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import fastidx
import reference as ref

CORPUS = Path(__file__).resolve().parent / "corpus"
TESTS = Path(__file__).resolve().parent


def _load_corpus_script():
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_corpus = _load_corpus_script()
CASES = make_corpus.cases()
# FASTIDX_INFLATER: ISA-L (the default, zlib judging what it refuses) and zlib alone must give the
# same verdicts.
INFLATERS = ("isal", "zlib")


def _param(case):
    marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {case.bug}")] if case.bug else []
    return pytest.param(case, id=case.name, marks=marks)


def check_error(excinfo, expected_type, source_name: str, facts=()) -> None:
    """The exception is the expected IDXError subclass and its message names source and facts."""
    error = excinfo.value
    assert isinstance(error, fastidx.IDXError)
    assert isinstance(error, ValueError)  # callers catching ValueError keep working
    assert isinstance(error, expected_type), f"{type(error).__name__}: {error}"
    message = str(error)
    assert source_name in message, f"{source_name!r} not named in {message!r}"
    assert error.source == source_name
    for fact in facts:
        assert fact in message, f"{fact!r} not in {message!r}"


# ---------------------------------------------------------------------------------------------
# The committed corpus


def test_corpus_matches_its_generator():
    on_disk = {p.name for p in CORPUS.iterdir() if p.is_file()} - {"make_corpus.py", "README.md", ".gitattributes"}
    assert on_disk == {case.name for case in CASES}
    for case in CASES:
        assert (CORPUS / case.name).read_bytes() == case.data, f"{case.name} is stale"
        assert len(case.data) <= 16_384
    assert (CORPUS / "README.md").read_text() == make_corpus.readme(CASES)


@pytest.mark.parametrize("inflater", INFLATERS)
@pytest.mark.parametrize("kind", ["str", "pathlib", "file", "bytes", "nonseekable"])
@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_corpus_file(case, kind, inflater, monkeypatch):
    monkeypatch.setenv("FASTIDX_INFLATER", inflater)
    path = CORPUS / case.name
    expected_type = getattr(fastidx, case.error)
    if kind == "str":
        source, name = str(path), str(path)
    elif kind == "pathlib":
        source, name = path, str(path)
    elif kind == "bytes":
        source, name = path.read_bytes(), "<bytes>"
    else:
        source, name = None, str(path) if kind == "file" else "<stream>"
    if source is None:
        if kind == "file":
            with open(path, "rb") as f, pytest.raises(fastidx.IDXError) as excinfo:
                fastidx.read_idx(f)
        else:
            with pytest.raises(fastidx.IDXError) as excinfo:
                fastidx.read_idx(ref.NonSeekable(path.read_bytes()))
    else:
        with pytest.raises(fastidx.IDXError) as excinfo:
            fastidx.read_idx(source)
    streamed = kind == "nonseekable" and case.stream_facts is not None
    check_error(excinfo, expected_type, name, case.stream_facts if streamed else case.facts)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_corpus_file_with_conversion_options(case):
    # The same verdict whatever the caller asks for (conversion, layout-free, out=-free).
    with pytest.raises(fastidx.IDXError) as excinfo:
        fastidx.read_idx(CORPUS / case.name, dtype=np.float32)
    check_error(excinfo, getattr(fastidx, case.error), str(CORPUS / case.name), case.facts)


@pytest.mark.parametrize(
    "case", [_param(c) for c in CASES if c.error == "IDXHeaderError" and not c.bug]
)
def test_corpus_header_errors_from_read_header(case):
    with pytest.raises(fastidx.IDXHeaderError):
        fastidx.read_header(CORPUS / case.name)


def test_corpus_agrees_with_reference():
    # The oracle refuses every corpus file too (so the corpus is malformed, not fastidx strict).
    for case in CASES:
        with pytest.raises(ref.Refused):
            ref.read(case.data)


# ---------------------------------------------------------------------------------------------
# Generated cases

KNOWN_CODES = {0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E}


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_every_unknown_type_code(gz):
    for code in sorted(set(range(256)) - KNOWN_CODES):
        data = bytes([0, 0, code, 1]) + b"\x00\x00\x00\x02ab"
        data = ref.gzip_member(data) if gz else data
        with pytest.raises(fastidx.IDXError) as excinfo:
            fastidx.read_idx(data)
        check_error(excinfo, fastidx.IDXHeaderError, "<bytes>", (f"0x{code:02X}",))


@pytest.mark.parametrize("ndim", [0, 33, 34, 64, 100, 200, 255])
def test_bad_ndim(ndim):
    data = bytes([0, 0, 8, ndim]) + b"\x00\x00\x00\x01" * ndim + b"x"
    with pytest.raises(fastidx.IDXError) as excinfo:
        fastidx.read_idx(data)
    check_error(excinfo, fastidx.IDXHeaderError, "<bytes>", (f"{ndim} dimensions",))


@pytest.mark.parametrize("start", [b"\x00\x01", b"\x01\x00", b"\xff\xff", b"\x1f\x00", b"\x8b\x1f",
                                   b"\x00\x08"])
def test_bad_magic(start):
    data = start + b"\x08\x01\x00\x00\x00\x01x"
    with pytest.raises(fastidx.IDXError) as excinfo:
        fastidx.read_idx(data)
    check_error(excinfo, fastidx.IDXHeaderError, "<bytes>", ("not an IDX file", start.hex()))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_short_header(n, gz):
    data = b"\x00\x00\x08"[:n]
    with pytest.raises(fastidx.IDXError) as excinfo:
        fastidx.read_idx(ref.gzip_member(data) if gz else data)
    check_error(excinfo, fastidx.IDXHeaderError, "<bytes>", (f"after {n} bytes",))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_empty_input(gz, tmp_path):
    data = ref.gzip_member(b"") if gz else b""
    path = tmp_path / "empty.idx"
    path.write_bytes(data)
    for source, name in [(data, "<bytes>"), (path, str(path)), (bytearray(data), "<bytes>")]:
        with pytest.raises(fastidx.IDXError) as excinfo:
            fastidx.read_idx(source)
        check_error(excinfo, fastidx.IDXHeaderError, name)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_dims_cut_short(ndim, gz):
    full = ref.idx_header(0x0B, (2,) * ndim)
    for cut in range(4, len(full)):
        data = ref.gzip_member(full[:cut]) if gz else full[:cut]
        with pytest.raises(fastidx.IDXError) as excinfo:
            fastidx.read_idx(data)
        check_error(excinfo, fastidx.IDXHeaderError, "<bytes>",
                    (f"{ndim} dimensions", f"after {cut - 4} of them"))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=str)
def test_truncated_payload_states_declared_and_available_bytes(dtype, gz, tmp_path):
    shape = (4, 5, 3)
    full = ref.write(np.ones(shape, dtype))
    need = 60 * dtype.itemsize
    for have in sorted({0, 1, need // 2, need - dtype.itemsize, need - 1}):
        data = full[: len(full) - need + have]
        data = ref.gzip_member(data) if gz else data
        path = tmp_path / f"cut-{have}.idx"
        path.write_bytes(data)
        facts = (f"header declares 4x5x3 {dtype.name} = {need} bytes", f"ends after {have}")
        for source, name in [(data, "<bytes>"), (path, str(path))]:
            with pytest.raises(fastidx.IDXError) as excinfo:
                fastidx.read_idx(source)
            check_error(excinfo, fastidx.IDXTruncatedError, name, facts)


@pytest.mark.parametrize("normalize", [False, True])
def test_truncated_uint8_payload_beyond_one_staging_chunk(normalize):
    # The lookup-table path decodes in chunks: truncation after several chunks must still count
    # every byte that was available.
    shape = (10, 1000, 100)  # 1,000,000 bytes
    full = ref.write(np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8))
    have = 700_001
    data = ref.gzip_member(full[: 16 + have])
    with pytest.raises(fastidx.IDXError) as excinfo:
        fastidx.read_idx(data, normalize=normalize)
    check_error(excinfo, fastidx.IDXTruncatedError, "<bytes>",
                ("10x1000x100 uint8 = 1000000 bytes", f"ends after {have}"))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("extra", [1, 2, 1000])
@pytest.mark.parametrize("dtype", [np.dtype(np.uint8), np.dtype(np.float64)], ids=str)
def test_trailing_bytes(dtype, extra, gz):
    data = ref.write(np.ones((2, 3), dtype)) + b"\x00" * extra
    facts = () if gz else (f"{extra} more bytes",)
    with pytest.raises(fastidx.IDXError) as excinfo:
        fastidx.read_idx(ref.gzip_member(data) if gz else data)
    check_error(excinfo, fastidx.IDXTrailingDataError, "<bytes>", facts)


def test_trailing_idx_in_second_gzip_member():
    one = ref.write(np.arange(4, dtype=np.uint8))
    with pytest.raises(fastidx.IDXTrailingDataError):
        fastidx.read_idx(ref.gzip_member(one) + ref.gzip_member(one))


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes(seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes()
    for candidate in (data, b"\x1f\x8b" + data, b"\x00\x00" + data, b"\x00\x00\x08\x02" + data):
        with pytest.raises(fastidx.IDXError):
            fastidx.read_idx(candidate)


def test_gzip_damage_names_the_file(tmp_path):
    good = ref.gzip_member(ref.write(np.arange(100, dtype=np.int16)))
    for label, data, expected, fact in [
        ("crc", ref.corrupt_crc(good), fastidx.GzipError, "CRC"),
        ("isize", ref.corrupt_isize(good), fastidx.GzipError, "ISIZE"),
        ("junk", good + b"\x01junk", fastidx.GzipError, "junk"),
        ("cut", good[:-1], fastidx.GzipError, "truncated"),
    ]:
        path = tmp_path / f"{label}.idx.gz"
        path.write_bytes(data)
        with pytest.raises(fastidx.IDXError) as excinfo:
            fastidx.read_idx(path)
        check_error(excinfo, expected, str(path), (fact,))


def test_directory_is_an_idx_error(tmp_path):
    with pytest.raises(fastidx.IDXError) as excinfo:
        fastidx.read_idx(tmp_path)
    check_error(excinfo, fastidx.IDXError, str(tmp_path))


def test_named_stream_is_named():
    class Named(ref.NonSeekable):
        name = "my-stream.idx"

    with pytest.raises(fastidx.IDXError) as excinfo:
        fastidx.read_idx(Named(b"\x00\x00\x08"))
    check_error(excinfo, fastidx.IDXHeaderError, "my-stream.idx")


def test_errors_pickle_round_trip():
    import pickle

    with pytest.raises(fastidx.IDXError) as excinfo:
        fastidx.read_idx(b"\x00\x00\x08\x01\x00\x00\x00\x09ab")
    again = pickle.loads(pickle.dumps(excinfo.value))
    assert type(again) is type(excinfo.value)
    assert str(again) == str(excinfo.value) and again.source == "<bytes>"


# ---------------------------------------------------------------------------------------------
# Lying headers: refused quickly, before any large allocation

M = 0xFFFFFFFF
# name -> (input of at most ~120 bytes, stored dtype); all 3-D so that every layout applies
LIES = {
    "raw-16EiB": ((ref.idx_header(0x08, (M, M, 1)) + bytes(100))[:100], np.uint8),
    "raw-4GiB": (ref.idx_header(0x08, (1, 65536, 65536)) + bytes(84), np.uint8),
    "raw-f64": (ref.idx_header(0x0E, (M, M, M)) + bytes(84), np.float64),
    "gz-16EiB": (ref.gzip_member(ref.idx_header(0x08, (M, M, 1)) + bytes(84)), np.uint8),
    "gz-4GiB": (ref.gzip_member(ref.idx_header(0x08, (1, 65536, 65536)) + bytes(84)), np.uint8),
    "gz-stored-i32": (ref.gzip_stored(ref.idx_header(0x0C, (2, 32768, 32768)) + bytes(64)),
                      np.int32),
}
OPTIONS = {
    "plain": {},
    "normalize": {"normalize": True},
    "flat": {"layout": "flat"},
    "float64": {"dtype": np.float64},
}


@pytest.mark.parametrize("kind", ["bytes", "str", "file", "nonseekable", "pipe"])
@pytest.mark.parametrize(
    "label, option",
    [(label, option) for label, (_, stored) in LIES.items() for option in OPTIONS
     if option != "normalize" or stored == np.uint8],  # normalize applies to uint8 data only
)
def test_lying_header_is_refused_without_allocating(label, option, kind, tmp_path):
    data, _ = LIES[label]
    assert len(data) <= 120
    kwargs = OPTIONS[option]
    with ref.open_source(kind, data, tmp_path) as (source, name):
        tracemalloc.start()
        try:
            with pytest.raises(fastidx.IDXError) as excinfo:
                fastidx.read_idx(source, **kwargs)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    check_error(excinfo, fastidx.IDXTruncatedError, name, ("header declares",))
    assert peak < 4 << 20, f"peak traced memory {peak} bytes for a {len(data)}-byte input"


def _run_isolated(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, cwd=str(TESTS), env=env,
    )


# The start of every child that measures its own memory: imports, its address space so far
# (vm_size) and its peak resident set (peak_rss), from /proc/self/status.
CHILD_PRELUDE = """
    import resource, struct, sys
    sys.path.insert(0, ".")
    import numpy as np
    import fastidx
    import reference as ref

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    def vm_size():
        return status("VmSize")

    def peak_rss():
        return status("VmHWM")
"""


def _run_child(code: str) -> subprocess.CompletedProcess:
    """:func:`_run_isolated` of ``code`` after :data:`CHILD_PRELUDE`."""
    return _run_isolated(textwrap.dedent(CHILD_PRELUDE) + textwrap.dedent(code))


def test_lying_headers_under_an_address_space_limit():
    """With the address space capped at ~1 GiB above what the interpreter already uses, reading
    lying headers must fail with IDXError, not MemoryError: nothing big was even reserved."""
    result = _run_child(
        """
        limit = vm_size() + (1 << 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:  # the limit is real: 2 GiB cannot be reserved any more
            np.empty(2 << 30, np.uint8)
            sys.exit("RLIMIT_AS did not take effect")
        except MemoryError:
            pass
        M = 0xFFFFFFFF
        lies = [
            ref.idx_header(0x08, (65536, 65536)) + bytes(88),               # 4 GiB, raw
            ref.idx_header(0x08, (M, M)) + bytes(88),                       # 16 EiB, raw
            ref.gzip_member(ref.idx_header(0x08, (65536, 65536)) + bytes(88)),
            ref.gzip_member(ref.idx_header(0x0E, (M, M, 3)) + bytes(88)),
            ref.gzip_stored(ref.idx_header(0x0B, (4, 1 << 30)) + bytes(88)),  # 8 GiB, int16
        ]
        for data in lies:
            for kwargs in ({}, {"dtype": np.float64}):
                try:
                    fastidx.read_idx(data, **kwargs)
                except fastidx.IDXTruncatedError:
                    pass
        # and ordinary reads still work under the same limit
        x = np.arange(100_000, dtype=np.uint8).reshape(100, 1000)
        assert np.array_equal(fastidx.read_idx(fastidx.write_idx(None, x, compress=True)), x)
        print("ok")
        """
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_truncated_gzip_within_deflate_bound_under_address_space_limit():
    result = _run_child(
        """
        payload = np.random.default_rng(0).integers(0, 256, 3_000_000, dtype=np.uint8)
        data = ref.gzip_stored(ref.idx_header(0x08, (3000, 1000, 1000)) + payload.tobytes())
        limit = vm_size() + (1 << 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            fastidx.read_idx(data)
        except fastidx.IDXTruncatedError as exc:
            print("ok", exc)
        except MemoryError as exc:
            print("MemoryError", exc)
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok"), result.stdout


PEAK_RSS_PROBE = """
    claim, have = 100_000_000, 100_000
    payload = np.random.default_rng(0).integers(0, 256, have, dtype=np.uint8).tobytes()
    data = bytearray(ref.gzip_stored(ref.idx_header(0x08, (claim,)) + payload))
    if {forge}:  # make the trailer's ISIZE agree with the lying header
        data[-4:] = struct.pack("<I", (8 + claim) % 2**32)
    data = bytes(data)
    before = peak_rss()
    try:
        fastidx.read_idx(data)
        sys.exit("a truncated file was accepted")
    except fastidx.IDXError as exc:
        pass
    print(peak_rss() - before)
"""


def test_truncated_gzip_commits_no_memory_for_the_declared_size():
    # 100 KB of gzip declaring 100 MB (within the 1032:1 deflate bound, so the output array is
    # allocated): it must stay virtual; the process's peak RSS grows by about the input only.
    result = _run_child(PEAK_RSS_PROBE.format(forge=False))
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout) < 16 << 20


def test_forged_isize_commits_no_memory_for_the_declared_size():
    result = _run_child(PEAK_RSS_PROBE.format(forge=True))
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout) < 16 << 20, f"peak RSS grew by {int(result.stdout)} bytes"


# ---------------------------------------------------------------------------------------------
# Fail fast: a stream's header before its body, a bounded look at trailing data, no MemoryError
# for a forged gzip trailer.


class CountingStream(io.RawIOBase):
    """A non-seekable stream of ``head`` then ``tail_size`` bytes made on demand (``fill``),
    counting what it hands out."""

    def __init__(self, head: bytes, tail_size: int, fill: int = 0):
        self._head = head
        self._size = len(head) + tail_size
        self._fill = fill
        self.served = 0

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self._size - self.served, 1 << 20)
        start = self.served
        in_head = max(0, min(n, len(self._head) - start))
        b[:in_head] = self._head[start : start + in_head]
        b[in_head:n] = bytes([self._fill]) * (n - in_head)
        self.served += n
        return n


class CountingFile(io.BytesIO):
    """A seekable in-memory file that counts the bytes read from it."""

    served = 0

    def read(self, n=-1):
        data = super().read(n)
        self.served += len(data)
        return data

    def readinto(self, b):
        n = super().readinto(b)
        self.served += n
        return n


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_stream_header_is_checked_before_the_body_is_read(gz):
    # 64 MiB follow a header that is not IDX: the error comes after the first small read.
    head = b"PK\x03\x04" + bytes(100)
    stream = CountingStream(ref.gzip_member(head) if gz else head, 64 << 20, fill=0x41)
    tracemalloc.start()
    try:
        with pytest.raises(fastidx.IDXError) as excinfo:
            fastidx.read_idx(stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    check_error(excinfo, fastidx.IDXHeaderError, "<stream>", ("not an IDX file",))
    assert stream.served <= 1 << 20, f"{stream.served} bytes read before the header was judged"
    assert peak < 4 << 20


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("normalize", [False, True])
def test_stream_with_a_lying_size_costs_only_what_arrives(gz, normalize):
    # A header declaring 4 GiB on a stream that holds 1 MB: refused when the stream ends, having
    # allocated about what arrived (blocks that grow with the data), never the declared size.
    body = np.random.default_rng(1).integers(0, 256, 1_000_000, dtype=np.uint8).tobytes()
    data = ref.idx_header(0x08, (1, 65536, 65536)) + body
    stream = ref.NonSeekable(ref.gzip_member(data) if gz else data, chunk=1 << 16)
    tracemalloc.start()
    try:
        with pytest.raises(fastidx.IDXError) as excinfo:
            fastidx.read_idx(stream, normalize=normalize)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    check_error(excinfo, fastidx.IDXTruncatedError, "<stream>",
                ("1x65536x65536 uint8 = 4294967296 bytes", "ends after 1000000"))
    assert peak < 6 << 20, f"peak traced memory {peak} bytes for 1 MB of data"


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("normalize", [False, True])
def test_stream_reads_match_file_reads(gz, normalize):
    # Streams are decoded in growing blocks: several of them here, every value in its place.
    x = np.random.default_rng(2).integers(0, 256, (3, 500, 700), dtype=np.uint8)
    data = fastidx.write_idx(None, x, compress=gz)
    got = fastidx.read_idx(ref.NonSeekable(data, chunk=1 << 16), normalize=normalize)
    assert ref.same(got, fastidx.read_idx(data, normalize=normalize))
    y = np.random.default_rng(3).normal(size=(1000, 131)).astype(np.float64)
    got = fastidx.read_idx(ref.NonSeekable(fastidx.write_idx(None, y, compress=gz)), dtype=np.float32)
    assert ref.same(got, y.astype(np.float32))


def test_stream_trailing_data_is_reported_after_a_bounded_look():
    data = ref.write(np.arange(6, dtype=np.uint8).reshape(2, 3))
    stream = CountingStream(data, 64 << 20)
    with pytest.raises(fastidx.IDXError) as excinfo:
        fastidx.read_idx(stream)
    check_error(excinfo, fastidx.IDXTrailingDataError, "<stream>",
                ("2x3 uint8 = 6 bytes", "at least 65536 more bytes"))
    assert stream.served <= 1 << 20


def _zero_members(megabytes: int) -> bytes:
    """gzip members that decode to ``megabytes`` MiB of zeros, about 1 KB of file per MiB."""
    member = ref.gzip_member(bytes(16 << 20), level=9)
    return member * (megabytes // 16)


def test_trailing_data_is_reported_without_inflating_it():
    # 4 MB of gzip after a valid IDX member that would inflate to 4 GiB: reported after reading
    # about one input chunk, whatever decodes after it.
    good = ref.gzip_member(ref.write(np.arange(6, dtype=np.uint8).reshape(2, 3)))
    f = CountingFile(good + _zero_members(4096))
    assert len(f.getvalue()) > 4_000_000
    with pytest.raises(fastidx.IDXError) as excinfo:
        fastidx.read_idx(f)
    check_error(excinfo, fastidx.IDXTrailingDataError, "<stream>",
                ("2x3 uint8 = 6 bytes", "at least 65536 more bytes come after the payload"))
    assert f.served <= 2 << 20, f"{f.served} bytes read to report trailing data"


def test_short_trailing_data_is_counted_exactly():
    good = ref.write(np.arange(6, dtype=np.uint8).reshape(2, 3))
    for tail in (b"\x00", bytes(65535)):
        with pytest.raises(fastidx.IDXError) as excinfo:
            fastidx.read_idx(ref.gzip_member(good + tail))
        check_error(excinfo, fastidx.IDXTrailingDataError, "<bytes>",
                    (f"but {len(tail)} more bytes come after the payload",))


def test_forged_gzip_trailer_size_is_an_idx_error_not_memory_error():
    """A 4.3 MB gzip whose header declares 4 GiB and whose trailer ISIZE is forged to agree:
    with the address space capped so that 4 GiB cannot be reserved, read_idx must still raise an
    IDXError (it decodes the stream once when the allocation is refused, and meets the forgery)."""
    result = _run_child(
        """
        body = np.random.default_rng(0).integers(0, 256, 4_300_000, dtype=np.uint8).tobytes()
        data = bytearray(ref.gzip_stored(ref.idx_header(0x08, (1, 65536, 65536)) + body))
        data[-4:] = struct.pack("<I", (16 + 65536 * 65536) % 2**32)
        data = bytes(data)
        limit = vm_size() + (1 << 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        for kwargs in ({}, {"normalize": True}):
            try:
                fastidx.read_idx(data, **kwargs)
                sys.exit("accepted")
            except fastidx.GzipError as exc:
                assert "ISIZE does not match" in str(exc), exc
            except MemoryError as exc:
                sys.exit(f"MemoryError: {exc}")
        print("ok")
        """
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", (result.stdout, result.stderr[-3000:])
