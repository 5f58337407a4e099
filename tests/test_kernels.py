"""The pure-Python fallback (fastidx._pure) against the compiled loops (fastidx._native), and the
choice between them at import (fastidx._kernels, FASTIDX_PURE).

Both are driven through the same call sequences and must agree on every returned count, every byte
written, every state flag and every error (kind, message, offset).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from fastidx import _pure

_native = pytest.importorskip("fastidx._native", reason="the compiled extension is not built")

SETTINGS = settings(max_examples=60, deadline=None)
IMPLS = {"native": _native, "pure": _pure}


def public_names(module) -> set[str]:
    return {name for name in vars(module) if not name.startswith("_")} - {
        "annotations", "np", "re", "zlib",
    }


def test_pure_offers_every_name_of_native():
    assert public_names(_native) <= public_names(_pure)
    inflater_api = {name for name in dir(_native.Inflater()) if not name.startswith("_")}
    assert inflater_api <= {name for name in dir(_pure.Inflater()) if not name.startswith("_")}


# ---------------------------------------------------------------------------------------------
# Inflater


def drive(impl, stream: bytes, feeds, dst_sizes):
    """Feed ``stream`` in pieces of the given sizes, decoding into buffers of the given sizes;
    return everything observable: per-call counts and states, the decoded bytes, or the error."""
    inflater = impl.Inflater()
    trace, decoded = [], bytearray()
    pos, feed_i, dst_i = 0, 0, 0
    try:
        for _ in range(1100 * len(stream) + 1000):  # deflate expands at most 1032:1
            if inflater.needs_input:
                if pos >= len(stream):
                    break
                n = feeds[feed_i % len(feeds)]
                feed_i += 1
                inflater.feed(memoryview(stream)[pos : pos + n])
                pos += n
            dst = np.zeros(dst_sizes[dst_i % len(dst_sizes)], np.uint8)
            dst_i += 1
            got = inflater.inflate_into(dst)
            assert not dst[got:].any(), "wrote past the count it returned"
            decoded += dst[:got].tobytes()
            state = (got, inflater.needs_input, inflater.at_member_end, inflater.members,
                     inflater.total_out)
            # How far zlib reads ahead when the output fills up is its own business; once the
            # input is used up, both have consumed all of it.
            trace.append(state + ((inflater.total_in,) if inflater.needs_input else ()))
        else:
            raise AssertionError("no progress")
        # The end of the input: drain what zlib still holds.
        while True:
            dst = np.zeros(dst_sizes[dst_i % len(dst_sizes)], np.uint8)
            dst_i += 1
            got = inflater.inflate_into(dst)
            decoded += dst[:got].tobytes()
            trace.append((got, inflater.at_member_end, inflater.members, inflater.total_in))
            if got < dst.shape[0]:
                break
    except impl.InflateError as exc:
        return trace, bytes(decoded), (exc.kind, str(exc), exc.offset)
    return trace, bytes(decoded), None


def both(stream, feeds=(1 << 20,), dst_sizes=(1 << 16,)):
    native = drive(_native, stream, feeds, dst_sizes)
    pure = drive(_pure, stream, feeds, dst_sizes)
    assert pure == native
    return native


def payload(seed: int, n: int) -> bytes:
    """Compressible bytes: runs and repeats, like images, with some noise."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 6, n, dtype=np.uint8) * rng.integers(0, 2, n, dtype=np.uint8) * 40
    return values.tobytes()


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 300_000),
    cuts=st.lists(st.integers(0, 300_000), max_size=3),
    padding=st.lists(st.integers(0, 20), min_size=4, max_size=4),
    feeds=st.lists(st.integers(1, 200_000), min_size=1, max_size=4),
    dst_sizes=st.lists(st.integers(0, 400_000), min_size=1, max_size=4).filter(any),
    level=st.sampled_from([0, 1, 6, 9]),
)
def test_inflater_matches_native(seed, n, cuts, padding, feeds, dst_sizes, level):
    data = payload(seed, n)
    # Byte-sized pieces of a large stream cost seconds and test nothing new.
    feeds = [max(f, n // 1000) for f in feeds]
    dst_sizes = [max(d, n // 1000) for d in dst_sizes]
    bounds = [0, *sorted(c % (n + 1) for c in cuts), n]
    members = [gzip.compress(data[a:b], compresslevel=level, mtime=0) for a, b in zip(bounds, bounds[1:])]
    stream = b"".join(m + b"\0" * pad for m, pad in zip(members, padding))
    trace, decoded, error = both(stream, feeds, dst_sizes)
    assert error is None
    assert decoded == data
    assert trace[-1][2] == len(members)


def test_inflater_on_real_mnist_in_file_sized_chunks(mnist_dir):
    stream = (mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes()
    trace, decoded, error = both(stream, feeds=(1 << 20,), dst_sizes=(16, 1 << 22, 1 << 18))
    assert error is None
    assert decoded == gzip.decompress(stream)


def member(data=b"fastidx " * 1000) -> bytes:
    return ref.gzip_member(data)


@pytest.mark.parametrize(
    "stream, kind",
    [
        (ref.corrupt_crc(member()), "zlib"),
        (ref.corrupt_isize(member()), "zlib"),
        (member() + b"junk", "junk"),
        (member() + b"\0\0\0\x07", "junk"),
        (member() + b"\x1f\x8c" + member()[2:], "zlib"),  # bad magic in the second member
        (b"\x1f\x8b\x09" + member()[3:], "zlib"),  # unknown compression method
        (member()[:10] + b"\xff" * 40 + member()[50:], "zlib"),  # invalid deflate data
    ],
    ids=["crc", "isize", "junk", "junk-after-padding", "second-magic", "method", "deflate"],
)
@pytest.mark.parametrize("feed", [1, 7, 1 << 20])
def test_errors_match_native(stream, kind, feed):
    _, _, error = both(stream, feeds=(feed,), dst_sizes=(1 << 16, 3))
    assert error is not None and error[0] == kind


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), flips=st.lists(st.integers(0, 10_000), min_size=1, max_size=3))
def test_damaged_streams_fail_alike(seed, flips):
    stream = bytearray(ref.gzip_member(payload(seed, 20_000)))
    for at in flips:
        stream[at % len(stream)] ^= 1 << (at % 8)
    native = drive(_native, bytes(stream), (1 << 20,), (1 << 16,))
    pure = drive(_pure, bytes(stream), (1 << 20,), (1 << 16,))
    assert pure == native


def test_truncated_stream_stops_inside_a_member():
    stream = member()[:-5]
    for impl in IMPLS.values():
        inflater = impl.Inflater()
        inflater.feed(stream)
        out = np.empty(1 << 16, np.uint8)
        got = inflater.inflate_into(out)
        assert out[:got].tobytes() == (b"fastidx " * 1000)[:got]
        assert inflater.needs_input and not inflater.at_member_end


@pytest.mark.parametrize("name", IMPLS)
def test_feed_before_input_is_used_up_is_refused(name):
    inflater = IMPLS[name].Inflater()
    inflater.feed(member())
    with pytest.raises(RuntimeError, match="before the previous input was consumed"):
        inflater.feed(b"more")


@pytest.mark.parametrize("name", IMPLS)
def test_inflate_into_needs_writable_bytes(name):
    inflater = IMPLS[name].Inflater()
    inflater.feed(member())
    assert inflater.inflate_into(np.empty(0, np.uint8)) == 0
    readonly = np.zeros(8, np.uint8)
    readonly.flags.writeable = False
    with pytest.raises(ValueError):
        inflater.inflate_into(readonly)
    with pytest.raises(ValueError):
        inflater.inflate_into(np.zeros(8, np.int16))
    with pytest.raises(TypeError):
        inflater.inflate_into(None)


def test_zlib_version_is_the_runtime_one():
    assert _pure.ZLIB_VERSION == zlib.ZLIB_RUNTIME_VERSION


# ---------------------------------------------------------------------------------------------
# lut_map, byteswap, prefault


@pytest.mark.parametrize("word", [np.uint8, np.uint16, np.uint32, np.uint64])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 100_003])
def test_lut_map_matches_native(word, n):
    rng = np.random.default_rng(n)
    src = rng.integers(0, 256, n, dtype=np.uint8)
    lut = rng.integers(0, np.iinfo(word).max, 256, dtype=word, endpoint=True)
    results = {}
    for name, impl in IMPLS.items():
        dst = np.full(n + 3, 7, word)
        impl.lut_map(src, lut, dst)
        results[name] = dst
    assert np.array_equal(results["pure"], results["native"])
    assert np.array_equal(results["pure"][:n], lut[src])
    assert (results["pure"][n:] == 7).all()


@pytest.mark.parametrize("name", IMPLS)
def test_lut_map_refuses_bad_sizes(name):
    impl = IMPLS[name]
    src = np.zeros(10, np.uint8)
    with pytest.raises(ValueError, match="lut must have 256 entries, not 255"):
        impl.lut_map(src, np.zeros(255, np.uint32), np.zeros(10, np.uint32))
    with pytest.raises(ValueError, match="destination too small: need 10 values, got 9"):
        impl.lut_map(src, np.zeros(256, np.uint32), np.zeros(9, np.uint32))
    with pytest.raises(ValueError):
        impl.lut_map(src, np.zeros(256, np.uint32), np.zeros(10, np.uint16))


@pytest.mark.parametrize("word", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_byteswap_matches_native(word):
    data = np.random.default_rng(1).integers(0, 256, 1003 * 8, dtype=np.uint8).view(word)
    results = {}
    for name, impl in IMPLS.items():
        copy = data.copy()
        impl.byteswap(copy)
        results[name] = copy
    assert np.array_equal(results["pure"], results["native"])
    assert np.array_equal(results["pure"], data.byteswap())


def test_pure_prefault_declines_and_touches_nothing():
    buf = np.arange(1 << 16, dtype=np.uint64).view(np.uint8)
    before = buf.copy()
    assert _pure.prefault(buf) is False
    assert np.array_equal(buf, before)


# ---------------------------------------------------------------------------------------------
# The choice at import


CHOICE_PROBE = """
    import sys, warnings
    if sys.argv[1] == "hide-native":
        sys.modules["fastidx._native"] = None  # what a failed build leaves: the import fails
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        import fastidx
        import fastidx._kernels as kernels
        import fastidx._idx
        for _ in range(3):
            x = fastidx.read_idx(fastidx.write_idx(None, __import__("numpy").arange(9, dtype="u1"), compress=True))
    print(kernels.IMPLEMENTATION, kernels.Inflater.__module__, x.sum())
    for w in caught:
        print(type(w.message).__name__, "|", w.message)
"""


def run_choice(mode: str, **env):
    environ = {k: v for k, v in os.environ.items() if k != "FASTIDX_PURE"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHOICE_PROBE), mode],
        capture_output=True, text=True, timeout=120, env={**environ, **env},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()


def test_native_is_chosen_when_built():
    assert run_choice("plain") == ["native fastidx._native 36"]


@pytest.mark.parametrize("value", ["1", "yes"])
def test_fastidx_pure_forces_the_fallback_silently(value):
    assert run_choice("plain", FASTIDX_PURE=value) == ["pure fastidx._pure 36"]


def test_fastidx_pure_0_keeps_native():
    assert run_choice("plain", FASTIDX_PURE="0") == ["native fastidx._native 36"]


def test_missing_extension_falls_back_with_one_warning():
    lines = run_choice("hide-native")
    assert lines[0] == "pure fastidx._pure 36"
    assert len(lines) == 2, lines
    category, message = lines[1].split(" | ")
    assert category == "PurePythonWarning"
    assert "fastidx._native is not available" in message
    assert "pure-Python fallback fastidx._pure" in message
    assert "FASTIDX_PURE=1" in message
