"""Malformed inputs: the committed corpus (tests/corpus/) and generated cases.

Every malformed input must raise ``fastidx.IDXError`` (the specific subclass where one fits), never
another exception, with a message that names the source and states the fact that failed. Lying
headers must be refused before anything large is allocated.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
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


@pytest.mark.parametrize("kind", ["str", "pathlib", "file", "bytes", "nonseekable"])
@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_corpus_file(case, kind):
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
    check_error(excinfo, expected_type, name, case.facts)


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
        start = time.perf_counter()
        try:
            with pytest.raises(fastidx.IDXError) as excinfo:
                fastidx.read_idx(source, **kwargs)
            elapsed = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    check_error(excinfo, fastidx.IDXTruncatedError, name, ("header declares",))
    assert peak < 4 << 20, f"peak traced memory {peak} bytes for a {len(data)}-byte input"
    assert elapsed < 1.0


def _run_isolated(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, cwd=str(TESTS), env=env,
    )


def test_lying_headers_under_an_address_space_limit():
    """With the address space capped at ~1 GiB above what the interpreter already uses, reading
    lying headers must fail with IDXError, not MemoryError: nothing big was even reserved."""
    result = _run_isolated(
        """
        import resource, sys
        sys.path.insert(0, ".")
        import numpy as np
        import fastidx
        import reference as ref

        def vm_size():
            for line in open("/proc/self/status"):
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

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
    result = _run_isolated(
        """
        import resource, sys
        sys.path.insert(0, ".")
        import numpy as np
        import fastidx
        import reference as ref

        def vm_size():
            for line in open("/proc/self/status"):
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

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
    import struct, sys
    sys.path.insert(0, ".")
    import numpy as np
    import fastidx
    import reference as ref

    def peak_rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

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
    result = _run_isolated(PEAK_RSS_PROBE.format(forge=False))
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout) < 16 << 20


def test_forged_isize_commits_no_memory_for_the_declared_size():
    result = _run_isolated(PEAK_RSS_PROBE.format(forge=True))
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout) < 16 << 20, f"peak RSS grew by {int(result.stdout)} bytes"
