"""Time fastidx's repeated-load features on the real MNIST files, each load in a fresh process.

    python bench/profile_loads.py [--runs 7] [--data DIR] [--cases ...] [--breakdown]

Every case runs ``--runs`` times, the cases interleaved (so that machine noise hits them alike), each
run in a new interpreter that imports numpy and fastidx first and then times one call. Printed:
the median and the fastest time, the median CPU time (all threads), and the peak RSS above the interpreter+numpy baseline
(``ru_maxrss`` after the call minus before it) against the bytes the call returns.
The decoded-array cache lives in a temporary directory, warmed before the cached cases run
(``first_float32`` starts from an empty one every run: parse, convert and write the cache).
``--breakdown`` splits one cached float32 load of train into its parts, on one thread (CPU time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
from shared_data import MNIST_DIR as DEFAULT_DATA  # noqa: E402  ($FASTIDX_TEST_DATA, else ../shared/data)

FILES = [("train-images-idx3-ubyte.gz", 16), ("train-labels-idx1-ubyte.gz", 8),
         ("t10k-images-idx3-ubyte.gz", 16), ("t10k-labels-idx1-ubyte.gz", 8)]

CASES = {
    # name: (what it measures, code run in the child after the imports; sets ``result``)
    "keras_uint8": "Keras code path: gzip.open().read() + np.frombuffer",
    "keras_float32": "Keras code path + astype('float32') / 255",
    "fill_uint8": "floor: np.empty + fill of the uint8 outputs",
    "fill_float32": "floor: np.empty + fill of the float32 outputs",
    "cold_float32": "load_data(cache=False, normalize=True)",
    "first_float32": "load_data(normalize=True) into an empty cache",
    "cached_uint8": "load_data() from the cache",
    "cached_float32": "load_data(normalize=True) from the cache",
    "mmap_uint8": "load_data(mmap=True)",
    "mmap_float32": "load_data(mmap=True, normalize=True)",
    "train_full": "load('train') from the cache",
    "train_6000": "load('train[:6000]') from the cache",
    "iter_batches": "iter_batches('train', 1000, normalize=True) over all of train",
}


def child(case: str, data: str, cache_dir: str) -> None:
    import gzip
    import resource
    import time

    import numpy as np

    from fastidx.datasets import mnist

    sizes = [60000 * 784, 60000, 10000 * 784, 10000]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cpu = time.process_time()
    t = time.perf_counter()
    returned = 0
    if case.startswith("keras"):
        out = []
        for name, offset in FILES:
            with gzip.open(os.path.join(data, name), "rb") as f:
                a = np.frombuffer(f.read(), np.uint8, offset=offset)
            if offset == 16:
                a = a.reshape(-1, 28, 28)
                if case == "keras_float32":
                    a = a.astype("float32") / 255
            out.append(a)
    elif case.startswith("fill"):
        item = 4 if case == "fill_float32" else 1
        out = []
        for i, n in enumerate(sizes):
            a = np.empty(n * (item if i % 2 == 0 else 1), np.uint8)
            a.fill(1)
            out.append(a)
    elif case == "iter_batches":
        out = []
        for x, y in mnist.iter_batches("train", 1000, path=data, cache_dir=cache_dir,
                                       normalize=True):
            returned = max(returned, x.nbytes + y.nbytes)
    elif case in ("train_full", "train_6000"):
        out = mnist.load("train" if case == "train_full" else "train[:6000]", data,
                         cache_dir=cache_dir)
    else:
        if case.startswith("first"):
            cache_dir = tempfile.mkdtemp(prefix="fastidx-first-")
        options = {"cache": False} if case.startswith("cold") else {"cache_dir": cache_dir}
        if case.endswith("float32"):
            options["normalize"] = True
        if case.startswith("mmap"):
            options["mmap"] = True
        train, test = mnist.load_data(data, **options)
        out = [*train, *test]
    elapsed = time.perf_counter() - t
    cpu = time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if case.startswith("first"):
        import shutil

        shutil.rmtree(cache_dir)
    returned = returned or sum(a.nbytes for a in out)
    print(json.dumps({"s": elapsed, "cpu": cpu, "base": base, "peak": peak, "returned": returned}))


def breakdown(data: str) -> None:
    """One thread, CPU time, best of 5: where a cached float32 load of train spends its time."""
    import time

    import numpy as np

    from fastidx import _cache, _idx
    from fastidx._conversion import Conversion
    from fastidx.datasets import mnist

    with tempfile.TemporaryDirectory() as cache_dir:
        mnist.load("train", data, cache_dir=cache_dir)
        source = _cache.Source(Path(data) / FILES[0][0], upright=False, cache_dir=cache_dir)
        frames = source.open_frames()
        table = Conversion(np.float32, normalize=True).table(np.uint8)
        n = frames.header.rows * frames.header.row_bytes
        staging_out = np.empty(frames.rows_per * frames.header.row_bytes, np.float32)

        def best(step, fresh=False):
            times = []
            for _ in range(5):
                out = np.empty(n, np.float32) if fresh else None
                t = time.process_time()
                step(out)
                times.append(time.process_time() - t)
                del out
            return min(times) * 1e3

        def decode(_):
            for i in range(len(frames.table)):
                frames.decode(i)

        chunks = [frames.decode(i).copy() for i in range(len(frames.table))]

        def map_hot(_):
            for c in chunks:
                _idx.map_uint8(c, table, staging_out[: c.shape[0]])

        def map_fresh(out):
            pos = 0
            for c in chunks:
                _idx.map_uint8(c, table, out[pos : pos + c.shape[0]])
                pos += c.shape[0]

        def fill(out):
            out.fill(1)

        def full(_):
            _cache.frames._threads = lambda: 1
            mnist.load("train", data, cache_dir=cache_dir, normalize=True)

        parts = {
            "zstd decode, into a reused frame-sized buffer": best(decode),
            "uint8 -> float32 lookup, into a reused buffer": best(map_hot),
            "lookup into fresh memory (+ page faults, DRAM writes)": best(map_fresh, True),
            "floor: fill fresh memory (page faults + writes)": best(fill, True),
            "whole load('train', normalize=True), one thread": best(full),
        }
        frames.close()
    for what, ms in parts.items():
        print(f"{ms:8.1f} ms  {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.cache_dir)
        return
    if args.breakdown:
        breakdown(args.data)
        return

    with tempfile.TemporaryDirectory(prefix="fastidx-profile-") as cache_dir:
        def run(case):
            out = subprocess.run(
                [sys.executable, __file__, "--child", case, "--data", args.data,
                 "--cache-dir", cache_dir],
                check=True, capture_output=True, text=True,
            ).stdout
            return json.loads(out.strip().splitlines()[-1])

        for warm in ("cached_uint8", "cached_float32", "mmap_uint8", "mmap_float32",
                     "iter_batches"):
            run(warm)  # writes the cache files the cached cases read
        results = {case: [] for case in args.cases}
        for _ in range(args.runs):
            for case in args.cases:
                results[case].append(run(case))

    def median(case):
        return statistics.median(r["s"] for r in results[case]) * 1e3

    print(f"{'case':<16}{'median ms':>10}{'min ms':>9}{'cpu ms':>8}{'peak-base MB':>14}{'base MB':>9}"
          f"{'returned MB':>13}{'ratio':>7}  what")
    for case in args.cases:
        rs = results[case]
        extra = statistics.median((r["peak"] - r["base"]) for r in rs)
        returned = rs[0]["returned"]
        cpu = statistics.median(r["cpu"] for r in rs) * 1e3
        print(f"{case:<16}{median(case):>10.1f}{min(r['s'] for r in rs) * 1e3:>9.1f}{cpu:>8.1f}"
              f"{extra / 2**20:>14.1f}{rs[0]['base'] / 2**20:>9.1f}{returned / 2**20:>13.1f}"
              f"{extra / returned:>7.2f}  {CASES[case]}")

    def ratio(a, b):
        if a in results and b in results:
            return f"{median(a) / median(b):.2f}"
        return "n/a"

    print()
    print("keras_float32 / cached_float32 =", ratio("keras_float32", "cached_float32"), "(goal >= 8)")
    print("cached_float32 / fill_float32  =", ratio("cached_float32", "fill_float32"), "(goal <= 1.5)")
    print("keras_uint8 / cached_uint8     =", ratio("keras_uint8", "cached_uint8"), "(goal >= 5)")
    print("keras_float32 / cold_float32   =", ratio("keras_float32", "cold_float32"), "(goal >= 2)")
    print("keras_float32 / first_float32  =", ratio("keras_float32", "first_float32"))
    print("train_6000 / train_full        =", ratio("train_6000", "train_full"), "(goal < 0.33)")


if __name__ == "__main__":
    main()
