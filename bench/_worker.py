"""One measurement in a fresh process, run by ``compare.py``: ``python _worker.py '<json spec>'``.

Modes:

``time``    import the contender (timed apart), reset the peak-RSS counter, run one case (the timed
            load call), then read one byte of every page of the result (timed apart as ``touch_ms``:
            it is what makes a memory map pay for its pages), and report times and memory.
``warm``    run the cases listed, untimed (fills fastidx's caches before the ``warm_*`` runs).
``verify``  run several cases in this one process and report a SHA-256 digest, shape and dtype of
            every array the case returns (for ``iter_batches``: of the batches concatenated), so that
            the parent can check that every contender returns identical arrays. fastidx cases that
            read the decoded-array cache are run twice: the first call fills the cache, and both
            results are digested.

The result is one line on stdout, ``@@RESULT@@ {json}``; anything else printed is ignored.
"""

import json
import os
import resource
import sys
import time

_START = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gc  # noqa: E402
import hashlib  # noqa: E402

import numpy as np  # noqa: E402

import _cases  # noqa: E402

MARK = "@@RESULT@@ "
PAGE = 4096


def proc_status() -> dict:
    """VmRSS, VmHWM, RssAnon, RssFile in bytes (Linux); empty elsewhere."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def maxrss_bytes() -> int:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib if sys.platform == "darwin" else kib * 1024


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0), so that VmHWM then is the load's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def arrays_of(result):
    return [a for a in result if isinstance(a, np.ndarray)]


def touch(result) -> None:
    """Read one byte in every page of every result array (memory maps fault their pages in here)."""
    for a in arrays_of(result):
        if a.size and a.flags.c_contiguous:
            flat = a.reshape(-1).view(np.uint8)
            int(flat[::PAGE].max())
        elif a.size:
            int(np.asarray(a).max())


def describe(a) -> dict:
    return {
        "shape": list(a.shape),
        "dtype": a.dtype.str,
        "type": type(a).__name__,
        "writeable": bool(a.flags.writeable),
    }


class Digest:
    """SHA-256 over the bytes of an array, or of a sequence of batches concatenated along axis 0."""

    def __init__(self):
        self.hash = hashlib.sha256()
        self.rows = 0
        self.tail = None
        self.dtype = None
        self.batches = 0
        self.sizes = set()

    def add(self, a):
        a = np.ascontiguousarray(a)
        if self.dtype is None:
            self.dtype, self.tail = a.dtype.str, list(a.shape[1:])
        elif (a.dtype.str, list(a.shape[1:])) != (self.dtype, self.tail):
            self.dtype = f"inconsistent: {self.dtype} then {a.dtype.str}{list(a.shape)}"
        self.hash.update(memoryview(a.reshape(-1).view(np.uint8)))
        self.rows += a.shape[0] if a.ndim else 1
        self.batches += 1
        self.sizes.add(a.shape[0] if a.ndim else 1)

    def result(self) -> dict:
        return {
            "shape": [self.rows, *(self.tail or [])],
            "dtype": self.dtype,
            "sha256": self.hash.hexdigest(),
        }


def digest_arrays(result) -> list:
    out = []
    for a in result:
        d = Digest()
        d.add(a)
        out.append({**d.result(), **describe(a)})
    return out


def cache_files(cache_dir: str) -> int:
    n = 0
    for _, _, files in os.walk(cache_dir):
        n += len(files)
    return n


def run_verify(spec: dict, mods) -> dict:
    tool, ctx = spec["tool"], spec["ctx"]
    report = {}
    for case in spec["cases"]:
        try:
            passes = 2 if tool == "fastidx" and case in _cases.CACHED_CASES else 1
            entry = {"status": "ok"}
            for attempt in range(passes):
                before = cache_files(ctx["cache_dir"]) if tool == "fastidx" else 0
                xs, ys = Digest(), Digest()

                def on_batch(x, y, xs=xs, ys=ys):
                    xs.add(x)
                    ys.add(y)

                result = _cases.run(tool, mods, case, ctx, on_batch)
                if case == "iter_batches":
                    arrays = [xs.result(), ys.result()]
                    entry["batches"] = xs.batches
                    entry["batch_sizes"] = sorted(xs.sizes)
                else:
                    arrays = digest_arrays(result)
                if tool == "fastidx":
                    entry[f"cache_files_after_call{attempt + 1}"] = cache_files(ctx["cache_dir"])
                    if (attempt == 0 and case in ("cached_uint8", "cached_float32", "mmap_uint8")
                            and cache_files(ctx["cache_dir"]) == 0 and before == 0):
                        raise _cases.Unsupported(
                            "cache=True wrote nothing in cache_dir: this fastidx has no "
                            "decoded-array cache yet"
                        )
                if attempt == 0:
                    entry["arrays"] = arrays
                elif arrays != entry["arrays"]:
                    entry["status"] = "mismatch"
                    entry["reason"] = "the cached (second) load differs from the first"
                    entry["arrays_second_call"] = arrays
                del result
            report[case] = entry
        except _cases.Unsupported as exc:
            report[case] = {"status": "unsupported", "reason": str(exc)}
        except Exception as exc:  # recorded, and the parent fails loudly on it
            import traceback

            report[case] = {
                "status": "error",
                "reason": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        gc.collect()
    return {"cases": report}


def collect(tool: str, mods, case: str, ctx: dict) -> list:
    """The arrays of ``case`` (``iter_batches``: the batches concatenated)."""
    xs, ys = [], []
    result = _cases.run(tool, mods, case, ctx, lambda x, y: (xs.append(np.array(x)),
                                                             ys.append(np.array(y))))
    if case == "iter_batches":
        return [np.concatenate(xs), np.concatenate(ys)]
    return [np.asarray(a) for a in result]


def run_diagnose(spec: dict) -> dict:
    """Where the arrays of two contenders differ (run only after a failed verification)."""
    ctx, case = spec["ctx"], spec["case"]
    a_tool, b_tool = spec["tools"]
    a = collect(a_tool, _cases.import_tool(a_tool), case, ctx)
    b = collect(b_tool, _cases.import_tool(b_tool), case, ctx)
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        entry = {"index": i, "shapes": [list(x.shape), list(y.shape)],
                 "dtypes": [x.dtype.str, y.dtype.str]}
        if x.shape == y.shape:
            differ = x != y
            entry["n_differ"] = int(differ.sum())
            if entry["n_differ"]:
                first = tuple(int(v) for v in np.argwhere(differ)[0])
                entry["first_differ_at"] = list(first)
                entry["values_there"] = [x[first].item(), y[first].item()]
                entry["max_abs_diff"] = float(np.max(np.abs(x.astype(np.float64)
                                                            - y.astype(np.float64))))
        out.append(entry)
    return {"arrays": out, "counts": [len(a), len(b)]}


def run_time(spec: dict, mods, import_ms: float) -> dict:
    tool, case, ctx = spec["tool"], spec["case"], spec["ctx"]
    held = []

    def on_batch(x, y):
        held[:] = [x, y]  # a consumer holds the current batch only

    gc.collect()
    peak_before = maxrss_bytes()
    rss_before = proc_status().get("VmRSS")
    can_reset = reset_peak()
    try:
        t0 = time.perf_counter()
        result = _cases.run(tool, mods, case, ctx, on_batch, **spec.get("run_kwargs", {}))
        load_ms = (time.perf_counter() - t0) * 1e3
    except _cases.Unsupported as exc:
        return {"status": "unsupported", "reason": str(exc)}
    t0 = time.perf_counter()
    touch(result)
    touch_ms = (time.perf_counter() - t0) * 1e3
    status = proc_status()
    load_peak = status.get("VmHWM") if can_reset else None
    return {
        "status": "ok",
        "import_ms": import_ms,
        "load_ms": load_ms,
        "touch_ms": touch_ms,
        "peak_rss_bytes": max(peak_before, load_peak or 0, maxrss_bytes()),
        "load_peak_rss_bytes": load_peak,
        "rss_before_load_bytes": rss_before,
        "rss_after_bytes": status.get("VmRSS"),
        "rss_anon_after_bytes": status.get("RssAnon"),
        "rss_file_after_bytes": status.get("RssFile"),
        "arrays": [describe(a) for a in arrays_of(result)],
        "startup_ms": (t_import_start - _START) * 1e3,
    }


def fastidx_threads():
    """The size of fastidx's frame-decoding thread pool in this process, where it can be seen."""
    try:
        from fastidx import _cache

        return _cache._threads()
    except (ImportError, AttributeError):
        return None


