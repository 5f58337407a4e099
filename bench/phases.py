"""Where the time of the default call goes: ``mnist.load_data()`` with ``FASTIDX_HOME`` set, first
load (files verified, decoded cache empty) and warm load, each in a fresh process.

    python bench/phases.py [--runs 5] [--data DIR]

The MNIST files are copied into a temporary ``FASTIDX_HOME`` and verified once (a first sight);
then each run clears the decoded cache (``fastidx.cache.clear()``) and times a first load, then a
warm load, in new interpreters that import numpy and ``fastidx.datasets`` before the clock starts.
Inside the call, fastidx's own functions are wrapped with timers (wall and the calling thread's
CPU time): the imports the call makes, the manifest check, the decode, handing rows to the cache
writer, the copies at its end, reading zstd frames. Printed: the median of each phase over the
runs, in ms. The wrappers cost a few microseconds per call; phases overlap (the imports happen
inside the others), so they do not add up to the total.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
from shared_data import MNIST_DIR as DEFAULT_DATA  # noqa: E402  ($FASTIDX_TEST_DATA, else ../shared/data)

CHILD = r'''
import importlib, importlib.util, json, sys, threading, time
import numpy
from fastidx.datasets import mnist

phases = {}

def timed(module, owner, name, label):
    holder = importlib.import_module(module)
    holder = getattr(holder, owner) if owner else holder
    inner = getattr(holder, name)

    def wrapper(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            return inner(*args, **kwargs)
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            entry = phases.setdefault(label, [0.0, 0.0, 0])
            entry[0] += time.perf_counter() - wall
            entry[1] += time.thread_time() - cpu
            entry[2] += 1
    setattr(holder, name, wrapper)

imported = [0.0, 0]  # seconds in outermost imports, nesting depth
real_import = __import__

def counting_import(name, globals=None, locals=None, fromlist=(), level=0):
    resolved = importlib.util.resolve_name(name, globals["__package__"]) if level else name
    if resolved in sys.modules and not fromlist:
        return real_import(name, globals, locals, fromlist, level)
    start = time.perf_counter()
    imported[1] += 1
    try:
        return real_import(name, globals, locals, fromlist, level)
    finally:
        imported[1] -= 1
        if imported[1] == 0:
            imported[0] += time.perf_counter() - start

PHASES = sys.argv[1] == "phases"  # else only the imports the call makes, nothing wrapped
if PHASES:
    timed("fastidx.datasets._loader", "Dataset", "files", "find and vouch for the files (manifest)")
    timed("fastidx._cache.identity", None, "known_digest", "source digest (stat index or manifest)")
    timed("fastidx._idx.reader", "IDXReader", "read_rows", "inflate into the arrays (read_rows)")
    timed("fastidx._cache.source", "Source", "_lock", "build locks")
    timed("fastidx._cache.writer", "EntryWriter", "__init__", "open the cache writer")
    timed("fastidx._cache.writer", "EntryWriter", "add", "hand rows to the writer")
    timed("fastidx._cache.writer", "EntryWriter", "close", "close: copy rows not yet compressed")
    timed("fastidx._cache.frames", "Frames", "read_into", "zstd frames into the arrays (2 threads)")
    timed("fastidx._cache.frames", "Frames", "open", "open the frames entries")
import builtins
builtins.__import__ = counting_import
before = set(sys.modules)
wall, cpu = time.perf_counter(), time.thread_time()
mnist.load_data()
wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
builtins.__import__ = real_import
result = {label: [w * 1e3, c * 1e3, n] for label, (w, c, n) in phases.items()}
if not PHASES:
    result = {"imports made by the call (modules)": [imported[0] * 1e3, None, len(set(sys.modules) - before)]}
result["TOTAL (the call)"] = [wall * 1e3, cpu * 1e3, 1]
print(json.dumps(result))
'''


def run(env: dict, mode: str = "phases") -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    import compileall

    import fastidx

    compileall.compile_dir(str(Path(fastidx.__file__).resolve().parent), quiet=1)
    home = Path(tempfile.mkdtemp(prefix="fastidx-phases-"))
    try:
        (home / "mnist").mkdir()
        for f in args.data.glob("*-ubyte.gz"):
            shutil.copy2(f, home / "mnist" / f.name)
        env = dict(os.environ, FASTIDX_HOME=str(home), FASTIDX_OFFLINE="1")
        run(env)  # first sight: the files are verified and recorded in the manifest
        results = {(call, mode): [] for call in ("first load", "warm load")
                   for mode in ("phases", "imports")}
        clear = "import os; from fastidx import cache; cache.clear(cache_dir=os.environ['FASTIDX_HOME'])"
        for _ in range(args.runs):
            for mode in ("phases", "imports"):
                subprocess.run([sys.executable, "-c", clear], env=env, check=True)
                results[("first load", mode)].append(run(env, mode))
                results[("warm load", mode)].append(run(env, mode))
        for call in ("first load", "warm load"):
            print(f"\n{call} (default call, medians of {args.runs} fresh processes)")
            print(f"  {'phase':48s} {'wall ms':>8s} {'CPU ms':>8s} {'calls':>6s}")
            for mode in ("phases", "imports"):
                runs = results[(call, mode)]
                for label in runs[-1]:
                    wall = statistics.median(r[label][0] for r in runs if label in r)
                    cpus = [r[label][1] for r in runs if label in r and r[label][1] is not None]
                    cpu = f"{statistics.median(cpus):8.1f}" if cpus else f"{'':8s}"
                    name = label if mode == "phases" or label.startswith("imports") else f"{label}, unwrapped"
                    print(f"  {name:48s} {wall:8.1f} {cpu} {runs[-1][label][2]:6d}")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
