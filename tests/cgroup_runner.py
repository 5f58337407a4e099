"""Run a Python snippet in a child process confined to a new memory cgroup (Linux, root).

Used by tests/test_memory_cgroup.py and scripts/memory_floor.py. The cgroup is created under this
process's own memory cgroup (cgroup v1 ``memory.limit_in_bytes``, plus ``memory.memsw`` when swap
accounting is on; cgroup v2 ``memory.max`` and ``memory.swap.max``), the child moves itself into
it before it execs Python, and the cgroup is removed once the child has exited. The outcome is read
from deterministic facts: the exit status (SIGKILL from the OOM killer) and the cgroup's own OOM
count, never from timings.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: A child that has not finished by then is killed and reported (a bound, not a measurement).
TIMEOUT = 300.0


@dataclass
class Outcome:
    returncode: int
    oom_killed: bool
    stdout: str
    stderr: str
    peak: int  # the cgroup's highest charge in bytes (page cache included)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.oom_killed


def _own_cgroup(proc_cgroup: str = "/proc/self/cgroup"):
    """``(version, directory)`` of this process's memory cgroup, or a reason why there is none."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError as exc:
        return None, f"cannot read {proc_cgroup}: {exc}"
    v2 = None
    for line in lines:
        hid, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory")
            here = base / path.lstrip("/")
            if (here / "memory.limit_in_bytes").is_file():
                return 1, here
        if hid == "0" and controllers == "":
            v2 = path
    if v2 is not None:
        for base in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
            here = base / v2.lstrip("/")
            if (here / "cgroup.controllers").is_file() and (base / "cgroup.controllers").is_file():
                if "memory" in (here / "cgroup.controllers").read_text().split():
                    return 2, here
    return None, "no memory cgroup controller for this process (cgroup v1 memory or v2 memory.max)"


def unavailable_reason() -> str | None:
    """None when a memory cgroup can be created here, else why not (for ``pytest.skip``)."""
    if not sys.platform.startswith("linux"):
        return "memory cgroups are Linux-only"
    version, where = _own_cgroup()
    if version is None:
        return where
    try:
        with _child_cgroup(version, where, 64 << 20):
            pass
    except OSError as exc:
        return f"cannot create a memory cgroup under {where}: {exc}"
    return None


def _write(path: Path, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


@contextlib.contextmanager
def _child_cgroup(version: int, parent: Path, limit: int):
    if version == 2 and "memory" not in (parent / "cgroup.subtree_control").read_text().split():
        _write(parent / "cgroup.subtree_control", "+memory")
    child = parent / f"fastidx-test-{os.getpid()}-{secrets.token_hex(4)}"
    child.mkdir()
    try:
        if version == 1:
            _write(child / "memory.limit_in_bytes", limit)
            if (child / "memory.memsw.limit_in_bytes").exists():
                _write(child / "memory.memsw.limit_in_bytes", limit)
        else:
            _write(child / "memory.max", limit)
            if (child / "memory.swap.max").exists():
                _write(child / "memory.swap.max", 0)
        yield child
    finally:
        # The child has exited; its page cache charges move to the parent when the group goes.
        # Processes just killed may still be leaving the group: retry for a bounded time.
        for _ in range(100):
            try:
                child.rmdir()
                break
            except OSError:
                time.sleep(0.05)


def _oom_count(version: int, child: Path) -> int:
    text = (child / ("memory.oom_control" if version == 1 else "memory.events")).read_text()
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill":
            return int(value)
    return 0  # an older kernel without the counter: the exit status (SIGKILL) still tells


def run_limited(code: str, limit: int, *, env=None, cwd=None) -> Outcome:
    """Run ``python -c code`` in a new memory cgroup of ``limit`` bytes; report how it ended."""
    version, parent = _own_cgroup()
    if version is None:
        raise OSError(parent)
    with _child_cgroup(version, parent, limit) as child:
        procs = child / "cgroup.procs"
        argv = ["sh", "-c", f'echo $$ > "{procs}" && exec "$0" -c "$1"', sys.executable, code]
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += f"\n[killed after the {TIMEOUT:.0f} s bound]"
        oom = _oom_count(version, child) > 0 or proc.returncode == -signal.SIGKILL
        peak_file = child / ("memory.max_usage_in_bytes" if version == 1 else "memory.peak")
        peak = int(peak_file.read_text()) if peak_file.exists() else -1
    return Outcome(proc.returncode, oom, out, err, peak)
