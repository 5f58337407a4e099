"""Mutation fuzzing of read_idx: damaged inputs may only decode correctly or raise IDXError.

The main loop runs in a subprocess so that an interpreter crash (a segfault in the native code)
shows up as a failed test instead of taking pytest down with it.
"""

from __future__ import annotations

import collections
import os
import random
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastidx
import reference as ref

TESTS = Path(__file__).resolve().parent


def seeds() -> list[bytes]:
    """Small valid inputs to mutate: uint8 and int16, raw, gzip and two-member gzip."""
    u8 = np.random.default_rng(0).integers(0, 256, (2, 5, 7), dtype=np.uint8)
    i16 = (np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5) - 30) * 1093
    out = []
    for array in (u8, i16):
        raw = ref.write(array)
        out += [raw, ref.gzip_member(raw), ref.gzip_members(raw, (10,)), ref.gzip_stored(raw)]
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to three random edits of ``data``."""
    d = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(9)
        if op == 0 and d:  # bit flip
            i = rng.randrange(len(d))
            d[i] ^= 1 << rng.randrange(8)
        elif op == 1 and d:  # byte replacement
            d[rng.randrange(len(d))] = rng.randrange(256)
        elif op == 2:  # truncation
            del d[rng.randrange(len(d) + 1):]
        elif op == 3:  # insertion of random bytes
            i = rng.randrange(len(d) + 1)
            d[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4 and d:  # duplicated chunk
            i = rng.randrange(len(d))
            j = rng.randint(i, min(len(d), i + 64))
            k = rng.randrange(len(d) + 1)
            d[k:k] = d[i:j]
        elif op == 5 and d:  # deleted range
            i = rng.randrange(len(d))
            del d[i : i + rng.randint(1, 8)]
        elif op == 6 and len(d) > 4:  # header edit: a dimension byte (raw layout)
            i = rng.randrange(4, min(len(d), 16))
            d[i] = rng.choice([0, 1, 2, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op == 7 and len(d) > 3:  # header edit: type code or ndim
            d[rng.choice([2, 3])] = rng.choice([0, 1, 3, 8, 9, 0x0B, 0x0C, 0x0D, 0x0E, 33, 255])
        elif op == 8:  # appended bytes: zeros (gzip padding), junk or another gzip member
            d += rng.choice([bytes(rng.randint(1, 9)), b"junk", ref.gzip_member(b"\x00\x01")])
    return bytes(d)


OPTIONS = ({}, {"normalize": True}, {"dtype": np.float64}, {"layout": "flat"})


def expected_for(ref_result: np.ndarray, kwargs) -> np.ndarray:
    if kwargs.get("normalize"):
        return ref_result.astype(np.float32) / np.float32(255)
    if "dtype" in kwargs:
        return ref_result.astype(kwargs["dtype"])
    if kwargs.get("layout") == "flat":
        return ref_result.reshape(len(ref_result), -1)
    return ref_result


def check_one(data: bytes, kwargs: dict, source_kind: str = "bytes", outcomes=None) -> str | None:
    """None when read_idx behaves; otherwise a description of what went wrong.

    ``outcomes`` (a Counter), when given, counts what happened: "ok" or the exception's class name.
    """
    outcomes = collections.Counter() if outcomes is None else outcomes
    try:
        ref_result = ref.read(data)
    except ref.Refused:
        ref_result = None
    try:
        if source_kind == "bytes":
            result = fastidx.read_idx(data, **kwargs)
        else:
            result = fastidx.read_idx(ref.NonSeekable(data, chunk=97), **kwargs)
    except fastidx.IDXError as exc:
        outcomes[type(exc).__name__] += 1
        if not str(exc).startswith("<"):
            return f"IDXError without the source name: {exc}"
        return None
    except ValueError as exc:
        outcomes["option ValueError"] += 1
        # Option errors that depend on the (mutated) header are the caller's, not IDXErrors.
        message = str(exc)
        if kwargs.get("normalize") and "apply to uint8 data" in message:
            return None
        if kwargs.get("layout") and "applies to (N, H, W) image data" in message:
            return None
        return f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - anything else is the bug we are looking for
        return f"{type(exc).__name__}: {exc}"
    outcomes["ok"] += 1
    if ref_result is None:
        return f"accepted input that the reference refuses: shape {result.shape} {result.dtype}"
    if kwargs.get("normalize") and ref_result.dtype != np.uint8:
        return "normalize accepted on non-uint8 data"
    if kwargs.get("layout") and ref_result.ndim != 3:
        return "layout accepted on non-3-D data"
    expected = expected_for(ref_result, kwargs)
    if not ref.same(result, expected):
        return f"wrong result: {result.dtype}{result.shape} vs {expected.dtype}{expected.shape}"
    return None


def run_fuzz(seed: int, cases: int, outcomes=None) -> list[str]:
    """The fuzz loop; returns one line per misbehaving case."""
    rng = random.Random(seed)
    bases = seeds()
    failures = []
    for case in range(cases):
        data = mutate(rng, rng.choice(bases))
        kwargs = rng.choice(OPTIONS)
        kind = "stream" if case % 8 == 0 else "bytes"
        problem = check_one(data, kwargs, kind, outcomes)
        if problem:
            failures.append(f"case {case} {kind} {kwargs} data={data.hex()}: {problem}")
    return failures


CASES = 8000

FUZZ_MAIN = """
    import faulthandler, sys, warnings
    faulthandler.enable()
    warnings.simplefilter("error")
    sys.path.insert(0, {tests!r})
    import collections, test_fuzz
    outcomes = collections.Counter()
    failures = test_fuzz.run_fuzz({seed}, {cases}, outcomes)
    for line in failures[:30]:
        print(line)
    print("outcomes:", dict(outcomes))
    print("decoded:", outcomes["ok"])
    print("cases:", {cases}, "failures:", len(failures))
    sys.exit(1 if failures else 0)
