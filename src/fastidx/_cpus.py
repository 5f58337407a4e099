"""How many CPUs this process may use: the smallest budget any of its sources states.

A trial of a hyperparameter search is usually given a slice of a machine; starting a decode thread
per core in each of 16 trials only makes them fight. The sources, each ignored when it says nothing:

- the CPU affinity mask (``os.sched_getaffinity``: ``taskset``, ``cpuset`` cgroups);
- ``OMP_NUM_THREADS`` (the first number of the list), which Ray, SLURM and others set for workers;
- the cgroup CPU quota: ``cpu.max`` (cgroup v2) or ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
  (v1) of this process's cgroup and its ancestors, rounded up (containers, systemd, Kubernetes);
- the CPUs Ray assigned to this task or actor (a Tune trial's ``resources_per_trial``), only when
  this process is already a connected Ray worker: fastidx never imports Ray itself.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path


def affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0)) or None
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count()


def omp(environ=None) -> int | None:
    value = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "")
    try:
        n = int(value.split(",")[0].strip())
    except ValueError:
        return None
    return n if n > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _levels(base: Path, inner: str):
    """``base/inner`` and its ancestors up to ``base`` (limits nest: the tightest one holds)."""
    d = base / inner.strip("/")
    while True:
        yield d
        if d == base or base not in d.parents:
            return
        d = d.parent


def _v2(base: Path, inner: str) -> float | None:
    best = None
    for d in _levels(base, inner):
        text = _read(d / "cpu.max")
        if not text:
            continue
        parts = text.split()
        try:
            if parts[0] == "max":
                continue
            cpus = int(parts[0]) / int(parts[1] if len(parts) > 1 else 100000)
        except (ValueError, ZeroDivisionError):
            continue
        best = cpus if best is None else min(best, cpus)
    return best


def _v1(base: Path, inner: str) -> float | None:
    best = None
    for d in _levels(base, inner):
        quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
        try:
            quota, period = int(quota), int(period)
        except (TypeError, ValueError):
            continue
        if quota <= 0 or period <= 0:  # -1: no limit
            continue
        best = quota / period if best is None else min(best, quota / period)
    return best


def cgroup(proc="/proc", root="/sys/fs/cgroup") -> int | None:
    """The CPU quota of this process's cgroup (v2 or v1), rounded up; None when unlimited."""
    text = _read(Path(proc) / "self" / "cgroup")
    if not text:
        return None
    root = Path(root)
    limits = []
    for line in text.splitlines():
        hierarchy, controllers, inner = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and controllers == "":
            limits += [_v2(root, inner), _v2(root / "unified", inner)]
        elif "cpu" in controllers.split(","):
            for name in {controllers, "cpu", "cpu,cpuacct", "cpuacct,cpu"}:
                limits.append(_v1(root / name, inner))
    limits = [x for x in limits if x is not None]
    return max(1, math.ceil(min(limits) - 1e-9)) if limits else None


def ray() -> int | None:
    """The CPUs Ray assigned to this worker's task or actor (None outside a Ray worker)."""
    module = sys.modules.get("ray")
    if module is None:
        return None
    try:
        if not module.is_initialized():
            return None
        # Raises (an assertion) on the driver, which has no assigned resources.
        cpus = module.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:
        return None
    return max(1, math.ceil(cpus - 1e-9)) if cpus else None


_cgroup_of: dict[int, int | None] = {}


def _cgroup_cached() -> int | None:
    # A process's cgroup quota is set when its container or unit starts: read it once per process.
    pid = os.getpid()
    if pid not in _cgroup_of:
        _cgroup_of[pid] = cgroup()
    return _cgroup_of[pid]


def budget() -> int:
    """The CPUs this process may use: the smallest of the sources above, at least 1 (the cgroup
    quota is read once per process, the others at each call)."""
    sources = [affinity(), omp(), _cgroup_cached(), ray()]
    known = [n for n in sources if n]
    return max(1, min(known)) if known else max(1, os.cpu_count() or 1)
