"""``max_memory=``: refusals name the limit the caller gave; only a number of bytes is a limit."""

import math

import numpy as np
import pytest

from fastidx.cache import MemoryLimitError
from fastidx.datasets import SAMPLE_DIR, mnist

# The sample: 1,000 train images (784,000 bytes) and labels (1,000), 200 test (156,800 + 200).
TRAIN_BYTES = 784_000 + 1_000


@pytest.mark.parametrize("cache", [False, True])
def test_a_refusal_reports_the_limit_as_given(tmp_path, cache):
    with pytest.raises(MemoryLimitError) as caught:
        mnist.load("train", path=SAMPLE_DIR, cache=cache, cache_dir=tmp_path, max_memory=10_000)
    message = str(caught.value)
    assert "max_memory=10,000;" in message and "784,000 bytes" in message, message
    assert "1,000 bytes this load already holds" in message, message  # the labels, loaded first

    # Both splits share the limit: the test split is refused against the same number.
    with pytest.raises(MemoryLimitError) as caught:
        mnist.load_data(path=SAMPLE_DIR, cache=cache, cache_dir=tmp_path, max_memory=TRAIN_BYTES + 500)
    assert f"max_memory={TRAIN_BYTES + 500:,};" in str(caught.value)
    assert f"{TRAIN_BYTES + 200:,} bytes this load already holds" in str(caught.value)

    (x, _), (xt, _) = mnist.load_data(path=SAMPLE_DIR, cache=cache, cache_dir=tmp_path,
                                      max_memory=TRAIN_BYTES + 157_000)
    assert x.shape == (1000, 28, 28) and xt.shape == (200, 28, 28)


@pytest.mark.parametrize("bad", [math.nan, -1, -0.5, math.inf, 1.5, "10MB", True, [10]])
def test_only_a_number_of_bytes_is_a_limit(tmp_path, bad):
    calls = (
        lambda: mnist.load_data(path=SAMPLE_DIR, cache=False, max_memory=bad),
        lambda: mnist.load("test", path=SAMPLE_DIR, cache=False, max_memory=bad),
        lambda: mnist.iter_batches("test", 10, path=SAMPLE_DIR, cache=False, max_memory=bad),
    )
    for call in calls:
        with pytest.raises(ValueError, match="max_memory must be a whole number of bytes") as caught:
            call()
        assert not isinstance(caught.value, MemoryLimitError)


def test_numpy_integers_and_whole_floats_are_limits():
    x, _ = mnist.load("test", path=SAMPLE_DIR, cache=False, max_memory=np.int64(200_000))
    assert x.shape == (200, 28, 28)
    with pytest.raises(MemoryLimitError, match="max_memory=1,000;"):
        mnist.load("test", path=SAMPLE_DIR, cache=False, max_memory=1e3)
