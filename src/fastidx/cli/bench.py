"""``fastidx bench``: the benchmark.

In fastidx's source checkout (the current directory holds ``bench/compare.py``) it runs that full
comparison: fresh processes, the default call's first and warm loads, tf.keras when TensorFlow is
installed. Anywhere else (an installed fastidx has no ``bench/``) it times fastidx against plain
NumPy + gzip in this process and prints the command that runs the full comparison.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .. import __version__, datasets
from ._common import EXIT_OK, EXIT_USAGE, CLIError, cached, local_mnist, note
from .timing import print_timings, timings

#: ``bench/compare.py`` runs on NumPy alone; with TensorFlow (the ``[bench]`` extra installs it as
#: ``tensorflow-cpu``) it also times tf.keras's own loaders.
OPTIONAL = "tensorflow"
COMPARE = Path("bench") / "compare.py"
FULL_COMPARISON = ("from fastidx's source checkout: pip install -e \".[bench]\" && "
                   "python bench/compare.py --quick")


def run(args) -> int:
    script = COMPARE if COMPARE.is_file() else None
    extra = args.compare_args[1:] if args.compare_args[:1] == ["--"] else args.compare_args
    if extra and (script is None or args.fastidx_only):
        why = ("--fastidx-only does not run it" if script is not None
               else f"which is not in this directory (run it {FULL_COMPARISON})")
        raise CLIError(f"options after '--' ({' '.join(extra)}) are for bench/compare.py, {why}", EXIT_USAGE)
    if script is not None and not args.fastidx_only:
        return _compare(script, args, extra)

    if args.fastidx_only:
        why = "built-in timing (--fastidx-only)"
    else:
        why = ("built-in timing: the full comparison (fresh processes, tf.keras, first and warm loads) is "
               f"bench/compare.py, run {FULL_COMPARISON}")
    print(f"fastidx {__version__} bench: {why}")
    source = local_mnist(args.cache_dir, "MNIST is not downloaded, so these times are for 1,200 images "
                                         "('fastidx download mnist' for the real thing)")
    print(f"data: {source.description}")
    repeat = 5 if args.quick else 11
    print_timings(timings(datasets.get("mnist"), source, args.cache_dir, repeat), repeat, source.sample)
    return EXIT_OK


def _compare(script: Path, args, extra: list[str]) -> int:
    import subprocess

    command = [sys.executable, str(script), *(["--quick"] if args.quick else []), *extra]
    if "--data-dir" not in extra and "--smoke" not in extra:
        files = cached("mnist", args.cache_dir)
        if files is not None and "npz" not in files and len({p.parent for p in files.values()}) == 1:
            command += ["--data-dir", str(files["train_images"].parent)]
        else:
            from ..datasets import SAMPLE_DIR

            note("MNIST is not downloaded, so the comparison runs on the 1,200-image sample shipped "
                 "inside fastidx ('fastidx download mnist' for meaningful numbers)")
            command += ["--data-dir", str(SAMPLE_DIR)]
    if importlib.util.find_spec(OPTIONAL) is None:
        note("TensorFlow is not installed, so the tf.keras rows are skipped; pip install -e \".[bench]\" "
             "(from the source checkout) adds them")
    print(f"running {' '.join(command)}", flush=True)
    return subprocess.call(command)
