"""The lowest memory cgroup limit (in MiB) at which each way of loading full MNIST completes.

    sudo python scripts/memory_floor.py [--mnist DIR] [--low 8] [--high 512] [MODE ...]

Linux, root, a memory cgroup controller (v1 or v2). Each mode runs in a child process confined to
a new memory cgroup under this process's own (tests/cgroup_runner.py, the same wrapper as
tests/test_memory_cgroup.py), with an empty cache, so every run is a first load that builds the
cache; a run "completes" when it exits 0, is not OOM-killed and prints the same hash as the mode
run without a limit. The limit is bisected to 1 MiB between --low and --high, assuming that more
memory never hurts. ``max_memory`` is left at its default ("auto"), so below its floor a whole-split
load is refused with MemoryLimitError rather than killed; both count as not completing. Modes:
those of tests/memory_modes.py plus "keras" (gzip + np.frombuffer + astype/255).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from cgroup_runner import run_limited, unavailable_reason  # noqa: E402
from memory_modes import IN_MEMORY, MODES, snippet  # noqa: E402

MiB = 1 << 20


def run(mode: str, mnist: Path, limit: int | None) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="fastidx-floor-") as cache:
        env = dict(os.environ, FASTIDX_HOME=cache)
        code = snippet(mode, mnist, cache)
        if limit is None:
            import subprocess

            done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                  text=True, check=False)
            return done.returncode == 0, done.stdout
        outcome = run_limited(code, limit, env=env)
        return outcome.ok, outcome.stdout


def floor(mode: str, mnist: Path, low: int, high: int) -> str:
    ok, reference = run(mode, mnist, None)
    if not ok or not reference.startswith("sha256 "):
        return "fails without a limit"

    def completes(mib: int) -> bool:
        ok, out = run(mode, mnist, mib * MiB)
        return ok and out == reference

    if not completes(high):
        return f"> {high}"
    if completes(low):
        return f"<= {low}"
    while high - low > 1:  # completes(high), not completes(low)
        mid = (low + high) // 2
        if completes(mid):
            high = mid
        else:
            low = mid
    return str(high)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modes", nargs="*", help="default: all")
    parser.add_argument("--mnist", type=Path, default=HERE.parent.parent / "shared/data/mnist")
    parser.add_argument("--low", type=int, default=8, help="MiB (default 8)")
    parser.add_argument("--high", type=int, default=512, help="MiB (default 512)")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"cannot measure: {reason}", file=sys.stderr)
        return 2
    modes = args.modes or [*MODES, *IN_MEMORY, "keras"]
    print(f"{'mode':36s} lowest limit that completes (MiB)")
    for mode in modes:
        print(f"{mode:36s} {floor(mode, args.mnist, args.low, args.high)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
