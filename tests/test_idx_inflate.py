"""The two gzip inflaters: ISA-L (``isal``) when installed, zlib otherwise or when ISA-L refuses.

Whatever runs, read_idx must accept the same streams, return the same bytes and raise the same
errors with the same messages as the zlib decoder alone (``FASTIDX_INFLATER=zlib``).
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastidx
import reference as ref
from fastidx import _idx, _inflate
from fastidx._idx import output as idx_output
from fastidx._idx import reader as idx_reader
from fastidx._idx import source as idx_source

CORPUS = Path(__file__).resolve().parent / "corpus"
HAVE_ISAL = bool(_inflate._igzip())
needs_isal = pytest.mark.skipif(not HAVE_ISAL, reason="isal is not installed")
# FASTIDX_INFLATER for each inflater ("isal": the default, ISA-L with zlib judging what it refuses).
INFLATERS = ("zlib", "isal")


def verdict(source_bytes: bytes, monkeypatch, inflater: str, *, kind: str = "bytes", **kwargs):
    """``("ok", array bytes)`` or ``(error type name, message)`` for one inflater."""
    monkeypatch.setenv(_inflate.ENV_INFLATER, inflater)
    source = source_bytes if kind == "bytes" else io.BytesIO(source_bytes)
    try:
        x = fastidx.read_idx(source, **kwargs)
    except fastidx.IDXError as exc:
        return type(exc).__name__, str(exc)
    return "ok", x.dtype.str, x.shape, x.tobytes()


def same_verdict(data: bytes, monkeypatch, **kwargs):
    verdicts = [verdict(data, monkeypatch, name, **kwargs) for name in INFLATERS]
    assert verdicts[0] == verdicts[1]
    return verdicts[0]


def test_choice_follows_the_environment(monkeypatch):
    monkeypatch.setenv(_inflate.ENV_INFLATER, "zlib")
    assert _inflate.choice() == "zlib"
    monkeypatch.delenv(_inflate.ENV_INFLATER)
    assert _inflate.choice() == ("isal" if HAVE_ISAL else "zlib")


@needs_isal
def test_isal_decodes_seekable_inputs_and_zlib_streams(monkeypatch, tmp_path):
    monkeypatch.delenv(_inflate.ENV_INFLATER, raising=False)
    data = fastidx.write_idx(None, np.arange(100, dtype=np.uint8), compress=True)
    path = tmp_path / "x.idx.gz"
    path.write_bytes(data)
    for source, expected in [(data, "isal"), (path, "isal"), (io.BytesIO(data), "isal"),
                             (ref.NonSeekable(data), "zlib")]:
        with _idx.IDXReader(source) as reader:
            assert reader._stream.inflater == expected


@pytest.mark.parametrize("case", sorted(p.name for p in CORPUS.iterdir()
                                        if p.suffix not in (".py", ".md")))
def test_corpus_same_verdict(case, monkeypatch):
    data = (CORPUS / case).read_bytes()
    for kind in ("bytes", "file"):
        assert same_verdict(data, monkeypatch, kind=kind)[0] != "ok"


@pytest.mark.parametrize("normalize", [False, True])
def test_real_mnist_bit_identical(normalize, monkeypatch, mnist_dir):
    data = (mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes()
    assert same_verdict(data, monkeypatch, normalize=normalize)[0] == "ok"


def _idx_bytes(n=50_000, seed=0):
    x = np.random.default_rng(seed).integers(0, 8, n, dtype=np.uint8)  # compressible
    return ref.write(x)


def test_multi_member_padding_and_optional_fields(monkeypatch):
    raw = _idx_bytes()
    cases = {
        "members": ref.gzip_members(raw, [1, 7, 100, 30_000]),
        "empty members": ref.gzip_member(b"") + ref.gzip_members(raw, [5]) + ref.gzip_member(b""),
        "zero padding": ref.gzip_members(raw, [3]) + bytes(1000),
        "padding between": ref.gzip_member(raw[:10]) + bytes(7) + ref.gzip_member(raw[10:]),
        "fields": ref.gzip_member_with_fields(raw, extra=b"ab" * 40, name=b"x.idx",
                                              comment=b"hello", header_crc=True),
        "stored": ref.gzip_stored(raw),
    }
    for label, data in cases.items():
        assert same_verdict(data, monkeypatch)[0] == "ok", label
        assert same_verdict(data, monkeypatch, kind="file", normalize=True)[0] == "ok", label


def test_damage_same_errors(monkeypatch):
    raw = _idx_bytes()
    good = ref.gzip_member(raw)
    bad_hcrc = bytearray(ref.gzip_member_with_fields(raw, name=b"n", header_crc=True))
    bad_hcrc[12] ^= 0xFF  # the header CRC (after 10 bytes and "n\0")
    reserved = bytearray(good)
    reserved[3] |= 0x20  # a reserved flag bit: zlib refuses it, ISA-L would not
    second_reserved = ref.gzip_member(raw[:9]) + bytes(reserved)
    cases = {
        "crc": ref.corrupt_crc(good),
        "isize": ref.corrupt_isize(good),
        "header crc": bytes(bad_hcrc),
        "reserved flags": bytes(reserved),
        "reserved flags, second member": second_reserved,
        "method": good[:2] + b"\x07" + good[3:],
        "bad second magic": ref.gzip_member(raw[:9]) + b"\x1f\x8c" + good[2:],
        "junk": good + b"\x01junk",
        "junk after padding": good + bytes(5) + b"junk",
        "lone 1f": good + b"\x1f",
        "deflate damage": good[:40] + bytes([good[40] ^ 0x55]) + good[41:],
        "trailing member": good + ref.gzip_member(b"abc"),
    }
    for label, data in cases.items():
        result = same_verdict(data, monkeypatch)
        assert result[0] in ("GzipError", "IDXTrailingDataError", "IDXTruncatedError"), (label, result)
        assert same_verdict(data, monkeypatch, kind="file", normalize=True)[0] == result[0]


def test_every_truncation_same_error(monkeypatch):
    data = ref.gzip_members(_idx_bytes(3000), [1000])
    for cut in range(1, len(data)):
        result = same_verdict(data[:cut], monkeypatch)
        assert result[0] != "ok", cut


def test_member_headers_split_across_input_chunks(monkeypatch):
    # With 5-byte input chunks every member header and trailer straddles chunk boundaries.
    raw = _idx_bytes(20_000)
    data = ref.gzip_members(raw, range(100, 20_000, 997)) + bytes(3)
    monkeypatch.setattr(idx_source, "READ_CHUNK", 5)
    assert same_verdict(data, monkeypatch, kind="file")[0] == "ok"
    assert same_verdict(data + b"\x1f", monkeypatch, kind="file")[0] == "GzipError"
    assert same_verdict(data + b"x", monkeypatch, kind="file")[0] == "GzipError"


@needs_isal
def test_what_isal_itself_checks():
    # Measured, not assumed: ISA-L verifies the CRC-32, the ISIZE and a header CRC, and stops at
    # the end of a member (what follows is left in unused_data for fastidx to judge)...
    from isal import igzip_lib

    payload = bytes(range(256)) * 40
    good = ref.gzip_member(payload)

    def decode(data):
        d = igzip_lib.IgzipDecompressor(igzip_lib.DECOMP_GZIP)
        return d.decompress(data), d

    for damaged in (ref.corrupt_crc(good), ref.corrupt_isize(good)):
        with pytest.raises(igzip_lib.IsalError):
            decode(damaged)
    hcrc = bytearray(ref.gzip_member_with_fields(payload, header_crc=True))
    hcrc[10] ^= 1
    with pytest.raises(igzip_lib.IsalError):
        decode(bytes(hcrc))
    out, d = decode(good + b"junk")
    assert out == payload and d.eof and d.unused_data == b"junk"
    out, d = decode(good[:-3])
    assert out == payload and not d.eof  # a cut trailer is not an error by itself
    # ...but it accepts reserved header flag bits, which zlib refuses: fastidx hands those to zlib.
    reserved = bytearray(good)
    reserved[3] |= 0x20
    assert decode(bytes(reserved))[0] == payload
    with pytest.raises(zlib.error):
        zlib.decompress(bytes(reserved), 31)



def test_cpu_budget_reads_affinity_and_omp(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = idx_output.cpu_budget()
    assert cpus >= 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert idx_output.cpu_budget() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert idx_output.cpu_budget() == cpus


@pytest.mark.parametrize("options", [{}, {"normalize": True}, {"dtype": np.float64},
                                     {"normalize": True, "mean": 0.5, "std": 0.25}])
def test_many_chunks_bit_identical(options, monkeypatch):
    # 1 MB over several members: many decoded pieces, mapped straight from ISA-L's buffers.
    x = np.random.default_rng(4).integers(0, 256, (40, 100, 250), dtype=np.uint8)
    raw = ref.write(x)
    data = ref.gzip_members(raw, [10, 300_000, 700_000]) + bytes(5)
    assert same_verdict(data, monkeypatch, **options)[0] == "ok"
    monkeypatch.delenv(_inflate.ENV_INFLATER)
    got = fastidx.read_idx(data, **options)
    expected = fastidx.read_idx(ref.NonSeekable(data), **options)  # zlib, one thread
    assert ref.same(got, expected)


def test_errors_after_many_chunks(monkeypatch):
    x = np.random.default_rng(5).integers(0, 256, (30, 100, 100), dtype=np.uint8)
    members = ref.gzip_members(ref.write(x), [100_000, 200_000])
    last = len(members) - len(ref.gzip_member(ref.write(x)[200_000:]))
    cases = {
        "crc in the last member": ref.corrupt_crc(members),
        "truncated": members[:-20],
        "reserved flag in the last member": (members[: last + 3] + bytes([members[last + 3] | 0x40])
                                             + members[last + 4 :]),
        "junk": members + b"junk",
    }
    for label, data in cases.items():
        for options in ({}, {"normalize": True}):
            result = same_verdict(data, monkeypatch, **options)
            assert result[0] in ("GzipError", "IDXTruncatedError"), (label, result)



@pytest.mark.parametrize("cpus, expected", [(1, False), (2, True)])
def test_prefault_thread_only_within_the_cpu_budget(cpus, expected, monkeypatch):
    started = []

    class Recording(idx_output.Prefaulter):
        def __init__(self, array, enabled=True):
            started.append(enabled)
            super().__init__(array, enabled)

    monkeypatch.setattr(idx_reader, "Prefaulter", Recording)
    monkeypatch.setattr(idx_reader, "cpu_budget", lambda: cpus)
    x = np.zeros((100, 1000, 100), np.uint8)  # 10 MB: above the prefault threshold
    assert ref.same(fastidx.read_idx(fastidx.write_idx(None, x, compress=True)), x)
    assert started == [expected]


def test_zlib_when_isal_is_absent(monkeypatch):
    monkeypatch.delenv(_inflate.ENV_INFLATER, raising=False)
    monkeypatch.setattr(_inflate, "_isal", False)  # what a failed `import isal` leaves
    assert _inflate.choice() == "zlib"
    x = np.arange(3000, dtype=np.uint8).reshape(3, 1000)
    data = fastidx.write_idx(None, x, compress=True)
    with _idx.IDXReader(data) as reader:
        assert reader._stream.inflater == "zlib"
    assert ref.same(fastidx.read_idx(data), x)


def test_random_damage_same_verdict(monkeypatch):
    # Seeded mutations (bit flips, cuts, insertions, header bytes) of three kinds of stream: the
    # two inflaters never disagree. (4,000 of them were run when ISA-L came in; 300 stay here.)
    rng = np.random.default_rng(7)
    raw = ref.write(np.random.default_rng(0).integers(0, 16, (20, 30, 40), dtype=np.uint8))
    bases = [ref.gzip_member(raw), ref.gzip_members(raw, [100, 5000]),
             ref.gzip_member_with_fields(raw, name=b"a", header_crc=True)]
    for _ in range(300):
        data = bytearray(bases[rng.integers(3)])
        kind = rng.integers(4)
        if kind == 0:
            for _ in range(rng.integers(1, 4)):
                data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            data = data[: rng.integers(1, len(data))]
        elif kind == 2:
            at = int(rng.integers(len(data)))
            data[at:at] = rng.integers(0, 256, int(rng.integers(1, 5)), dtype=np.uint8).tobytes()
        else:
            data[rng.integers(12)] = rng.integers(256)
        same_verdict(bytes(data), monkeypatch)


# ---------------------------------------------------------------------------------------------
# One member, damaged or not, through every inflater


def _plain_member_cases(raw: bytes) -> dict:
    good = ref.gzip_member(raw)
    hcrc = ref.gzip_member_with_fields(raw, name=b"n", header_crc=True)
    reserved = bytearray(good)
    reserved[3] |= 0x20
    return {
        "crc": ref.corrupt_crc(good),
        "isize": ref.corrupt_isize(good),
        "header crc": hcrc,
        "reserved flags": bytes(reserved),
        "method": good[:2] + b"\x07" + good[3:],
        "second member": good + ref.gzip_member(b"abc"),
        "empty second member": good + ref.gzip_member(b""),
        "members": ref.gzip_members(raw, [100]),
        "zero padding": good + bytes(3),
        "junk": good + b"junk",
        "lone 1f": good + b"\x1f",
        "truncated trailer": good[:-1],
        "truncated deflate": good[:-9],
        "deflate damage": good[:40] + bytes([good[40] ^ 0x55]) + good[41:],
        "short payload": ref.gzip_member(raw[:-1]),
        "long payload": ref.gzip_member(raw + b"\x00"),
        "a byte between deflate and trailer": good[:-8] + b"\x00" + good[-8:],
    }


@pytest.mark.parametrize("kind", ["bytes", "file"])
def test_single_member_damage_same_verdict(kind, monkeypatch):
    # Whatever inflater runs, the error (or the array) is zlib's.
    raw = ref.write(np.random.default_rng(2).integers(0, 8, (10, 20, 30), dtype=np.uint8))
    for label, data in _plain_member_cases(raw).items():
        result = same_verdict(data, monkeypatch, kind=kind)
        expected_ok = label in ("members", "empty second member", "zero padding", "header crc")
        assert (result[0] == "ok") == expected_ok, (label, result)


@pytest.mark.parametrize("kind", ["bytes", "file"])
def test_every_truncation_of_one_member_same_error(kind, monkeypatch):
    data = ref.gzip_member(_idx_bytes(3000))
    for cut in range(1, len(data)):
        assert same_verdict(data[:cut], monkeypatch, kind=kind)[0] != "ok", cut


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 40), min_size=1, max_size=3),
    dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
    values=st.integers(1, 256),
    layout=st.sampled_from(["one", "members", "padding", "stored", "fields", "hcrc"]),
    kind=st.sampled_from(["bytes", "file"]),
    seed=st.integers(0, 2**16),
)
def test_inflaters_bit_identical(shape, dtype, values, layout, kind, seed):
    x = np.random.default_rng(seed).integers(0, values, shape).astype(dtype)
    raw = ref.write(x)
    data = {
        "one": lambda: ref.gzip_member(raw, level=1 + seed % 9),
        "members": lambda: ref.gzip_members(raw, [seed % (len(raw) + 1)]),
        "padding": lambda: ref.gzip_member(raw) + bytes(1 + seed % 5),
        "stored": lambda: ref.gzip_stored(raw),
        "fields": lambda: ref.gzip_member_with_fields(raw, extra=b"e", name=b"n", comment=b"c"),
        "hcrc": lambda: ref.gzip_member_with_fields(raw, header_crc=True),
    }[layout]()
    with pytest.MonkeyPatch.context() as monkeypatch:
        result = same_verdict(data, monkeypatch, kind=kind)
    assert result == ("ok", x.dtype.newbyteorder("=").str, x.shape, x.tobytes())


@settings(max_examples=150, deadline=None)
@given(
    edits=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=3),
    cut=st.none() | st.integers(0, 2000),
    tail=st.binary(max_size=10),
    level=st.integers(0, 9),
)
def test_damaged_single_members_same_verdict(edits, cut, tail, level):
    # One plain member, damaged anywhere: the same verdict from every inflater.
    raw = ref.write(np.random.default_rng(level).integers(0, 12, (6, 17, 19), dtype=np.uint8))
    data = bytearray(ref.gzip_member(raw, level=level))
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        del data[cut:]
    with pytest.MonkeyPatch.context() as monkeypatch:
        same_verdict(bytes(data) + tail, monkeypatch)


def test_damage_isal_decodes_but_zlib_refuses_gets_zlibs_verdict(monkeypatch):
    # Found by the test above: ISA-L decodes a damaged dynamic block (an incomplete set of
    # distance codes) that zlib refuses, and hands out bytes that are no IDX header. The header
    # error would have been ISA-L's; zlib's GzipError is the verdict, as for every damage.
    raw = ref.write(np.random.default_rng(4).integers(0, 12, (6, 17, 19), dtype=np.uint8))
    data = ref.gzip_member(raw, level=4)[:31] + b"\x11\x00\x00\t\t"
    with pytest.raises(zlib.error, match="invalid distances set"):
        zlib.decompress(data, 31)
    for kind in ("bytes", "file"):
        assert same_verdict(data, monkeypatch, kind=kind)[0] == "GzipError"
        assert same_verdict(data, monkeypatch, kind=kind, normalize=True)[0] == "GzipError"
    for inflater in INFLATERS:
        monkeypatch.setenv(_inflate.ENV_INFLATER, inflater)
        with pytest.raises(fastidx.GzipError, match="invalid distances set"):
            fastidx.read_header(data)
