"""``fastidx demo``: the first run. Loads MNIST (from the cache, or downloading it when a mirror
answers quickly, else the sample shipped inside fastidx), prints shapes and load times against
plain NumPy + gzip, and writes a grid of the first images."""

from __future__ import annotations

import os
import time

from .. import __version__, datasets, registry
from .. import CacheDirError, DatasetNotFoundError, DownloadError
from .._paths import cache_root
from ._common import (
    EXIT_OK,
    Interrupted,
    Source,
    cached,
    describe_files,
    drop_notes,
    human_size,
    note,
    offline_by_environment,
    sample_source,
)
from .grid import GridUnavailable, image_grid, write_png
from .timing import print_timings, timings

#: How long the demo waits to learn whether the network is there before using the sample.
PROBE_TIMEOUT = 3.0


def _reachable(url: str) -> str | None:
    """None if ``url``'s server answers within PROBE_TIMEOUT (any HTTP status), else why not."""
    import urllib.error
    import urllib.parse
    import urllib.request

    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": f"fastidx/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{urllib.parse.urlsplit(url).netloc} did not answer ({reason})"


def demo_source(args) -> Source:
    """Full MNIST if it is local or quickly downloadable, else the embedded sample (and why)."""
    files = cached("mnist", args.cache_dir)
    if files is not None:
        return Source(None, f"MNIST from {describe_files(files)}")
    offline = "--offline" if args.offline else offline_by_environment()
    if offline:
        return sample_source(f"MNIST is not downloaded and offline mode is on ({offline})")
    spec = registry.get("mnist")
    if not os.environ.get("FASTIDX_MIRROR"):  # a mirror the user set is worth waiting for
        problem = _reachable(spec.files["train_labels"].urls[0])
        if problem:
            return sample_source(f"could not download MNIST: {problem}")
    size = sum(f.size for f in spec.files.values())
    note(f"MNIST is not downloaded; downloading it ({human_size(size)}) into {cache_root(args.cache_dir)} "
         f"(Ctrl-C to stop; --offline uses the sample shipped inside fastidx instead)")
    try:
        files = datasets.get("mnist").files(cache_dir=args.cache_dir)
    except KeyboardInterrupt:
        raise Interrupted("MNIST was not downloaded completely and nothing partial was kept") from None
    except (DownloadError, DatasetNotFoundError, CacheDirError) as exc:
        drop_notes()  # what went wrong is in the one line below
        return sample_source(f"could not download MNIST: {exc}")
    return Source(None, f"MNIST from {describe_files(files)}")


def run(args) -> int:
    import numpy as np

    mnist = datasets.get("mnist")
    source = demo_source(args)
    print(f"fastidx {__version__} demo: loading {'the MNIST sample' if source.sample else 'MNIST'} with fastidx")
    print(f"data: {source.description}")
    start = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = mnist.load_data(source.path, cache_dir=args.cache_dir)
    took = time.perf_counter() - start
    call = "mnist.load_data(path=SAMPLE_DIR)" if source.sample else "mnist.load_data()"
    print(f"\n>>> (x_train, y_train), (x_test, y_test) = {call}   # {took * 1e3:.1f} ms")
    for name, array in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test), ("y_test", y_test)):
        print(f"{name:<8} {str(array.shape):<16} {array.dtype}")
    xf = mnist.load("train", source.path, cache_dir=args.cache_dir, normalize=True, layout="NHWC")[0]
    print(f'load("train", normalize=True, layout="NHWC"): {xf.shape} {xf.dtype} in '
          f"[{xf.min():.1f}, {xf.max():.1f}]")

    repeat = 5
    print("\nload times against the plain NumPy + gzip path:")
    print_timings(timings(mnist, source, args.cache_dir, repeat), repeat, source.sample)

    n = min(64, len(x_train))
    labels = [mnist.class_names[v] for v in y_train[:n].tolist()]
    title = f"mnist train{' (sample)' if source.sample else ''}: first {n} of {len(x_train)}"
    try:
        grid = image_grid(np.ascontiguousarray(x_train[:n]), labels, title=title)
    except GridUnavailable as exc:  # the demo's main job is done; the picture is a bonus
        print(f"\nno picture: {exc}")
    else:
        write_png(args.out, grid)
        print(f"\nwrote a grid of the first {n} training images with their labels: {args.out.resolve()}")
    if source.sample:
        print("for the full dataset: fastidx download mnist (about 11 MB), then fastidx demo again")
    return EXIT_OK
