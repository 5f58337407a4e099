#!/usr/bin/env python3
"""The ``hpo`` case: N trials of a search loading MNIST at once on one node.

    python bench/hpo.py [--data-dir DIR] [--n 1,4,CORES] [--repeats 3] [--json FILE]

Each "trial" is a fresh process that loads full MNIST train + test as float32 / 255 and touches
every page of it (as training would), then waits until all N trials hold their data, when the
summed PSS of the N processes is read from ``/proc/PID/smaps_rollup``. Reported per (way, N):
makespan (first process started → last trial's data ready, including interpreter start-up and
imports, and for Ray's idiom the driver-side load and ``ray.put``), the median per-trial time to
data (the load call alone), and the summed PSS of the trials. Ways:

- ``keras``: Keras's way, ``gzip`` + ``np.frombuffer`` + ``astype("float32") / 255`` in each trial;
- ``ray``: Ray's ``tune.with_parameters`` idiom (only when Ray is installed): the driver loads once
  (Keras's way) and ``ray.put``s the arrays; each trial is a Ray actor that ``ray.get``s them
  (zero-copy, read-only views of the node's shared object store);
- ``fastidx``: ``load_data(normalize=True)`` from a warm cache;
- ``fastidx-mmap``: ``load_data(normalize=True, mmap=True)`` from a warm cache;
- ``bare``: the interpreter with NumPy and fastidx imported, loading nothing (what N processes cost
  before any data).

The Ray rows' PSS counts the trial workers only: the object store's copy is also mapped by the
raylet, which is not a trial (it is listed apart as ``store_pss_mib``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "mnist"
WAYS = ("bare", "keras", "ray", "fastidx", "fastidx-mmap")
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def keras_way(data_dir: Path):
    """What a Keras user writes: gzip + np.frombuffer, then astype / 255."""
    import gzip

    import numpy as np

    def read(name, offset):
        with gzip.open(data_dir / name, "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)

    y, yt = read(FILES[1], 8), read(FILES[3], 8)
    x = read(FILES[0], 16).reshape(len(y), 28, 28).astype("float32") / 255
    xt = read(FILES[2], 16).reshape(len(yt), 28, 28).astype("float32") / 255
    return (x, y), (xt, yt)


def touch(arrays) -> float:
    """Read every page (as training does) and return a checksum-ish number."""
    return float(sum(float(a.sum(dtype="float64")) for a in arrays))


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def private_anon_kib(pid: int) -> int:
    """Private anonymous memory: Anonymous pages not shared with another process."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1])
    return fields.get("Anonymous", 0)


# ---- one trial process ------------------------------------------------------------------------


def child(way: str, data_dir: Path) -> None:
    import numpy as np

    from fastidx.datasets import mnist

    path = os.environ.get("FASTIDX_HPO_PATH")  # None: the default call, as users make it
    start = time.perf_counter()
    if way == "keras":
        data = keras_way(data_dir)
    elif way == "fastidx":
        data = mnist.load_data(path, normalize=True)
    elif way == "fastidx-mmap":
        data = mnist.load_data(path, normalize=True, mmap=True)
    else:
        data = ((np.zeros(0, np.float32),),)
    ready = time.perf_counter() - start
    touch([a for pair in data for a in pair])
    print(json.dumps({"pid": os.getpid(), "ready_s": ready}), flush=True)
    sys.stdin.readline()  # hold the data until the parent has measured everyone


def run_processes(way: str, n: int, data_dir: Path, env: dict) -> dict:
    begin = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--child", way, "--data-dir",
                               str(data_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(n)]
    try:
        reports = [json.loads(p.stdout.readline()) for p in procs]
        makespan = time.perf_counter() - begin
        pss = sum(pss_kib(r["pid"]) for r in reports)
        anon = [private_anon_kib(r["pid"]) for r in reports]
    finally:
        for p in procs:
            try:
                p.stdin.write("done\n")
                p.stdin.close()
            except BrokenPipeError:
                pass
        for p in procs:
            p.wait(timeout=120)
    return {"makespan_s": makespan, "ready_s": statistics.median(r["ready_s"] for r in reports),
            "ready_max_s": max(r["ready_s"] for r in reports), "pss_mib": pss / 1024,
            "anon_mib_per_trial": statistics.median(anon) / 1024}


def run_ray(n: int, data_dir: Path, ray_tmp: str) -> dict:
    """Ray's with_parameters idiom: driver load + ray.put, N actors ray.get (zero-copy)."""
    import ray

    ray.init(num_cpus=max(n, 1), include_dashboard=False, log_to_driver=False,
             _temp_dir=ray_tmp, configure_logging=False)
    try:
        @ray.remote(num_cpus=1)
        class Trial:
            def run(self, ref_box):
                import os
                import time

                start = time.perf_counter()
                data = ray.get(ref_box[0])
                ready = time.perf_counter() - start
                touch([a for pair in data for a in pair])
                self.data = data
                return {"pid": os.getpid(), "ready_s": ready}

        actors = [Trial.remote() for _ in range(n)]
        ray.get([a.__ray_ready__.remote() for a in actors])  # the trial processes exist
        begin = time.perf_counter()
        ref = ray.put(keras_way(data_dir))  # what tune.with_parameters does on the driver
        reports = ray.get([a.run.remote([ref]) for a in actors])
        makespan = time.perf_counter() - begin
        pss = sum(pss_kib(r["pid"]) for r in reports)
        anon = [private_anon_kib(r["pid"]) for r in reports]
        for a in actors:
            ray.kill(a)
    finally:
        ray.shutdown()
    return {"makespan_s": makespan, "ready_s": statistics.median(r["ready_s"] for r in reports),
            "ready_max_s": max(r["ready_s"] for r in reports), "pss_mib": pss / 1024,
            "anon_mib_per_trial": statistics.median(anon) / 1024,
            "note": "makespan: driver load + ray.put + actors' ray.get (actor start-up excluded)"}


