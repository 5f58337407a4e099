"""The ways of loading full MNIST that must fit a small memory cgroup, as child-process snippets.

Each snippet prints one line, ``sha256 <hex>``, of everything it loaded (arrays' dtype, shape and
bytes, batches in order), so a run inside a cgroup is compared exactly with the same snippet run
without a limit. ``{mnist}`` and ``{cache}`` are filled in by :func:`snippet`.
"""

from __future__ import annotations

_PRELUDE = """
import hashlib, sys
import numpy as np
h = hashlib.sha256()
def add(*arrays):
    for a in arrays:
        h.update(f"{{a.dtype.str}}{{a.shape}}".encode())
        # Row by row: hashing never needs a second copy of a big array.
        flat = a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1)
        for i in range(0, flat.shape[0], 256):
            h.update(np.ascontiguousarray(flat[i:i + 256]).data)
"""

_FASTIDX = _PRELUDE + """
from fastidx.datasets import mnist
P = dict(path={mnist!r}, cache_dir={cache!r})
"""

#: name -> body; the body may use ``mnist``, ``P`` (path and cache_dir) and ``add``. Every load is
#: a first load: it builds the cache entries it reads (the test gives each run an empty cache).
MODES = {
    "load test[:50%]": "add(*mnist.load('test[:50%]', **P))",
    "load train[:3%] normalize": "add(*mnist.load('train[:3%]', normalize=True, **P))",
    "iter_batches normalize": ("for x, y in mnist.iter_batches('train', 256, normalize=True, **P): "
                               "add(x, y)"),
    "iter_batches shuffled normalize": (
        "for x, y in mnist.iter_batches('train', 256, shuffle=True, seed=7, normalize=True, **P): "
        "add(x, y)"),
    "iter_batches shuffled one_hot": (
        "for x, y in mnist.iter_batches('train', 1000, shuffle=True, seed=3, one_hot=True, **P): "
        "add(x, y)"),
    # Memory maps of the uncompressed cache files, built on first use and read whole through
    # the map (the hash reads every byte).
    "mmap uint8": "(a, b), (c, d) = mnist.load_data(mmap=True, **P); add(a, b, c, d)",
    "mmap normalize": "(a, b), (c, d) = mnist.load_data(mmap=True, normalize=True, **P); add(a, b, c, d)",
    "mmap float64 NHWC": ("(a, b), (c, d) = mnist.load_data(mmap=True, dtype='float64', "
                          "layout='NHWC', **P); add(a, b, c, d)"),
    "mmap mean/std": ("(a, b), (c, d) = mnist.load_data(mmap=True, mean=0.1307, std=0.3081, **P); "
                      "add(a, b, c, d)"),
}

#: Loads whose arrays cannot fit in 32 MiB with the interpreter: refused before allocating. The
#: snippet prints the refusal and exits 0; any other ending (killed, another error) is a failure.
REFUSED = {
    "load_data uint8": "mnist.load_data(**P)",
    "load_data normalize": "mnist.load_data(normalize=True, max_memory='auto', **P)",
    "load test normalize": "mnist.load('test', normalize=True, **P)",
}

#: Whole splits in memory: 32 MiB or more, measured by scripts/memory_floor.py only.
IN_MEMORY = {
    "load test": "add(*mnist.load('test', **P))",
    "load_data uint8 in memory": "(a, b), (c, d) = mnist.load_data(**P); add(a, b, c, d)",
    "load_data normalize in memory": ("(a, b), (c, d) = mnist.load_data(normalize=True, **P); "
                                      "add(a, b, c, d)"),
}

#: Keras's way (``keras.datasets.mnist`` + the usual normalisation), the control.
KERAS = _PRELUDE + """
import gzip, os
def read(name, offset):
    with gzip.open(os.path.join({mnist!r}, name), "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)
x = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
y = read("train-labels-idx1-ubyte.gz", 8)
x = x.astype("float32") / 255
add(x, y)
print("sha256", h.hexdigest())
"""


def snippet(mode: str, mnist: str, cache: str) -> str:
    if mode == "keras":
        body = KERAS
    elif mode in REFUSED:
        body = (_FASTIDX + "from fastidx import MemoryLimitError\ntry:\n    "
                + REFUSED[mode] + "\nexcept MemoryLimitError as exc:\n"
                "    print('MemoryLimitError:', exc)\n    sys.exit(0)\nsys.exit('loaded')\n")
    else:
        body = _FASTIDX + {**MODES, **IN_MEMORY}[mode] + "\n" + 'print("sha256", h.hexdigest())\n'
    return body.format(mnist=str(mnist), cache=str(cache))
