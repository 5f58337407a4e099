"""The benchmark harness still runs: ``bench/compare.py --smoke`` end to end, in a subprocess.

It checks the shape of the JSON and that the arrays-identical check passed; it asserts nothing about
speed. ``--smoke`` uses the 1,000-image MNIST sample shipped in fastidx and tiny scaling sizes, so it
needs neither the shared data nor TensorFlow (whose rows then say ``skipped: not installed``).
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMPARE = REPO / "bench" / "compare.py"
CASES = {"cold_uint8", "cold_float32", "cached_uint8", "cached_float32", "mmap_uint8",
         "subset_10pct", "iter_batches"}
TOOLS = {"fastidx", "tf.keras", "numpy+gzip", "floor", "torchvision"}
ROW_KEYS = {"case", "tool", "median_ms", "spread_ms", "peak_rss_bytes"}
MACHINE_KEYS = {"cpu_model", "cores", "ram_bytes", "python", "numpy", "tensorflow", "fastidx",
                "zlib"}


def test_compare_smoke(tmp_path):
    out = tmp_path / "results.json"
    cmd = [sys.executable, str(COMPARE), "--smoke", "--json", str(out),
           "--markdown", str(tmp_path / "results.md"), "--synthetic-dir", str(tmp_path / "synth")]
    plotting = importlib.util.find_spec("matplotlib") is not None
    if plotting:
        cmd += ["--plot", str(tmp_path / "results.png")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    doc = json.loads(out.read_text())
    assert doc["verification"]["passed"] is True, doc["verification"]["failures"]
    assert doc["verification"]["checked"], "no contender was compared with the reference"
    assert MACHINE_KEYS <= set(doc["machine"])
    rows = doc["results"]
    for row in rows:
        assert ROW_KEYS <= set(row), row
        if row["status"] == "ok":
            assert row["median_ms"] >= 0 and row["spread_ms"] >= 0 and row["peak_rss_bytes"] > 0
        else:
            assert row["median_ms"] is None and row["reason"]
    pairs = {(r["case"], r["tool"]) for r in rows}
    assert {(c, t) for c in CASES for t in TOOLS} <= pairs
    assert any(r["case"].startswith("scale_") and r["status"] == "ok" for r in rows)
    # fastidx and the Keras code path by hand are always measured.
    assert all(r["status"] == "ok" for r in rows if r["tool"] in ("numpy+gzip", "floor"))
    if importlib.util.find_spec("tensorflow") is None:
        keras_rows = [r for r in rows if r["tool"] == "tf.keras"]
        assert all(r["status"] == "skipped" and "not installed" in r["reason"] for r in keras_rows)
    assert "| case |" in (tmp_path / "results.md").read_text()
    if plotting:
        assert (tmp_path / "results.png").stat().st_size > 0
