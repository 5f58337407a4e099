"""fastidx on a Ray cluster: one download, one decode and one physical copy per node.

Needs Ray (``pip install "fastidx[ray]"``); the rest of fastidx never imports it.

The pattern: each trial loads in its own worker, never on the driver and never through the object
store::

    import ray, fastidx.ray
    from ray import tune
    from fastidx.datasets import mnist

    ray.init(runtime_env=fastidx.ray.runtime_env())      # FASTIDX_* settings reach every worker
    fastidx.ray.prepare("mnist", normalize=True)         # each node downloads and decodes once

    def trial(config):
        (x, y), (x_test, y_test) = mnist.load_data(normalize=True, mmap=True)
        ...                                              # writable, copy-on-write, shared per node

    tune.Tuner(trial, param_space={...}).fit()

On each node the first load downloads (one request per file), decodes and writes the uncompressed
cache file under that node's lock; every other trial of the node maps the same file. Without
:func:`prepare` the first trial of each node does that work while the node's other trials wait.
"""

from __future__ import annotations

import os
import socket
import time

#: Settings a worker must see as the driver does; workers get the raylet's environment otherwise.
ENV_VARS = (
    "FASTIDX_HOME", "FASTIDX_MIRROR", "FASTIDX_OFFLINE", "FASTIDX_TIMEOUT",
    "FASTIDX_RETRY_BASE", "FASTIDX_LOCK_TIMEOUT", "FASTIDX_TORCHVISION_ROOT", "KERAS_HOME",
)
_PATHS = ("FASTIDX_HOME", "FASTIDX_TORCHVISION_ROOT", "KERAS_HOME")


def runtime_env(base: dict | None = None, **env_vars) -> dict:
    """A Ray ``runtime_env`` that carries this process's fastidx settings to every worker.

    Takes the ``FASTIDX_*`` (and ``KERAS_HOME``) variables set here, overridden by ``env_vars``;
    paths (and the local directories of ``FASTIDX_MIRROR``) are made absolute now, against this
    directory, so that no worker resolves them against a trial's working directory. ``base`` is another ``runtime_env`` to extend.

    Examples
    --------
    >>> env = runtime_env(FASTIDX_HOME="/data/fastidx", FASTIDX_OFFLINE="1")
    >>> env["env_vars"]["FASTIDX_HOME"], env["env_vars"]["FASTIDX_OFFLINE"]
    ('/data/fastidx', '1')
    """
    found = {k: os.environ[k] for k in ENV_VARS if os.environ.get(k)}
    found.update({k: str(v) for k, v in env_vars.items()})
    for key in _PATHS:
        if key in found:
            found[key] = os.path.abspath(os.path.expanduser(found[key]))
    if "FASTIDX_MIRROR" in found:
        found["FASTIDX_MIRROR"] = _absolute_mirrors(found["FASTIDX_MIRROR"])
    out = dict(base or {})
    out["env_vars"] = {**out.get("env_vars", {}), **found}
    return out


def _absolute_mirrors(text: str) -> str:
    """``FASTIDX_MIRROR`` with its local directories made absolute (URLs kept as they are)."""
    if os.path.isdir(text):
        return os.path.abspath(text)
    return " ".join(os.path.abspath(m) if "://" not in m and os.path.isdir(m) else m
                    for m in text.replace(",", " ").split())


def _prepare_here(dataset: str, options: dict) -> dict:
    """Runs on one node: fetch, verify, decode and write the cache files; returns no arrays."""
    import ray

    from ._paths import cache_root
    from .datasets._loader import Dataset

    start = time.perf_counter()
    (x, y), (xt, yt) = Dataset(dataset).load_data(mmap=True, **options)
    shapes = [list(a.shape) for a in (x, y, xt, yt)]
    del x, y, xt, yt
    return {
        "node": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
        "cache": os.fspath(cache_root(options.get("cache_dir"))),
        "seconds": round(time.perf_counter() - start, 3),
        "shapes": shapes,
    }


def prepare(dataset: str = "mnist", *, num_cpus: float = 1, timeout: float | None = 1800,
            **options) -> list[dict]:
    """Download and decode ``dataset`` once on every alive node of the Ray cluster, in parallel.

    Runs one task pinned to each alive node with ``num_cpus`` CPUs (a node without CPUs, such as
    a head node started with ``--num-cpus=0``, runs no trial and is left out) that calls
    ``load_data(mmap=True, **options)`` there, so that the node's files are fetched and verified
    and its decoded cache and uncompressed file (for these conversion options) are written before
    any trial asks. Call it after ``ray.init()`` and before the search; pass the options the
    trials will use (``normalize``, ``dtype``, ``mean``, ``std``, ``cache_dir``, ``mirrors``...).
    No array leaves the nodes.

    Returns one record per node: ``node`` id, ``host``, ``cache`` directory, ``seconds``,
    ``shapes``. An error on any node is raised here; so is Ray's ``GetTimeoutError`` when the
    nodes are not all done within ``timeout`` seconds (default 30 minutes; each node's downloads
    and lock waits have their own bounds, see ``FASTIDX_TIMEOUT`` and ``FASTIDX_LOCK_TIMEOUT``).
    Without Ray, ``fastidx download`` followed by one ``load_data(mmap=True, ...)`` does the same
    for one machine.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not ray.is_initialized():
        raise RuntimeError("fastidx.ray.prepare: call ray.init() first")
    options.pop("mmap", None)
    # A node without the CPUs for the task (a head node started with --num-cpus=0) runs no trial
    # either; pinning a task to it would wait until the timeout.
    nodes = [node["NodeID"] for node in ray.nodes()
             if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) >= num_cpus]
    if not nodes:
        raise RuntimeError(f"fastidx.ray.prepare: no alive node has {num_cpus} CPU(s) for the task")
    task = ray.remote(num_cpus=num_cpus, max_retries=0)(_prepare_here)
    refs = [
        task.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            name=f"fastidx.prepare({dataset})",
        ).remote(dataset, options)
        for node in nodes
    ]
    return ray.get(refs, timeout=timeout)
