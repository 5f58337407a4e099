"""fastidx.ray.prepare on a cluster whose head node runs no tasks (``num_cpus=0``, as clusters
often start it): every node that can run the prepare task gets one, the others are left out
instead of waiting for CPUs that never come."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

PREPARE = """
import json, os, sys, ray
from ray.cluster_utils import Cluster
import fastidx.ray

work, sample = sys.argv[1], sys.argv[2]
cluster = Cluster(initialize_head=True, head_node_args=dict(
    num_cpus=0, include_dashboard=False, env_vars={"FASTIDX_HOME": os.path.join(work, "head")}))
try:
    cluster.add_node(num_cpus=1, env_vars={"FASTIDX_HOME": os.path.join(work, "worker")})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    records = fastidx.ray.prepare("mnist", path=sample, normalize=True, timeout=120)
    print("RESULT " + json.dumps([r["cache"] for r in records]))
    ray.shutdown()
finally:
    cluster.shutdown()
"""


def test_prepare_skips_a_head_node_without_cpus(tmp_path):
    pytest.importorskip("ray")
    from fastidx.datasets import SAMPLE_DIR

    short = tempfile.mkdtemp(prefix="fxr", dir="/tmp")  # Ray's socket paths must stay < 108 bytes
    env = {k: v for k, v in os.environ.items()
           if k == "FASTIDX_PURE" or not k.startswith(("FASTIDX_", "RAY_"))}
    env.update(RAY_TMPDIR=short, RAY_AUTH_MODE="disabled", PYTHONWARNINGS="ignore")
    try:
        run = subprocess.run([sys.executable, "-c", PREPARE, str(tmp_path), str(SAMPLE_DIR)],
                             env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    finally:
        shutil.rmtree(short, ignore_errors=True)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    assert json.loads(lines[-1][len("RESULT "):]) == [str(tmp_path / "worker")]
