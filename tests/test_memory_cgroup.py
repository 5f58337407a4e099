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
from memory_modes import MODES, REFUSED, snippet

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
