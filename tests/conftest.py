"""Shared test fixtures: where the real data lives (shared_data.py: $FASTIDX_TEST_DATA, else
../shared/data), an isolated fastidx cache per test, and the 127.0.0.1 test server's fixtures."""

from pathlib import Path

import pytest

from http_server import fetch_env, server  # noqa: F401 (registers the fixtures for every test module)
from shared_data import MNIST_DIR, SHARED_DATA

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """No test reads or writes the real user cache, a Keras cache or the network by accident."""
    home = tmp_path_factory.mktemp("fastidx-home")
    monkeypatch.setenv("FASTIDX_HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(home / "keras"))
    monkeypatch.delenv("FASTIDX_MIRROR", raising=False)
    monkeypatch.delenv("FASTIDX_OFFLINE", raising=False)
    yield home
    _settle_cache_writers()


def _settle_cache_writers():
    """A test's background cache writers finish within the test, and their failures (if any) are
    not reported as warnings of the next test."""
    import sys

    cache = sys.modules.get("fastidx._cache.writer")
    if cache is not None:
        for _, writer in list(cache._writers):
            writer.join()
        cache._writers.clear()
        cache._failures.clear()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The datasets shared with this repository ($FASTIDX_TEST_DATA, else ../shared/data)."""
    return SHARED_DATA


@pytest.fixture
def mnist_dir() -> Path:
    """The full MNIST gz files shared with this repository (skips when they are absent)."""
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not found in {MNIST_DIR}")
    return MNIST_DIR


@pytest.fixture
def mnist_home(tmp_path, mnist_dir, monkeypatch) -> Path:
    """A FASTIDX_HOME holding the four MNIST files, copied there (offline: nothing is fetched)."""
    import shutil

    root = tmp_path / "home"
    (root / "mnist").mkdir(parents=True)
    for f in mnist_dir.glob("*-ubyte.gz"):
        shutil.copyfile(f, root / "mnist" / f.name)
    monkeypatch.setenv("FASTIDX_HOME", str(root))
    monkeypatch.setenv("FASTIDX_OFFLINE", "1")
    return root


@pytest.fixture
def sha256_threads(monkeypatch) -> list:
    """``hashlib.sha256`` recording the name of the thread of every ``update``: the list returned."""
    import hashlib
    import threading

    threads = []
    real = hashlib.sha256

    class Recording:
        def __init__(self, data=b""):
            self._hash = real(data)

        def update(self, data):
            threads.append(threading.current_thread().name)
            self._hash.update(data)

        def hexdigest(self):
            return self._hash.hexdigest()

    monkeypatch.setattr(hashlib, "sha256", Recording)
    return threads
