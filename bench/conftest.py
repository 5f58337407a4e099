"""Fixtures of the pytest-benchmark suite (``pytest bench/ --benchmark-only``): where the data are, a
private fastidx cache and a ``KERAS_HOME`` that serves the same MNIST files to Keras with no network.

The real MNIST gz files are looked for in ``$FASTIDX_BENCH_DATA``, then in the shared data of
``tests/shared_data.py`` (``$FASTIDX_TEST_DATA/mnist``, else ``<repo>/../shared/data/mnist``, where CI
clones the repository beside ``shared/``); without them the suite runs on the 1,000-image sample
shipped inside fastidx, and every benchmark's ``extra_info`` says which data it used.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent / "tests"))

import _cases  # noqa: E402
from shared_data import MNIST_DIR as REAL_DATA  # noqa: E402  ($FASTIDX_TEST_DATA, else ../shared/data)


def _data_dir() -> Path:
    env = os.environ.get("FASTIDX_BENCH_DATA")
    if env:
        return Path(env)
    if all((REAL_DATA / name).is_file() for name in _cases.FILES.values()):
        return REAL_DATA
    from fastidx.datasets import SAMPLE_DIR

    return SAMPLE_DIR


DATA_DIR = _data_dir()
_WORK = Path(tempfile.mkdtemp(prefix="fastidx-bench-pytest-"))
atexit.register(shutil.rmtree, _WORK, True)

# Keras reads KERAS_HOME once, when it is imported: set it before anything imports TensorFlow.
_KERAS_DIR = _WORK / "keras-home" / "datasets" / "fashion-mnist"
_KERAS_DIR.mkdir(parents=True)
for _name in _cases.FILES.values():
    os.symlink(DATA_DIR.resolve() / _name, _KERAS_DIR / _name)
os.environ["KERAS_HOME"] = str(_WORK / "keras-home")
os.environ["FASTIDX_HOME"] = str(_WORK / "fastidx-home")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if "keras" in sys.modules:  # imported before this conftest: point its home here too
    from keras.src.backend import config as _keras_config

    _keras_config._KERAS_DIR = os.environ["KERAS_HOME"]


@pytest.fixture(scope="session")
def ctx() -> dict:
    """What the case functions of ``_cases`` need: data, cache directory and the output shapes."""
    import numpy as np

    import compare

    ref = compare.read_reference(DATA_DIR)
    (x_train, _), (x_test, _) = ref["train"], ref["test"]
    cache_dir = _WORK / "fastidx-cache"
    cache_dir.mkdir(exist_ok=True)
    return {
        "data_dir": str(DATA_DIR),
        "cache_dir": str(cache_dir),
        "n_train": int(x_train.shape[0]),
        "n_test": int(x_test.shape[0]),
        "image_shape": list(x_train.shape[1:]),
        "threads_param": None,
        "reference": ref,
        "float_train": x_train.astype("float32") / 255,
        "float_test": x_test.astype("float32") / 255,
        "np": np,
    }