def measure(data_dir: Path, ns: list[int], repeats: int, ways=WAYS) -> list[dict]:
    import importlib.util

    has_ray = importlib.util.find_spec("ray") is not None
    rows = []
    with tempfile.TemporaryDirectory(prefix="fastidx-hpo-") as home:
        env = dict(os.environ, FASTIDX_HOME=home, FASTIDX_OFFLINE="1")
        # Warm the cache (both conversions) once, as a prepared node would be.
        subprocess.run([sys.executable, "-c",
                        "import sys; from fastidx.datasets import mnist; "
                        "mnist.load_data(path=sys.argv[1]); "
                        "mnist.load_data(path=sys.argv[1], normalize=True); "
                        "mnist.load_data(path=sys.argv[1], normalize=True, mmap=True)",
                        str(data_dir)], env=env, check=True, timeout=600)
        # The warm default call without path= reads the cache's own copy of the files.
        dest = Path(home) / "mnist"
        dest.mkdir(exist_ok=True)
        import shutil

        for name in FILES:
            shutil.copy2(data_dir / name, dest / name)
        # fastidx re-hashes a file changed less than 2 s before it was hashed (a same-tick rewrite
        # could go unseen): let the copies age, as files downloaded before a search have.
        time.sleep(2.5)
        default = subprocess.run([sys.executable, "-c",
                                  "from fastidx.datasets import mnist; mnist.load_data(normalize=True); "
                                  "mnist.load_data(normalize=True, mmap=True)"],
                                 env=env, timeout=600, capture_output=True)
        if default.returncode != 0:  # not the official files (the sample): load them by path=
            env["FASTIDX_HPO_PATH"] = str(data_dir)
            print(f"  hpo: {data_dir} does not hold the official MNIST files: trials use path=",
                  flush=True)
        ray_tmp = tempfile.mkdtemp(prefix="fxr", dir="/tmp")
        try:
            for n in ns:
                for way in ways:
                    if way == "ray" and not has_ray:
                        rows.append({"way": way, "n": n, "skipped": "Ray is not installed"})
                        continue
                    runs = []
                    for _ in range(repeats):
                        runs.append(run_ray(n, data_dir, ray_tmp) if way == "ray"
                                    else run_processes(way, n, data_dir, env))
                    row = {"way": way, "n": n, "repeats": repeats}
                    for key in ("makespan_s", "ready_s", "ready_max_s", "pss_mib",
                                "anon_mib_per_trial"):
                        row[key] = statistics.median(r[key] for r in runs)
                    rows.append(row)
                    print(f"  hpo {way:13s} N={n:2d}: makespan {row['makespan_s'] * 1e3:7.0f} ms, "
                          f"ready {row['ready_s'] * 1e3:7.1f} ms (max {row['ready_max_s'] * 1e3:.0f}),"
                          f" summed PSS {row['pss_mib']:7.0f} MiB, private anon/trial "
                          f"{row['anon_mib_per_trial']:.0f} MiB", flush=True)
        finally:
            import shutil

            shutil.rmtree(ray_tmp, ignore_errors=True)
    return rows


LABELS = {
    "bare": "interpreter + numpy + fastidx, no data",
    "keras": "Keras's way (gzip + `np.frombuffer` + `astype/255`)",
    "ray": "Ray's idiom: driver loads + `ray.put` (`tune.with_parameters`)",
    "fastidx": "fastidx `load_data(normalize=True)`, warm",
    "fastidx-mmap": "fastidx `load_data(normalize=True, mmap=True)`, warm",
}


def markdown(rows: list[dict]) -> str:
    out = ["| N at once | each trial gets the data by | makespan | time to data (median / max) "
           "| summed PSS | private anon per trial |", "|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        if "skipped" in r:
            out.append(f"| {r['n']} | {LABELS[r['way']]} | {r['skipped']} | | | |")
            continue
        out.append(f"| {r['n']} | {LABELS[r['way']]} | {r['makespan_s'] * 1e3:,.0f} ms | "
                   f"{r['ready_s'] * 1e3:,.1f} / {r['ready_max_s'] * 1e3:,.0f} ms | "
                   f"{r['pss_mib']:,.0f} MiB | {r['anon_mib_per_trial']:,.1f} MiB |")
    return "\n".join(out)


def default_ns() -> list[int]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return sorted({1, 4, cores or 1})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--n", help="comma-separated numbers of trials at once (default: 1, 4, cores)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ways", default=",".join(WAYS))
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.data_dir)
        return 0
    ns = [int(v) for v in args.n.split(",")] if args.n else default_ns()
    rows = measure(args.data_dir, ns, args.repeats, args.ways.split(","))
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