"""


def run_python(code: str, timeout: float = 120, **env_vars) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", **env_vars)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


@pytest.mark.parametrize("inflater", ["isal", "zlib"])
def test_fuzz_in_subprocess(inflater):
    # Every inflater (FASTIDX_INFLATER): ISA-L (the default) hands what it refuses to zlib.
    result = run_python(FUZZ_MAIN.format(tests=str(TESTS), seed=20240601, cases=CASES),
                        FASTIDX_INFLATER=inflater)
    assert result.returncode == 0, (
        f"exit status {result.returncode} (negative: killed by that signal)\n"
        f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    )
    assert f"cases: {CASES} failures: 0" in result.stdout
    decoded = int(result.stdout.split("decoded:")[1].split()[0])
    assert decoded > CASES // 50, f"only {decoded} mutated inputs decoded: the fuzzer is too blunt"


def test_fuzz_harness_detects_misbehaviour():
    # The checks above are only worth something if they can fail.
    good = ref.write(np.arange(6, dtype=np.uint8).reshape(1, 2, 3))
    assert check_one(good, {}) is None
    assert check_one(good[:-1], {}) is None  # truncated -> IDXError: fine
    real = fastidx.read_idx
    try:
        fastidx.read_idx = lambda data, **kw: real(data, **kw)[..., ::-1].copy()
        assert "wrong result" in check_one(good, {})
        fastidx.read_idx = lambda data, **kw: (_ for _ in ()).throw(KeyError("boom"))
        assert "KeyError" in check_one(good, {})
    finally:
        fastidx.read_idx = real


def test_subprocess_crash_is_seen():
    # What the subprocess is for: a segfault must surface as a failing exit status.
    result = run_python("import ctypes; ctypes.string_at(0)")
    assert result.returncode != 0


SEEDS = seeds()


@settings(max_examples=100, deadline=None)
@given(
    base=st.sampled_from(range(len(SEEDS))),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.none() | st.integers(0, 400),
    tail=st.binary(max_size=12),
    option=st.sampled_from(range(len(OPTIONS))),
)
def test_fuzz_hypothesis(base, edits, cut, tail, option):
    data = bytearray(SEEDS[base])
    for position, value in edits:
        if data:
            data[position % len(data)] = value
    if cut is not None:
        del data[cut:]
    data = bytes(data) + tail
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_one(data, OPTIONS[option]) is None
