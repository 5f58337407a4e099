"""In-process timings of fastidx against plain NumPy + gzip, for ``fastidx demo`` and ``fastidx bench``.

Interleaved runs, the fastest of each shown, and a verdict ("faster", "slower") only when the fastest
runs and the medians both differ by more than 10% the same way; none at all on the 1,200-image
sample, whose loads take a few milliseconds, mostly fixed costs.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from ._common import Source

#: A verdict needs both the fastest runs and the medians to differ by more than this factor.
MARGIN = 1.1


def interleaved(first, second, repeat: int):
    """Times in seconds of ``repeat`` calls of each, alternating which goes first; and the results."""
    times: tuple[list, list] = ([], [])
    results = [None, None]
    for r in range(repeat):
        for which in ((0, 1) if r % 2 == 0 else (1, 0)):
            function = (first, second)[which]
            if function is None:
                continue
            start = time.perf_counter()
            results[which] = function()
            times[which].append(time.perf_counter() - start)
    return times, results


def numpy_gzip(files: dict, image_shape, normalize: bool = False):
    """What one writes without fastidx: gunzip each file, skip its header, reshape (and scale)."""
    import gzip

    import numpy as np

    if "npz" in files:
        with np.load(files["npz"]) as npz:
            arrays = [npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"]]
    else:
        arrays = []
        for role, header in (("train_images", 16), ("train_labels", 8), ("test_images", 16), ("test_labels", 8)):
            with gzip.open(files[role], "rb") as f:
                arrays.append(np.frombuffer(f.read(), np.uint8, offset=header))
        arrays[0] = arrays[0].reshape(-1, *image_shape)
        arrays[2] = arrays[2].reshape(-1, *image_shape)
    if normalize:
        arrays[0] = arrays[0].astype(np.float32) / np.float32(255)
        arrays[2] = arrays[2].astype(np.float32) / np.float32(255)
    return (arrays[0], arrays[1]), (arrays[2], arrays[3])


def same_arrays(a, b) -> bool:
    import numpy as np

    return all(np.array_equal(p, q) for p, q in zip(flatten(a), flatten(b)))


def flatten(data):
    (x_train, y_train), (x_test, y_test) = data
    return x_train, y_train, x_test, y_test


@dataclass
class Row:
    what: str
    ours: list  # seconds, one per run
    theirs: list | None = None  # NumPy + gzip's, when compared
    remark: str = ""

    def verdict(self) -> str:
        """"N.Nx faster" / "N.Nx slower" (the ratio of the fastest runs) only when the fastest runs
        and the medians both differ by more than :data:`MARGIN` the same way: noise only ever adds
        time, so a gap that the medians do not confirm, or a small one, is no result."""
        if not self.theirs:
            return ""
        best = min(self.theirs) / min(self.ours)
        typical = statistics.median(self.theirs) / statistics.median(self.ours)
        if best > MARGIN and typical > MARGIN:
            return f"{best:4.1f}x faster"
        if best < 1 / MARGIN and typical < 1 / MARGIN:
            return f"{1 / best:4.1f}x slower"
        return "no clear difference"


def timings(dataset, source: Source, cache_dir, repeat: int) -> list[Row]:
    """fastidx against plain NumPy + gzip, ``repeat`` interleaved runs each."""
    files = dataset.files(source.path, cache_dir=cache_dir)
    shape = dataset.spec.image_shape
    rows = []
    for what, options in (("uint8", {}), ("float32 in [0, 1] (normalize=True)", {"normalize": True})):
        (ours, theirs), (a, b) = interleaved(
            lambda o=options: dataset.load_data(source.path, cache=False, cache_dir=cache_dir, **o),
            lambda o=options: numpy_gzip(files, shape, **o), repeat)
        rows.append(Row(what, ours, theirs, "identical arrays" if same_arrays(a, b) else "ARRAYS DIFFER"))
    for what, options in (("uint8 from the decoded cache (cache=True)", {}),
                          ("uint8 memory-mapped from the cache (mmap=True)", {"mmap": True})):
        dataset.load_data(source.path, cache=True, cache_dir=cache_dir, **options)  # fills the cache
        (ours, _), _ = interleaved(
            lambda o=options: dataset.load_data(source.path, cache=True, cache_dir=cache_dir, **o), None, repeat)
        rows.append(Row(what, ours))
    return rows


def print_timings(rows: list[Row], repeat: int, sample: bool) -> None:
    """The fastest run of each; a verdict only where the runs support one, and none on the sample."""
    width = max(len(r.what) for r in rows)
    print(f"  {'load_data(), best of ' + str(repeat):<{width}}  {'fastidx':>9}  {'NumPy+gzip':>10}")
    for row in rows:
        theirs = f"{min(row.theirs) * 1e3:8.1f} ms" if row.theirs else f"{'':>11}"
        verdict = "" if sample or not row.theirs else f"  {row.verdict()}"
        remark = f"  {row.remark}" if row.remark else ""
        print(f"  {row.what:<{width}}  {min(row.ours) * 1e3:6.1f} ms  {theirs}{verdict}{remark}")
    if sample:
        print("  the 1,200-image sample is too small to time meaningfully (a few milliseconds a load, mostly "
              "fixed costs): no verdict; 'fastidx download mnist' then the same command again times MNIST")