def main() -> None:
    global t_import_start
    spec = json.loads(sys.argv[1])
    if spec.get("cpus") and hasattr(os, "sched_setaffinity"):
        # Before any import: thread pools size themselves from the affinity mask.
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: spec["cpus"]])
    if spec["mode"] == "diagnose":
        sys.stdout.write(MARK + json.dumps(run_diagnose(spec)) + "\n")
        return
    t_import_start = time.perf_counter()
    mods = _cases.import_tool(spec["tool"])
    import_ms = (time.perf_counter() - t_import_start) * 1e3
    if spec["mode"] == "warm":
        for case in spec["cases"]:
            _cases.run(spec["tool"], mods, case, spec["ctx"])
        out = {"status": "ok"}
    elif spec["mode"] == "verify":
        out = run_verify(spec, mods)
        out["versions"] = versions(spec["tool"], mods)
    else:
        out = run_time(spec, mods, import_ms)
        if spec["tool"] == "fastidx":
            out["fastidx_threads"] = fastidx_threads()
        if hasattr(os, "sched_getaffinity"):
            out["cpus"] = len(os.sched_getaffinity(0))
    sys.stdout.write(MARK + json.dumps(out) + "\n")
    sys.stdout.flush()


def versions(tool: str, mods) -> dict:
    if tool in ("tf.keras", "tf.keras-npz"):
        tf, _ = mods
        import keras

        return {"tensorflow": tf.__version__, "keras": keras.__version__}
    if tool == "torchvision":
        import importlib.metadata as md

        out = {}
        for dist in ("torch", "torchvision"):
            try:
                out[dist] = md.version(dist)
            except md.PackageNotFoundError:
                out[dist] = None
        return out
    return {}


t_import_start = _START

if __name__ == "__main__":
    main()
