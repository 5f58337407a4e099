"""The CPU budget fastidx sizes its decode threads by: affinity, OMP_NUM_THREADS, cgroups, Ray."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fastidx import _cache, _cpus


def _tree(tmp_path: Path, cgroup: str, files: dict[str, str]):
    """A fake /proc/self/cgroup and /sys/fs/cgroup holding ``files`` (relative path -> text)."""
    proc, root = tmp_path / "proc", tmp_path / "cg"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return proc, root


def test_cgroup_v2_quota_rounds_up_and_the_tightest_ancestor_wins(tmp_path):
    proc, root = _tree(tmp_path, "0::/pod/trial\n", {
        "pod/trial/cpu.max": "250000 100000\n",     # 2.5 CPUs
        "pod/cpu.max": "150000 100000\n",           # 1.5 CPUs: the parent is tighter
        "cpu.max": "max 100000\n",
    })
    assert _cpus.cgroup(proc, root) == 2


def test_cgroup_v2_without_a_limit(tmp_path):
    proc, root = _tree(tmp_path, "0::/a\n", {"a/cpu.max": "max 100000\n"})
    assert _cpus.cgroup(proc, root) is None


def test_cgroup_v2_seen_from_inside_a_container_namespace(tmp_path):
    # /proc/self/cgroup names a path the container's /sys/fs/cgroup does not have: its root holds
    # the limit.
    proc, root = _tree(tmp_path, "0::/kubepods/burstable/pod1/abc\n", {"cpu.max": "400000 100000"})
    assert _cpus.cgroup(proc, root) == 4


def test_cgroup_v1_cfs_quota(tmp_path):
    proc, root = _tree(tmp_path, "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/\n", {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
    })
    assert _cpus.cgroup(proc, root) == 3


def test_cgroup_v1_unlimited_and_garbage_are_ignored(tmp_path):
    proc, root = _tree(tmp_path, "1:cpu:/\n", {
        "cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n",
    })
    assert _cpus.cgroup(proc, root) is None
    proc, root = _tree(tmp_path / "g", "0::/\n", {"cpu.max": "lots\n"})
    assert _cpus.cgroup(proc, root) is None
    assert _cpus.cgroup(tmp_path / "nowhere", root) is None


def test_a_tiny_quota_still_gives_one_thread(tmp_path):
    proc, root = _tree(tmp_path, "0::/\n", {"cpu.max": "10000 100000\n"})
    assert _cpus.cgroup(proc, root) == 1


@pytest.mark.parametrize("value, expected", [("1", 1), ("3", 3), (" 4,2", 4), ("0", None),
                                             ("", None), ("many", None), ("-2", None)])
def test_omp_num_threads(value, expected):
    assert _cpus.omp({"OMP_NUM_THREADS": value}) == expected
    assert _cpus.omp({}) is None


def test_omp_num_threads_bounds_the_decode_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _cpus.budget() == 1
    assert _cache._threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert _cache._threads() == min(_cpus.affinity(), 8)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_affinity_bounds_the_decode_threads():
    code = ("import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from fastidx import _cache, _cpus; print(_cpus.affinity(), _cache._threads())")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["1", "1"]


def test_outside_ray_the_ray_source_says_nothing():
    assert _cpus.ray() is None or "ray" in sys.modules


RAY_CHECK = """
import os, sys, ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
         runtime_env={"env_vars": {"OMP_NUM_THREADS": "8"}})
from fastidx import _cpus
print("driver", _cpus.ray())

@ray.remote(num_cpus=2)
def two():
    from fastidx import _cache, _cpus
    return _cpus.ray(), _cache._threads()

@ray.remote(num_cpus=0.5)
def half():
    from fastidx import _cpus
    return _cpus.ray(), _cpus.budget()

print("two", *ray.get(two.remote()))
print("half", *ray.get(half.remote()))
ray.shutdown()
"""


def test_ray_per_task_cpus(tmp_path):
    pytest.importorskip("ray")
    short = tempfile.mkdtemp(prefix="fxr", dir="/tmp")  # Ray's socket paths must stay < 108 bytes
    try:
        env = dict(os.environ, RAY_ADDRESS="", RAY_TMPDIR=short, PYTHONWARNINGS="ignore",
                   RAY_AUTH_MODE="disabled")
        run = subprocess.run([sys.executable, "-c", RAY_CHECK], env=env, capture_output=True,
                             text=True, timeout=300, cwd=tmp_path)
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines() if " " in line)
    assert lines["driver"] == "None"
    assert lines["two"] == f"2 {min(2, _cpus.affinity(), 8)}"
    assert lines["half"] == "1 1"
