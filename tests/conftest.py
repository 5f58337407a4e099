"""Shared test fixtures: where the real data lives, and an isolated fastidx cache per test."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MNIST_DIR = SHARED_DATA / "mnist"


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

    cache = sys.modules.get("fastidx._cache")
    if cache is not None:
        for _, writer in list(cache._writers):
            writer.join()
        cache._writers.clear()
        cache._failures.clear()


@pytest.fixture
def mnist_dir() -> Path:
    """The full MNIST gz files shared with this repository (skips when they are absent)."""
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not found in {MNIST_DIR}")
    return MNIST_DIR
