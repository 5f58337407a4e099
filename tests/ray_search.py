"""A Ray Tune search on a 2-node local cluster, run by tests/test_ray_search.py in its own process.

``python ray_search.py MIRROR WORKDIR TRIALS`` starts ``ray.cluster_utils.Cluster`` with two nodes,
each with its own ``FASTIDX_HOME`` (``WORKDIR/node<i>``) and its own mirror URL
(``MIRROR/node<i>``: the test's server counts the requests of each node apart), runs a search of
``TRIALS`` trials that each load MNIST with ``load_data(normalize=True, mmap=True)`` in their
worker and train a few steps of softmax regression, and prints one JSON line of what it saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys


def trial(config):
    """One trial: load in the worker (no driver-side arrays), train, report."""
    import time

    import numpy as np
    import ray
    from ray import tune

    from fastidx.datasets import mnist

    start = time.perf_counter()
    (x, y), (xt, yt) = mnist.load_data(normalize=True, mmap=True)
    ready = time.perf_counter() - start
    digest = hashlib.sha256()
    for a in (x, y, xt, yt):
        digest.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    writable = bool(x.flags.writeable)
    # The mapped cache files, from this process's own memory map (path and inode).
    maps = sorted({(line.split()[4], line.split()[5]) for line in open("/proc/self/maps")
                   if line.rstrip().endswith(".raw")})

    lr = 0.5 * (config["i"] + 1)
    rng = np.random.default_rng(config["seed"])
    rows = rng.choice(x.shape[0], 6000, replace=False)
    xs, ys = x[rows].reshape(len(rows), -1), y[rows]
    w = np.zeros((xs.shape[1], 10), np.float32)
    for _ in range(config["steps"]):
        logits = xs @ w
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(ys)), ys] -= 1
        w -= lr * (xs.T @ p) / len(ys)
    accuracy = float((np.argmax(xt.reshape(len(xt), -1) @ w, axis=1) == yt).mean())
    tune.report({
        "accuracy": accuracy, "hash": digest.hexdigest(), "ready_s": ready, "writable": writable,
        "node": ray.get_runtime_context().get_node_id(), "maps": maps,
        "home": os.environ.get("FASTIDX_HOME"), "cwd": os.getcwd(),
    })


def main(mirror: str, workdir: str, trials: int) -> None:
    import ray
    from ray import cloudpickle, tune
    from ray._private import internal_api
    from ray.cluster_utils import Cluster

    import fastidx.ray

    nodes = []
    for i in range(2):
        home = os.path.join(workdir, f"node{i}")
        env = {"FASTIDX_HOME": home, "FASTIDX_MIRROR": f"{mirror}/node{i}",
               "FASTIDX_RETRY_BASE": "0.01", "KERAS_HOME": os.path.join(workdir, "keras")}
        nodes.append(dict(num_cpus=2, env_vars=env, resources={f"node{i}": 2},
                          include_dashboard=False))
    cluster = Cluster(initialize_head=True, head_node_args=nodes[0])
    try:
        cluster.add_node(**nodes[1])
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        ids = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
        node_of = {nid: next(k for k in res if k.startswith("node") and k[4:].isdigit())
                   for nid, res in ids.items()}

        # Trial i runs on node i % 2 (a custom resource per node), so both nodes have trials.
        space = {"i": tune.grid_search(list(range(trials))), "seed": 0, "steps": 15}
        placed = tune.with_resources(trial, lambda config: {"CPU": 1, f"node{config['i'] % 2}": 1})
        tuner = tune.Tuner(
            placed, param_space=space,
            tune_config=tune.TuneConfig(metric="accuracy", mode="max"),
            run_config=tune.RunConfig(storage_path=os.path.join(workdir, "results"), name="fx",
                                      verbose=0),
        )
        results = tuner.fit()
        reports = [r.metrics for r in results]
        errors = [str(r.error) for r in results if r.error is not None]
        store = internal_api.get_memory_info_reply(
            internal_api.get_state_from_address(cluster.address)).store_stats
        prepared = fastidx.ray.prepare("mnist", normalize=True)
        out = {
            "errors": errors,
            "trials": [{k: r[k] for k in ("accuracy", "hash", "ready_s", "writable", "maps",
                                          "home", "cwd")} | {"node": node_of[r["node"]]}
                       for r in reports],
            "store_created_bytes": store.cumulative_created_bytes,
            "trainable_pickle_bytes": len(cloudpickle.dumps(trial)),
            "prepared": [{"node": node_of[p["node"]], "cache": p["cache"]} for p in prepared],
        }
        print("RESULT " + json.dumps(out), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
