"""Where the real datasets shared with this repository live: the one place it is written.

``$FASTIDX_TEST_DATA`` when set, else ``<repo>/../shared/data`` (where CI clones the repository,
beside ``shared/``). Tests reach it through conftest.py's ``shared_data`` and ``mnist_dir``
fixtures or these names; the benchmarks (``bench/``) import this module too.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "FASTIDX_TEST_DATA"
SHARED_DATA = Path(os.environ.get(ENV) or Path(__file__).resolve().parents[2] / "shared" / "data")
MNIST_DIR = SHARED_DATA / "mnist"
CANONICAL_DIR = SHARED_DATA / "canonical"
