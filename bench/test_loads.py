"""pytest-benchmark suite: ``pytest bench/ --benchmark-only`` (groups: one per case).

In-process timings (many rounds in one process, so warm allocator and imports): a complement to
``compare.py``, whose fresh-process numbers are the ones to quote. Every benchmark checks, outside the
timed region, that the arrays equal the Keras code path's (float32: ``astype("float32") / 255``); there
are no timing assertions.
"""

from __future__ import annotations

import pytest

import _cases
from conftest import DATA_DIR

PAIRS = [
    # gz -> float32: fastidx vs the Keras code path by hand + astype, vs tf.keras itself
    ("cold_float32", "fastidx"),
    ("cold_float32", "numpy+gzip"),
    ("cold_float32", "tf.keras"),
    ("cold_float32", "floor"),
    ("cold_uint8", "fastidx"),
    ("cold_uint8", "numpy+gzip"),
    ("cold_uint8", "tf.keras"),
    ("cold_uint8", "floor"),
    # repeated loads: fastidx's decoded-array cache vs what the others redo every time
    ("cached_uint8", "fastidx"),
    ("cached_uint8", "numpy+gzip"),
    ("cached_uint8", "floor"),
    ("cached_float32", "fastidx"),
    ("cached_float32", "numpy+gzip"),
    ("cached_float32", "floor"),
    ("mmap_uint8", "fastidx"),
    ("subset_10pct", "fastidx"),
    ("subset_10pct", "numpy+gzip"),
    ("iter_batches", "fastidx"),
    ("iter_batches", "numpy+gzip"),
]


def _expected(case, ctx):
    (x_train, y_train), (x_test, y_test) = ctx["reference"]["train"], ctx["reference"]["test"]
    if case in ("cold_uint8", "cached_uint8", "mmap_uint8"):
        return [x_train, y_train, x_test, y_test]
    if case in ("cold_float32", "cached_float32"):
        return [ctx["float_train"], y_train, ctx["float_test"], y_test]
    if case == "subset_10pct":
        n = _cases.subset_count(x_train.shape[0])
        return [x_train[:n], y_train[:n]]
    if case == "iter_batches":
        return [ctx["float_train"], y_train]
    raise ValueError(case)


@pytest.mark.parametrize(("case", "tool"), PAIRS, ids=[f"{c}-{t}" for c, t in PAIRS])
def test_load(benchmark, ctx, case, tool):
    if tool in ("tf.keras", "tf.keras-npz"):
        pytest.importorskip("tensorflow", reason="tf.keras: not installed")
    np = ctx["np"]
    mods = _cases.import_tool(tool)
    batches = []

    def collect(x, y):
        batches.append((x, y))

    def once():
        batches.clear()
        return _cases.run(tool, mods, case, ctx, collect)

    try:
        once()  # fills fastidx's cache for the cached cases; detects missing features
    except _cases.Unsupported as exc:
        pytest.skip(f"{tool} {case}: {exc}")
    benchmark.group = case
    benchmark.extra_info.update(tool=tool, case=case, data_dir=str(DATA_DIR))
    result = benchmark(once)
    if tool == "floor":
        return
    if case == "iter_batches":
        result = [np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])]
    expected = _expected(case, ctx)
    assert len(result) == len(expected)
    for got, want in zip(result, expected):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want)
