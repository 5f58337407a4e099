"""Full MNIST inside a 32 MiB memory cgroup: every way of loading completes with exact results, a
load that cannot fit is refused with MemoryLimitError, and Keras's way (the control) is killed.

Each case runs a child Python in a new memory cgroup under this process's own (see
tests/cgroup_runner.py) with an empty cache, so every load is a first load that builds the cache.
Results are compared by hash with the same snippet run here, outside any limit. Skipped where no
memory cgroup can be created (not Linux, not root, no memory controller), with the reason.
"""

import contextlib
import io
import os

import pytest

from cgroup_runner import run_limited, unavailable_reason
from memory_modes import _FASTIDX, MODES, REFUSED, snippet

LIMIT = 32 << 20

_reason = unavailable_reason()
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")


def run_here(code: str) -> str:
    """The snippet's output, run in this process (no memory limit): the reference."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<reference>", "exec"), {"__name__": "__reference__"})
    return out.getvalue()


def in_cgroup(mode, mnist_dir, cache):
    cache.mkdir()
    env = dict(os.environ, FASTIDX_HOME=str(cache))
    return run_limited(snippet(mode, mnist_dir, cache), LIMIT, env=env)


@pytest.mark.parametrize("mode", list(MODES))
def test_completes_in_32_mib_with_exact_results(mode, mnist_dir, tmp_path):
    outcome = in_cgroup(mode, mnist_dir, tmp_path / "limited")
    assert outcome.ok, (f"{mode}: exit {outcome.returncode}, OOM kill: {outcome.oom_killed}\n"
                        f"{outcome.stderr[-2000:]}")
    reference = run_here(snippet(mode, mnist_dir, tmp_path / "reference"))
    assert reference.startswith("sha256 ")
    assert outcome.stdout == reference


@pytest.mark.parametrize("mode", list(REFUSED))
def test_what_cannot_fit_is_refused_before_allocating(mode, mnist_dir, tmp_path):
    outcome = in_cgroup(mode, mnist_dir, tmp_path / "limited")
    assert outcome.ok, (f"{mode}: exit {outcome.returncode}, OOM kill: {outcome.oom_killed}\n"
                        f"{outcome.stdout}{outcome.stderr[-2000:]}")
    message = outcome.stdout
    assert message.startswith("MemoryLimitError: "), message
    assert f"memory limit of {LIMIT:,} bytes" in message and "mmap=True" in message, message


def test_keras_way_is_killed_at_32_mib(mnist_dir, tmp_path):
    outcome = in_cgroup("keras", mnist_dir, tmp_path / "limited")
    assert not outcome.ok
    assert outcome.oom_killed or "MemoryError" in outcome.stderr, outcome.stderr[-2000:]


#: The largest slice of train whose first load ``max_memory="auto"`` allows, ``slack`` bytes under
#: the line. The line is what "auto" allows the images once fastidx's loading code is imported:
#: asking for train in float32 (188 MB) is refused with it (the first ask, which builds the
#: labels' entry, imports that code; the second reads the line).
_AT_THE_LINE = """
import re
from fastidx import MemoryLimitError
for _ in range(2):
    try:
        mnist.load("train", normalize=True, **P)
        sys.exit("train in float32 was not refused")
    except MemoryLimitError as exc:
        line = int(re.search(r"more than the ([0-9,]+) bytes", str(exc))[1].replace(",", ""))
rows = (line - {slack}) // 785  # images and labels
print("rows", rows)
try:
    add(*mnist.load(f"train[:{{rows}}]", **P))
except MemoryLimitError as exc:
    print("MemoryLimitError:", exc)
    sys.exit(0)
print("sha256", h.hexdigest())
"""


@pytest.mark.parametrize("limit", [LIMIT, 2 * LIMIT])
def test_what_auto_allows_completes(limit, mnist_dir, tmp_path):
    # Besides its arrays, a first load takes the cache writer's buffers (for a slice, also the
    # rows it does not keep) and huge-page rounding of big arrays: they must fit in the reserve
    # "auto" keeps (with 4 MiB kept and the writer queueing an eighth of the free memory, these
    # slices were OOM-killed at 64 MiB).
    loaded = 0
    for slack in (1 << 18, 1 << 20, 3 << 20):
        cache = tmp_path / f"limited-{slack}"
        cache.mkdir()
        code = (_FASTIDX + _AT_THE_LINE).format(mnist=str(mnist_dir), cache=str(cache), slack=slack)
        outcome = run_limited(code, limit, env=dict(os.environ, FASTIDX_HOME=str(cache)))
        assert outcome.ok, (f"train slice {slack} bytes under what 'auto' allows in {limit >> 20} "
                            f"MiB: exit {outcome.returncode}, OOM kill: {outcome.oom_killed}\n"
                            f"{outcome.stdout}{outcome.stderr[-2000:]}")
        first, result = outcome.stdout.split("\n", 1)
        rows = int(first.split()[1])
        if result.startswith("MemoryLimitError: "):
            continue  # the line moved between the child's reading and the load's: still no kill
        reference = run_here(snippet("load test[:50%]", mnist_dir, tmp_path / f"reference-{slack}")
                             .replace("mnist.load('test[:50%]'", f"mnist.load('train[:{rows}]'"))
        assert result == reference
        loaded += 1
    assert loaded, "every slice was refused: nothing was tested at the line"
