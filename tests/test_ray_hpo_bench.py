"""bench/hpo.py runs: N trial processes at once, each way's row measured (on the small sample)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fastidx.datasets import SAMPLE_DIR

HPO = Path(__file__).resolve().parents[1] / "bench" / "hpo.py"


def test_hpo_bench_measures_every_way_it_is_asked(tmp_path):
    out = tmp_path / "hpo.json"
    subprocess.run([sys.executable, str(HPO), "--data-dir", str(SAMPLE_DIR), "--n", "1,2",
                    "--repeats", "1", "--ways", "bare,keras,fastidx,fastidx-mmap",
                    "--json", str(out)], check=True, timeout=600, capture_output=True)
    rows = json.loads(out.read_text())
    assert [(r["way"], r["n"]) for r in rows] == [
        (w, n) for n in (1, 2) for w in ("bare", "keras", "fastidx", "fastidx-mmap")]
    by = {(r["way"], r["n"]): r for r in rows}
    for r in rows:
        assert r["makespan_s"] > 0 and r["pss_mib"] > 0 and r["ready_max_s"] >= r["ready_s"]
    # Two processes hold about twice one process's PSS; the arrays of each trial are its own
    # except with mmap, which cannot hold more than the separate copies do.
    assert by[("keras", 2)]["pss_mib"] > by[("keras", 1)]["pss_mib"]
    assert by[("fastidx-mmap", 2)]["anon_mib_per_trial"] <= by[("fastidx", 2)]["anon_mib_per_trial"]
