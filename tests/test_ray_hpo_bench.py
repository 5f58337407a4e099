"""bench/hpo.py runs: N trials at once, each way's row measured (on the small sample), each row
against its baseline (N interpreters + one copy of the arrays) and issue 13's verdicts printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastidx.datasets import SAMPLE_DIR, mnist

HPO = Path(__file__).resolve().parents[1] / "bench" / "hpo.py"


def sample_nbytes() -> int:
    """One copy of the sample's train + test as float32 / 255 and uint8 labels."""
    data = mnist.load_data(path=SAMPLE_DIR, normalize=True, cache=False)
    return sum(a.nbytes for pair in data for a in pair)


def _run(tmp_path, ns, ways):
    out = tmp_path / "hpo.json"
    run = subprocess.run([sys.executable, str(HPO), "--data-dir", str(SAMPLE_DIR), "--n", ns,
                          "--repeats", "1", "--ways", ways, "--json", str(out)],
                         timeout=600, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text()), run.stdout


def _stale_bytecode() -> list[str]:
    """fastidx modules whose cached bytecode is missing or older than their source."""
    import importlib.util

    import fastidx

    stale = []
    for source in Path(fastidx.__file__).resolve().parent.rglob("*.py"):
        cached = Path(importlib.util.cache_from_source(str(source)))
        st = source.stat()
        header = cached.read_bytes()[:16] if cached.is_file() else b""
        if header[8:12] != (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") or \
                header[12:16] != (st.st_size & 0xFFFFFFFF).to_bytes(4, "little"):
            stale.append(source.name)
    return stale


def test_hpo_bench_measures_every_way_it_is_asked(tmp_path):
    rows, stdout = _run(tmp_path, "1,2", "bare,keras,fastidx,fastidx-mmap")
    # Byte-compiled first, as pip installs it: no trial compiles fastidx in its call.
    assert _stale_bytecode() == []
    one_copy = sample_nbytes()
    assert [(r["way"], r["n"]) for r in rows] == [
        (w, n) for n in (1, 2) for w in ("bare", "keras", "fastidx", "fastidx-mmap")]
    by = {(r["way"], r["n"]): r for r in rows}
    for r in rows:
        assert r["makespan_s"] > 0 and r["pss_mib"] > 0 and r["ready_max_s"] >= r["ready_s"]
    # Two processes hold about twice one process's PSS; the arrays of each trial are its own
    # except with mmap, which cannot hold more than the separate copies do.
    assert by[("keras", 2)]["pss_mib"] > by[("keras", 1)]["pss_mib"]
    assert by[("fastidx-mmap", 2)]["anon_mib_per_trial"] <= by[("fastidx", 2)]["anon_mib_per_trial"]
    # fastidx's arrays arrive writable; Keras's way gives read-only labels (np.frombuffer).
    assert by[("fastidx-mmap", 2)]["writable"] and by[("fastidx", 2)]["writable"]
    assert not by[("keras", 2)]["writable"]
    # Every loading row has its baseline: the same N's bare processes plus one copy of the arrays.
    for r in rows:
        if r["way"] != "bare":
            assert r["nbytes"] == one_copy
            expected = by[("bare", r["n"])]["pss_mib"] + one_copy / 2**20
            assert r["baseline_mib"] == pytest.approx(expected)
            assert r["pss_ratio"] == pytest.approx(r["pss_mib"] / expected)
    # The verdicts of the documented call, one per target and N, printed in the table.
    for n in (1, 2):
        verdicts = [line for line in stdout.splitlines() if line.startswith(f"| {n} | ")
                    and line.rstrip().endswith(("| met |", "| MISSED |"))]
        # PSS, time to writable data, the default call's private memory (Ray's ways not asked).
        assert len(verdicts) == 3, stdout


def test_hpo_bench_compares_the_documented_ray_pattern_with_rays_idiom(tmp_path):
    pytest.importorskip("ray")
    rows, stdout = _run(tmp_path, "1", "fastidx-mmap,ray,ray-fastidx,fastidx-ray")
    one_copy = sample_nbytes()
    by = {r["way"]: r for r in rows}
    assert set(by) == {"fastidx-mmap", "ray", "ray-fastidx", "fastidx-ray"}
    assert by["fastidx-ray"]["writable"] and not by["ray"]["writable"]
    for way in ("ray", "ray-fastidx", "fastidx-ray"):
        assert by[way]["nbytes"] == one_copy and by[way]["before_pss_mib"] > 0
        assert by[way]["baseline_mib"] == pytest.approx(
            by[way]["before_pss_mib"] + one_copy / 2**20)
    assert any("Ray's with_parameters idiom" in line for line in stdout.splitlines())
