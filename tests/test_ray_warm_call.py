"""The documented call of a search, ``load_data(normalize=True, mmap=True)``, on a warm node: a
fresh trial process answers it from the warm record without importing hashing or JSON (the
conversion's cache key is computed without them, and is the same key as before)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from test_cache_warm import HEAVY, expected, home, probe, warm_up  # noqa: F401 (fixture)

from fastidx._conversion import Conversion


def _key_with_hashlib_and_json(conv: Conversion) -> str:
    # The key as fastidx has always computed it (the cache's existing entries are named by it).
    name = None if conv.dtype is None else conv.dtype.str
    blob = json.dumps([name, conv.scaled, repr(conv.mean), repr(conv.std)])
    return "x" + hashlib.sha256(blob.encode()).hexdigest()[:16]


@pytest.mark.parametrize("options", [
    dict(normalize=True), dict(dtype="float64"), dict(dtype=np.float16, normalize=True),
    dict(mean=0.1307, std=0.3081), dict(normalize=True, mean=np.float32(0.5), std=2),
    dict(dtype="float64", mean=-1e-300, std=1e300), dict(dtype="uint16"),
])
def test_conversion_keys_are_unchanged(options):
    conv = Conversion(**options)
    assert conv.key == _key_with_hashlib_and_json(conv)


def test_the_default_normalized_key_is_the_one_caches_already_hold():
    assert Conversion(normalize=True).key == "x2a0427a2b1e42405"


def test_a_warm_documented_call_imports_no_hashing_or_json(home, monkeypatch):  # noqa: F811
    probe(", normalize=True")  # builds the entries and raw files
    warm_up(monkeypatch, normalize=True)
    warm = probe(", normalize=True")
    assert not [m for m in warm["new"] if m in HEAVY or m.startswith(HEAVY)], warm["new"]
    assert warm["sums"] == expected({"normalize": True})
